"""python -m minilth.find_ticket --task rte: find a lottery ticket by iterative magnitude pruning.

The defaults reproduce the paper: bert-base-uncased, the task's fine-tuning hyper-parameters,
10% of the original prunable weights pruned per round up to 90%, rewinding to the pre-trained
weights. Flags make it a classroom run, e.g.

    python -m minilth.find_ticket --task stsb --model all-MiniLM-L6-v2 --target-sparsity 0.5 --epochs 1
    python -m minilth.find_ticket --task stsb --model all-MiniLM-L6-v2 --structure heads_and_neurons ...

(the second prunes whole attention heads and feed-forward neurons: a structured ticket, structured.py).

Every flag is a field of ticket.TicketConfig (its help and default are declared there).
Run the same command again after an interruption: it resumes from the last finished round.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from . import distributed
from .errors import run_cli
from .settings import add_arguments, add_command_options, from_arguments
from .tasks import get_task
from .ticket import Experiment, TicketConfig, find_ticket, format_table, summarize, verdict_lines
from .train import FinetuneSettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m minilth.find_ticket",
        description="Find a lottery ticket in pre-trained BERT by iterative magnitude pruning (IMP) with "
                    "rewinding. Every round writes its mask and metrics to --output; rerun to resume.")
    add_arguments(parser, TicketConfig, order=(Experiment, TicketConfig, FinetuneSettings))
    add_command_options(parser, output="runs/<task>")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    return run_cli(lambda: run(args), "run the same command again to resume from the last finished round")


def run(args) -> int:
    config = from_arguments(TicketConfig, args)
    output = args.output or f"runs/{config.task}"
    started = time.perf_counter()
    distributed.start(config.device)  # under torchrun: join the other ranks
    rounds = find_ticket(config, output, progress=not args.quiet)
    summary = summarize(rounds, get_task(config.task), config.structure)
    print(format_table(summary))
    if len(rounds) > 1:
        print("\n".join(verdict_lines(summary)))
    print(f"{time.perf_counter() - started:.0f} s; results in {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
