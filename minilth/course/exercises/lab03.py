"""Lab 03: global magnitude pruning of a mask, and rewinding to theta_0."""
from __future__ import annotations

import torch

from ...lottery.baselines import random_prune
from ...prune import Mask, magnitude_prune as library_magnitude_prune, prunable_names, snapshot
from ..exercise import Exercise, Fail, mask_of, percent, returned, tiny_model


def _prune_calls(seed: int) -> list[tuple]:
    """Three calls: one matrix far smaller than the others (a global threshold takes most of it); a second round
    whose mask prunes already, its pruned weights large (as before rewinding); ties everywhere."""
    model = tiny_model(seed)
    dense = Mask.dense(model, prunable_names(model))
    state = snapshot(model)
    for name in dense:
        state[name] = state[name] * (0.1 if "layer.0.intermediate" in name else 1.0)
    previous = random_prune(state, dense, 0.25, seed=seed)
    second = {name: torch.where(previous[name], state[name], torch.full_like(state[name], 10.0)) for name in dense}
    tied = {name: torch.ones_like(state[name]) for name in dense}
    return [(state, dense, 0.25), (second, previous, 0.5), (tied, dense, 0.3)]


def _judge_prune(calls: list[tuple], outcomes: list[dict]) -> None:
    (state, dense, first), (second, previous, target), (tied, _, tie_target) = calls
    expected, got = library_magnitude_prune(state, dense, first), mask_of(returned(outcomes[0]))
    if got.names() != expected.names():
        raise Fail("the mask's names differ from the input mask's: keep every name, in its order")
    if got.num_pruned != expected.num_pruned:
        raise Fail(f"pruned {percent(got)} instead of {percent(expected)} of the prunable weights")
    if got != expected:
        per_matrix = all(abs(s - first) < 1 / got[n].numel() + 1e-9 for n, s in got.per_tensor_sparsity().items())
        if per_matrix:
            raise Fail("pruned per matrix, not globally: rank the weights of all the matrices together, one threshold")
        raise Fail("pruned other weights than the smallest |w| over all the matrices together")

    expected, got = library_magnitude_prune(second, previous, target), mask_of(returned(outcomes[1]))
    if got.names() != previous.names() or any((got[n] & ~previous[n]).any() for n in previous):
        raise Fail("the mask is not nested in the previous one: a weight pruned before came back; rank only the "
                   "weights the mask still keeps")
    if got.num_pruned == previous.num_pruned + expected.num_pruned:
        raise Fail(f"pruned {percent(got)} instead of {percent(expected)}: the weights already pruned count toward "
                   f"the target; prune the smallest of the survivors up to it")
    if got.num_pruned != expected.num_pruned:
        raise Fail(f"pruned {percent(got)} instead of {percent(expected)} of the prunable weights")
    if got != expected:
        raise Fail("pruned other weights than the smallest surviving |w| over all the matrices together")

    # ties at the threshold: minilth prunes the lower positions first (the tensors in the mask's order, row-major)
    expected, got = library_magnitude_prune(tied, dense, tie_target), mask_of(returned(outcomes[2]))
    if got.names() != expected.names() or got.num_pruned != expected.num_pruned:
        raise Fail(f"with ties at the threshold, pruned {percent(got)} instead of {percent(expected)}")
    if got != expected:
        raise Fail("ties broken differently: see the rule in prune.py (lower positions pruned first)")


MAGNITUDE_PRUNE = Exercise("magnitude_prune", _prune_calls, _judge_prune,
                           library=("minilth.prune.magnitude_prune", "minilth.prune.prune_by_scores",
                                    "minilth.prune.keep_largest"))


def _rewind_calls(seed: int) -> list[tuple]:
    model = tiny_model(seed)
    theta_0 = snapshot(model)
    mask = library_magnitude_prune(model, Mask.dense(model, prunable_names(model)), 0.5)
    with torch.no_grad():  # "training" moved every weight
        for parameter in model.parameters():
            parameter.add_(0.5)
    return [(model, theta_0, mask)]


def _judge_rewind(calls: list[tuple], outcomes: list[dict]) -> None:
    (_, theta_0, mask), = calls
    state = returned(outcomes[0])["state"]
    for name, kept in mask.items():
        if state[name][~kept].any():
            raise Fail("pruned weights were rewound to non-zero values: zero them (apply the mask) after copying "
                       "theta_0")
        if not torch.equal(state[name][kept], theta_0[name][kept]):
            raise Fail(f"the kept weights of {name} are not theta_0's: copy theta_0 back into every tensor")
    others = [name for name in theta_0 if name not in mask and not torch.equal(state[name], theta_0[name])]
    if others:
        raise Fail(f"{others[0]} (not pruned) was not rewound: copy every tensor of theta_0, the head's included")


REWIND = Exercise("rewind", _rewind_calls, _judge_rewind, library=("minilth.prune.rewind",),
                  observe=lambda args, _: {"state": args[0].state_dict()})

EXERCISES = (MAGNITUDE_PRUNE, REWIND)
