"""Checks for the labs of course/: each runs a student's function on small real inputs against minilth's own and
says in one line what differs.

    from minilth.course import check
    check.magnitude_prune(magnitude_prune)   # PASS magnitude_prune: matches minilth's on ... (or FAIL: what differs)

A wrong answer, an unfinished exercise or an exception in the student's code is one line, never a traceback.
Every check takes seconds (no fine-tuning). Under the grader (python -m minilth.grade), each result is also
appended to the file $MINILTH_GRADE_REPORT names.
"""
from __future__ import annotations

import copy
import json
import os
import statistics
from dataclasses import asdict, dataclass

import torch

from ..lottery.baselines import random_pruning_mask
from ..lottery.verdict import is_ticket as library_is_ticket
from ..model import BertConfig, build_model
from ..prune import Mask, magnitude_prune as library_magnitude_prune, prunable_names, snapshot
from ..structured import gradient_importance, keep_in_each_layer

REPORT_ENV = "MINILTH_GRADE_REPORT"
TINY = dict(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24,
            max_position_embeddings=16)


@dataclass
class Result:
    """One check of one exercise: passed or not, and the line that says why."""

    exercise: str
    passed: bool
    message: str


def _run(exercise: str, check, function) -> Result:
    """Runs `check(function)`, which returns None when the function is right, else what differs."""
    try:
        message = check(function)
    except NotImplementedError:
        message = "not written yet: replace `raise NotImplementedError` with your code"
    except Exception as error:  # the student's code failed: one line, never a traceback
        text = " ".join(str(error).split())[:200]
        message = f"your function raised {type(error).__name__}" + (f": {text}" if text else "")
    result = Result(exercise, message is None, message or "matches minilth's")
    print(f"{'PASS' if result.passed else 'FAIL'} {exercise}: {result.message}")
    if os.environ.get(REPORT_ENV):
        with open(os.environ[REPORT_ENV], "a", encoding="utf-8") as report:
            report.write(json.dumps(asdict(result)) + "\n")
    return result


def _tiny_model(seed: int = 0, head: str = "classification"):
    torch.manual_seed(seed)
    return build_model(BertConfig(**TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0), head=head,
                       num_labels=3).eval()


def _percent(mask: Mask) -> str:
    return f"{100 * mask.sparsity:.1f}%"


# --- lab 03: global magnitude pruning and rewinding ---------------------------------------------------------


def magnitude_prune(function) -> Result:
    """Checks magnitude_prune(model_or_state_dict, mask, target_sparsity) -> Mask against minilth's."""
    return _run("magnitude_prune", _check_magnitude_prune, function)


def _check_magnitude_prune(function) -> str | None:
    model = _tiny_model()
    dense = Mask.dense(model, prunable_names(model))
    state = snapshot(model)
    for name in dense:  # one matrix far smaller than the others: a global threshold takes most of it
        state[name] = state[name] * (0.1 if "layer.0.intermediate" in name else 1.0)
    expected = library_magnitude_prune(state, dense, 0.25)
    got = function(state, dense, 0.25)
    if not isinstance(got, Mask):
        return f"returned a {type(got).__name__}, not a Mask"
    if got.num_pruned != expected.num_pruned:
        return f"pruned {_percent(got)} instead of {_percent(expected)} of the prunable weights"
    if got != expected:
        per_matrix = all(abs(s - 0.25) < 1 / got[n].numel() + 1e-9 for n, s in got.per_tensor_sparsity().items())
        if per_matrix:
            return "pruned per matrix, not globally: rank the weights of all the matrices together, one threshold"
        return "pruned other weights than the smallest |w| over all the matrices together"

    # a second round: the mask prunes already, and the pruned weights hold large values (as before rewinding)
    previous = expected
    for name, kept in previous.items():
        state[name] = torch.where(kept, state[name], torch.full_like(state[name], 10.0))
    expected = library_magnitude_prune(state, previous, 0.5)
    got = function(state, previous, 0.5)
    if any((got[n] & ~previous[n]).any() for n in previous):
        return "the mask is not nested in the previous one: a weight pruned before came back; rank only the weights " \
               "the mask still keeps"
    if got.num_pruned == previous.num_pruned + expected.num_pruned:
        return (f"pruned {_percent(got)} instead of {_percent(expected)}: the weights already pruned count toward "
                f"the target; prune the smallest of the survivors up to it")
    if got.num_pruned != expected.num_pruned:
        return f"pruned {_percent(got)} instead of {_percent(expected)} of the prunable weights"
    if got != expected:
        return "pruned other weights than the smallest surviving |w| over all the matrices together"

    # ties at the threshold: minilth prunes the lower positions first (the tensors in the mask's order, row-major)
    tied = {name: torch.ones_like(state[name]) for name in dense}
    expected, got = library_magnitude_prune(tied, dense, 0.3), function(tied, dense, 0.3)
    if got.num_pruned != expected.num_pruned:
        return f"with ties at the threshold, pruned {_percent(got)} instead of {_percent(expected)}"
    if got != expected:
        return "ties broken differently: see the rule in prune.py (lower positions pruned first)"
    return None


