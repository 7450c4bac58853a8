"""The course's checks: minilth's own functions pass every one, and each mistake students make fails with its line."""
import statistics

import pytest
import torch

from minilth.course import check
from minilth.lottery.baselines import random_pruning_mask, reinitialize
from minilth.lottery.verdict import is_ticket
from minilth.prune import Mask, magnitude_prune, rewind, sparsity_schedule
from minilth.structured import gradient_importance, keep_in_each_layer


def solution_masked_step(model, batch, optimizer, mask):
    optimizer.zero_grad()
    model(**batch).loss.backward()
    optimizer.step()
    mask.apply_to(model)


def solution_imp_round(model, theta_0, mask, sparsity, train):
    rewind(model, theta_0, mask)
    train(model, mask)
    return magnitude_prune(model, mask, sparsity)


SOLUTIONS = {
    "magnitude_prune": magnitude_prune,
    "rewind": rewind,
    "masked_step": solution_masked_step,
    "imp_round": solution_imp_round,
    "random_pruning": lambda model, imp_mask, seed: random_pruning_mask(model, imp_mask, seed),
    "reinitialize": lambda model, names, seed: reinitialize(model, names, "shuffle", seed),
    "is_ticket": is_ticket,
    "head_importance": lambda model, batches: gradient_importance(model, batches)["heads"],
    "head_mask": keep_in_each_layer,
}


@pytest.mark.parametrize("exercise", SOLUTIONS)
def test_minilths_own_function_passes(exercise):
    assert getattr(check, exercise)(SOLUTIONS[exercise]).passed


@pytest.mark.parametrize("exercise", SOLUTIONS)
def test_a_blank_fails_in_one_line_without_a_traceback(exercise, capsys):
    def blank(*args):
        raise NotImplementedError("write this")
    result = getattr(check, exercise)(blank)
    out = capsys.readouterr().out
    assert not result.passed and "not written yet" in result.message
    assert out.count("\n") == 1 and "Traceback" not in out


# --- the mistakes students make ------------------------------------------------------------------------------


def per_layer_pruning(weights, mask, sparsity):
    """Each matrix pruned to the sparsity on its own: no global threshold."""
    return Mask({name: magnitude_prune({name: weights[name]}, Mask({name: kept}), sparsity)[name]
                 for name, kept in mask.items()})


def smallest_of_all_weights(weights, mask, sparsity):
    """The smallest |w| of every weight, the pruned ones included, as if they had not been pruned."""
    scores = torch.cat([weights[name].abs().flatten() for name in mask.names()])
    threshold = scores.kthvalue(round(sparsity * scores.numel())).values
    return Mask({name: kept & (weights[name].abs() > threshold) for name, kept in mask.items()})


def forgets_to_reapply_the_mask(model, batch, optimizer, mask):
    optimizer.zero_grad()
    model(**batch).loss.backward()
    optimizer.step()


def rewinds_the_pruned_weights(model, theta_0, mask):
    model.load_state_dict(theta_0)  # the survivors are theta_0's, and so are the pruned weights


def verdict_with_std_over_one_seed(dense, subnetwork, sampling_error):
    noise = statistics.pstdev(dense)  # 0 for one seed
    return (statistics.fmean(subnetwork) >= statistics.fmean(dense) - noise,
            statistics.fmean(subnetwork) >= statistics.fmean(dense))


def prunes_theta_0(model, theta_0, mask, sparsity, train):
    next_mask = magnitude_prune(theta_0, mask, sparsity)
    rewind(model, theta_0, mask)
    train(model, mask)
    return next_mask


def heads_ranked_over_the_model(scores, sparsity):
    flat = scores.flatten()
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[flat.argsort()[:round(sparsity * flat.numel())]] = False
    return keep.view(scores.shape)


def unnormalised_importance(model, batches):
    scores = gradient_importance(model, batches)["heads"]
    return scores * torch.arange(1, scores.shape[0] + 1)[:, None]  # each layer's own scale


def random_mask_of_another_sparsity(model, imp_mask, seed):
    return random_pruning_mask(model, magnitude_prune(model, Mask.dense(model, imp_mask.names()), 0.3), seed)


def reinit_that_draws_new_values(model, names, seed):
    reinitialize(model, names, "fresh", seed)


@pytest.mark.parametrize("exercise, mistake, message", [
    ("magnitude_prune", per_layer_pruning, "pruned per matrix, not globally"),
    ("magnitude_prune", smallest_of_all_weights, "pruned 75.0% instead of 50.0%: the weights already pruned count"),
    ("magnitude_prune", lambda w, m, s: magnitude_prune(w, m, s / 2), "pruned 12.5% instead of 25.0%"),
    ("masked_step", forgets_to_reapply_the_mask, "pruned weights moved during training: re-apply the mask"),
    ("rewind", rewinds_the_pruned_weights, "pruned weights were rewound to non-zero values"),
    ("is_ticket", verdict_with_std_over_one_seed, "with one seed the std over seeds is 0"),
    ("imp_round", prunes_theta_0, "pruned theta_0's weights: prune the trained weights"),
    ("head_mask", heads_ranked_over_the_model, "rank within each layer"),
    ("head_importance", unnormalised_importance, "not normalised per layer"),
    ("random_pruning", random_mask_of_another_sparsity, "pruned 30.0% instead of 60.0%"),
    ("reinitialize", reinit_that_draws_new_values, "shuffle its entries, keep their values"),
])
def test_each_mistake_fails_with_its_line(exercise, mistake, message):
    result = getattr(check, exercise)(mistake)
    assert not result.passed and message in result.message, result.message


def test_ties_broken_another_way_are_named():
    def highest_index_first(weights, mask, sparsity):
        """The matrices ranked last to first: among equal magnitudes, the last matrices' weights go first."""
        reversed_mask = Mask({name: mask[name] for name in reversed(mask.names())})
        pruned = magnitude_prune(weights, reversed_mask, sparsity)
        return Mask({name: pruned[name] for name in mask.names()})
    result = check.magnitude_prune(highest_index_first)
    assert not result.passed and "ties broken differently: see the rule in prune.py" in result.message


def test_a_crash_in_the_students_code_is_one_line(capsys):
    result = check.rewind(lambda model, theta, mask: [][1])
    assert result.message == "your function raised IndexError: list index out of range"
    assert "Traceback" not in capsys.readouterr().out


def test_schedules_used_by_the_labs_exist():
    assert sparsity_schedule(0.6, 0.3) == [0.3, 0.6]
