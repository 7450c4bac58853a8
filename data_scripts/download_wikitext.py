"""Download raw WikiText-103 (or the small WikiText-2) into wikitext-{103,2}-raw/ beside the GLUE data folder.

    python data_scripts/download_wikitext.py                  # WikiText-103 (180 MB zip) into ./data/wikitext-103-raw
    python data_scripts/download_wikitext.py --variant 2      # WikiText-2 (4.5 MB zip), for trials

The data folder is the one minilth reads ($MINILTH_DATA_DIR, else ./data/glue); the corpus goes
beside it (data/wikitext-103-raw/wiki.{train,valid,test}.raw), where the MLM task looks for it.
The zips come from wikitext.smerity.com (the original S3 bucket is gone) through
minilth.data.sources (kept in the minilth cache, digests checked); a corpus already unpacked is
skipped without any network access (--force fetches them again).
"""
from __future__ import annotations

import sys

from minilth.data.sources import WIKITEXT_SPLIT_FILES, WIKITEXT_VARIANTS, install_wikitext
from minilth.errors import run_cli

from _cli import data_dir_from, parse_args


def main(argv: list[str] | None = None) -> int:
    """Download one WikiText variant; return the exit status (2 with a one-line message on error)."""
    args = parse_args(argv, __doc__, "a mirror holding the wikitext-*-raw-v1.zip files",
                      variants=sorted(WIKITEXT_VARIANTS))
    root = data_dir_from(args).parent
    return run_cli(lambda: report(install_wikitext(root, args.variant, args.base_url, args.force),
                                  args.variant),
                   "run it again: finished files are kept, the rest resumes")


def report(folder, variant: str) -> int:
    for name in WIKITEXT_SPLIT_FILES:
        print(f"WikiText-{variant}: {folder / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
