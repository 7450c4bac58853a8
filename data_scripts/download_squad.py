"""Download SQuAD v1.1 into squad/{train,dev}-v1.1.json beside the GLUE data folder (data/squad).

    python data_scripts/download_squad.py                     # into ./data/squad
    python data_scripts/download_squad.py --data-dir data/glue

The data folder is the one minilth reads ($MINILTH_DATA_DIR, else ./data/glue); SQuAD goes
beside it, where minilth looks for it. The files come from the SQuAD explorer site through
minilth.data.sources (kept in the minilth cache, digests checked); files already there are
skipped without any network access (--force fetches them again).
"""
from __future__ import annotations

import sys

from minilth.data.sources import SQUAD_FILES, install_squad
from minilth.errors import run_cli

from _cli import data_dir_from, parse_args


def main(argv: list[str] | None = None) -> int:
    """Download SQuAD v1.1; return the exit status (2 with a one-line message on error)."""
    args = parse_args(argv, __doc__, "a mirror holding train-v1.1.json and dev-v1.1.json")
    squad_dir = data_dir_from(args).parent / "squad"
    return run_cli(lambda: report(install_squad(squad_dir, args.base_url, args.force)),
                   "run it again: finished files are kept, the rest resumes")


def report(folder) -> int:
    for name in SQUAD_FILES:
        print(f"SQuAD v1.1: {folder / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
