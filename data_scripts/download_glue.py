"""Download the GLUE tasks into <data-dir>/<Task>/, the layout of the official GLUE download script.

    python data_scripts/download_glue.py                          # all tasks into ./data/glue
    python data_scripts/download_glue.py --tasks RTE MRPC --data-dir data/glue

The default folder is the one minilth reads: $MINILTH_DATA_DIR, else ./data/glue. The task zips
are the ones of nyu-mll/GLUE-baselines' download_glue_data.py; MRPC's files are built, as there,
from the MSR paraphrase files and the standard list of dev ids. The code is minilth.data.sources'
(archives kept in the minilth cache, digests checked); tasks already unpacked are skipped
without any network access (--force unpacks them again).
"""
from __future__ import annotations

import sys

from minilth.data.sources import GLUE_TASKS, install_glue_task, resolve_glue_tasks
from minilth.errors import run_cli

from _cli import data_dir_from, parse_args


def main(argv: list[str] | None = None) -> int:
    """Download the requested GLUE tasks; return the exit status (2 with a one-line message on error)."""
    args = parse_args(argv, __doc__, "a mirror holding every file (zips, MSR files, mrpc_dev_ids.tsv) in one folder",
                      tasks=GLUE_TASKS)
    return run_cli(lambda: install_all(args), "run it again: finished files are kept, the rest resumes")


def install_all(args) -> int:
    glue_dir = data_dir_from(args)
    for task in resolve_glue_tasks(args.tasks):
        print(f"{task}: {install_glue_task(task, glue_dir, args.base_url, args.force)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
