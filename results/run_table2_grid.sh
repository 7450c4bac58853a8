#!/usr/bin/env bash
# Table 2 for all-MiniLM-L6-v2 on every GLUE task with training data on a laptop-class CPU: CoLA, SST-2,
# MRPC, STS-B and RTE, each with its dense model, IMP at the paper's sparsity for the task (CoLA, MRPC,
# STS-B 50%; SST-2, RTE 60%) and three controls at the same sparsity (random pruning, random
# re-initialisation, one-shot magnitude pruning of theta_0), seeds 0, 1, 2, through `minilth.sweep`:
# planned once, run as two shards side by side (one thread each), merged.
# Choices to fit a 2-core CPU, all here: IMP rounds at 25%, 50% and 60% of the original prunable weights
# (the paper prunes 10% per round); one epoch per fine-tuning at lr 1e-4 (MiniLM learns STS-B in one,
# results/README.md), except CoLA, where one epoch leaves MCC at 0: three; SST-2 on the first 20,000 of
# its 67,349 training sentences; the pooler kept dense (MiniLM never trained it); fp32 (a CPU without
# AVX-512 emulates bf16, slower than fp32); batches grouped by length.
# Every job resumes: run the script again after an interruption.
#   results/run_table2_grid.sh runs/table2_grid                  # all five tasks
#   results/run_table2_grid.sh runs/table2_small mrpc stsb rte   # some of them (a sweep of its own)
set -euo pipefail
# GLUE from $MINILTH_DATA_DIR, else data/glue (downloaded there when missing)
cd "$(dirname "$0")/.."
OUT=${1:-runs/table2_grid}
# Shard 1 takes the 1st, 3rd and 5th task's IMP job, shard 2 the others: this order gives each about half the work
# (CoLA's three epochs and SST-2's 20,000 sentences are the long ones).
TASKS=("${@:2}"); [ ${#TASKS[@]} -gt 0 ] || TASKS=(mrpc cola stsb sst2 rte)
declare -A SPARSITY=([cola]=0.5 [sst2]=0.6 [mrpc]=0.5 [stsb]=0.5 [rte]=0.6)  # the paper's, per task
declare -A OWN=([cola]=cola:epochs=3 [sst2]=sst2:max_train_examples=20000)  # tasks' own fine-tuning settings
sparsity=(); own=()
for task in "${TASKS[@]}"; do
  sparsity+=("$task=${SPARSITY[$task]}")
  [ -z "${OWN[$task]:-}" ] || own+=("${OWN[$task]}")
done
python -m minilth.sweep plan --output "$OUT" --tasks "${TASKS[@]}" \
  --controls random_pruning random_reinit oneshot --seeds 0 1 2 --model all-MiniLM-L6-v2 \
  --target-sparsity 0.6 --rate 0.25 --sparsity "${sparsity[@]}" \
  --keep-pooler --epochs 1 --learning-rate 1e-4 --group-by-length --precision fp32 --device cpu \
  ${own[@]:+--task-settings "${own[@]}"} > /dev/null
shard() {  # run the share until none of its jobs waits for an IMP round of the other shard
  local log="$OUT.shard${1%/*}.log"
  while true; do
    OMP_NUM_THREADS=1 python -m minilth.sweep run --output "$OUT" --shard "$1" --quiet >> "$log" 2>&1
    tail -n 1 "$log" | grep -q " 0 waiting" && return
    sleep 120
  done
}
TIMEFORMAT="sweep wall %2R s"
time { shard 1/2 & shard 2/2 & wait; }
python -m minilth.sweep merge --output "$OUT"
