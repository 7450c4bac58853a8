"""python -m minilth.transfer --masks runs/rte runs/mrpc --tasks rte mrpc stsb cola: masks moved between tasks.

Each mask is applied to the pre-trained weights theta_0 with a fresh head for the target task and
fine-tuned (no weight of the source run is used); each target's dense model is fine-tuned too, as
the baseline. Writes transfer.json (one entry per run, written as it finishes: rerun to resume),
transfer.csv, transfer_heatmap.png/.csv, and prints the matrix. The flags are the fields of
lottery.mask_transfer.TransferSettings, lottery.run_folder.RoundChoice and config.Experiment.
"""
from __future__ import annotations

import sys
import time

from .checkpoints.download import show_progress
from .config import Experiment
from .data import get_task
from .errors import run_cli
from .files import check_writable_folder
from .lottery.run_folder import RoundChoice
from .lottery.mask_transfer import TransferSettings, compare_cells, format_comparison, transfer_matrix, write_outputs
from .scale import distributed
from .settings import CommandParser, add_arguments, add_command_options, from_arguments
from .train import FinetuneSettings


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="python -m minilth.transfer",
        description="Transfer lottery-ticket masks to other tasks: each mask on the pre-trained weights theta_0 "
                    "with a fresh head for the target task, fine-tuned, beside each target's dense baseline. "
                    "Rerun the same command to resume.",
        epilog="example: python -m minilth.transfer --masks runs/rte runs/mrpc --sparsity 0.5 "
               "--tasks rte mrpc stsb cola --model all-MiniLM-L6-v2 --seeds 0 1 2")
    add_arguments(parser, TransferSettings)
    add_arguments(parser, RoundChoice)
    add_arguments(parser, Experiment, order=(Experiment, FinetuneSettings), exclude=("task",))
    add_command_options(parser, output="runs/transfer")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args))


def run(args) -> int:
    """Fills the transfer matrix the arguments describe, writes and prints it; returns 0."""
    show_progress(not args.quiet)
    what = from_arguments(TransferSettings, args)
    config = from_arguments(Experiment, args, task=what.tasks[0])
    output = check_writable_folder(args.output or "runs/transfer")
    started = time.perf_counter()
    distributed.start(config.device)  # under torchrun: join the other ranks
    record = transfer_matrix(what.masks, [get_task(task) for task in what.tasks], config, output,
                             from_arguments(RoundChoice, args), labels=what.labels,
                             task_settings=what.task_settings, progress=not args.quiet)
    print(write_outputs(record, output))
    if what.control:
        print(format_comparison(compare_cells(record, what.control), what.control))
    print(f"{time.perf_counter() - started:.0f} s; results in {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
