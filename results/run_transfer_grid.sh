#!/usr/bin/env bash
# The transfer matrix for all-MiniLM-L6-v2 on a laptop-class CPU: every 50% ticket moved onto theta_0 of other
# tasks. Sources: the IMP masks at 50% of CoLA, SST-2, MRPC, STS-B and RTE (run_table2_grid.sh's runs, whose 50%
# masks results/table2_grid_minilm keeps), the MLM ticket at 50% (run_mlm_ticket.sh's run, whose 50% mask
# results/mlm_ticket_minilm keeps) and, as a row of its own, a random mask of the same sparsity (STS-B's
# random-pruning control of seed 0 in the Table-2 grid).
# Targets: STS-B, SST-2, CoLA and MRPC, with the Table-2 grid's settings (CoLA 3 epochs, SST-2 on its first
# 20,000 sentences), seeds 0 and 1, beside each target's dense model. A cell the Table-2 grid already trained
# with these settings (a task's own 50% mask on its own task, a dense model) is read from its IMP run, not
# trained again (minilth/lottery/mask_transfer.py, already_trained). At the end every cell is compared with the
# target's dense model and, seed by seed, with the random row (--control random).
# Every cell is written when done: run the script again after an interruption.
#   results/run_transfer_grid.sh runs                            # from the Table-2 grid kept in results/
#   results/run_transfer_grid.sh runs runs/table2_grid           # from a Table-2 grid run here
set -euo pipefail
# GLUE from $MINILTH_DATA_DIR, else data/glue (downloaded there when missing)
cd "$(dirname "$0")/.."
RUNS=${1:-runs}
GRID=${2:-results/table2_grid_minilm}
TIMEFORMAT="transfer wall %2R s"
time python -m minilth.transfer --masks "$GRID"/imp/{cola,sst2,mrpc,stsb,rte} results/mlm_ticket_minilm/mlm_ticket \
  "$GRID/controls/stsb/sparsity_0.50/random_pruning/seed_0.mask.pt" \
  --labels cola sst2 mrpc stsb rte mlm random --sparsity 0.5 --tasks stsb sst2 cola mrpc --seeds 0 1 \
  --model all-MiniLM-L6-v2 --epochs 1 --learning-rate 1e-4 --group-by-length --precision fp32 --device cpu \
  --task-settings cola:epochs=3 sst2:max_train_examples=20000 --control random --output "$RUNS/transfer_grid" --quiet
