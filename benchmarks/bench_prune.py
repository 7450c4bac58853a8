"""Global magnitude pruning of a BERT-base-sized prunable set: minilth vs torch.nn.utils.prune.

73 random matrices (12 layers x {q, k, v, attention.output: 768x768; intermediate: 3072x768;
output: 768x3072} + pooler 768x768; 85.0M weights), pruned from dense to 10% and to 50%, best
of 3, 2 threads. The masks are compared: they may differ only at weights whose |w| ties the
threshold, which torch.topk orders arbitrarily and minilth by position. Also writes the mask file and reports its size.

    python benchmarks/bench_prune.py
"""
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from minilth.checkpoints import load_mask, save_mask
from minilth.prune import Mask, magnitude_prune
from timing import best_of, machine_line  # benchmarks/timing.py, beside this script

H, I, LAYERS = 768, 3072, 12


def bert_base_weights(seed: int = 0) -> dict[str, torch.Tensor]:
    """Returns the 73 prunable matrices of BERT-base with random weights, under their Hugging Face names."""
    generator = torch.Generator().manual_seed(seed)
    shapes = {}
    for i in range(LAYERS):
        prefix = f"bert.encoder.layer.{i}."
        for part in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            shapes[prefix + part + ".weight"] = (H, H)
        shapes[prefix + "intermediate.dense.weight"] = (I, H)
        shapes[prefix + "output.dense.weight"] = (H, I)
    shapes["bert.pooler.dense.weight"] = (H, H)
    return {name: torch.randn(shape, generator=generator) * 0.02 for name, shape in shapes.items()}


def torch_global_prune(weights: dict[str, torch.Tensor], amount: float) -> dict[str, torch.Tensor]:
    """Returns torch's masks: fresh bias-free Linear modules holding the weights, pruned by global_unstructured."""
    modules = {}
    for name, weight in weights.items():
        module = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
        module.weight = nn.Parameter(weight, requires_grad=False)  # shares storage: no copy timed
        modules[name] = module
    torch_prune.global_unstructured([(m, "weight") for m in modules.values()],
                                    pruning_method=torch_prune.L1Unstructured, amount=amount)
    return {name: module.weight_mask for name, module in modules.items()}


def main() -> None:
    torch.set_num_threads(2)
    weights = bert_base_weights()
    dense = Mask.dense(weights)
    print(f"prunable set: {len(weights)} matrices, {dense.num_total:,} weights, {torch.get_num_threads()} threads")
    rows = []
    for target in (0.1, 0.5):
        ours_s, mask = best_of(3, lambda: magnitude_prune(weights, dense, target))
        torch_s, torch_masks = best_of(3, lambda: torch_global_prune(weights, target))
        # torch.topk orders equal |w| arbitrarily, so the masks may differ only where |w| ties the threshold
        differ = [(weights[n].abs()[mask[n] != torch_masks[n].bool()]) for n in weights]
        num_differ = sum(d.numel() for d in differ)
        threshold = min(weights[n].abs()[mask[n]].min() for n in weights)
        only_ties = all((d == threshold).all() for d in differ)
        differ_text = f"{num_differ} (all ties: {only_ties})"
        rows.append((target, ours_s, torch_s, torch_s / ours_s, differ_text, mask))
    with tempfile.TemporaryDirectory() as folder:
        path = save_mask(rows[-1][-1], Path(folder) / "mask.pt")
        size_mb = path.stat().st_size / 1e6
        start = time.perf_counter()
        assert load_mask(path) == rows[-1][-1]
        load_s = time.perf_counter() - start
    print(f"\n{machine_line()}")
    print("| target | minilth magnitude_prune (s) | torch global_unstructured L1 (s) | speed-up "
          "| flags that differ |")
    print("|---|---|---|---|---|")
    for target, ours_s, torch_s, ratio, differ_text, _ in rows:
        print(f"| {target:.0%} | {ours_s:.2f} | {torch_s:.2f} | {ratio:.1f}x | {differ_text} |")
    print(f"\nmask file (50% mask): {size_mb:.1f} MB (float32 weights: {dense.num_total * 4 / 1e6:.0f} MB); "
          f"load + compare: {load_s:.2f} s")


if __name__ == "__main__":
    main()
