"""python -m minilth.sweep plan|run|merge|status: the paper's grid as a list of jobs that shards share.

    python -m minilth.sweep plan --output runs/grid --tasks rte mrpc --controls random_pruning --transfer \\
        --model all-MiniLM-L6-v2 --target-sparsity 0.5 --seeds 0 1 2      # writes sweep.json
    python -m minilth.sweep run --output runs/grid --shard 1/2           # and 2/2: any shell or machine, any order
    python -m minilth.sweep merge --output runs/grid                     # tables from what is finished
    python -m minilth.sweep status --output runs/grid                    # every job and its state; writes nothing

`plan`'s flags are the fields of scale.grid.SweepSettings, lottery.baselines.ControlSettings,
lottery.run_folder.RoundChoice and config.TicketConfig; the jobs are described in scale/grid.py.
"""
from __future__ import annotations

import logging
import sys

from .checkpoints.download import show_progress
from .config import Experiment, TicketConfig
from .errors import run_cli
from .files import check_writable_folder
from .lottery.baselines import ControlSettings
from .lottery.run_folder import RoundChoice
from .scale import distributed
from .scale.grid import (DEFAULT_FOLDER, DEFINITION, SHARD_HELP, SweepSettings, define, format_jobs, load_sweep,
                          merge, parse_shard, run_shard, save_sweep)
from .settings import CommandParser, add_arguments, add_command_options, from_arguments
from .structured import StructuredSettings
from .train import FinetuneSettings


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="python -m minilth.sweep",
        description="The paper's grid as a list of jobs that shards share: `plan` writes the definition "
                    "(sweep.json), `run --shard I/N` runs one share (IMP jobs first, then the jobs whose IMP "
                    "rounds are finished), `merge` writes Table 2 of each task and the transfer matrix from the "
                    "finished jobs, `status` lists every job's state. Every job resumes: rerun a shard at will.",
        epilog="example: python -m minilth.sweep plan --output runs/grid --tasks rte mrpc --transfer "
               "--model all-MiniLM-L6-v2 --target-sparsity 0.5 --seeds 0 1 2; then "
               "python -m minilth.sweep run --output runs/grid --shard 1/2 (and 2/2)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{plan,run,merge,status}")

    plan = commands.add_parser("plan", help="define the sweep (sweep.json) and list its jobs")
    add_arguments(plan, SweepSettings)
    add_arguments(plan, ControlSettings)
    add_arguments(plan, RoundChoice)
    add_arguments(plan, TicketConfig, order=(Experiment, TicketConfig, StructuredSettings, FinetuneSettings),
                  exclude=("task",))
    add_command_options(plan, output=DEFAULT_FOLDER, quiet=False)

    run = commands.add_parser("run", help="run one share of the jobs; rerun it to resume or to do waiting jobs")
    run.add_argument("--shard", default="1/1", help=f"{SHARD_HELP} (default: 1/1, every job)")
    add_arguments(run, Experiment, only=Experiment.PLACEMENT, optional=True)  # each machine's data folder, device
    add_command_options(run, output=DEFAULT_FOLDER)

    for name, text in (("merge", "write Table 2 of each task and the transfer matrix from the finished jobs"),
                       ("status", "list every job and its state; writes nothing")):
        add_command_options(commands.add_parser(name, help=text), output=DEFAULT_FOLDER, quiet=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    return run_cli(lambda: COMMANDS[args.command](args), "run the same command again: finished jobs are kept")


def plan_command(args) -> int:
    """Defines the sweep, writes sweep.json and prints the job list; returns 0."""
    grid = from_arguments(SweepSettings, args)
    config = from_arguments(TicketConfig, args, task=grid.tasks[0])
    targets = grid.transfer if grid.transfer else (grid.tasks if grid.transfer is not None else [])
    sweep = define(check_writable_folder(args.output or DEFAULT_FOLDER), config, grid.tasks,
                   from_arguments(ControlSettings, args).controls, from_arguments(RoundChoice, args), targets,
                   grid.transfer_sources, grid.task_settings)
    save_sweep(sweep)
    print(format_jobs(sweep))
    print(f"definition in {sweep.folder / DEFINITION}; run it with: python -m minilth.sweep run "
          f"--output {sweep.folder} --shard I/N")
    return 0


def run_command(args) -> int:
    """Runs the share of the jobs --shard names; returns 0, also when some jobs wait for other shards."""
    show_progress(not args.quiet)
    index, count = parse_shard(args.shard)
    placement = {name: getattr(args, name) for name in Experiment.PLACEMENT if hasattr(args, name)}
    sweep = load_sweep(args.output or DEFAULT_FOLDER, **placement)
    check_writable_folder(sweep.folder)
    distributed.start(sweep.config.device)  # under torchrun: the ranks run every job of the share together
    run_shard(sweep, index, count, progress=not args.quiet)
    return 0


def merge_command(args) -> int:
    """Writes and prints the tables of the finished jobs and names the missing ones; returns 0."""
    print(merge(load_sweep(args.output or DEFAULT_FOLDER)))
    return 0


def status_command(args) -> int:
    """Prints every job with its state; returns 0."""
    print(format_jobs(load_sweep(args.output or DEFAULT_FOLDER), with_state=True))
    return 0


COMMANDS = {"plan": plan_command, "run": run_command, "merge": merge_command, "status": status_command}


if __name__ == "__main__":
    sys.exit(main())
