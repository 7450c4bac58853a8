"""A masked-language-modelling corpus from the GLUE files on disk: the sentences of every GLUE task, one per line.

    write_glue_text("data/glue", "data/glue-text", task_file)  # train.txt from the training splits, dev.txt from dev

task_file (data/folders.py) finds a task's split file, downloading the task when it is missing.

The paper finds its MLM ticket on WikiText-103 (500 MB). This corpus is small (about 1.3 million
tokens) and holds the very kind of text the GLUE tasks fine-tune on, so a CPU can train an MLM head
and run IMP on it in minutes per round. Its lines are the text columns of each task's examples,
each sentence once; dev.txt holds no sentence of train.txt, so it measures held-out text. The
lines are shuffled with a fixed seed, so that the corpus's blocks of consecutive tokens
(mlm.load_mlm) mix the tasks.
"""
from __future__ import annotations

import random
from pathlib import Path

from .. import files
from ..errors import DataError
from .glue import read_examples
from .tasks import get_task

GLUE_TEXT_TASKS = ("cola", "sst2", "mrpc", "stsb", "rte", "wnli")  # the GLUE tasks whose training text ships freely
SHUFFLE_SEED = 0


def glue_sentences(data_dir: str | Path, split: str, task_file, tasks=GLUE_TEXT_TASKS) -> list[str]:
    """Returns every distinct sentence of the tasks' `split` files, in task and file order."""
    sentences = {}
    for name in tasks:
        task = get_task(name)
        examples, _ = read_examples(task, task_file(task, data_dir, split), split=split)
        for example in examples:
            for text in (example.text_a, example.text_b):
                if text and text.strip():
                    sentences.setdefault(" ".join(text.split()), None)
    return list(sentences)


def write_glue_text(data_dir: str | Path, output_dir: str | Path, task_file, tasks=GLUE_TEXT_TASKS) -> Path:
    """Returns the folder after writing train.txt (the training sentences) and dev.txt (the dev sentences that are
    not training sentences) into it, both shuffled with a fixed seed; GLUE tasks missing are downloaded first."""
    output_dir = Path(output_dir)
    train = glue_sentences(data_dir, "train", task_file, tasks)
    seen = set(train)
    dev = [sentence for sentence in glue_sentences(data_dir, "dev", task_file, tasks) if sentence not in seen]
    if not train or not dev:
        raise DataError(f"the GLUE files in {data_dir} hold no text for the tasks {', '.join(tasks)}")
    for name, lines in (("train.txt", train), ("dev.txt", dev)):
        random.Random(SHUFFLE_SEED).shuffle(lines)
        files.write_text(output_dir / name, "\n".join(lines) + "\n")
    return output_dir
