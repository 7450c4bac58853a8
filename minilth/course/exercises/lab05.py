"""Lab 05: the controls (random pruning, random re-initialisation) and the verdict under the paper's two definitions."""
from __future__ import annotations

import random
import statistics

import torch

from ...lottery.baselines import random_pruning_mask
from ...lottery.verdict import is_ticket as library_is_ticket
from ...prune import Mask, magnitude_prune, prunable_names, snapshot
from ..exercise import Exercise, Fail, mask_of, percent, returned, tiny_model


def _random_calls(seed: int) -> list[tuple]:
    model = tiny_model(seed)
    imp = magnitude_prune(model, Mask.dense(model, prunable_names(model)), 0.6)
    return [(model, imp, seed), (model, imp, seed), (model, imp, seed + 1)]


def _judge_random(calls: list[tuple], outcomes: list[dict]) -> None:
    (model, imp, seed), _, _ = calls
    got = mask_of(returned(outcomes[0]))
    if got.names() != imp.names():
        raise Fail("return a Mask over the same matrices as the IMP mask")
    if got.num_pruned != imp.num_pruned:
        raise Fail(f"pruned {percent(got)} instead of {percent(imp)}: as many weights as the IMP mask")
    if got == imp:
        raise Fail("the random mask is the IMP mask: draw the pruned positions at random")
    if mask_of(returned(outcomes[1])) != got:
        raise Fail("not reproducible from the seed: draw with torch.Generator().manual_seed(seed)")
    if mask_of(returned(outcomes[2])) == got:
        raise Fail("another seed gave the same mask: the seed must decide the draw")
    spread = statistics.pstdev(random_pruning_mask(model, imp, seed).per_tensor_sparsity().values())
    if statistics.pstdev(got.per_tensor_sparsity().values()) > 3 * spread + 0.05:
        raise Fail("the matrices are pruned unevenly: draw uniformly over all the prunable weights together")


RANDOM_PRUNING = Exercise("random_pruning", _random_calls, _judge_random,
                          library=("minilth.lottery.baselines.random_pruning_mask",
                                   "minilth.lottery.baselines.random_prune", "minilth.prune.prune_by_scores",
                                   "minilth.prune.keep_largest"))


def _reinit_calls(seed: int) -> list[tuple]:
    model = tiny_model(seed)
    return [(model, prunable_names(model)[:6], seed)]


def _judge_reinit(calls: list[tuple], outcomes: list[dict]) -> None:
    (model, names, _), = calls
    before, after = snapshot(model), returned(outcomes[0])["state"]
    for name in names:
        if not torch.equal(after[name].flatten().sort().values, before[name].flatten().sort().values):
            raise Fail(f"the values of {name} changed: shuffle its entries, keep their values (the reference code's "
                       f"rule)")
        if (after[name] == before[name]).float().mean() > 0.5:
            raise Fail(f"{name} kept most of its entries in place: permute all of them")
    changed = [name for name in before if name not in names and not torch.equal(after[name], before[name])]
    if changed:
        raise Fail(f"{changed[0]} changed: re-initialise only the matrices named")
    # any permutation is as good a control: minilth's own draw (lottery/baselines.py) is not required


REINITIALIZE = Exercise("reinitialize", _reinit_calls, _judge_reinit,
                        library=("minilth.lottery.baselines.reinitialize",),
                        observe=lambda args, _: {"state": args[0].state_dict()})

VERDICT_CASES = [([0.80, 0.82, 0.78], [0.785, 0.79, 0.78], 0.01),  # within one std of dense, below its mean
                 ([0.80, 0.82, 0.78], [0.81, 0.83, 0.80], 0.01),  # at least dense
                 ([0.80, 0.82, 0.78], [0.70, 0.72, 0.71], 0.01),  # neither
                 ([0.80], [0.795], 0.01),  # one seed: the sampling error is the noise
                 ([0.80], [0.78], 0.01)]


def _verdict_calls(seed: int) -> list[tuple]:
    """The cases in an order drawn from the seed, every metric shifted alike (answers cannot be learnt by heart)."""
    draw = random.Random(seed)
    shift = round(draw.uniform(-0.1, 0.1), 3)
    cases = [([m + shift for m in dense], [m + shift for m in sub], error) for dense, sub, error in VERDICT_CASES]
    return draw.sample(cases, len(cases))


def _judge_verdict(calls: list[tuple], outcomes: list[dict]) -> None:
    for (dense, subnetwork, error), outcome in zip(calls, outcomes):
        answer = returned(outcome)
        if not (isinstance(answer, list) and len(answer) == 2 and all(isinstance(v, (bool, int)) for v in answer)):
            raise Fail("return two booleans: (within noise, at least dense)")
        expected, got = library_is_ticket(dense, subnetwork, error), tuple(bool(v) for v in answer)
        if got != expected:
            if len(dense) == 1 and got[0] != expected[0]:
                raise Fail("with one seed the std over seeds is 0: use the dev set's sampling error as the noise "
                           "(the paper's rule needs a spread)")
            raise Fail(f"dense {dense}, subnetwork {subnetwork}: gave (within noise, at least dense) = {got}, "
                       f"expected {expected}; the noise is one std of the dense runs over seeds (statistics.stdev)")


IS_TICKET = Exercise("is_ticket", _verdict_calls, _judge_verdict, library=("minilth.lottery.verdict.is_ticket",))

EXERCISES = (RANDOM_PRUNING, REINITIALIZE, IS_TICKET)
