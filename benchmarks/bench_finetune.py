"""Examples per second of a fine-tuning epoch: minilth vs a plain transformers loop padded to 128.

The reference code (BERT-Tickets, built on Hugging Face's run_glue) pads every example to
max_length; minilth pads each batch to its longest example, and by default computes only the
real tokens (config.execution). Same model (the real MiniLM), same examples, same batch size and
optimiser settings, in the same run, on the same machine:

    MINILTH_DATA_DIR=/path/to/glue python benchmarks/bench_finetune.py   # RTE and SST-2, capped for a CPU
    python benchmarks/bench_finetune.py --data-dir /path/to/glue --max-train 0   # whole training sets

Rows: transformers padded to 128 (the reference); minilth on the padded batch as transformers
computes it (config.execution="padded"), padded to 128 and with dynamic padding; minilth unpadded (the
default) on random batches as the paper samples them, grouped by length (--group-by-length),
and with a 50% magnitude mask held through training (the cost of a mask). The rows take turns,
--repeats rounds, and the median examples/s is reported; dev accuracy is from the first round.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from minilth.prune import Mask, magnitude_prune, prunable_names
from minilth.data.folders import load_dataset
from minilth.data.tasks import get_task
from minilth.train import evaluate, finetune, model_for_task
from minilth.checkpoints.pretrained import load_tokenizer, resolve_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import load_average, machine_line, wait_until_quiet  # noqa: E402  benchmarks/timing.py


def padded_to(features: list[dict], length: int, pad_id: int) -> list[dict]:
    """Copies of the features padded to a fixed length: what the reference code feeds the model."""
    out = []
    for f in features:
        extra = length - len(f["input_ids"])
        out.append({**f, "input_ids": f["input_ids"] + [pad_id] * extra,
                    "token_type_ids": f["token_type_ids"] + [0] * extra,
                    "attention_mask": f["attention_mask"] + [0] * extra})
    return out


def transformers_epoch(model_path, train, dev, task, seed: int) -> tuple[float, float]:
    """A plain Hugging Face loop over features padded to 128; returns (examples/s, dev accuracy)."""
    import transformers

    transformers.logging.set_verbosity_error()  # "newly initialised classifier" notices are expected
    torch.manual_seed(seed)
    model = transformers.BertForSequenceClassification.from_pretrained(model_path, num_labels=task.num_labels)
    model.train()
    features = padded_to(train.features, task.max_length, 0)
    # fused, as minilth's: the comparison is about padding and the model, not the optimiser kernel
    optimizer = torch.optim.AdamW(model.parameters(), lr=task.learning_rate, eps=1e-8, weight_decay=0.0, fused=True)
    steps = (len(features) + task.batch_size - 1) // task.batch_size
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, (steps - s) / steps))
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed)).tolist()
    start = time.perf_counter()
    for i in range(0, len(order), task.batch_size):
        rows = [features[j] for j in order[i:i + task.batch_size]]
        batch = {k: torch.tensor([r[k] for r in rows]) for k in ("input_ids", "token_type_ids", "attention_mask")}
        loss = model(**batch, labels=torch.tensor([r["labels"] for r in rows])).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
    speed = len(features) / (time.perf_counter() - start)
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(dev.features), 128):
            rows = dev.features[i:i + 128]
            batch = {k: torch.tensor([r[k] for r in padded_to(rows, task.max_length, 0)])
                     for k in ("input_ids", "token_type_ids", "attention_mask")}
            correct += int((model(**batch).logits.argmax(-1) == torch.tensor([r["labels"] for r in rows])).sum())
    return speed, correct / len(dev.features)


def minilth_epoch(model_path, train, dev, task, seed: int, mask_sparsity: float = 0.0,
                  group_by_length: bool = False, unpad: bool = True) -> tuple[float, float]:
    """One epoch of minilth.train.finetune; returns (examples/s, dev accuracy)."""
    model = model_for_task(model_path, task, seed=seed)
    model.config.execution = "unpadded" if unpad else "padded"
    mask = None
    if mask_sparsity:
        mask = magnitude_prune(model, Mask.dense(model, prunable_names(model)), mask_sparsity)
        mask.apply_to(model)
    history = finetune(model, task, train, None, epochs=1, seed=seed, device="cpu", mask=mask, progress=False,
                       group_by_length=group_by_length)
    return history.examples_per_second, evaluate(model, task, dev, device="cpu")["acc"]


def mask_cost(model_path, train, dev, task, repeats: int) -> dict:
    """Epochs without and with a 50% mask, interleaved (ABAB...); prints and returns the median cost."""
    plain, masked = [], []
    for _ in range(repeats):
        plain.append(minilth_epoch(model_path, train, dev, task, seed=0)[0])
        masked.append(minilth_epoch(model_path, train, dev, task, seed=0, mask_sparsity=0.5)[0])
    cost = statistics.median(p / m - 1 for p, m in zip(plain, masked))
    print(f"{task.display_name}: examples/s without a mask {[round(v, 1) for v in plain]}, "
          f"with a 50% mask {[round(v, 1) for v in masked]}; median cost of the mask {100 * cost:+.1f}%")
    return {"task": task.name, "loop": "mask cost", "plain": plain, "masked": masked, "median_cost": cost}


def epoch_rows(model_path, train, padded, dev, task) -> dict:
    """Returns the loops to time, by label: each runs one epoch and returns (examples/s, dev accuracy)."""
    return {
        "transformers, padded to 128": lambda: transformers_epoch(model_path, train, dev, task, seed=0),
        "minilth, padded to 128": lambda: minilth_epoch(model_path, padded, dev, task, seed=0, unpad=False),
        "minilth, dynamic padding": lambda: minilth_epoch(model_path, train, dev, task, seed=0, unpad=False),
        "minilth unpadded (default)": lambda: minilth_epoch(model_path, train, dev, task, seed=0),
        "minilth unpadded, grouped by length": lambda: minilth_epoch(model_path, train, dev, task, seed=0,
                                                                     group_by_length=True),
        "minilth unpadded, 50% mask": lambda: minilth_epoch(model_path, train, dev, task, seed=0, mask_sparsity=0.5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["rte", "sst2"])
    parser.add_argument("--max-train", type=int, default=1024, help="training examples per epoch; 0 = all")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--data-dir", default=None, help="folder holding the GLUE task folders "
                        "(default: $MINILTH_DATA_DIR, else data/glue; missing tasks are downloaded)")
    parser.add_argument("--mask-cost-only", action="store_true",
                        help="only the cost of a mask: epochs without and with a 50%% mask, interleaved")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of all rows (pairs for --mask-cost-only)")
    parser.add_argument("--wait-quiet", type=float, metavar="LOAD",
                        help="first wait (up to 20 minutes) for the 1-minute load average to fall below LOAD")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_path = resolve_checkpoint("all-MiniLM-L6-v2")  # a folder: transformers reads it too
    tokenizer = load_tokenizer(model_path)
    if args.wait_quiet:
        wait_until_quiet(args.wait_quiet)
    results = []
    for name in args.tasks:
        task = get_task(name)
        train = load_dataset(task, args.data_dir, "train", tokenizer, max_examples=args.max_train or None)
        dev = load_dataset(task, args.data_dir, task.eval_split, tokenizer)
        if args.mask_cost_only:
            results.append(mask_cost(model_path, train, dev, task, args.repeats))
            continue
        padded = dataclasses.replace(train, features=padded_to(train.features, task.max_length, 0))
        start_load = load_average()
        speeds, accuracy = {}, {}
        for round_ in range(args.repeats):
            for label, run in epoch_rows(model_path, train, padded, dev, task).items():
                speed, acc = run()
                speeds.setdefault(label, []).append(speed)
                accuracy.setdefault(label, acc)
                print(f"  round {round_ + 1} {label}: {speed:.1f} examples/s ({load_average()})", flush=True)
        reference = statistics.median(speeds["transformers, padded to 128"])
        print(f"\n{task.display_name}: {len(train.features)} training examples, batch {task.batch_size}, "
              f"median of {args.repeats} round(s)\n{machine_line()}\n{start_load} at the start")
        print("| loop | examples/s | vs transformers | dev acc after 1 epoch |\n|---|---|---|---|")
        for label, values in speeds.items():
            speed = statistics.median(values)
            print(f"| {label} | {speed:.1f} | {speed / reference:.2f}x | {100 * accuracy[label]:.1f} |")
            results.append({"task": name, "loop": label, "examples_per_s": values, "dev_acc": accuracy[label]})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
