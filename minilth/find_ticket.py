"""python -m minilth.find_ticket --task rte: find a lottery ticket by iterative magnitude pruning.

The defaults reproduce the paper: bert-base-uncased, the task's fine-tuning hyper-parameters,
10% of the original prunable weights pruned per round up to 90%, rewinding to the pre-trained
weights. Flags make it a classroom run, e.g.

    python -m minilth.find_ticket --task rte --model path/to/small-bert --max-train-examples 500 \\
        --target-sparsity 0.5 --epochs 1

Run the same command again after an interruption: it resumes from the last finished round.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from .errors import run_cli
from .tasks import TASKS, get_task


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only when it has one worth reading (not None or False)."""

    def _get_help_string(self, action):
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m minilth.find_ticket",
        description="Find a lottery ticket in pre-trained BERT by iterative magnitude pruning (IMP) with "
                    "rewinding. Every round writes its mask and metrics to --output; rerun to resume.",
        formatter_class=HelpFormatter)
    what = parser.add_argument_group("what to run")
    what.add_argument("--task", required=True, help=f"one of: {', '.join(TASKS)}")
    what.add_argument("--model", default="bert-base-uncased", help="checkpoint name or folder")
    what.add_argument("--data-dir", default=None,
                      help="folder holding the task's folder (e.g. data/glue for data/glue/RTE); default: "
                           "$MINILTH_DATA_DIR, else data/glue; missing task files are downloaded there")
    what.add_argument("--output", default=None, help="output folder; runs/<task> when not given")
    imp = parser.add_argument_group("pruning")
    imp.add_argument("--target-sparsity", type=float, default=0.9, help="last round's sparsity, in [0, 1)")
    imp.add_argument("--schedule", choices=("original", "remaining"), default="original",
                     help="prune --rate of the original weights per round, or of the remaining ones")
    imp.add_argument("--rate", type=float, default=0.1, help="fraction pruned per round")
    imp.add_argument("--rewind", type=float, default=0.0, metavar="FRACTION",
                     help="0 rewinds to the pre-trained weights theta_0; 0.05 to the weights after 5%% of "
                          "the dense fine-tuning (theta_i)")
    imp.add_argument("--no-rewind-head", action="store_true",
                     help="keep the previous round's trained head instead of rewinding it (the reference code)")
    imp.add_argument("--include-embeddings", action="store_true", help="prune the embedding matrices too")
    imp.add_argument("--keep-pooler", action="store_true",
                     help="leave the pooler dense; the paper prunes it, but a pooler much smaller than the "
                          "encoder (sentence-transformers' MiniLM, which never used it: 6x) is then pruned "
                          "first and almost entirely")
    add_finetuning_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def add_finetuning_arguments(parser: argparse.ArgumentParser) -> None:
    """The fine-tuning flags every command shares (find_ticket, transfer)."""
    train = parser.add_argument_group("fine-tuning (defaults: the paper's values for the task)")
    train.add_argument("--seeds", type=int, nargs="+", default=[0], help="one fine-tuning per seed and run")
    train.add_argument("--epochs", type=float, default=None, help="may be fractional, e.g. 0.5")
    train.add_argument("--lr", type=float, default=None, help="learning rate")
    train.add_argument("--batch-size", type=int, default=None, help="examples per optimiser step")
    train.add_argument("--max-train-examples", type=int, default=None, help="use only the first N training examples")
    train.add_argument("--max-eval-examples", type=int, default=None, help="evaluate on the first N examples")
    train.add_argument("--group-by-length", action="store_true",
                       help="batch examples of similar length: less padding, faster; the paper sampled at random")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    train.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")


def finetuning_config(args) -> dict:
    """The TicketConfig fields that add_finetuning_arguments' flags set."""
    return dict(seeds=args.seeds, epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size,
                max_train_examples=args.max_train_examples, max_eval_examples=args.max_eval_examples,
                group_by_length=args.group_by_length, device=args.device, precision=args.precision)


def config_from_args(args):
    from .ticket import TicketConfig

    return TicketConfig(
        task=get_task(args.task).name, model=args.model, data_dir=args.data_dir,
        target_sparsity=args.target_sparsity, schedule=args.schedule, rate=args.rate, rewind_at=args.rewind,
        rewind_head=not args.no_rewind_head, include_embeddings=args.include_embeddings,
        prune_pooler=not args.keep_pooler,
        **finetuning_config(args))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    return run_cli(lambda: run(args), "run the same command again to resume from the last finished round")


def run(args) -> int:
    from .ticket import find_ticket, format_table, summarize

    config = config_from_args(args)
    output = args.output or f"runs/{config.task}"
    started = time.perf_counter()
    rounds = find_ticket(config, output, progress=not args.quiet)
    summary = summarize(rounds, get_task(config.task))
    print(format_table(summary))
    if len(rounds) > 1:
        print(f"winning ticket (within one std of dense): {_percent(summary['ticket_within_std'])}; "
              f"(at least dense): {_percent(summary['ticket_at_least_dense'])}")
    print(f"{time.perf_counter() - started:.0f} s; results in {output}")
    return 0


def _percent(sparsity):
    return "none" if sparsity is None else f"{100 * sparsity:.1f}% sparsity"


if __name__ == "__main__":
    sys.exit(main())
