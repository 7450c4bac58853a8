"""python -m minilth.controls --imp-run runs/rte --controls random_pruning random_reinit: is it a winning ticket?

Runs the controls of an IMP run (a find_ticket output folder) at one of its rounds, fine-tuned with
the run's own settings, and prints the paper's Table 2 for it: the dense model, IMP, and each
control, mean/std/min/max over seeds. The flags are the fields of lottery.baselines.ControlSettings,
lottery.run_folder.RoundChoice and config.Experiment (seeds, and where the run's data and device
are). Every (control, seed) is written as soon as it finishes: rerun the same command to resume.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .checkpoints.download import show_progress
from .config import Experiment
from .errors import run_cli
from .files import check_writable_folder
from .lottery.baselines import CONTROLS, TABLE_2, ControlSettings, controls_folder, run_controls, table2_results, \
    write_table2
from .lottery.report import table2
from .lottery.run_folder import RoundChoice, read_run, round_at
from .scale import distributed
from .settings import CommandParser, SettingsError, add_arguments, add_command_options, from_arguments, setting


@dataclass(kw_only=True)
class ControlsCommand:
    """the IMP run"""

    imp_run: str = setting(help="the find_ticket output folder of the IMP run (e.g. runs/rte)")


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="python -m minilth.controls",
        description="Run the controls of an IMP run (a find_ticket output folder) at one of its rounds, fine-tuned "
                    "with the run's own settings, and print the paper's Table 2 for it. Every (control, seed) is "
                    "written as soon as it finishes; rerun the same command to resume.",
        epilog=f"example: python -m minilth.controls --imp-run runs/rte --sparsity 0.5 --controls {' '.join(TABLE_2)}")
    add_arguments(parser, ControlsCommand)
    add_arguments(parser, ControlSettings)
    add_arguments(parser, RoundChoice)
    # the seeds to run (default: the IMP run's), and where its data and device are now
    add_arguments(parser, Experiment, only=("seeds", *Experiment.PLACEMENT), optional=True)
    add_command_options(parser, output="<run>/controls")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args))


def run(args) -> int:
    """Runs the controls of one IMP run and prints the Table-2 comparison; returns 0."""
    show_progress(not args.quiet)
    folder = from_arguments(ControlsCommand, args).imp_run
    controls = from_arguments(ControlSettings, args).controls
    if not controls:
        raise SettingsError(f"name the controls to run with --controls: any of {', '.join(CONTROLS)} (the paper's "
                            f"Table 2: {' '.join(TABLE_2)})")
    choice = from_arguments(RoundChoice, args)
    placement = {name: getattr(args, name) for name in Experiment.PLACEMENT if hasattr(args, name)}
    imp_run = read_run(folder, progress=not args.quiet, with_data=False, **placement)
    seeds = getattr(args, "seeds", None)
    if seeds is not None:  # checked as the run's own seeds are
        dataclasses.replace(imp_run.config, seeds=seeds)
    output = check_writable_folder(args.output or Path(folder) / "controls")
    started = time.perf_counter()
    distributed.start(imp_run.config.device)  # under torchrun: join the other ranks
    imp = round_at(imp_run, choice.at(imp_run.task.name, strict=True))
    results = run_controls(imp_run, imp.sparsity, controls, seeds, output, progress=not args.quiet)
    rows = table2(table2_results(imp_run, imp, results), imp_run.task, imp.sparsity)
    table_folder = controls_folder(output, imp.sparsity)
    print(write_table2(rows, imp_run.task, table_folder))
    print(f"{time.perf_counter() - started:.0f} s; table in {table_folder / 'table2.csv'} and "
          f"{table_folder / 'table2.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
