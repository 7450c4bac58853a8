"""Download raw WikiText-103 (or the small WikiText-2) into <out>/wikitext-{103,2}-raw/wiki.{train,valid,test}.raw.

    python data_scripts/download_wikitext.py --out data              # WikiText-103, 180 MB zip
    python data_scripts/download_wikitext.py --variant 2 --out data  # WikiText-2, 4.5 MB zip

The zips are Salesforce's (research.metamind.io). They are kept in the minilth cache
($MINILTH_CACHE, default ~/.cache/minilth); a corpus already unpacked is skipped without
any network access.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from minilth.download import cached_download, extract_archive
from minilth.errors import DataError, run_cli

WIKITEXT_BASE_URL = "https://s3.amazonaws.com/research.metamind.io/wikitext"
# variant -> (archive, its top folder, which is also the output folder)
VARIANTS = {
    "103": ("wikitext-103-raw-v1.zip", "wikitext-103-raw"),
    "2": ("wikitext-2-raw-v1.zip", "wikitext-2-raw"),
}
# Digests as recorded in the download_checksums of Hugging Face datasets' wikitext/dataset_infos.json.
SHA256 = {
    "wikitext-103-raw-v1.zip": "91c00ae287f0d699e18605c84afc9e45c192bc6b7797ff8837e5474655a33794",
    "wikitext-2-raw-v1.zip": "ef7edb566e3e2b2d31b29c1fdb0c89a4cc683597484c3dc2517919c615435a11",
}
SPLIT_FILES = ["wiki.train.raw", "wiki.valid.raw", "wiki.test.raw"]


def install_wikitext(out: Path, variant: str = "103", base_url: str | None = None) -> Path:
    """Return <out>/wikitext-<variant>-raw holding wiki.{train,valid,test}.raw, downloading it if absent."""
    archive_name, folder = VARIANTS[variant]
    target = out / folder
    if not target.is_dir():
        archive = cached_download(f"{base_url or WIKITEXT_BASE_URL}/{archive_name}",
                                  sha256=SHA256.get(archive_name), subdir="wikitext")
        extract_archive(archive, target, member_root=folder)
    missing = [name for name in SPLIT_FILES if not (target / name).is_file()]
    if missing:
        raise DataError(f"{target} lacks {', '.join(missing)}; delete the folder and run again")
    return target


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="103",
                        help="103 (the paper's MLM corpus) or 2 (small, for trials); default 103")
    parser.add_argument("--out", type=Path, default=Path("data"),
                        help="data folder; files go to <out>/wikitext-<variant>-raw (default: ./data)")
    parser.add_argument("--base-url", default=None, help="a mirror holding the wikitext-*-raw-v1.zip files")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Download one WikiText variant; return the exit status (2 with a one-line message on error)."""
    args = parse_args(argv)
    return run_cli(lambda: report(install_wikitext(args.out, args.variant, args.base_url), args.variant),
                   "run it again: finished files are kept, the rest resumes")


def report(folder: Path, variant: str) -> int:
    for name in SPLIT_FILES:
        print(f"WikiText-{variant}: {folder / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
