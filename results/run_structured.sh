#!/usr/bin/env bash
# Structured tickets (whole attention heads and feed-forward neurons, ranked by
# magnitude or gradient, over the whole model or within each layer) against their random structured
# controls, next to the unstructured ticket at the same parameter count. All runs are the classroom preset
# (STS-B, the real all-MiniLM-L6-v2, rounds at 0, 25 and 50%, the pooler kept dense, seeds 0, 1, 2, one
# epoch at lr 1e-4, bf16, batches grouped by length; random pruning at 50%), CPU. A structured sparsity s
# removes round(s x 72) of the 72 heads and round(s x 9,216) of the 9,216 neurons: s of the prunable weights
# too, so the rounds of all runs keep the same number of weights (summary.csv's actual_sparsity). Each
# command resumes where it stopped; on a finished run it only prints the tables again. The third run ranks
# heads and neurons by Michel et al.'s gradient importance (--importance gradient) instead of magnitude;
# the last two rank them within each layer (--rank-within layer: every layer loses the same share), against
# random pruning of as many units in every layer.
set -euo pipefail
cd "$(dirname "$0")/.."
# GLUE from $MINILTH_DATA_DIR, else data/glue (downloaded there when missing)
TIMEFORMAT="unstructured classroom wall %2R s"; time python -m minilth.find_ticket --preset classroom \
  --controls random_pruning --output results/classroom_minilm --device cpu --quiet
TIMEFORMAT="structured classroom wall %2R s"; time python -m minilth.find_ticket --preset classroom \
  --structure heads_and_neurons --controls random_pruning --output results/structured_minilm --device cpu --quiet
TIMEFORMAT="structured classroom, gradient importance, wall %2R s"; time python -m minilth.find_ticket \
  --preset classroom --structure heads_and_neurons --importance gradient --controls random_pruning \
  --output results/structured_gradient_minilm --device cpu --quiet
for importance in magnitude gradient; do
  TIMEFORMAT="structured classroom, $importance importance within each layer, wall %2R s"; time python -m \
    minilth.find_ticket --preset classroom --structure heads_and_neurons --importance $importance --rank-within layer \
    --controls random_pruning_layerwise --output results/structured_${importance}_per_layer_minilm --device cpu --quiet
done
# side by side: Pearson (mean ± std over seeds) per round, and random pruning at 50% for each
python - <<'PY'
import json
from pathlib import Path

from minilth.lottery.report import describe

runs = {"unstructured": Path("results/classroom_minilm"), "heads and neurons": Path("results/structured_minilm"),
        "heads and neurons, gradient": Path("results/structured_gradient_minilm"),
        "per layer, magnitude": Path("results/structured_magnitude_per_layer_minilm"),
        "per layer, gradient": Path("results/structured_gradient_per_layer_minilm")}
summaries = {name: json.loads((folder / "summary.json").read_text()) for name, folder in runs.items()}
print("| sparsity | " + " | ".join(f"{name}: weights removed | Pearson" for name in runs) + " |")
print("|---:|" + "---:|---:|" * len(runs))
for rows in zip(*(summary["rounds"] for summary in summaries.values())):
    cells = [f"{100 * row['actual_sparsity']:.1f}% | {row['mean']:.4f} ± {row['std']:.4f}" for row in rows]
    print(f"| {100 * rows[0]['sparsity']:.0f}% | " + " | ".join(cells) + " |")
for name, folder in runs.items():
    control = "random_pruning_layerwise" if "per layer" in name else "random_pruning"
    values = [json.loads(path.read_text())["metrics"]["pearson"]
              for path in sorted(folder.glob(f"controls/sparsity_0.50/{control}/seed_*.json"))]
    stats = describe(values)
    print(f"{control.replace('_', ' ')}{' (structured)' if name != 'unstructured' else ''} at 50% ({name}): "
          f"{stats['mean']:.4f} ± {stats['std']:.4f} over {len(values)} seeds")
PY
