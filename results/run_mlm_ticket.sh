#!/usr/bin/env bash
# An MLM ticket for all-MiniLM-L6-v2 on a laptop-class CPU, from a model that predicts tokens.
# MiniLM's checkpoint has no MLM head (it was distilled as a sentence encoder), so masked-token accuracy starts
# near 0. Step 1 trains the head alone (its transform and output bias) on the frozen pre-trained encoder, over
# the sentences of the GLUE training files, and measures held-out (dev-file) sentences before and after. Step 2
# runs IMP on the MLM objective from that checkpoint: rounds at 25%, 50% and 60% of the original prunable
# weights as in run_table2_grid.sh, the pooler kept dense (the MLM model never reads it), one seed, each round
# trained for one epoch over the first 1,000 blocks of 128 tokens at the MLM task's settings (lr 5e-5, batch
# 16). Deviations from the paper (WikiText-103, a pre-trained head, 10% per round to 70%) are to fit a CPU.
# Step 3 looks inside the ticket (python -m minilth.inside_ticket): where it prunes, how it overlaps one-shot
# pruning of theta_0 and a random mask, and, fine-tuning the dense model and the ticket again with seeds 0, 1 and 2,
# whether the ticket's attention falls more on the positions to predict than the dense model's.
# The steps resume: run the script again after an interruption (step 1 starts over; step 2 from its last round).
set -euo pipefail
# GLUE from $MINILTH_DATA_DIR, else data/glue (downloaded there when missing)
cd "$(dirname "$0")/.."
OUT=${1:-runs}
python data_scripts/make_glue_text.py --output "$OUT/mlm_data/glue-text"
if [ ! -f "$OUT/minilm_mlm_head/mlm_head.json" ]; then
  TIMEFORMAT="train_mlm_head wall %2R s"
  time python -m minilth.train_mlm_head --model all-MiniLM-L6-v2 --data-dir "$OUT/mlm_data" \
    --max-train-examples 4000 --epochs 5 --output "$OUT/minilm_mlm_head" --quiet
fi
TIMEFORMAT="find_ticket mlm_glue wall %2R s"
time python -m minilth.find_ticket --task mlm_glue --model "$OUT/minilm_mlm_head" --data-dir "$OUT/mlm_data" \
  --output "$OUT/mlm_ticket" --target-sparsity 0.6 --rate 0.25 --keep-pooler --seeds 0 \
  --max-train-examples 1000 --max-eval-examples 300 --precision fp32 --device cpu --quiet
TIMEFORMAT="inside_ticket wall %2R s"
time python -m minilth.inside_ticket MLM="$OUT/mlm_ticket" --attention --seeds 0 1 2 --attention-examples 300 \
  --output "$OUT/mlm_inside" --quiet
