"""Where the time of one classroom fine-tuning goes: training steps op by op, grouped, then evaluation, data, loading.

The classroom preset's fine-tuning (the real all-MiniLM-L6-v2 on STS-B, bf16 autocast, batches grouped by
length, batch 32, lr 1e-4): --steps training steps under torch.profiler, each op's self time put in a group
(matrix products, attention, dropout, LayerNorm, GELU, the optimiser, packing the real tokens, casts,
other element-wise work); what no op accounts for is Python and framework overhead. Then, timed
separately: the evaluation pass over the 1,500 dev pairs, the batches' collation, building the model
from the checkpoint. Last, the oneDNN kernels a bf16 matrix product runs on (ONEDNN_VERBOSE): on a CPU
with AMX they are avx512_core_amx, without avx512_core_bf16 (or avx2).

    MINILTH_DATA_DIR=/path/to/glue python benchmarks/profile_classroom.py --steps 60
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from minilth.checkpoints import resolve_checkpoint
from minilth.config import TicketConfig
from minilth.data import get_task
from minilth.data.batches import batches
from minilth.lottery.run_folder import load_task_data
from minilth.train import evaluate, finetune, model_for_task, prepare_batch
from timing import machine_line  # benchmarks/timing.py, beside this script

GROUPS = [  # (group, op-name patterns), first match wins
    ("matrix products", r"aten::(mm|addmm|bmm|matmul|linear|_mkldnn|mkldnn)|onednn|brg"),
    ("attention (SDPA, softmax)", r"scaled_dot_product|flash_attention|softmax"),
    ("dropout masks", r"aten::random_|aten::lt$|aten::ge$"),
    ("LayerNorm", r"layer_norm"),
    ("GELU", r"gelu"),
    ("optimiser, clipping, mask", r"adam|_foreach|clip|norm$|linalg_vector_norm"),
    ("packing real tokens", r"index_select|index_copy|nonzero|aten::sort|aten::cat|aten::index$|embedding"),
    ("casts (autocast)", r"aten::to$|_to_copy|aten::copy_"),
    ("other element-wise", r"aten::(mul|add|sub|div|tanh|where|fill_|zero_|sum|mse_loss|neg|pow|clone)"),
]


def grouped(prof) -> dict[str, float]:
    """Returns {group: self CPU seconds} of the profiled ops."""
    totals = {name: 0.0 for name, _ in GROUPS} | {"other ops": 0.0}
    for event in prof.key_averages():
        group = next((name for name, pattern in GROUPS if re.search(pattern, event.key)), "other ops")
        totals[group] += event.self_cpu_time_total / 1e6
    return totals


def onednn_kernels() -> list[str]:
    """Returns the distinct oneDNN implementations a bf16 linear layer's forward and backward run on."""
    code = ("import torch\nx = torch.randn(256, 384)\nw = torch.randn(1536, 384, requires_grad=True)\n"
            "with torch.autocast('cpu', dtype=torch.bfloat16):\n    torch.nn.functional.linear(x, w).sum().backward()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "ONEDNN_VERBOSE": "1"}).stdout
    isa = [line.split(",")[-1] for line in out.splitlines() if ",info,cpu,isa:" in line]
    kernels = sorted({line.split(",")[6] for line in out.splitlines() if ",exec,cpu," in line})
    return isa + kernels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps profiled (default: 60)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    config = TicketConfig.preset("classroom", seeds=[0], max_train_examples=32 * args.steps)
    task, checkpoint = get_task(config.task), resolve_checkpoint(config.model)
    train, dev = load_task_data(config, task, checkpoint, progress=False)

    started = time.perf_counter()
    model = model_for_task(checkpoint, task, 0)
    loading = time.perf_counter() - started
    warm = model_for_task(checkpoint, task, 1)  # a few untimed steps: allocator and kernels warm
    finetune(warm, task, train, None, config, epochs=4 / args.steps, progress=False)

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        finetune(model, task, train, None, config, progress=False)
        training = time.perf_counter() - started
    groups = grouped(prof)
    started = time.perf_counter()
    evaluate(model, task, dev, config)
    evaluation = time.perf_counter() - started
    started = time.perf_counter()
    for step, batch in enumerate(batches(train.features, 32, shuffle=True, seed=0, group_by_length=True,
                                         pad_id=train.pad_id)):
        prepare_batch(batch, task, train, torch.device("cpu"), step)
    data = time.perf_counter() - started

    steps = len(train.features) // 32
    print(f"{machine_line()}\nclassroom fine-tuning (MiniLM, STS-B, bf16, grouped by length): {steps} steps profiled, "
          f"{training:.1f} s, {1e3 * training / steps:.0f} ms per step\n")
    print("| where | seconds | per step (ms) | share of training |\n|---|---:|---:|---:|")
    overhead = training - sum(groups.values())
    for name, seconds in sorted({**groups, "Python and framework overhead": overhead}.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {seconds:.2f} | {1e3 * seconds / steps:.1f} | {100 * seconds / training:.1f}% |")
    full_steps = -(-5749 // 32)
    print(f"\nper whole fine-tuning ({full_steps} steps and the dev set): training about "
          f"{training / steps * full_steps:.1f} s, evaluation of the 1,500 dev pairs {evaluation:.1f} s, collating "
          f"{data / steps * full_steps:.2f} s of it, building the model from the checkpoint {loading:.2f} s")
    print("oneDNN, bf16 matrix product:", "; ".join(onednn_kernels()))


if __name__ == "__main__":
    main()
