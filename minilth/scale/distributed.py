"""Data-parallel fine-tuning with torch.distributed: what changes when `torchrun` starts N processes.

    torchrun --nproc_per_node 4 -m minilth.find_ticket --task rte      # 4 GPUs (NCCL) or 4 CPU processes (gloo)

Every process (rank) runs the same program on the same data in the same order. Each global batch
(the paper's 32) is split into one contiguous slice per rank; DistributedDataParallel averages
the gradients, and each slice's loss is weighted by its share of the batch, so the update equals
one process's on the whole batch. Everything else is computed identically on every rank: the
masks after each step, pruning, evaluation. Only rank 0 writes files (minilth.files checks
`is_writer`), and every rank reads the same finished rounds when a run resumes.

Without torchrun (no WORLD_SIZE in the environment) nothing here does anything.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import sys

import torch
import torch.distributed as dist

from ..errors import MinilthError


_device: torch.device | None = None  # this rank's device, once it has joined


def world_size() -> int:
    """Returns the number of processes training together (1 without torchrun)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    """Returns this process's index among them (0 without torchrun)."""
    return dist.get_rank() if dist.is_initialized() else 0


def is_writer() -> bool:
    """Returns True in the one process that writes files: rank 0, or the only process."""
    return rank() == 0


def start(device: str = "auto") -> torch.device | None:
    """Joins the process group torchrun described (NCCL on GPUs, gloo on CPUs); returns this rank's device.

    Returns None without torchrun. With it, 'auto' picks cuda:<LOCAL_RANK> when there are GPUs and
    the CPU otherwise; the choice is made once, before any model is built. Only rank 0 prints:
    the others' standard output goes to os.devnull.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    use_gpu = device != "cpu" and torch.cuda.is_available()
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda"):
        raise MinilthError(f"--device {device} cannot be split across torchrun's processes; use auto, cpu or cuda")
    global _device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_gpu else "gloo", timeout=datetime.timedelta(minutes=30))
    if dist.get_rank() != 0:
        sys.stdout = open(os.devnull, "w")
    _device = torch.device("cpu")
    if use_gpu:
        _device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(_device)
    return _device


def device() -> torch.device | None:
    """Returns this rank's device under torchrun (None otherwise)."""
    return _device if world_size() > 1 else None


def stop() -> None:
    """Leaves the process group, if this process joined one."""
    global _device
    if dist.is_initialized():
        dist.destroy_process_group()
    _device = None


def seed_dropout(seed: int) -> None:
    """Under torchrun, gives each rank its own random stream (rank 0 keeps `seed`'s): dropout masks must differ
    between the slices of one batch, as they do between its rows in one process."""
    if world_size() > 1:
        torch.manual_seed(seed + 1_000_003 * rank())


def wrap(model: torch.nn.Module, device: torch.device, unused_parameters: bool = False) -> torch.nn.Module:
    """Returns the model wrapped in DistributedDataParallel when there are several ranks, else the model.

    `unused_parameters`: some parameters get no gradient (a QA or MLM model's pooler), which DDP
    must be told, at the cost of a search through the graph every step.
    """
    if world_size() == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=unused_parameters)


def shard(batch: dict[str, torch.Tensor], loss_terms: torch.Tensor) -> tuple[dict, float]:
    """Returns this rank's rows of a global batch and the weight of its loss.

    `loss_terms` (B,) counts what each row adds to the loss's mean (1 per example; masked tokens
    for MLM). Weighting the slice's mean loss by (its terms / all terms) x world size makes DDP's
    average of the ranks' gradients the gradient of the whole batch's mean loss.
    """
    if world_size() == 1:
        return batch, 1.0
    rows = torch.tensor_split(torch.arange(len(loss_terms)), world_size())[rank()]
    weight = float(loss_terms[rows].sum()) / max(1.0, float(loss_terms.sum())) * world_size()
    if len(rows) == 0:  # a last batch smaller than the world: this rank still steps with DDP, adding nothing
        rows, weight = torch.arange(1), 0.0
    return {key: value[rows] for key, value in batch.items()}, weight


def average(value: torch.Tensor) -> torch.Tensor:
    """Returns the mean of a scalar over the ranks (itself with one rank)."""
    if world_size() == 1:
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / world_size()


def on_rank_0(function, *args):
    """Returns function(*args), computed by rank 0 alone and sent to every rank (e.g. the next pruning mask)."""
    if world_size() == 1:
        return function(*args)
    holder = [function(*args) if rank() == 0 else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


@contextlib.contextmanager
def rank_0_first():
    """Runs the block on rank 0 before the other ranks (a download into a shared cache happens once)."""
    if rank() != 0:
        dist.barrier()
    yield
    if world_size() > 1 and rank() == 0:
        dist.barrier()
