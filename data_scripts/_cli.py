"""The options every data script shares: where the data go (--data-dir, or the older --out) and a mirror."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from minilth.data.folders import resolve_data_dir
from minilth.settings import CommandParser


def parse_args(argv: list[str] | None, doc: str, mirror_help: str, tasks: list[str] | None = None,
               variants: list[str] | None = None) -> argparse.Namespace:
    """Returns the parsed options of a data script: --data-dir/--out and --base-url, plus --tasks or --variant."""
    parser = CommandParser(prog=f"python data_scripts/{Path(sys.argv[0]).name}", description=doc.splitlines()[0])
    if tasks:
        parser.add_argument("--tasks", nargs="+", default=["all"],
                            help=f"tasks to fetch, space or comma separated: {', '.join(tasks)} (default: all)")
    if variants:
        parser.add_argument("--variant", choices=variants, default="103",
                            help="103 (the paper's MLM corpus) or 2 (small, for trials); default 103")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--data-dir", type=Path, default=None,
                       help="the folder holding GLUE's task folders, as minilth's --data-dir (default: "
                            "$MINILTH_DATA_DIR, else ./data/glue); SQuAD and WikiText go beside it")
    where.add_argument("--out", type=Path, default=None,
                       help="the data root, the older spelling: --out DIR is --data-dir DIR/glue")
    parser.add_argument("--base-url", default=None,
                        help=f"{mirror_help}: http(s)://, file:// or a local folder (default: $MINILTH_DATA_URL, else "
                             f"the official sources)")
    parser.add_argument("--force", action="store_true",
                        help="fetch and unpack again what is already there (a damaged file); archives in the minilth "
                             "cache are reused when their digest checks, and the old copy is replaced only once the "
                             "new one is whole")
    return parser.parse_args(argv)


def data_dir_from(args: argparse.Namespace) -> Path:
    """Returns the GLUE data folder the options name."""
    return args.out / "glue" if args.out is not None else resolve_data_dir(args.data_dir)
