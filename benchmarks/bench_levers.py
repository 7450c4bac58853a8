"""The levers of a classroom run on a CPU: what each one saves per fine-tuning, and what it does to the metric.

    MINILTH_DATA_DIR=/path/to/glue python benchmarks/bench_levers.py            # STS-B, MiniLM, 3 seeds each

One fine-tuning is the classroom lesson's: the real all-MiniLM-L6-v2 on STS-B's whole training
set (5,749 pairs), 1 epoch at learning rate 1e-4, batch 32, then the dev set (1,500 pairs). Each
row changes one or two levers; every row runs every seed, rows taking turns, so load changes hit
them alike. The time is the wall time of `finetune` (training and the dev pass); the metric is
the dev Pearson, mean ± std over the seeds. `--jobs 2` rows run two seeds at once in two
processes of one thread each, and report the time per fine-tuning (wall time / seeds).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from minilth.data.folders import load_dataset
from minilth.data.tasks import get_task
from minilth.train import finetune, model_for_task
from minilth.checkpoints.pretrained import load_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import load_average, machine_line, wait_until_quiet  # noqa: E402  benchmarks/timing.py

MODEL = "all-MiniLM-L6-v2"
LESSON = dict(epochs=1, learning_rate=1e-4, device="cpu")
# name -> (unpad, precision, group_by_length, jobs)
ROWS = {
    "padded batches, fp32 (the path transformers takes)": (False, "fp32", False, 1),
    "padded batches, fp32, grouped by length": (False, "fp32", True, 1),
    "unpadded (minilth's default), fp32": (True, "fp32", False, 1),
    "unpadded, fp32, grouped by length": (True, "fp32", True, 1),
    "unpadded, bf16 autocast": (True, "bf16", False, 1),
    "unpadded, bf16, grouped by length": (True, "bf16", True, 1),
    "unpadded, bf16, grouped, 2 processes x 1 thread": (True, "bf16", True, 2),
}


def one_finetuning(task_name: str, data_dir: str | None, seed: int, unpad: bool, precision: str,
                   group_by_length: bool, max_train: int | None) -> dict:
    """Returns {seconds, metrics} of one fine-tuning with the given levers."""
    task = get_task(task_name)
    tokenizer = load_tokenizer(MODEL)
    train = load_dataset(task, data_dir, "train", tokenizer, max_examples=max_train, progress=False)
    dev = load_dataset(task, data_dir, task.eval_split, tokenizer, progress=False)
    model = model_for_task(MODEL, task, seed=seed)
    model.config.execution = "unpadded" if unpad else "padded"
    started = time.perf_counter()
    history = finetune(model, task, train, dev, seed=seed, precision=precision, group_by_length=group_by_length,
                       progress=False, **LESSON)
    return {"seconds": time.perf_counter() - started, "metrics": history.final}


def in_processes(args, seeds: list[int], jobs: int, unpad: bool, precision: str, group_by_length: bool) -> list[dict]:
    """Runs one fine-tuning per seed, `jobs` at a time, each in its own one-thread process; returns their results
    with `seconds` set to the wall time of them all divided by the number of seeds."""
    started, results = time.perf_counter(), []
    for first in range(0, len(seeds), jobs):
        commands = [[sys.executable, __file__, "--one", json.dumps([seed, unpad, precision, group_by_length]),
                     "--task", args.task, "--threads", "1"] + (["--data-dir", args.data_dir] if args.data_dir else [])
                    + (["--max-train", str(args.max_train)] if args.max_train else [])
                    for seed in seeds[first:first + jobs]]
        processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for command in commands]
        results += [json.loads(process.communicate()[0].splitlines()[-1]) for process in processes]
    per_run = (time.perf_counter() - started) / len(seeds)
    return [{**result, "seconds": per_run} for result in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="stsb")
    parser.add_argument("--data-dir", default=None, help="default: $MINILTH_DATA_DIR, else data/glue")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-train", type=int, default=None, help="a cap on training examples (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", nargs="+", default=None, help="row numbers to run (default: all)")
    parser.add_argument("--wait-quiet", type=float, metavar="LOAD", help="first wait for a 1-minute load below LOAD")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child of a --jobs 2 row
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        seed, unpad, precision, grouped = json.loads(args.one)
        print(json.dumps(one_finetuning(args.task, args.data_dir, seed, unpad, precision, grouped, args.max_train)))
        return

    rows = {name: levers for i, (name, levers) in enumerate(ROWS.items()) if not args.rows or str(i + 1) in args.rows}
    started = time.perf_counter()
    tokenizer = load_tokenizer(MODEL)
    task = get_task(args.task)
    load_dataset(task, args.data_dir, "train", tokenizer, max_examples=args.max_train, progress=False)
    load_dataset(task, args.data_dir, task.eval_split, tokenizer, progress=False)
    reading = time.perf_counter() - started
    if args.wait_quiet:
        wait_until_quiet(args.wait_quiet)
    print(machine_line(), flush=True)
    results = {name: [] for name in rows}
    for seed in args.seeds:  # rows take turns: each seed runs every row before the next seed
        for name, (unpad, precision, grouped, jobs) in rows.items():
            if jobs > 1:
                if seed == args.seeds[0]:
                    results[name] = in_processes(args, args.seeds, jobs, unpad, precision, grouped)
                continue
            result = one_finetuning(args.task, args.data_dir, seed, unpad, precision, grouped, args.max_train)
            results[name].append(result)
            print(f"  seed {seed} {name}: {result['seconds']:.1f} s, {task.ticket_metric} "
                  f"{result['metrics'][task.ticket_metric]:.4f} ({load_average()})", flush=True)

    metric = task.ticket_metric
    print(f"\n{task.display_name}, {MODEL}, 1 epoch at lr 1e-4, batch 32, seeds {args.seeds}; "
          f"reading and tokenizing train + dev once: {reading:.1f} s")
    print(machine_line())
    print(f"\n| levers | seconds per fine-tuning | dev {metric} (%) |\n|---|---:|---:|")
    baseline = None
    for name, runs in results.items():
        seconds = statistics.fmean(r["seconds"] for r in runs)
        values = [100 * r["metrics"][metric] for r in runs]
        baseline = baseline or seconds
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"| {name} | {seconds:.1f} ({baseline / seconds:.2f}x) | {statistics.fmean(values):.2f} ± {spread:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"reading_seconds": reading, "results": results}, indent=2))


if __name__ == "__main__":
    main()
