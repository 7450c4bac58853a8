#!/usr/bin/env bash
# The classroom run, and the reference code's learning-rate schedule inside IMP rounds, on the real pre-trained MiniLM and the
# real STS-B with 2 CPU cores. `--preset classroom`: the dense model, IMP to 50% (25% of the original
# prunable weights per round, pooler kept dense) and random pruning at 50%, 3 seeds each, 1 epoch at lr 1e-4,
# bf16 autocast, batches grouped by length (minilth/config.py, PRESETS). It prints mean ± std per setting
# and the verdict under both ticket definitions.
# Then the same IMP run with the reference code's learning-rate schedule inside IMP rounds
# (--lr-decay all_rounds: each round restarts a linear decay spanning every round's epochs), no controls.
# Both commands resume where they stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
# GLUE from $MINILTH_DATA_DIR, else data/glue (downloaded there when missing)
TIMEFORMAT="classroom wall %2R s"; time python -m minilth.find_ticket --preset classroom --output results/classroom_minilm \
  --device cpu --quiet
TIMEFORMAT="lr-decay all_rounds wall %2R s"; time python -m minilth.find_ticket --preset classroom --lr-decay all_rounds \
  --controls --output results/lr_decay_all_rounds_minilm --device cpu --quiet
