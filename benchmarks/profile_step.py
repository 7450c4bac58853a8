"""One training step of minilth and of transformers under torch.profiler, on the same batch, op by op.

Same weights, batch and optimiser as bench_model.py (MiniLM, 32 x 128, dropout 0.1, fused AdamW).
Each model takes --warmup untimed steps, then one profiled step; the table lists the ops with the
most self CPU time on either side, with their call counts.

    python benchmarks/profile_step.py                      # full batch, fp32, minilth's padded path
    python benchmarks/profile_step.py --batch padded --unpad --rows 20
"""
from __future__ import annotations

import argparse
import sys

import torch
import transformers
from torch.profiler import ProfilerActivity, profile

from bench_model import THREADS, build_pair, make_batch, train_step  # benchmarks/, beside this script
from timing import machine_line


def self_times(model, optimizer, batch: dict, precision: str, warmup: int) -> dict[str, tuple[float, int]]:
    """Returns {op: (self CPU ms, calls)} of one profiled training step, after `warmup` steps."""
    for _ in range(warmup):
        train_step(model, optimizer, batch, precision)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_step(model, optimizer, batch, precision)
    return {event.key: (event.self_cpu_time_total / 1e3, event.count) for event in prof.key_averages()}


def comparison(ours: dict, theirs: dict, rows: int) -> str:
    """Returns a Markdown table of the ops with the most self time on either side."""
    keys = sorted(set(ours) | set(theirs), key=lambda k: -max(ours.get(k, (0, 0))[0], theirs.get(k, (0, 0))[0]))
    lines = ["| op | minilth ms | calls | transformers ms | calls |", "|---|---:|---:|---:|---:|",
             f"| total self time | {sum(v[0] for v in ours.values()):,.0f} | | "
             f"{sum(v[0] for v in theirs.values()):,.0f} | |"]
    for key in keys[:rows]:
        (ours_ms, ours_n), (theirs_ms, theirs_n) = ours.get(key, (0.0, 0)), theirs.get(key, (0.0, 0))
        lines.append(f"| `{key}` | {ours_ms:,.1f} | {ours_n} | {theirs_ms:,.1f} | {theirs_n} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", choices=("full", "padded"), default="full")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--unpad", action="store_true", help="minilth on the real tokens only (its default)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    transformers.logging.set_verbosity_error()
    pair = build_pair("minilm")
    pair.ours.config.execution = "unpadded" if args.unpad else "padded"
    batch = make_batch(pair.ours.config.vocab_size, padded=args.batch == "padded")
    ours = self_times(pair.ours, pair.optimizers["ours"], batch, args.precision, args.warmup)
    theirs = self_times(pair.theirs, pair.optimizers["theirs"], batch, args.precision, args.warmup)
    print(f"{machine_line()}\nMiniLM, {args.batch} batch 32 x 128, {args.precision}, one training step "
          f"(dropout 0.1), minilth {'unpadded' if args.unpad else 'padded path'}\n")
    print(comparison(ours, theirs, args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
