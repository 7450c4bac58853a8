"""minilth.data.metrics against sklearn.metrics and scipy.stats, on random inputs and on the edge cases."""
import math
import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from minilth.errors import MinilthError
from minilth.data.metrics import accuracy, average_ranks, f1, glue_metrics, matthews_corrcoef, pearson, spearman


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    references = rng.integers(0, 2, size=200)
    predictions = np.where(rng.random(200) < 0.7, references, 1 - references)  # correlated, not equal
    assert accuracy(predictions, references) == pytest.approx(skm.accuracy_score(references, predictions), abs=1e-12)
    assert f1(predictions, references) == pytest.approx(skm.f1_score(references, predictions), abs=1e-12)
    assert matthews_corrcoef(predictions, references) == pytest.approx(
        skm.matthews_corrcoef(references, predictions), abs=1e-12)
    assert isinstance(accuracy(predictions, references), float)


@pytest.mark.parametrize("seed", range(3))
def test_multiclass_mcc_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    references, predictions = rng.integers(0, 3, size=150), rng.integers(0, 3, size=150)
    assert matthews_corrcoef(predictions, references) == pytest.approx(
        skm.matthews_corrcoef(references, predictions), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_correlations_match_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    references = rng.integers(0, 11, size=300) / 2  # STS-B-like scores 0..5 with many ties
    predictions = references + rng.normal(0, 1.0, size=300)
    predictions[:50] = np.round(predictions[:50])  # ties in the predictions too
    assert pearson(predictions, references) == pytest.approx(stats.pearsonr(predictions, references)[0], abs=1e-12)
    assert spearman(predictions, references) == pytest.approx(stats.spearmanr(predictions, references)[0], abs=1e-12)
    np.testing.assert_allclose(average_ranks(predictions), stats.rankdata(predictions), atol=0)


def test_edge_cases_follow_the_references():
    ones, zeros, mixed = np.ones(10, int), np.zeros(10, int), np.array([0, 1] * 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn and scipy warn on these
        assert matthews_corrcoef(ones, mixed) == skm.matthews_corrcoef(mixed, ones) == 0.0
        assert matthews_corrcoef(ones, ones) == skm.matthews_corrcoef(ones, ones) == 0.0
        assert f1(zeros, zeros) == skm.f1_score(zeros, zeros) == 0.0
        assert f1(zeros, mixed) == skm.f1_score(mixed, zeros) == 0.0
        assert math.isnan(pearson(np.ones(10), np.arange(10.0))) and math.isnan(stats.pearsonr(np.ones(10), np.arange(10.0))[0])
        assert math.isnan(spearman(np.arange(10.0), np.ones(10))) and math.isnan(stats.spearmanr(np.arange(10.0), np.ones(10))[0])
    assert accuracy(mixed, mixed) == 1.0 and f1(mixed, mixed) == 1.0 and matthews_corrcoef(mixed, mixed) == 1.0
    assert matthews_corrcoef(1 - mixed, mixed) == -1.0
    assert pearson([1, 2, 3], [3, 2, 1]) == -1.0


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(MinilthError, match="3 predictions for 2 references"):
        accuracy([1, 0, 1], [1, 0])
    with pytest.raises(MinilthError, match="empty"):
        f1([], [])
    with pytest.raises(MinilthError, match="span task"):
        glue_metrics("squad", [1], [1])


def test_glue_metrics_report_each_tasks_metric_names():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=64)
    logits = rng.normal(size=(64, 2))
    mrpc = glue_metrics("mrpc", logits, labels)  # logits are arg-maxed
    assert set(mrpc) == {"acc", "f1"}
    assert mrpc["acc"] == pytest.approx(skm.accuracy_score(labels, logits.argmax(-1)))
    assert set(glue_metrics("cola", labels, labels)) == {"mcc"} and glue_metrics("cola", labels, labels)["mcc"] == 1.0
    scores = rng.random(64) * 5
    stsb = glue_metrics("STS-B", (scores + rng.normal(0, 0.5, 64))[:, None], scores)  # (N, 1) regression output
    assert set(stsb) == {"pearson", "spearman"} and 0.5 < stsb["pearson"] < 1.0
    assert set(glue_metrics("mnli", [0, 1, 2], [0, 1, 1])) == {"acc"}
    assert glue_metrics("mnli", [0, 1, 2], [0, 1, 1])["acc"] == pytest.approx(2 / 3)


def test_sampling_error_of_accuracy_is_the_binomial_one_and_bootstrap_for_the_others():
    from minilth.data.metrics import sampling_error

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 277)
    guesses = np.where(rng.random(277) < 0.6, labels, 1 - labels)
    p = float(np.mean(guesses == labels))
    assert sampling_error("acc", guesses, labels) == pytest.approx(np.sqrt(p * (1 - p) / 277))
    # Pearson's r of 0.8 over 1500 pairs: its standard error is about (1 - r^2) / sqrt(n) = 0.009
    x = rng.normal(size=1500)
    y = 0.8 * x + 0.6 * rng.normal(size=1500)
    stderr = sampling_error("pearson", x, y)
    assert 0.006 < stderr < 0.013 and stderr == sampling_error("pearson", x, y)  # seeded: reproducible


def test_chance_level_is_what_a_model_that_learned_nothing_scores():
    from minilth.data.metrics import chance_level

    labels = np.array([1] * 146 + [0] * 131)  # RTE's dev split has 146 of one class in 277
    assert chance_level("acc", labels) == pytest.approx(146 / 277)
    assert chance_level("pearson", labels) == chance_level("mcc", labels) == 0.0
    assert chance_level("f1", labels) == pytest.approx(2 * 146 / (146 + 277))
