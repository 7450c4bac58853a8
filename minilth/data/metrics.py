"""GLUE metrics in plain numpy: accuracy, binary F1, Matthews correlation, Pearson and Spearman.

Each returns a python float, as a fraction (0.66, not 66). Edge cases follow the references the
tests compare against:
- `matthews_corrcoef` is 0.0 when either side is constant (sklearn does the same).
- `f1` is 0.0 when there is no positive prediction and no positive reference (sklearn's default
  `zero_division`, which also warns; minilth does not warn).
- `pearson` and `spearman` are nan when either side is constant (scipy.stats does the same, with
  a ConstantInputWarning): the correlation is undefined, and a nan in a results table says so.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import MinilthError
from .tasks import Task, get_task


class MetricInputError(MinilthError, ValueError):
    """Predictions and references that cannot be scored together."""


def accuracy(predictions, references) -> float:
    """Returns the fraction of predictions equal to their reference."""
    predictions, references = _pair(predictions, references)
    return float(np.mean(predictions == references))


def f1(predictions, references, positive: int = 1) -> float:
    """Returns binary F1 of the positive class; 0.0 when there are no positive predictions nor references."""
    predictions, references = _pair(predictions, references)
    predicted, actual = predictions == positive, references == positive
    true_positives = int(np.sum(predicted & actual))
    denominator = int(predicted.sum()) + int(actual.sum())
    return 2.0 * true_positives / denominator if denominator else 0.0


def matthews_corrcoef(predictions, references) -> float:
    """Returns the Matthews correlation (multi-class form, as sklearn); 0.0 when either side is constant."""
    predictions, references = _pair(predictions, references)
    classes, encoded = np.unique(np.concatenate([references, predictions]), return_inverse=True)
    true, predicted = encoded[: len(references)], encoded[len(references):]
    confusion = np.zeros((len(classes), len(classes)), dtype=np.float64)
    np.add.at(confusion, (true, predicted), 1.0)
    true_counts, predicted_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    n, correct = confusion.sum(), np.trace(confusion)
    covariance = correct * n - true_counts @ predicted_counts
    predicted_spread = n * n - predicted_counts @ predicted_counts
    true_spread = n * n - true_counts @ true_counts
    if predicted_spread * true_spread == 0:
        return 0.0
    return float(covariance / math.sqrt(true_spread * predicted_spread))


def pearson(predictions, references) -> float:
    """Returns Pearson's correlation coefficient; nan when either side is constant (as scipy)."""
    x, y = _pair(predictions, references, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    norm = math.sqrt(float(x @ x) * float(y @ y))
    if norm == 0.0:
        return float("nan")
    return float(np.clip((x @ y) / norm, -1.0, 1.0))


def spearman(predictions, references) -> float:
    """Returns Spearman's rank correlation, tied values sharing their average rank; nan for a constant side."""
    x, y = _pair(predictions, references, dtype=np.float64)
    return pearson(average_ranks(x), average_ranks(y))


def average_ranks(values) -> np.ndarray:
    """Returns 1-based ranks of values, ties given the mean of the ranks they span (scipy's 'average')."""
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # a new group starts wherever the sorted value changes
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    group_rank = (starts + ends + 1) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


METRICS = {
    "acc": accuracy,
    "f1": f1,
    "mcc": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
}


def glue_metrics(task: Task | str, predictions, references) -> dict[str, float]:
    """Returns {metric name: value} for the task's metrics (e.g. MRPC {'acc': .., 'f1': ..}).

    `task` is a Task or a task name. Classification predictions may be class ids (N,) or logits
    (N, num_labels), which are arg-maxed; regression predictions are scores (N,) or (N, 1).
    """
    task = get_task(task)
    if task.kind not in ("classification", "regression"):
        raise MetricInputError(f"{task.name} is a {task.kind} task: score it with its own module, not glue_metrics")
    predictions = np.asarray(predictions)
    if task.kind == "classification" and predictions.ndim == 2:
        predictions = predictions.argmax(axis=-1)
    if task.kind == "regression" and predictions.ndim == 2 and predictions.shape[1] == 1:
        predictions = predictions[:, 0]
    return {name: METRICS[name](predictions, references) for name in task.metrics}


def _pair(predictions, references, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as 1-d arrays of one length, or a one-line error."""
    predictions = np.asarray(predictions, dtype=dtype).reshape(-1)
    references = np.asarray(references, dtype=dtype).reshape(-1)
    if len(predictions) != len(references):
        raise MetricInputError(f"{len(predictions)} predictions for {len(references)} references: "
                               "score every evaluated example once")
    if len(predictions) == 0:
        raise MetricInputError("no predictions to score: the evaluation set is empty")
    return predictions, references


# ---------------------------------------------------------------------------------------------
# How much a metric can move by chance: the noise a verdict must see past


def sampling_error(name: str, predictions, references, resamples: int = 1000, seed: int = 0) -> float:
    """Returns the standard error of a metric that comes from the evaluation set's own sampling.

    For accuracy it is sqrt(p(1-p)/n) (3 points on RTE's 277 pairs at p = 0.5); for the other
    metrics, the standard deviation of the metric over `resamples` bootstrap draws of the examples.
    With one seed this is the noise a single number carries, which a std over seeds cannot show.
    """
    predictions, references = _pair(predictions, references)
    if name == "acc":
        p = accuracy(predictions, references)
        return math.sqrt(p * (1 - p) / len(references))
    rows = np.random.default_rng(seed).integers(0, len(references), size=(resamples, len(references)))
    values = [METRICS[name](predictions[row], references[row]) for row in rows]
    return float(np.nanstd(values, ddof=1))


def chance_level(name: str, references) -> float:
    """Returns the metric of a model that learned nothing: the majority class's accuracy, 0 for correlations and
    Matthews, and for F1 the score of always answering the positive class."""
    references = np.asarray(references).reshape(-1)
    if name == "acc":
        return float(np.unique(references, return_counts=True)[1].max() / len(references))
    if name == "f1":
        return f1(np.ones_like(references), references)
    return 0.0