def rewind(function) -> Result:
    """Checks rewind(model, theta_0, mask): the survivors back to theta_0 bit for bit, the pruned weights zero."""
    return _run("rewind", _check_rewind, function)


def _check_rewind(function) -> str | None:
    model = _tiny_model()
    theta_0 = snapshot(model)
    mask = library_magnitude_prune(model, Mask.dense(model, prunable_names(model)), 0.5)
    with torch.no_grad():  # "training" moved every weight
        for parameter in model.parameters():
            parameter.add_(0.5)
    function(model, theta_0, mask)
    state = model.state_dict()
    for name, kept in mask.items():
        if state[name][~kept].any():
            return "pruned weights were rewound to non-zero values: zero them (apply the mask) after copying theta_0"
        if not torch.equal(state[name][kept], theta_0[name][kept]):
            return f"the kept weights of {name} are not theta_0's: copy theta_0 back into every tensor"
    others = [name for name in state if name not in mask and not torch.equal(state[name], theta_0[name])]
    if others:
        return f"{others[0]} (not pruned) was not rewound: copy every tensor of theta_0, the head's included"
    return None


# --- lab 04: one IMP round ----------------------------------------------------------------------------------


def masked_step(function) -> Result:
    """Checks masked_step(model, batch, optimizer, mask): one optimiser step that keeps the pruned weights at zero."""
    return _run("masked_step", _check_masked_step, function)


def _check_masked_step(function) -> str | None:
    batch = {"input_ids": torch.randint(5, 60, (4, 8), generator=torch.Generator().manual_seed(0)),
             "labels": torch.tensor([0, 1, 2, 0])}
    models = [_tiny_model(), _tiny_model()]
    mask = library_magnitude_prune(models[0], Mask.dense(models[0], prunable_names(models[0])), 0.5)
    optimizers = [torch.optim.AdamW(m.parameters(), lr=1e-2) for m in models]
    for model in models:
        mask.apply_to(model)
        model.train()
    before = snapshot(models[0])
    function(models[0], batch, optimizers[0], mask)
    optimizers[1].zero_grad()
    models[1](**batch).loss.backward()
    optimizers[1].step()
    mask.apply_to(models[1])
    got, expected = models[0].state_dict(), models[1].state_dict()
    if any(got[name][~kept].any() for name, kept in mask.items()):
        return "pruned weights moved during training: re-apply the mask after the optimiser step (mask.apply_to)"
    if all(torch.equal(got[name], before[name]) for name in mask):
        return "the weights did not change: compute the loss, call loss.backward() and optimizer.step()"
    if any((got[name] - expected[name]).abs().max() > 1e-6 for name in expected):
        return ("not the update of one step: zero the gradients, backward the loss, step the optimiser, re-apply "
                "the mask")
    return None


def imp_round(function) -> Result:
    """Checks imp_round(model, theta_0, mask, next_sparsity, train) -> the next mask: rewind, train, prune."""
    return _run("imp_round", _check_imp_round, function)


