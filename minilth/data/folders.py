"""A task's data, found or fetched the same way everywhere: the data folder, a split's file, a loaded split.

    data_dir = resolve_data_dir()                       # data/glue, or $MINILTH_DATA_DIR
    train = load_dataset("rte", data_dir, "train", tokenizer)   # downloads RTE first if it is missing

The data folder holds GLUE's task folders (data/glue/RTE/train.tsv, ...); SQuAD (squad/) and
WikiText (wikitext-103-raw/) are found in it or beside it (data/squad), where the data scripts
put them. A task whose files are missing is downloaded into that layout (minilth.data.sources:
progress bar, sha256, atomic rename; $MINILTH_DATA_URL for a mirror); with MINILTH_OFFLINE=1, or
download=False, a missing file is a one-line DataError naming the command that fetches it.
"""
from __future__ import annotations

import os
import shlex
from pathlib import Path

from ..checkpoints.download import is_offline
from ..errors import DataError
from . import sources
from .glue import load_glue
from .glue_text import write_glue_text
from .mlm import load_mlm
from .squad import load_squad
from .tasks import Task, get_task

DATA_DIR_ENV = "MINILTH_DATA_DIR"
DEFAULT_DATA_DIR = Path("data") / "glue"  # relative: under the current folder


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """Returns the folder holding GLUE's task folders: data_dir, else $MINILTH_DATA_DIR, else ./data/glue."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser()


def task_file(task: Task | str, data_dir: str | Path | None, split: str, download: bool = True) -> Path:
    """Returns the path of a split's file, downloading the task first when it is missing (see the module doc).

    data_dir None: resolve_data_dir(). GLUE files are data_dir/<folder>/<file>; SQuAD and WikiText
    are also looked for beside data_dir (data/squad next to data/glue), where they are downloaded.
    """
    task = get_task(task)
    if split not in task.splits:
        raise DataError(f"{task.display_name} has no split '{split}'; its splits: {', '.join(task.splits)}")
    data_dir = resolve_data_dir(data_dir)
    candidates = _candidate_paths(task, data_dir, split)
    found = next((path for path in candidates if path.is_file()), None)
    if found is None and download and not is_offline():
        download_task(task, data_dir)
        found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        why = " and MINILTH_OFFLINE=1" if download and is_offline() else ""
        raise DataError(f"{candidates[-1]} not found{why}: download {task.display_name} with "
                        f"`{download_command(task, data_dir)}`, or point MINILTH_DATA_DIR (--data-dir) at the "
                        f"folder holding {task.folder}/")
    return found


def _candidate_paths(task: Task, data_dir: Path, split: str) -> list[Path]:
    """Where a split's file may be, the download's destination last."""
    inside = data_dir / task.folder / task.splits[split]
    if task.kind in ("span", "mlm"):
        return [inside, data_dir.parent / task.folder / task.splits[split]]
    return [inside]


def download_command(task: Task | str, data_dir: str | Path | None = None) -> str:
    """Returns the shell command that downloads the task's files to where task_file looks for them."""
    return f"{get_task(task).data_script} --data-dir {shlex.quote(str(resolve_data_dir(data_dir)))}"


def download_task(task: Task | str, data_dir: str | Path | None = None) -> Path:
    """Returns the folder holding the task's files after downloading what is missing.

    GLUE tasks go to data_dir/<Task>; SQuAD and WikiText-103 beside data_dir (data/squad, data/wikitext-103-raw).
    """
    task = get_task(task)
    data_dir = resolve_data_dir(data_dir)
    if task.kind == "span":
        return sources.install_squad(data_dir.parent / task.folder)
    if task.name == "mlm_glue":  # made from the GLUE files, not downloaded
        return write_glue_text(data_dir, data_dir.parent / task.folder, task_file)
    if task.kind == "mlm":
        return sources.install_wikitext(data_dir.parent, variant="103")
    return sources.install_glue_task(task.folder, data_dir)


def load_dataset(task: Task | str, data_dir: str | Path | None, split: str, tokenizer, max_examples: int | None = None,
                 progress: bool = True, download: bool = True):
    """Returns the split as a Dataset with `.examples` and `.features` (the first max_examples, if given).

    The file comes from task_file (data_dir None: resolve_data_dir(); downloaded when missing unless
    download=False). GLUE tasks are read by glue.load_glue, SQuAD by squad.load_squad (training
    windows for "train", evaluation windows otherwise), MLM text by mlm.load_mlm, each with the task's lengths.
    """
    task = get_task(task)
    path = task_file(task, data_dir, split, download=download)
    if task.kind in ("classification", "regression"):
        return load_glue(task, path, tokenizer, split=split, max_examples=max_examples, progress=progress)
    if task.kind == "span":
        return load_squad(path, tokenizer, max_length=task.max_length, doc_stride=task.doc_stride,
                          max_query_length=task.max_query_length, max_examples=max_examples,
                          training=(split == "train"), progress=progress)
    return load_mlm(path, tokenizer, max_length=task.max_length, max_examples=max_examples, progress=progress)
