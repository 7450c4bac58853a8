"""The course's checks, in a notebook's process: the teacher's solutions pass every one, minilth's own functions fail
(they refuse to run inside the student's), and each mistake students make fails with its line."""
import statistics

import pytest
import torch
import torch.nn.functional as F

from minilth.course import check, solutions
from minilth.course.exercise import library_functions
from minilth.course.exercises import EXERCISES, LABS
from minilth.data.mlm import mask_tokens as library_mask_tokens
from minilth.lottery.baselines import random_pruning_mask, reinitialize
from minilth.lottery.mask_transfer import transfer_mask as library_transfer_mask
from minilth.prune import Mask, is_pooler, magnitude_prune, prunable_names, rewind, sparsity_schedule
from minilth.structured import gradient_importance


def test_every_exercise_has_a_solution_and_names_minilths_functions_that_exist():
    assert list(LABS) == ["lab02", "lab03", "lab04", "lab05", "lab06", "lab07"]
    for name, exercise in EXERCISES.items():
        assert callable(getattr(solutions, name))
        assert len(library_functions(exercise)) == len(exercise.library)  # each dotted name resolves


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("exercise", EXERCISES)
def test_the_teachers_solution_passes(exercise, seed):
    assert check.run(exercise, getattr(solutions, exercise), seed).passed


@pytest.mark.parametrize("exercise", EXERCISES)
def test_a_blank_fails_in_one_line_without_a_traceback(exercise, capsys):
    def blank(*args):
        raise NotImplementedError("write this")
    result = getattr(check, exercise)(blank)
    out = capsys.readouterr().out
    assert not result.passed and result.message.startswith("not written yet")
    assert out.count("\n") == 1 and "Traceback" not in out


# --- minilth's own function, however it is reached, refuses to answer ---------------------------------------------


def through_another_module(weights, mask, sparsity):
    import minilth.lottery.baselines as baselines  # which imported magnitude_prune from minilth.prune
    return baselines.magnitude_prune(weights, mask, sparsity)


def through_its_helper(weights, mask, sparsity):
    from minilth.prune import count_to_prune, named_tensors, prune_by_scores
    scores = [named_tensors(weights)[name].abs().flatten() for name in mask.names()]
    return prune_by_scores(scores, mask, count_to_prune(sparsity, mask.num_total))


@pytest.mark.parametrize("exercise, answer, name", [
    ("magnitude_prune", magnitude_prune, "minilth.prune.magnitude_prune"),
    ("magnitude_prune", lambda w, m, s: magnitude_prune(w, m, s), "minilth.prune.magnitude_prune"),
    ("magnitude_prune", through_another_module, "minilth.prune.magnitude_prune"),
    ("magnitude_prune", through_its_helper, "minilth.prune.prune_by_scores"),
    ("rewind", rewind, "minilth.prune.rewind"),
    ("random_pruning", lambda model, imp, seed: random_pruning_mask(model, imp, seed), "random_pruning_mask"),
    ("reinitialize", lambda model, names, seed: reinitialize(model, names, "shuffle", seed), "reinitialize"),
    ("head_importance", lambda model, batches: gradient_importance(model, batches)["heads"], "gradient_importance"),
    ("mask_tokens", lambda ids, attention, special, mask_id, vocab, generator: library_mask_tokens(
        ids, torch.isin(ids, torch.tensor(sorted(special))), mask_id, vocab, 0.15, generator), "mlm.mask_tokens"),
    ("transfer_mask", library_transfer_mask, "mask_transfer.transfer_mask"),
])
def test_minilths_own_function_is_refused_however_it_is_reached(exercise, answer, name):
    result = getattr(check, exercise)(answer)
    assert not result.passed and result.message.startswith("answered with minilth's own") and name in result.message
    assert magnitude_prune.__code__.co_name == "magnitude_prune"  # put back after the check


# --- the mistakes students make ------------------------------------------------------------------------------------


