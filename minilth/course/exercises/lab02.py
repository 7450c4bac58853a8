"""Lab 02: the task's loss (classification and regression) and the linear warm-up and decay of the learning rate."""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from ...train import linear_schedule
from ..exercise import Exercise, Fail, describe, returned


def _loss_calls(seed: int) -> list[tuple]:
    generator = torch.Generator().manual_seed(seed)
    logits = lambda rows, labels: torch.randn(rows, labels, generator=generator).requires_grad_()  # noqa: E731
    return [(logits(8, 3), torch.randint(0, 3, (8,), generator=generator)),  # classification, 3 labels
            (logits(8, 1), 5 * torch.rand(8, generator=generator)),  # regression: one output, a score
            (logits(6, 2), torch.randint(0, 2, (6,), generator=generator))]


def _loss_seen(args: tuple, loss) -> dict:
    """The loss, and the gradient it gives the logits (backward, as training would)."""
    seen = {"loss": loss, "grad": None}
    if isinstance(loss, torch.Tensor) and loss.requires_grad and loss.numel() == 1:
        loss.sum().backward()
        seen["grad"] = args[0].grad
    return seen


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-6)


def _judge_loss(calls: list[tuple], outcomes: list[dict]) -> None:
    for (logits, labels), outcome in zip(calls, outcomes):
        seen = returned(outcome)
        regression = logits.shape[-1] == 1
        kind, loss = "regression" if regression else "classification", seen["loss"]
        expected = F.mse_loss(logits.squeeze(-1), labels) if regression else F.cross_entropy(logits, labels)
        if not isinstance(loss, torch.Tensor):
            raise Fail(f"returned {describe(loss)}, not a tensor: keep the loss a torch tensor (no .item()), so that "
                       f"loss.backward() can train")
        if loss.numel() != 1:
            raise Fail(f"the {kind} loss has shape {tuple(loss.shape)}: reduce it to one number, the mean over the "
                       f"batch")
        loss = loss.reshape(())
        if regression and _close(loss, ((logits - labels[None, :]) ** 2).mean()):  # (B, 1) - (B,) -> (B, B)
            raise Fail("the mean squared error on the wrong shape: logits (B, 1) against labels (B,) broadcast to a "
                       "(B, B) matrix; squeeze the logits to (B,) first")
        if _close(loss, expected * len(labels)):
            raise Fail(f"the {kind} loss is summed over the batch: take the mean (F.mse_loss and F.cross_entropy "
                       f"average by default)")
        if not regression and _close(loss, F.cross_entropy(logits.softmax(-1), labels)):
            raise Fail("a softmax before the cross-entropy: F.cross_entropy takes the raw logits (it applies the "
                       "log-softmax itself)")
        if not _close(loss, expected):
            rule = ("the mean squared error of the logits squeezed to (B,) and the scores" if regression
                    else "the cross-entropy of the raw logits and the labels")
            raise Fail(f"the {kind} loss is {loss.item():.4f}, expected {expected.item():.4f}: {rule}")
        if seen["grad"] is None:
            raise Fail(f"the {kind} loss carries no gradient: compute it with torch from the logits (no .item(), no "
                       f"numpy, no detach)")
        if not _close(seen["grad"], torch.autograd.grad(expected, logits)[0]):
            raise Fail(f"the {kind} loss's gradient differs from minilth's: compute it from the logits themselves")


TASK_LOSS = Exercise("task_loss", _loss_calls, _judge_loss, observe=_loss_seen,
                     library=("minilth.model.BertForSequenceClassification.forward",))


def _schedules(seed: int) -> list[tuple[float, int, int]]:
    """(peak, warm-up steps, total steps) of three schedules: no warm-up (the paper's), a warm-up of one step, and
    one of a few steps, drawn from the seed."""
    draw = random.Random(seed)
    peak = lambda: round(draw.uniform(1e-5, 1e-4), 7)  # noqa: E731
    warmup = draw.randint(3, 6)
    return [(peak(), 0, draw.randint(8, 20)), (peak(), 1, draw.randint(6, 12)),
            (peak(), warmup, draw.randint(warmup + 5, 30))]


def _rate_calls(seed: int) -> list[tuple]:
    return [(step, peak, warmup, total) for peak, warmup, total in _schedules(seed) for step in range(total)]


def _minilths_rates(peak: float, warmup: int, total: int) -> list[float]:
    factor = linear_schedule(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=peak), total, warmup)
    return [peak * factor.lr_lambdas[0](step) for step in range(total)]


def _judge_rates(calls: list[tuple], outcomes: list[dict]) -> None:
    start = 0
    for _, peak, warmup, total in [call for call in calls if call[0] == 0]:
        expected, got = _minilths_rates(peak, warmup, total), []
        for outcome in outcomes[start:start + total]:
            if warmup == 0 and "raised" in outcome and not outcome["raised"].startswith("NotImplementedError"):
                raise Fail(f"with warmup_steps = 0 (the paper: no warm-up) your function raised {outcome['raised']}: "
                           f"then the rate starts at the peak and only decays")
            rate = returned(outcome)
            if isinstance(rate, torch.Tensor) and rate.numel() == 1:
                rate = rate.item()
            if not isinstance(rate, (int, float)):
                raise Fail(f"returned {describe(rate)}, not a number (the learning rate of that step)")
            got.append(float(rate))
        start += total
        close = lambda a, b: abs(a - b) <= 1e-6 * peak  # noqa: E731
        for phase in (range(warmup), range(warmup, total)):
            wrong = [s for s in phase if not close(got[s], expected[s])]
            shifted = [all(close(got[s], expected[s + shift]) for s in phase if 0 <= s + shift < total)
                       for shift in (1, -1)]
            if wrong and any(shifted):
                raise Fail(f"the schedule is off by one step (warm-up {warmup}, {total} steps): step {wrong[0]} got "
                           f"{got[wrong[0]]:.4g}, minilth's {expected[wrong[0]]:.4g}; steps count from 0, the warm-up "
                           f"gives step s peak x s / warmup_steps, the peak is step warmup_steps' rate")
        if warmup and max(got) < peak * (1 - 1e-6):
            raise Fail(f"the warm-up never reaches the peak: the highest rate is {max(got):.4g} of a peak {peak:.4g}; "
                       f"at step warmup_steps the rate is the peak itself")
        wrong = [s for s in range(total) if not close(got[s], expected[s])]
        if wrong:
            s = wrong[0]
            raise Fail(f"step {s} of {total} (peak {peak:g}, warm-up {warmup} steps): rate {got[s]:.4g}, expected "
                       f"{expected[s]:.4g}; the rate rises linearly from 0 to the peak over the warm-up, then falls "
                       f"linearly to 0 at total_steps")


LEARNING_RATE = Exercise("learning_rate", _rate_calls, _judge_rates, library=("minilth.train.linear_schedule",))

EXERCISES = (TASK_LOSS, LEARNING_RATE)
