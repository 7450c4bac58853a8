"""Reading and tokenizing all of SST-2 train (67,349 sentences): minilth vs transformers' BertTokenizerFast.

Both use the same vocabulary (the all-MiniLM-L6-v2 folder's vocab.txt, bert-base-uncased's),
truncate to 128, and include reading the TSV: minilth with its GLUE reader, transformers with
a plain csv reader as its GLUE processors do. Best of 3; the ids of both must be identical.

    python benchmarks/bench_tokenize.py [--data-dir data/glue]
"""
import argparse
import csv
import os
from pathlib import Path

import torch

from minilth.data.folders import task_file
from minilth.data.glue import load_glue
from minilth.checkpoints.tokenizer import Tokenizer
from minilth.checkpoints.pretrained import resolve_checkpoint
from timing import best_of, machine_line  # benchmarks/timing.py, beside this script

def minilth_ids(path: Path, tokenizer: Tokenizer) -> list[list[int]]:
    return [f["input_ids"] for f in load_glue("sst2", path, tokenizer, split="train").features]


def transformers_ids(path: Path, tokenizer) -> list[list[int]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        sentences = [row["sentence"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    return tokenizer(sentences, truncation=True, max_length=128, padding=False)["input_ids"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None,
                        help="folder holding SST-2/ (default: $MINILTH_DATA_DIR, else data/glue; downloaded if missing)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from transformers import BertTokenizerFast  # reference stack, benchmark only

    path = task_file("sst2", args.data_dir, "train")
    folder = resolve_checkpoint("all-MiniLM-L6-v2")
    ours = Tokenizer.from_folder(folder)
    # the folder's tokenizer.json pads to 128 by default: padding=False in the call turns that off
    theirs = BertTokenizerFast.from_pretrained(folder)

    ours_s, ours_ids = best_of(args.repeats, lambda: minilth_ids(path, ours))
    theirs_s, theirs_ids = best_of(args.repeats, lambda: transformers_ids(path, theirs))
    n = len(ours_ids)
    identical = ours_ids == [list(ids) for ids in theirs_ids]

    print(f"\nSST-2 train: {n} sentences, read + tokenize (max length 128), best of {args.repeats}")
    print(f"{machine_line()}; RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'unset')}")
    print(f"{'stack':<36}{'seconds':>10}{'examples/s':>14}")
    print(f"{'minilth (glue.load_glue)':<36}{ours_s:>10.2f}{n / ours_s:>14,.0f}")
    print(f"{'transformers BertTokenizerFast':<36}{theirs_s:>10.2f}{n / theirs_s:>14,.0f}")
    print(f"ratio minilth / transformers (throughput): {theirs_s / ours_s:.2f}x")
    print(f"identical input_ids: {identical}")
    if not identical:
        raise SystemExit("the two tokenizers disagree: minilth's tokenizer does not match bert-base-uncased's")


if __name__ == "__main__":
    main()
