"""python -m minilth.inside_ticket RUN_OR_MASK ...: look inside tickets, and write the figures and anatomy.json.

    python -m minilth.inside_ticket runs/classroom                       # its rounds, random and one-shot masks
    python -m minilth.inside_ticket STS-B=runs/grid/imp/stsb MRPC=runs/grid/imp/mrpc MLM=mlm/rounds/round_07/mask.pt
    python -m minilth.inside_ticket runs/classroom --attention --seeds 0 1   # fine-tunes again: minutes on a CPU

Each source is a find_ticket output folder (its ticket: the round at --sparsity, default its last) or a
mask file, named LABEL=PATH or by its folder. Written to --output (default: <first source>/anatomy, or
runs/anatomy for a mask file): sparsity_<label>.png (% pruned per layer and matrix, every round, the
random and one-shot masks), overlap.png (the Jaccard index of every pair, against two random masks of the
same sparsities), overlap_by_layer.png, with --attention attention_change_<label>.png and
attention_maps_<label>.png; each also as SVG, and every number in anatomy.json. The flags are the fields
of anatomy.InsideSettings.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from .anatomy import InsideSettings, look_inside
from .errors import run_cli
from .files import check_writable_folder
from .settings import CommandParser, add_arguments, add_command_options, from_arguments


def build_parser() -> CommandParser:
    parser = CommandParser(prog="python -m minilth.inside_ticket",
                           description="Where IMP prunes, how tickets overlap, and what their attention does: figures "
                                       "(PNG and SVG) and anatomy.json for find_ticket folders or mask files.")
    parser.add_argument("sources", nargs="+", metavar="[LABEL=]RUN_OR_MASK",
                        help="find_ticket output folders or mask files, each optionally named LABEL=PATH")
    add_arguments(parser, InsideSettings)
    add_command_options(parser, output="<first source>/anatomy, or runs/anatomy for a mask file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    return run_cli(lambda: run(args))


def run(args) -> int:
    settings = from_arguments(InsideSettings, args)
    first = Path(args.sources[0].rpartition("=")[2])
    output = check_writable_folder(args.output or (first / "anatomy" if first.is_dir() else Path("runs/anatomy")))
    look_inside(args.sources, output, settings, progress=not args.quiet)
    print(f"figures and anatomy.json in {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
