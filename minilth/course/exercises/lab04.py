"""Lab 04: a training step that keeps the pruned weights at zero, and one round of IMP."""
from __future__ import annotations

import copy

import torch

from ...prune import Mask, magnitude_prune, prunable_names, snapshot
from ..exercise import Exercise, Fail, mask_of, percent, returned, tiny_model


def _step_calls(seed: int) -> list[tuple]:
    batch = {"input_ids": torch.randint(5, 60, (4, 8), generator=torch.Generator().manual_seed(seed)),
             "labels": torch.tensor([0, 1, 2, 0])}
    model = tiny_model(seed)
    mask = magnitude_prune(model, Mask.dense(model, prunable_names(model)), 0.5)
    mask.apply_to(model)
    model.train()
    return [(model, batch, torch.optim.AdamW(model.parameters(), lr=1e-2), mask)]


def _judge_step(calls: list[tuple], outcomes: list[dict]) -> None:
    (model, batch, optimizer, mask), = calls
    got = returned(outcomes[0])["state"]
    before = snapshot(model)
    optimizer.zero_grad()
    model(**batch).loss.backward()
    optimizer.step()
    mask.apply_to(model)
    expected = model.state_dict()
    if any(got[name][~kept].any() for name, kept in mask.items()):
        raise Fail("pruned weights moved during training: re-apply the mask after the optimiser step (mask.apply_to)")
    if all(torch.equal(got[name], before[name]) for name in mask):
        raise Fail("the weights did not change: compute the loss, call loss.backward() and optimizer.step()")
    if any((got[name] - expected[name]).abs().max() > 1e-6 for name in expected):
        raise Fail("not the update of one step: zero the gradients, backward the loss, step the optimiser, re-apply "
                   "the mask")


MASKED_STEP = Exercise("masked_step", _step_calls, _judge_step, library=("minilth.train._backward_and_step",),
                       observe=lambda args, _: {"state": args[0].state_dict()})


class StandInTraining:
    """A stand-in for fine-tuning, train(model, mask): records what it was given, then moves every surviving weight."""

    def __init__(self):
        self.calls, self.weights, self.mask = 0, None, None

    def __call__(self, model, mask):
        self.calls += 1
        self.weights, self.mask = copy.deepcopy(model.state_dict()), mask
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(torch.linspace(0.5, 2.0, parameter.numel()).view(parameter.shape))
        mask.apply_to(model)


def _round_calls(seed: int) -> list[tuple]:
    model = tiny_model(seed)
    theta_0 = snapshot(model)
    mask = magnitude_prune(model, Mask.dense(model, prunable_names(model)), 0.2)
    with torch.no_grad():  # the model comes from the previous round: trained, not theta_0
        for parameter in model.parameters():
            parameter.add_(0.3)
    return [(model, theta_0, mask, 0.4, StandInTraining())]


def _judge_round(calls: list[tuple], outcomes: list[dict]) -> None:
    (model, theta_0, mask, sparsity, train), = calls
    seen = returned(outcomes[0])
    if seen["train_calls"] != 1:
        raise Fail("train(model, mask) was never called: fine-tune the rewound subnetwork" if not seen["train_calls"]
                   else f"train was called {seen['train_calls']} times: once per round")
    if mask_of(seen["train_mask"], "this round's Mask") != mask:
        raise Fail("train was given another mask than this round's")
    if any(not torch.equal(seen["train_weights"][n], theta_0[n] * mask[n]) for n in mask):
        raise Fail("training did not start from m * theta_0: rewind (survivors to theta_0, pruned to 0) before "
                   "training")
    model.load_state_dict(theta_0)
    mask.apply_to(model)
    train(model, mask)
    expected, got = magnitude_prune(model, mask, sparsity), mask_of(seen["next_mask"], "the next Mask")
    if got.num_pruned != expected.num_pruned:
        raise Fail(f"the next mask prunes {percent(got)} instead of {percent(expected)}")
    if got == magnitude_prune(theta_0, mask, sparsity):
        raise Fail("pruned theta_0's weights: prune the trained weights, then rewind to theta_0")
    if got != expected:
        raise Fail("the next mask is not magnitude pruning of the trained weights, nested in this round's mask")


IMP_ROUND = Exercise("imp_round", _round_calls, _judge_round, library=("minilth.ticket.imp_round",),
                     observe=lambda args, next_mask: {"next_mask": next_mask, "train_calls": args[4].calls,
                                                      "train_weights": args[4].weights, "train_mask": args[4].mask})

EXERCISES = (MASKED_STEP, IMP_ROUND)
