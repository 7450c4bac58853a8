"""glibc's allocator settings, measured and not adopted: reusing large freed blocks instead of unmapping them.

    MINILTH_DATA_DIR=/path/to/glue python benchmarks/bench_allocator.py --finetunings 3    # MiniLM, real weights

A training step frees and allocates the same large tensors again (the word-embedding gradient:
47 MB in MiniLM). glibc maps a block over 32 MB fresh from the system (page faults over all of
it) and unmaps it when freed. Two mallopt calls (reuse_freed_memory below) keep such blocks in
the heap for reuse, as PyTorch's CPU tuning guide gets from jemalloc or tcmalloc. A setting holds
for the whole process and glibc's adaptive default cannot be put back, so each measurement runs
in a fresh process, the two settings taking turns:
1. training steps (bench_structured's: forward, backward, AdamW) of the dense MiniLM on the first
   32 STS-B dev pairs, fp32 and bf16: the median of 5 rounds x 3 steps in each of --repeats
   processes per setting;
2. with --finetunings N, N whole fine-tunings of the classroom lesson per setting (STS-B's
   training set, 1 epoch at lr 1e-4, bf16, grouped by length, seed 0): the wall time, and the
   median time between optimiser steps.
Medians over the processes are reported.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from minilth import train
from minilth.data.folders import load_dataset
from minilth.data.tasks import get_task
from minilth.checkpoints.pretrained import load_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_structured import MODEL, dense_model, stsb_batch, time_in_turns, training_step  # noqa: E402
from timing import machine_line, wait_until_quiet  # noqa: E402  benchmarks/timing.py

SETTINGS = ("glibc's default", "reuse_freed_memory")
MMAP_THRESHOLD, TRIM_THRESHOLD = -3, -1  # mallopt's M_MMAP_THRESHOLD and M_TRIM_THRESHOLD (malloc.h)


def reuse_freed_memory() -> None:
    """Asks glibc to serve blocks up to 1 GiB from the heap, where freed ones are reused, and to keep up to 2 GiB of
    freed heap instead of returning it."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(MMAP_THRESHOLD, 1 << 30)
    libc.mallopt(TRIM_THRESHOLD, 2 << 30)


def step_milliseconds(data_dir: str | None) -> dict[str, float]:
    """Returns {precision: median ms of a dense training step} in this process."""
    batch, model = stsb_batch(data_dir), dense_model("minilm")
    return {precision: 1e3 * time_in_turns({precision: training_step(model, batch, precision)}, 5, 3)[precision]
            for precision in ("fp32", "bf16")}


def finetuning_seconds(data_dir: str | None) -> dict[str, float]:
    """Returns {"wall": seconds, "step": median seconds between optimiser steps} of one classroom fine-tuning."""
    task = get_task("stsb")
    tokenizer = load_tokenizer(MODEL)
    data = [load_dataset(task, data_dir, split, tokenizer, progress=False) for split in ("train", task.eval_split)]
    model = train.model_for_task(MODEL, task, seed=0)
    stamps, started = [], time.perf_counter()
    train.finetune(model, task, *data, seed=0, epochs=1, learning_rate=1e-4, precision="bf16", group_by_length=True,
                   device="cpu", progress=False, on_step=lambda step, model: stamps.append(time.perf_counter()))
    return {"wall": time.perf_counter() - started,
            "step": statistics.median(later - earlier for earlier, later in zip(stamps, stamps[1:]))}


def child(args) -> None:
    """One measurement under one setting; prints its result as JSON on the last line."""
    if args.child == "reuse_freed_memory":
        reuse_freed_memory()
    measure = step_milliseconds if args.child_measures == "steps" else finetuning_seconds
    print(json.dumps(measure(args.data_dir)))


def in_turns(args, measures: str, repeats: int) -> dict[str, list]:
    """Returns {setting: [result of each process]}, a fresh process per measurement, the settings taking turns."""
    results = {setting: [] for setting in SETTINGS}
    for _ in range(repeats):
        for setting in SETTINGS:
            command = [sys.executable, __file__, "--child", setting, "--child-measures", measures,
                       "--threads", str(args.threads)] + (["--data-dir", args.data_dir] if args.data_dir else [])
            output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
            results[setting].append(json.loads(output.splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="GLUE folder with STS-B (default: $MINILTH_DATA_DIR, "
                                                         "else data/glue; downloaded there when missing)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="processes per setting for the training steps")
    parser.add_argument("--finetunings", type=int, default=0, help="whole fine-tunings per setting")
    parser.add_argument("--wait-quiet", type=float, metavar="LOAD", help="first wait for a 1-minute load below LOAD")
    parser.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)
    parser.add_argument("--child-measures", choices=("steps", "finetuning"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        return child(args)
    if args.wait_quiet:
        wait_until_quiet(args.wait_quiet)
    print(machine_line())
    steps = in_turns(args, "steps", args.repeats)
    print(f"{MODEL}, dense; one training step on the first 32 STS-B dev pairs; medians over {args.repeats} processes "
          f"per setting\n\n| precision | allocator | training step ms | speed-up |\n|---|---|---:|---:|")
    for precision in ("fp32", "bf16"):
        medians = {setting: statistics.median(r[precision] for r in runs) for setting, runs in steps.items()}
        for setting, value in medians.items():
            print(f"| {precision} | {setting} | {value:.1f} | {medians[SETTINGS[0]] / value:.2f}x |")
    if args.finetunings:
        runs = in_turns(args, "finetuning", args.finetunings)
        print(f"\nThe classroom fine-tuning (STS-B, 5,749 pairs, 1 epoch, bf16, grouped, then the dev pass), median "
              f"over {args.finetunings} processes per setting:\n\n| allocator | wall s | ms between steps | each run's "
              f"wall s |\n|---|---:|---:|---|")
        for setting, results in runs.items():
            walls = [r["wall"] for r in results]
            print(f"| {setting} | {statistics.median(walls):.1f} | "
                  f"{1e3 * statistics.median(r['step'] for r in results):.1f} | "
                  f"{', '.join(f'{wall:.1f}' for wall in walls)} |")

if __name__ == "__main__":
    main()
