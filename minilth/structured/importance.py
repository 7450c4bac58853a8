"""How important each head and neuron is: the L2 norm of its weights, or Michel et al. (2019)'s gradient score.

    scores = magnitude_importance(model, mask)                    # {"heads": (L, nh), "neurons": (L, I)}
    scores = gradient_importance(model, importance_batches(...))  # |dLoss/dgate|, normalised per layer
    rank_agreement(scores, other_scores)                           # {"heads": 0.85, ...}: 1.0 ranks alike
"""
from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable

import torch

from ..data.batches import batches
from ..data.metrics import spearman
from ..data.tasks import Task
from ..model import BertPreTrainedModel
from ..prune import Mask, TensorsLike, named_tensors
from ..train import prepare_batch
from .units import KINDS, encoder_of, layer_matrices, matrices_of, num_heads_of, per_unit, unit_count


def magnitude_importance(model_or_sd: TensorsLike, mask: Mask, num_heads: int | None = None) -> dict[str, torch.Tensor]:
    """Returns each unit's L2 norm over all its weights: {"heads": (L, nh), "neurons": (L, I)}.

    A head's weights are its d rows of Q, K and V and its d columns of the attention output
    (4 d H weights); a neuron's, its row of intermediate.dense and its column of output.dense (2 H).
    """
    tensors, num_heads = named_tensors(model_or_sd), num_heads_of(model_or_sd, num_heads)
    squares = {kind: [] for kind in KINDS}
    for roles in layer_matrices(mask.names()):
        for kind in KINDS:
            per_matrix = [per_unit(tensors[name].detach().float().pow(2), axis,
                                    unit_count(kind, tensors[name], axis, num_heads)).sum(1)
                          for name, axis in matrices_of(roles, kind)]  # each (units,)
            squares[kind].append(sum(per_matrix).cpu())
    return {kind: torch.stack(rows).sqrt() for kind, rows in squares.items()}


def gradient_importance(model: BertPreTrainedModel, batches: Iterable[dict]) -> dict[str, torch.Tensor]:
    """Returns Michel et al. (2019)'s importance of every head, and the same for every neuron: {"heads": (L, nh),
    "neurons": (L, I)}.

    A gate of ones multiplies each head's output and each neuron's activation; the importance is
    |dLoss/dgate| summed over the batches (each a dict the model takes, labels included, in eval
    mode), then divided by its layer's L2 norm, as Michel et al. do (run_bertology.py): without it
    the layers' scales, not the units, decide a model-global ranking.
    """
    layers, config = encoder_of(model).layer, model.config
    device = next(model.parameters()).device
    gates = {"heads": torch.ones(len(layers), config.num_attention_heads, device=device, requires_grad=True),
             "neurons": torch.ones(len(layers), config.intermediate_size, device=device, requires_grad=True)}
    head_size = config.hidden_size // config.num_attention_heads
    hooks = []
    for index, layer in enumerate(layers):
        # on the inputs of the two projections that read the units: the heads' context, the neurons' activations
        hooks.append(layer.attention.output.dense.register_forward_pre_hook(_gate(gates["heads"][index], head_size)))
        hooks.append(layer.output.dense.register_forward_pre_hook(_gate(gates["neurons"][index], 1)))
    scores = {kind: torch.zeros(gate.shape) for kind, gate in gates.items()}
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            grads = torch.autograd.grad(model(**batch).loss, [gates[kind] for kind in KINDS])
            for kind, grad in zip(KINDS, grads):
                scores[kind] += grad.abs().cpu()
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return {kind: score / score.norm(dim=1, keepdim=True).clamp_min(1e-20) for kind, score in scores.items()}


def rank_agreement(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> dict[str, float]:
    """Returns how alike two importance passes rank the units: for each kind, Spearman's rank correlation of their
    scores within each layer (where a per-layer mask ranks them), averaged over the layers. 1.0: the same order.
    Units both passes score 0 (pruned before: their gates have no gradient) are left out, not counted as agreeing."""
    agreement = {}
    for kind in first:
        a, b = (scores[kind].detach().cpu().double() for scores in (first, second))
        alive = (a != 0) | (b != 0)
        layers = zip(a, b, alive)  # one row of scores per layer
        agreement[kind] = statistics.fmean(spearman(x[keep].numpy(), y[keep].numpy()) for x, y, keep in layers)
    return agreement


def _gate(gate: torch.Tensor, width: int):
    """Returns a forward pre-hook multiplying a linear layer's input (..., units x width) by one gate per unit."""
    return lambda module, inputs: (inputs[0] * gate.repeat_interleave(width),)  # (..., units x width)


def importance_batches(task: Task, data, batch_size: int, count: int | None, device: torch.device) -> list[dict]:
    """Returns the first `count` batches of a dataset in file order (None: all of them), on the device, as the
    model's loss reads them (labels included; MLM tokens masked)."""
    order = batches(data.features, batch_size, pad_id=getattr(data, "pad_id", 0))
    return [prepare_batch(batch, task, data, device, masking_seed=step)
            for step, batch in itertools.islice(enumerate(order), count)]