def _check_imp_round(function) -> str | None:
    model = _tiny_model()
    theta_0 = snapshot(model)
    mask = library_magnitude_prune(model, Mask.dense(model, prunable_names(model)), 0.2)
    seen = {}

    def train(model, mask_given):
        """A stand-in for fine-tuning: records what it was given, then moves every surviving weight."""
        seen["weights"], seen["mask"] = copy.deepcopy(model.state_dict()), mask_given
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                parameter.mul_(torch.linspace(0.5, 2.0, parameter.numel()).view(parameter.shape))
        mask_given.apply_to(model)

    with torch.no_grad():  # the model comes from the previous round: trained, not theta_0
        for parameter in model.parameters():
            parameter.add_(0.3)
    next_mask = function(model, theta_0, mask, 0.4, train)
    if "weights" not in seen:
        return "train(model, mask) was never called: fine-tune the rewound subnetwork"
    if seen["mask"] is not mask and seen["mask"] != mask:
        return "train was given another mask than this round's"
    if any(not torch.equal(seen["weights"][n], theta_0[n] * mask[n]) for n in mask):
        return "training did not start from m * theta_0: rewind (survivors to theta_0, pruned to 0) before training"
    expected = library_magnitude_prune(model, mask, 0.4)
    if not isinstance(next_mask, Mask):
        return f"returned a {type(next_mask).__name__}, not the next Mask"
    if next_mask.num_pruned != expected.num_pruned:
        return f"the next mask prunes {_percent(next_mask)} instead of {_percent(expected)}"
    if next_mask == library_magnitude_prune(theta_0, mask, 0.4):
        return "pruned theta_0's weights: prune the trained weights, then rewind to theta_0"
    if next_mask != expected:
        return "the next mask is not magnitude pruning of the trained weights, nested in this round's mask"
    return None


# --- lab 05: the controls and the verdict -------------------------------------------------------------------


def random_pruning(function) -> Result:
    """Checks random_pruning(model, imp_mask, seed) -> a random Mask pruning as many weights as the IMP mask."""
    return _run("random_pruning", _check_random_pruning, function)


def _check_random_pruning(function) -> str | None:
    model = _tiny_model()
    imp = library_magnitude_prune(model, Mask.dense(model, prunable_names(model)), 0.6)
    got = function(model, imp, 0)
    if not isinstance(got, Mask) or got.names() != imp.names():
        return "return a Mask over the same matrices as the IMP mask"
    if got.num_pruned != imp.num_pruned:
        return f"pruned {_percent(got)} instead of {_percent(imp)}: as many weights as the IMP mask"
    if got == imp:
        return "the random mask is the IMP mask: draw the pruned positions at random"
    if function(model, imp, 0) != got:
        return "not reproducible from the seed: draw with torch.Generator().manual_seed(seed)"
    if function(model, imp, 1) == got:
        return "another seed gave the same mask: the seed must decide the draw"
    expected = random_pruning_mask(model, imp, 0)
    spread = statistics.pstdev(expected.per_tensor_sparsity().values())
    if statistics.pstdev(got.per_tensor_sparsity().values()) > 3 * spread + 0.05:
        return "the matrices are pruned unevenly: draw uniformly over all the prunable weights together"
    return None


def reinitialize(function) -> Result:
    """Checks reinitialize(model, names, seed): each named matrix's entries shuffled, everything else untouched."""
    return _run("reinitialize", _check_reinitialize, function)


def _check_reinitialize(function) -> str | None:
    model = _tiny_model()
    before = snapshot(model)
    names = prunable_names(model)[:6]
    function(model, names, 0)
    after = model.state_dict()
    for name in names:
        if not torch.equal(after[name].flatten().sort().values, before[name].flatten().sort().values):
            return f"the values of {name} changed: shuffle its entries, keep their values (the reference code's rule)"
        if (after[name] == before[name]).float().mean() > 0.5:
            return f"{name} kept most of its entries in place: permute all of them"
    changed = [name for name in after if name not in names and not torch.equal(after[name], before[name])]
    if changed:
        return f"{changed[0]} changed: re-initialise only the matrices named"
    return None  # any permutation is as good a control: minilth's own draw (lottery/baselines.py) is not required


