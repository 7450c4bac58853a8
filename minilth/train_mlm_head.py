"""python -m minilth.train_mlm_head --output DIR: an MLM head for a checkpoint that never trained one.

Trains the masked-language-modelling head alone on the frozen pre-trained encoder (lottery/mlm_head.py says why
and how), prints the held-out masked-token accuracy and perplexity before and after, and writes the model as a
checkpoint (with mlm_head.json, the report) that `find_ticket --task mlm_glue --model DIR` starts from. The flags
are the fields of lottery.mlm_head.HeadSettings.
"""
from __future__ import annotations

import sys

from .errors import run_cli
from .files import check_writable_folder
from .lottery.mlm_head import REPORT, HeadSettings, train_mlm_head
from .settings import CommandParser, add_arguments, add_command_options, from_arguments

DEFAULT_OUTPUT = "runs/mlm_head"


def build_parser() -> CommandParser:
    parser = CommandParser(prog="python -m minilth.train_mlm_head",
                           description="Train the MLM head alone on a frozen pre-trained encoder and save the model "
                                       "as a checkpoint.",
                           epilog="example: python -m minilth.train_mlm_head --model all-MiniLM-L6-v2 "
                                  "--output runs/minilm-mlm-head")
    add_arguments(parser, HeadSettings)
    add_command_options(parser, output=DEFAULT_OUTPUT)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args))


def run(args) -> int:
    """Trains the head, prints the held-out metrics before and after; returns 0."""
    settings = from_arguments(HeadSettings, args)
    output = check_writable_folder(args.output or DEFAULT_OUTPUT)
    report = train_mlm_head(settings, output, progress=not args.quiet)
    for when in ("before", "after"):
        metrics = report[when]
        print(f"{when}: masked-token accuracy {100 * metrics['accuracy']:.2f}%, perplexity {metrics['perplexity']:.1f} "
              f"({report['held_out_blocks']} held-out blocks)")
    print(f"{report['seconds']:.0f} s; the checkpoint and {REPORT} in {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
