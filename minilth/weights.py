"""python -m minilth.weights PATH: what a BERT checkpoint holds, and whether it loads.

    python -m minilth.weights bert-base-uncased
    python -m minilth.weights path/to/uncased_L-12_H-768_A-12/bert_model.ckpt --head mlm
"""
from __future__ import annotations

import logging
import sys

from .checkpoints import from_pretrained
from .errors import run_cli
from .model import HEADS, count_parameters
from .settings import CommandParser, text


def build_parser() -> CommandParser:
    parser = CommandParser(prog="python -m minilth.weights",
                           description="Load a BERT checkpoint and say what it holds.")
    parser.add_argument("checkpoint", type=text, help="a name (bert-base-uncased), a folder or a weights file")
    parser.add_argument("--head", default="base", choices=list(HEADS), help="the model to load it into")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_cli(lambda: describe(args.checkpoint, args.head))


def describe(checkpoint: str, head: str) -> int:
    """Loads a checkpoint and prints one line about it; returns 0."""
    model = from_pretrained(checkpoint, head=head)
    cfg, report = model.config, model.load_report
    print(f"{checkpoint}: L={cfg.num_hidden_layers} H={cfg.hidden_size} heads={cfg.num_attention_heads} "
          f"act={cfg.hidden_act}, {count_parameters(model):,} parameters, {len(report.loaded)} tensors loaded, "
          f"{len(report.missing)} missing, {len(report.unexpected)} unexpected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