def is_ticket(function) -> Result:
    """Checks is_ticket(dense, subnetwork, sampling_error) -> (within noise, at least dense), the two definitions."""
    return _run("is_ticket", _check_is_ticket, function)


def _check_is_ticket(function) -> str | None:
    cases = [([0.80, 0.82, 0.78], [0.785, 0.79, 0.78], 0.01),  # within one std of dense, below its mean
             ([0.80, 0.82, 0.78], [0.81, 0.83, 0.80], 0.01),  # at least dense
             ([0.80, 0.82, 0.78], [0.70, 0.72, 0.71], 0.01),  # neither
             ([0.80], [0.795], 0.01),  # one seed: the sampling error is the noise
             ([0.80], [0.78], 0.01)]
    for dense, subnetwork, error in cases:
        expected = library_is_ticket(dense, subnetwork, error)
        got = tuple(bool(value) for value in function(dense, subnetwork, error))
        if got != expected:
            if len(dense) == 1 and got[0] != expected[0]:
                return ("with one seed the std over seeds is 0: use the dev set's sampling error as the noise "
                        "(the paper's rule needs a spread)")
            return (f"dense {dense}, subnetwork {subnetwork}: gave (within noise, at least dense) = {got}, expected "
                    f"{expected}; the noise is one std of the dense runs over seeds (statistics.stdev)")
    return None


# --- lab 07: structured tickets ------------------------------------------------------------------------------


def head_importance(function) -> Result:
    """Checks head_importance(model, batches) -> (layers, heads): Michel et al.'s |dLoss/dgate|, per layer norm 1."""
    return _run("head_importance", _check_head_importance, function)


def _check_head_importance(function) -> str | None:
    model = _tiny_model()
    generator = torch.Generator().manual_seed(1)
    batches = [{"input_ids": torch.randint(5, 60, (4, 8), generator=generator),
                "labels": torch.randint(0, 3, (4,), generator=generator)} for _ in range(3)]
    expected = gradient_importance(model, batches)["heads"]
    got = torch.as_tensor(function(model, batches)).detach().float().cpu()
    if got.shape != expected.shape:
        return f"returned a tensor of shape {tuple(got.shape)}, not (layers, heads) = {tuple(expected.shape)}"
    if torch.allclose(got, expected, atol=1e-5):
        return None
    norms = got.norm(dim=1, keepdim=True)
    if torch.allclose(got / norms.clamp_min(1e-20), expected, atol=1e-5):
        return "not normalised per layer: divide each layer's scores by their L2 norm"
    if (got < 0).any():
        return "negative scores: take |dLoss/dgate|, the gradient's absolute value"
    return "the scores differ from |dLoss/dgate| of a gate on each head's output, summed over the batches (each " \
           "batch's absolute value), normalised per layer"


def head_mask(function) -> Result:
    """Checks head_mask(scores, sparsity) -> (layers, heads) bool: in every layer, the lowest-scoring share pruned."""
    return _run("head_mask", _check_head_mask, function)


def _check_head_mask(function) -> str | None:
    scores = torch.rand(6, 12, generator=torch.Generator().manual_seed(2))
    scores[0] *= 10  # one layer far more important: a model-wide ranking would keep all of it
    expected = keep_in_each_layer(scores, 0.5)
    got = torch.as_tensor(function(scores, 0.5)).bool()
    if got.shape != expected.shape:
        return f"returned a mask of shape {tuple(got.shape)}, not (layers, heads) = {tuple(expected.shape)}"
    counts = (~got).sum(1).tolist()
    if len(set(counts)) > 1 and sum(counts) == int((~expected).sum()):
        return f"pruned {counts} heads per layer: rank within each layer, every layer loses the same share"
    if counts != (~expected).sum(1).tolist():
        return f"pruned {counts} heads per layer instead of {(~expected).sum(1).tolist()}"
    if not torch.equal(got, expected):
        return "pruned other heads than each layer's lowest scores"
    tied = torch.ones(2, 4)
    if not torch.equal(torch.as_tensor(function(tied, 0.5)).bool(), keep_in_each_layer(tied, 0.5)):
        return "ties broken differently: see the rule in prune.py (lower positions pruned first)"
    return None
