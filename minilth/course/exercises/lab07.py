"""Lab 07: head importance (Michel et al., 2019) and a mask of heads within each layer."""
from __future__ import annotations

import torch

from ...structured import gradient_importance, keep_in_each_layer
from ..exercise import Exercise, Fail, returned, tensor_of, tiny_model


def _importance_calls(seed: int) -> list[tuple]:
    model = tiny_model(seed)
    generator = torch.Generator().manual_seed(seed)
    batches = [{"input_ids": torch.randint(5, 60, (4, 8), generator=generator),
                "labels": torch.randint(0, 3, (4,), generator=generator)} for _ in range(3)]
    return [(model, batches)]


def _judge_importance(calls: list[tuple], outcomes: list[dict]) -> None:
    (model, batches), = calls
    expected = gradient_importance(model, batches)["heads"]
    got = tensor_of(returned(outcomes[0]), "a (layers, heads) tensor").detach().float()
    if got.shape != expected.shape:
        raise Fail(f"returned a tensor of shape {tuple(got.shape)}, not (layers, heads) = {tuple(expected.shape)}")
    if torch.allclose(got, expected, atol=1e-5):
        return
    if torch.allclose(got / got.norm(dim=1, keepdim=True).clamp_min(1e-20), expected, atol=1e-5):
        raise Fail("not normalised per layer: divide each layer's scores by their L2 norm")
    if (got < 0).any():
        raise Fail("negative scores: take |dLoss/dgate|, the gradient's absolute value")
    raise Fail("the scores differ from |dLoss/dgate| of a gate on each head's output, summed over the batches (each "
               "batch's absolute value), normalised per layer")


HEAD_IMPORTANCE = Exercise("head_importance", _importance_calls, _judge_importance,
                           library=("minilth.structured.importance.gradient_importance",))


def _mask_calls(seed: int) -> list[tuple]:
    scores = torch.rand(6, 12, generator=torch.Generator().manual_seed(seed))
    scores[0] *= 10  # one layer far more important: a model-wide ranking would keep all of it
    return [(scores, 0.5), (torch.ones(2, 4), 0.5)]


def _judge_mask(calls: list[tuple], outcomes: list[dict]) -> None:
    (scores, share), (tied, tie_share) = calls
    expected = keep_in_each_layer(scores, share)
    got = tensor_of(returned(outcomes[0]), "a (layers, heads) bool tensor").bool()
    if got.shape != expected.shape:
        raise Fail(f"returned a mask of shape {tuple(got.shape)}, not (layers, heads) = {tuple(expected.shape)}")
    counts = (~got).sum(1).tolist()
    if len(set(counts)) > 1 and sum(counts) == int((~expected).sum()):
        raise Fail(f"pruned {counts} heads per layer: rank within each layer, every layer loses the same share")
    if counts != (~expected).sum(1).tolist():
        raise Fail(f"pruned {counts} heads per layer instead of {(~expected).sum(1).tolist()}")
    if not torch.equal(got, expected):
        raise Fail("pruned other heads than each layer's lowest scores")
    got_tied = tensor_of(returned(outcomes[1]), "a (layers, heads) bool tensor").bool()
    if got_tied.shape != tied.shape or not torch.equal(got_tied, keep_in_each_layer(tied, tie_share)):
        raise Fail("ties broken differently: see the rule in prune.py (lower positions pruned first)")


HEAD_MASK = Exercise("head_mask", _mask_calls, _judge_mask,
                     library=("minilth.structured.pruning.keep_in_each_layer", "minilth.prune.keep_largest"))

EXERCISES = (HEAD_IMPORTANCE, HEAD_MASK)
