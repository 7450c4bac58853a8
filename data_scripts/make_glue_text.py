"""Make the MLM corpus of GLUE's text: glue-text/{train,dev}.txt beside the GLUE data folder, from its task files.

    python data_scripts/make_glue_text.py                       # from ./data/glue (or $MINILTH_DATA_DIR) into ./data/glue-text
    python data_scripts/make_glue_text.py --output other/glue-text

Every sentence of the training files of CoLA, SST-2, MRPC, STS-B, RTE and WNLI, once, in train.txt;
those of their dev files that are not training sentences in dev.txt (held-out text). GLUE tasks
missing from the data folder are downloaded first. The task `mlm_glue` reads the corpus from
glue-text/ in the data folder or beside it (minilth/data/glue_text.py says why it exists).
"""
from __future__ import annotations

import sys
from pathlib import Path

from minilth.data.folders import resolve_data_dir, task_file
from minilth.data.glue_text import write_glue_text
from minilth.data.tasks import get_task
from minilth.errors import run_cli
from minilth.settings import CommandParser


def main(argv: list[str] | None = None) -> int:
    """Writes the corpus; returns the exit status (2 with a one-line message on error)."""
    parser = CommandParser(prog="python data_scripts/make_glue_text.py", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the folder holding GLUE's task folders (default: $MINILTH_DATA_DIR, else ./data/glue)")
    parser.add_argument("--output", type=Path, default=None,
                        help="the corpus folder (default: glue-text beside the data folder)")
    args = parser.parse_args(argv)
    data_dir = resolve_data_dir(args.data_dir)
    output = args.output or data_dir.parent / get_task("mlm_glue").folder
    return run_cli(lambda: report(write_glue_text(data_dir, output, task_file)))


def report(folder: Path) -> int:
    for name in ("train.txt", "dev.txt"):
        lines = (folder / name).read_text(encoding="utf-8").count("\n")
        print(f"GLUE text: {folder / name} ({lines:,} sentences)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
