"""Download SQuAD v1.1 into <out>/squad/{train,dev}-v1.1.json.

    python data_scripts/download_squad.py --out data

The files come from the SQuAD explorer site; they are kept in the minilth cache
($MINILTH_CACHE, default ~/.cache/minilth) and copied into <out>/squad. Files already
there are skipped without any network access.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from minilth.download import cached_download, install_file
from minilth.errors import run_cli

SQUAD_BASE_URL = "https://rajpurkar.github.io/SQuAD-explorer/dataset"
# Digests as recorded in the download_checksums of Hugging Face datasets' squad/dataset_infos.json.
SHA256 = {
    "train-v1.1.json": "3527663986b8295af4f7fcdff1ba1ff3f72d07d61a20f487cb238a6ef92fd955",
    "dev-v1.1.json": "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9",
}
FILES = ["train-v1.1.json", "dev-v1.1.json"]


def install_squad(squad_dir: Path, base_url: str | None = None) -> list[Path]:
    """Return the paths of train-v1.1.json and dev-v1.1.json in squad_dir, downloading what is missing."""
    paths = []
    for name in FILES:
        dest = squad_dir / name
        if not dest.is_file():
            source = cached_download(f"{base_url or SQUAD_BASE_URL}/{name}", sha256=SHA256.get(name),
                                     subdir="squad")
            install_file(source, dest)
        paths.append(dest)
    return paths


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data"),
                        help="data folder; files go to <out>/squad (default: ./data)")
    parser.add_argument("--base-url", default=None, help="a mirror holding train-v1.1.json and dev-v1.1.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Download SQuAD v1.1; return the exit status (2 with a one-line message on error)."""
    args = parse_args(argv)
    return run_cli(lambda: report(install_squad(args.out / "squad", args.base_url)),
                   "run it again: finished files are kept, the rest resumes")


def report(paths) -> int:
    for path in paths:
        print(f"SQuAD v1.1: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
