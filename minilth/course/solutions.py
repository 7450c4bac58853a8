"""The teacher's solutions to the course's exercises: one function per exercise, written as a student would.

`python -m minilth.grade --write-labs FOLDER --solved` puts each into its exercise cell (the teacher's solved
copies); the labs in course/ and the students' copies hold none of them, and a student's code being graded can
neither import nor open this file (isolation.py). Each uses only what its lab's setup cell imports.
"""
from __future__ import annotations

import statistics

import torch
import torch.nn.functional as F

from ..prune import Mask, is_pooler, named_tensors, prunable_names


# --- lab 02 -----------------------------------------------------------------------------------------------------


def task_loss(logits, labels):
    """Returns the batch's mean loss: the cross-entropy of the logits, or for one output (a regression, STS-B's
    score) the mean squared error."""
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))  # (B, 1) -> (B,), as the labels
    return F.cross_entropy(logits, labels)


def learning_rate(step, peak, warmup_steps, total_steps):
    """Returns the learning rate of optimiser step `step` (from 0): a linear warm-up from 0 to the peak, then a
    linear decay to 0 at total_steps."""
    if step < warmup_steps:
        return peak * step / warmup_steps
    return peak * max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


# --- lab 03 -----------------------------------------------------------------------------------------------------


def magnitude_prune(weights, mask, target_sparsity):
    """Returns a new Mask pruning round(target_sparsity x mask.num_total) weights: those the mask prunes already,
    and the smallest |w| of those it keeps, over all the matrices together."""
    tensors = named_tensors(weights)
    scores = torch.cat([torch.where(kept, tensors[name].detach().abs().float(), -1.0).flatten()
                        for name, kept in mask.items()])  # already pruned: -1, below every kept weight
    keep = torch.ones_like(scores, dtype=torch.bool)
    order = torch.sort(scores, stable=True).indices  # stable: among ties, the lower position is pruned first
    keep[order[:round(target_sparsity * scores.numel())]] = False
    pieces = keep.split([kept.numel() for kept in mask.flags.values()])
    return Mask({name: piece.view(kept.shape) for (name, kept), piece in zip(mask.items(), pieces)})


def rewind(model, theta_0, mask):
    """Copies theta_0 into the model, then zeroes the weights the mask prunes (in place)."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():  # these tensors share their storage with the model's
            tensor.copy_(theta_0[name])
    mask.apply_to(model)


# --- lab 04 -----------------------------------------------------------------------------------------------------


def masked_step(model, batch, optimizer, mask):
    """One optimiser step on the batch's loss; the pruned weights are zero after it."""
    optimizer.zero_grad()
    model(**batch).loss.backward()
    optimizer.step()
    mask.apply_to(model)


def imp_round(model, theta_0, mask, next_sparsity, train):
    """Rewind, train, prune: returns the next round's mask."""
    rewind(model, theta_0, mask)
    train(model, mask)
    return magnitude_prune(model, mask, next_sparsity)


# --- lab 05 -----------------------------------------------------------------------------------------------------


def random_pruning(model, imp_mask, seed):
    """Returns a random Mask over imp_mask's matrices pruning as many weights as it, drawn from the seed."""
    scores = torch.rand(imp_mask.num_total, generator=torch.Generator().manual_seed(seed))
    keep = torch.ones(imp_mask.num_total, dtype=torch.bool)
    keep[scores.argsort()[:imp_mask.num_pruned]] = False
    pieces = keep.split([flag.numel() for flag in imp_mask.flags.values()])
    return Mask({name: piece.view(flag.shape) for (name, flag), piece in zip(imp_mask.items(), pieces)})


def reinitialize(model, names, seed):
    """Permutes the entries of each named matrix of the model (in place), drawn from the seed."""
    generator, tensors = torch.Generator().manual_seed(seed), named_tensors(model)
    with torch.no_grad():
        for name in names:
            flat = tensors[name].view(-1)
            flat.copy_(flat[torch.randperm(flat.numel(), generator=generator)])


def is_ticket(dense, subnetwork, sampling_error):
    """Returns (within noise, at least dense) for the metric of each seed's dense model and subnetwork."""
    noise = statistics.stdev(dense) if len(dense) > 1 else sampling_error  # one seed has no spread
    mean = statistics.fmean(subnetwork)
    return mean >= statistics.fmean(dense) - noise, mean >= statistics.fmean(dense)


# --- lab 06 -----------------------------------------------------------------------------------------------------


def mask_tokens(input_ids, attention_mask, special_ids, mask_id, vocab_size, generator):
    """Returns (masked input_ids, labels): 15% of the real, non-special tokens chosen; of those 80% become [MASK],
    10% a random id, 10% stay; labels hold the chosen tokens' ids and -100 elsewhere."""
    never = torch.isin(input_ids, torch.tensor(sorted(special_ids))) | (attention_mask == 0)  # (B, T)
    chosen = (torch.rand(input_ids.shape, generator=generator) < 0.15) & ~never
    to_mask = chosen & (torch.rand(input_ids.shape, generator=generator) < 0.8)
    to_random = chosen & ~to_mask & (torch.rand(input_ids.shape, generator=generator) < 0.5)  # half of the rest
    masked = input_ids.clone()
    masked[to_mask] = mask_id
    masked[to_random] = torch.randint(vocab_size, input_ids.shape, generator=generator)[to_random]
    return masked, torch.where(chosen, input_ids, -100)


def transfer_mask(mask, target_model):
    """Returns the mask under the target model's names: the `bert.` prefix as the target has it, a pooler entry
    dropped when the target has no pooler; raises ValueError for a mask made for another model."""
    target = named_tensors(target_model)
    by_bare_name = {name.removeprefix("bert."): name for name in target}
    moved = {}
    for name, flags in mask.items():
        target_name = by_bare_name.get(name.removeprefix("bert."))
        if target_name is None and not is_pooler(name):
            raise ValueError(f"{name} is not in the target model: the mask was made for another model")
        if target_name is not None:
            if flags.shape != target[target_name].shape:
                raise ValueError(f"{name} has another shape in the target model")
            moved[target_name] = flags
    uncovered = [name for name in prunable_names(target_model) if name not in moved and not is_pooler(name)]
    if uncovered:
        raise ValueError(f"the mask does not cover {uncovered[0]}: it was made for another model")
    return Mask(moved)


# --- lab 07 -----------------------------------------------------------------------------------------------------


def head_importance(model, batches):
    """Returns |dLoss/dgate| of every head, summed over the batches, each layer's scores divided by their norm."""
    layers, heads = model.bert.encoder.layer, model.config.num_attention_heads
    head_size = model.config.hidden_size // heads
    gates = torch.ones(len(layers), heads, requires_grad=True)
    hooks = [layer.attention.output.dense.register_forward_pre_hook(
        lambda module, inputs, gate=gates[index]: (inputs[0] * gate.repeat_interleave(head_size),))
        for index, layer in enumerate(layers)]
    scores = torch.zeros(len(layers), heads)
    try:
        for batch in batches:
            scores += torch.autograd.grad(model(**batch).loss, gates)[0].abs()
    finally:
        for hook in hooks:
            hook.remove()
    return scores / scores.norm(dim=1, keepdim=True)


def head_mask(scores, sparsity):
    """Returns (layers, heads) bool keeping all but the round(sparsity x heads) lowest scores of every layer."""
    lowest = torch.sort(scores, dim=1, stable=True).indices[:, :round(sparsity * scores.shape[1])]
    return torch.ones_like(scores, dtype=torch.bool).scatter_(1, lowest, False)
