"""From a model's outputs on an evaluation set to the task's metrics, for every kind of task.

train.evaluate runs the model batch by batch and keeps what `batch_outputs` returns; `score`
turns the kept outputs into metrics: GLUE's (with the sampling error and chance level a verdict
needs), SQuAD's exact match and F1, or MLM's accuracy and perplexity.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import torch

from ..errors import DataError

from .metrics import chance_level, glue_metrics, sampling_error
from .mlm import mlm_batch_stats, mlm_metrics
from .squad import score_logits
from .tasks import Task

logger = logging.getLogger(__name__)


def batch_outputs(task: Task, output, batch: dict):
    """Returns what scoring needs of one batch: MLM's (loss sum, masked, correct), SQuAD's (start, end) logits on
    the CPU, or the logits of a GLUE task."""
    if task.kind == "mlm":
        return mlm_batch_stats(output.logits, batch["labels"])
    if task.kind == "span":
        return output.start_logits.float().cpu(), output.end_logits.float().cpu()
    return output.logits.float().cpu()


def score(task: Task, data, outputs: list, squad_evaluation: str = "official") -> dict[str, float]:
    """Returns the task's metrics from every batch's outputs, e.g. {'pearson': 0.81, 'spearman': 0.83, ...}."""
    if task.kind == "mlm":
        return mlm_metrics(*(sum(column) for column in zip(*outputs)))
    if task.kind == "span":
        return score_logits(data, [row for s, _ in outputs for row in s], [row for _, e in outputs for row in e],
                            squad_evaluation)
    logits = torch.cat(outputs)
    predictions = (logits.squeeze(-1) if task.kind == "regression" else logits.argmax(-1)).numpy()
    references = np.asarray([f["labels"] for f in data.features])
    metrics = glue_metrics(task, predictions, references)
    # What the ticket's verdict needs to see past noise with one seed (lottery/verdict.py).
    metric = task.ticket_metric
    metrics[f"{metric}_se"] = sampling_error(metric, predictions, references)
    metrics[f"{metric}_chance"] = chance_level(metric, references)
    _define_correlations(task, metrics, predictions, references)
    return metrics


def _define_correlations(task: Task, metrics: dict, predictions: np.ndarray, references: np.ndarray) -> None:
    """Makes every metric a number: a correlation is undefined (nan) when one side is constant.

    Constant gold scores, or fewer than 2 examples, are an evaluation set that cannot score the
    task: a one-line error. Constant predictions are a model that learned nothing, and score 0,
    what such a model scores (metrics.chance_level), with a warning that says so.
    """
    for name, value in metrics.items():
        if not math.isnan(value) or name.endswith("_se"):  # a sampling error of undefined values: none either
            metrics[name] = 0.0 if math.isnan(value) else value
            continue
        if len(references) < 2 or np.all(references == references[0]):
            raise DataError(f"{task.display_name}'s {name} is undefined on {len(references)} evaluation examples with "
                            f"the same gold score: evaluate on more of them (--max-eval-examples)")
        logger.warning(f"warning: the model predicts the same {task.display_name} score for every example: its "
                       f"{name} is undefined, counted as 0 (a model that learned nothing)")
        metrics[name] = 0.0
