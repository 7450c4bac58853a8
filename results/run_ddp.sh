#!/usr/bin/env bash
# Data-parallel fine-tuning checked on real data: find_ticket on the real MiniLM and real STS-B (small caps), once in one process and
# once under torchrun with 2 gloo processes on the CPU, the same global batch of 32 (16 per rank), then a
# comparison of their masks and metrics. Dropout is switched off (a copy of the checkpoint with dropout 0 in
# runs/, which git ignores): with dropout on, each rank draws its own dropout masks, and the two runs would
# differ by design, not by error.
set -euo pipefail
cd "$(dirname "$0")/.."
# GLUE from $MINILTH_DATA_DIR, else data/glue (downloaded there when missing)
MODEL=runs/minilm_no_dropout
python - "$MODEL" <<'PY'
import json, shutil, sys
from pathlib import Path
from minilth.checkpoints.pretrained import resolve_checkpoint
target = Path(sys.argv[1])
shutil.copytree(resolve_checkpoint("all-MiniLM-L6-v2"), target, dirs_exist_ok=True)
config = json.loads((target / "config.json").read_text())
config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
(target / "config.json").write_text(json.dumps(config, indent=2))
PY
RUN="--task stsb --model $MODEL --target-sparsity 0.5 --rate 0.25 --keep-pooler --seeds 0 --epochs 1
     --learning-rate 1e-4 --max-train-examples 1024 --max-eval-examples 500 --device cpu --quiet"
TIMEFORMAT="wall %2R s"
echo "one process, 2 threads:"; time python -m minilth.find_ticket $RUN --output results/ddp_minilm/one_process
echo "torchrun, 2 gloo processes of 1 thread:"
time OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 -m minilth.find_ticket $RUN \
  --output results/ddp_minilm/two_processes
python - <<'PY'
import json
from pathlib import Path
import torch
from minilth.checkpoints import load_mask
one, two = Path("results/ddp_minilm/one_process"), Path("results/ddp_minilm/two_processes")
for round_dir in sorted((one / "rounds").iterdir()):
    other = two / "rounds" / round_dir.name
    a, b = load_mask(round_dir / "mask.pt"), load_mask(other / "mask.pt")
    differing = sum(int((a[n] != b[n]).sum()) for n in a.names())
    m1 = json.loads((round_dir / "metrics.json").read_text())["metrics"][0]
    m2 = json.loads((other / "metrics.json").read_text())["metrics"][0]
    gaps = {k: abs(m1[k] - m2[k]) for k in ("pearson", "spearman", "loss") if k in m1}
    print(f"{round_dir.name}: mask entries that differ {differing} of {a.num_total:,}; |one - two|: "
          + ", ".join(f"{k} {v:.2e}" for k, v in gaps.items()))
PY