def per_layer_pruning(weights, mask, sparsity):
    """Each matrix pruned to the sparsity on its own: no global threshold."""
    return Mask({name: solutions.magnitude_prune({name: weights[name]}, Mask({name: kept}), sparsity)[name]
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
    next_mask = solutions.magnitude_prune(theta_0, mask, sparsity)
    solutions.rewind(model, theta_0, mask)
    train(model, mask)
    return next_mask


def heads_ranked_over_the_model(scores, sparsity):
    flat = scores.flatten()
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[flat.argsort()[:round(sparsity * flat.numel())]] = False
    return keep.view(scores.shape)


def unnormalised_importance(model, batches):
    scores = solutions.head_importance(model, batches)
    return scores * torch.arange(1, scores.shape[0] + 1)[:, None]  # each layer's own scale


def random_mask_of_another_sparsity(model, imp_mask, seed):
    return solutions.random_pruning(model, solutions.magnitude_prune(model, Mask.dense(model, imp_mask.names()), 0.3),
                                    seed)


def reinit_that_draws_new_values(model, names, seed):
    with torch.no_grad():
        for name in names:
            model.get_parameter(name).normal_(0, 0.02)


def mse_on_the_wrong_shape(logits, labels):
    if logits.shape[-1] == 1:
        return ((logits - labels) ** 2).mean()  # (B, 1) - (B,): a (B, B) matrix, what F.mse_loss warns of
    return F.cross_entropy(logits, labels)


def softmax_then_cross_entropy(logits, labels):
    return F.mse_loss(logits.squeeze(-1), labels) if logits.shape[-1] == 1 else F.cross_entropy(logits.softmax(-1),
                                                                                                 labels)


def rate_one_step_late(step, peak, warmup_steps, total_steps):
    return solutions.learning_rate(step + 1, peak, warmup_steps, total_steps)


def warmup_that_never_peaks(step, peak, warmup_steps, total_steps):
    if step < warmup_steps:
        return peak * step / warmup_steps
    return peak * (total_steps - step) / total_steps  # the decay starts below the peak


def masks_special_tokens(input_ids, attention_mask, special_ids, mask_id, vocab_size, generator):
    return solutions.mask_tokens(input_ids, attention_mask, {0}, mask_id, vocab_size, generator)  # only [PAD] spared


def masks_the_padding_too(input_ids, attention_mask, special_ids, mask_id, vocab_size, generator):
    chosen = torch.rand(input_ids.shape, generator=generator) < 0.15  # 15% of every position, padding included
    masked = torch.where(chosen, mask_id, input_ids)
    return masked, torch.where(chosen, input_ids, -100)


def random_tokens_two_percent(input_ids, attention_mask, special_ids, mask_id, vocab_size, generator):
    never = torch.isin(input_ids, torch.tensor(sorted(special_ids))) | (attention_mask == 0)
    chosen = (torch.rand(input_ids.shape, generator=generator) < 0.15) & ~never
    to_mask = chosen & (torch.rand(input_ids.shape, generator=generator) < 0.8)
    to_random = chosen & ~to_mask & (torch.rand(input_ids.shape, generator=generator) < 0.1)  # 10% of the 20%
    masked = torch.where(to_mask, mask_id, input_ids)
    masked = torch.where(to_random, torch.randint(vocab_size, input_ids.shape, generator=generator), masked)
    return masked, torch.where(chosen, input_ids, -100)


def names_left_as_they_were(mask, target_model):
    return Mask(dict(mask.items()))


def names_zipped_in_another_order(mask, target_model):
    """The target's prunable names in alphabetical order, paired with the mask's flags in the mask's order."""
    wanted = [name for name in prunable_names(target_model) if not is_pooler(name) or any(map(is_pooler, mask))]
    return Mask(dict(zip(sorted(wanted), (flags for _, flags in mask.items()))))


def adds_a_dense_pooler(mask, target_model):
    """An entry keeping the whole pooler where the source mask has none."""
    moved, pooler = solutions.transfer_mask(mask, target_model), dict(target_model.named_parameters())
    return Mask({name: torch.ones_like(weight, dtype=torch.bool) for name, weight in pooler.items() if is_pooler(name)}
                | moved.flags)


@pytest.mark.parametrize("exercise, mistake, message", [
    ("magnitude_prune", per_layer_pruning, "pruned per matrix, not globally"),
    ("magnitude_prune", smallest_of_all_weights, "pruned 75.0% instead of 50.0%: the weights already pruned count"),
    ("magnitude_prune", lambda w, m, s: solutions.magnitude_prune(w, m, s / 2), "pruned 12.5% instead of 25.0%"),
    ("masked_step", forgets_to_reapply_the_mask, "pruned weights moved during training: re-apply the mask"),
    ("rewind", rewinds_the_pruned_weights, "pruned weights were rewound to non-zero values"),
    ("is_ticket", verdict_with_std_over_one_seed, "with one seed the std over seeds is 0"),
    ("imp_round", prunes_theta_0, "pruned theta_0's weights: prune the trained weights"),
    ("head_mask", heads_ranked_over_the_model, "rank within each layer"),
    ("head_importance", unnormalised_importance, "not normalised per layer"),
    ("random_pruning", random_mask_of_another_sparsity, "pruned 30.0% instead of 60.0%"),
    ("reinitialize", reinit_that_draws_new_values, "shuffle its entries, keep their values"),
    ("task_loss", mse_on_the_wrong_shape, "the mean squared error on the wrong shape"),
    ("task_loss", softmax_then_cross_entropy, "a softmax before the cross-entropy"),
    ("task_loss", lambda logits, labels: solutions.task_loss(logits, labels).item(), "not a tensor"),
    ("task_loss", lambda logits, labels: solutions.task_loss(logits, labels) * len(labels), "summed over the batch"),
    ("learning_rate", rate_one_step_late, "the schedule is off by one step"),
    ("learning_rate", warmup_that_never_peaks, "the warm-up never reaches the peak"),
    ("learning_rate", lambda step, peak, warmup, total: peak * step / warmup if step < warmup else peak,
     "falls linearly to 0 at total_steps"),
    ("mask_tokens", masks_special_tokens, "special tokens masked"),
    ("mask_tokens", masks_the_padding_too, "15% of the padding"),
    ("mask_tokens", random_tokens_two_percent, "BERT's rule is 80%, 10%, 10%"),
    ("mask_tokens", lambda *args: solutions.mask_tokens(*args[:5], torch.Generator().manual_seed(0)),
     "another generator gave the same masking"),
    ("transfer_mask", names_left_as_they_were, "the mask moved onto the wrong names"),
    ("transfer_mask", names_zipped_in_another_order, "the mask moved onto the wrong names"),
    ("transfer_mask", adds_a_dense_pooler, "added a pooler entry the source mask does not have"),
])
def test_each_mistake_fails_with_its_line(exercise, mistake, message):
    result = getattr(check, exercise)(mistake)
    assert not result.passed and message in result.message, result.message


def test_ties_broken_another_way_are_named():
    def highest_index_first(weights, mask, sparsity):
        """The matrices ranked last to first: among equal magnitudes, the last matrices' weights go first."""
        reversed_mask = Mask({name: mask[name] for name in reversed(mask.names())})
        pruned = solutions.magnitude_prune(weights, reversed_mask, sparsity)
        return Mask({name: pruned[name] for name in mask.names()})
    result = check.magnitude_prune(highest_index_first)
    assert not result.passed and "ties broken differently: see the rule in prune.py" in result.message


def test_a_crash_in_the_students_code_is_one_line(capsys):
    result = check.rewind(lambda model, theta, mask: [][1])
    assert result.message == "your function raised IndexError: list index out of range"
    assert "Traceback" not in capsys.readouterr().out


def test_schedules_used_by_the_labs_exist():
    assert sparsity_schedule(0.6, 0.3) == [0.3, 0.6]
