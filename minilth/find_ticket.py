"""python -m minilth.find_ticket --task rte: find a lottery ticket by iterative magnitude pruning.

The defaults reproduce the paper: bert-base-uncased, the task's fine-tuning hyper-parameters,
10% of the original prunable weights pruned per round up to 90%, rewinding to the pre-trained
weights. Flags make it a classroom run, e.g.

    python -m minilth.find_ticket --task stsb --model all-MiniLM-L6-v2 --target-sparsity 0.5 --epochs 1
    python -m minilth.find_ticket --preset classroom     # IMP and random pruning, 3 seeds, on 2 CPU cores
    python -m minilth.find_ticket --preset classroom --structure heads_and_neurons

(the last prunes whole attention heads and feed-forward neurons: a structured ticket, structured/).

The flags are the fields of config.TicketConfig and lottery.baselines.ControlSettings (their help
and defaults are declared there). Run the same command again after an interruption: it resumes
from the last finished round.
"""
from __future__ import annotations

import logging
import sys
import time

from .checkpoints.download import show_progress
from .config import PRESETS, Experiment, TicketConfig
from .data import get_task
from .errors import run_cli
from .files import check_writable_folder
from .lottery.baselines import ControlSettings, controls_folder, run_controls, table2_results, write_table2
from .lottery.report import table2
from .lottery.run_folder import read_run, round_at
from .lottery.verdict import format_table, summarize, table2_verdict, verdict_lines
from .scale import distributed
from .settings import CommandParser, SettingsError, add_arguments, add_command_options, from_arguments
from .structured import StructuredSettings, ranking_caveat
from .ticket import find_ticket
from .train import FinetuneSettings


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="python -m minilth.find_ticket",
        description="Find a lottery ticket in pre-trained BERT by iterative magnitude pruning (IMP) with "
                    "rewinding. Every round writes its mask and metrics to --output; rerun to resume.",
        epilog="presets: " + "; ".join(f"{name}: {preset.help}" for name, preset in PRESETS.items()))
    add_arguments(parser, TicketConfig, order=(Experiment, TicketConfig, StructuredSettings, FinetuneSettings),
                  optional=True)
    add_arguments(parser, ControlSettings)
    add_command_options(parser, output="runs/<task> or runs/<preset>, + _<structure> for a structured run")
    parser.add_argument("--preset", choices=list(PRESETS),
                        help="a named run (see below); flags given replace its values")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    return run_cli(lambda: run(args), "run the same command again to resume from the last finished round")


def run(args) -> int:
    preset = PRESETS[args.preset] if args.preset else None
    if not hasattr(args, "task") and (preset is None or "task" not in preset.settings):
        named = [name for name, preset in PRESETS.items() if "task" in preset.settings]
        raise SettingsError(f"give --task (or a --preset that names one: {', '.join(named)})")
    show_progress(not args.quiet)
    config = from_arguments(TicketConfig, args, defaults=preset.settings if preset else None)
    controls = from_arguments(ControlSettings, args, defaults={"controls": list(preset.controls)} if preset else None)
    output = check_writable_folder(args.output or default_output(args.preset or config.task, config))
    started = time.perf_counter()
    distributed.start(config.device)  # under torchrun: join the other ranks
    rounds = find_ticket(config, output, progress=not args.quiet)
    summary = summarize(rounds, get_task(config.task), config.structure)
    print(format_table(summary))
    if len(rounds) > 1:
        print("\n".join(verdict_lines(summary)))
        if caveat := ranking_caveat(config):  # a structured run's next masks rest on one draw
            print(caveat)
    if controls.controls and len(rounds) > 1:
        print_controls(output, controls.controls, progress=not args.quiet)
    print(f"{time.perf_counter() - started:.0f} s; results in {output}")
    return 0


def default_output(name: str, config: TicketConfig) -> str:
    """Returns runs/<task or preset>, with the structure (and a per-layer ranking) appended for a structured run: it
    is compared with the unstructured one, not resumed from it."""
    if not config.structured:
        return f"runs/{name}"
    return f"runs/{name}_{config.structure}" + ("_per_layer" if config.rank_within == "layer" else "")


def print_controls(output, controls: list[str], progress: bool) -> None:
    """Runs the controls at the run's last sparsity and prints Table 2 and how far IMP stands from each."""
    run = read_run(output, progress, with_data=False)
    imp = round_at(run)
    results = run_controls(run, imp.sparsity, controls, progress=progress, echo=None)
    rows = table2(table2_results(run, imp, results), run.task, imp.sparsity)
    print(write_table2(rows, run.task, controls_folder(run.folder / "controls", imp.sparsity)))
    print("\n".join(table2_verdict(table2_results(run, imp, results), run.task, imp.sparsity)))


if __name__ == "__main__":
    sys.exit(main())
