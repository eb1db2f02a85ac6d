"""Tests of Evaluation against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from covidxray import Evaluation
from covidxray.metrics import wilson_interval


def test_binary_metrics_from_a_hand_computed_confusion_matrix() -> None:
    # 6 positives (class 1), 4 negatives. Threshold 0.5:
    # positives scored 0.9 0.8 0.7 0.6 0.3 0.2 -> TP 4, FN 2
    # negatives scored 0.1 0.2 0.4 0.55      -> TN 3, FP 1
    y = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    p = [0.9, 0.8, 0.7, 0.6, 0.3, 0.2, 0.1, 0.2, 0.4, 0.55]
    ev = Evaluation.from_predictions(
        y, p, class_names=["non", "covid"], n_bootstrap=200
    )
    m = ev.metrics
    assert ev.confusion_matrix.tolist() == [[3, 1], [2, 4]]
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["sensitivity"] == pytest.approx(4 / 6)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["ppv"] == pytest.approx(4 / 5)
    assert m["npv"] == pytest.approx(3 / 5)
    assert m["f1"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 2))
    assert m["balanced_accuracy"] == pytest.approx((4 / 6 + 3 / 4) / 2)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["brier"] == pytest.approx(np.mean((np.array(p) - np.array(y)) ** 2))
    assert ev.support == {"non": 4, "covid": 6}
    lo, hi = ev.ci["roc_auc"]
    assert lo <= m["roc_auc"] <= hi
    assert ev.ci["sensitivity"] == wilson_interval(4, 6)
    assert ev.sensitivity == m["sensitivity"]  # attribute access


def test_positive_class_first_and_threshold() -> None:
    # class_names[0] is positive: P(positive) = 1 - P(class 1).
    ev = Evaluation.from_predictions(
        [0, 0, 1, 1],
        [0.1, 0.4, 0.8, 0.9],
        class_names=["covid", "non"],
        positive_class="covid",
        threshold=0.7,
        n_bootstrap=0,
    )
    # P(covid) = 0.9 0.6 0.2 0.1; threshold 0.7 -> only the first is covid.
    assert ev.metrics["sensitivity"] == pytest.approx(0.5)
    assert ev.metrics["specificity"] == pytest.approx(1.0)
    assert ev.positive_class == "covid"


def test_wilson_interval_known_values() -> None:
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(
        0.7634, abs=1e-4
    )
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_multiclass_one_vs_rest() -> None:
    y = [0, 0, 1, 1, 2, 2]
    proba = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.3, 0.6, 0.1],
            [0.1, 0.8, 0.1],
            [0.2, 0.7, 0.1],
            [0.1, 0.1, 0.8],
            [0.5, 0.2, 0.3],
        ]
    )
    ev = Evaluation.from_predictions(
        y, proba, class_names=["normal", "pneumonia", "covid"], n_bootstrap=0
    )
    assert ev.confusion_matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert ev.metrics["accuracy"] == pytest.approx(4 / 6)
    assert ev.per_class["pneumonia"]["sensitivity"] == pytest.approx(1.0)
    assert ev.per_class["pneumonia"]["ppv"] == pytest.approx(2 / 3)
    assert ev.per_class["covid"]["specificity"] == pytest.approx(1.0)
    assert ev.metrics["balanced_accuracy"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)


def test_serialisation_and_bad_shapes() -> None:
    ev = Evaluation.from_predictions(
        [0, 1], [0.2, 0.9], class_names=["a", "b"], n_bootstrap=0
    )
    data = ev.to_dict()
    assert data["confusion_matrix"] == [[1, 0], [0, 1]] and data["n"] == 2
    assert "| accuracy | 1.000 |" in ev.to_markdown()
    with pytest.raises(ValueError, match="2 labels but y_prob has 3 rows"):
        Evaluation.from_predictions([0, 1], [0.2, 0.9, 0.1], class_names=["a", "b"])


def plain_bootstrap(y, score, n, seed):
    """The hand-written loop `scipy.stats.bootstrap` replaced: one draw of
    indices per resample, one-class resamples skipped, 2.5/97.5 percentiles."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(seed)
    rocs, prs = [], []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        if y[idx].min() == y[idx].max():
            continue
        rocs.append(roc_auc_score(y[idx], score[idx]))
        prs.append(average_precision_score(y[idx], score[idx]))
    return {
        "roc_auc": tuple(np.percentile(rocs, [2.5, 97.5])),
        "pr_auc": tuple(np.percentile(prs, [2.5, 97.5])),
    }


@pytest.mark.parametrize(("n", "positives"), [(301, 0.5), (40, 0.1), (9, 0.3)])
def test_auc_intervals_are_those_of_the_plain_resampling_loop(
    n: int, positives: float
) -> None:
    rng = np.random.default_rng(n)
    y = (np.arange(n) < max(1, int(n * positives))).astype(int)
    score = np.round(np.clip(rng.normal(0.4 + 0.3 * y, 0.2), 0, 1), 2)  # with ties
    ev = Evaluation.from_predictions(
        y, score, class_names=["non", "covid"], n_bootstrap=200, seed=3
    )
    expected = plain_bootstrap(y, score, 200, 3)  # small sets: one-class resamples
    for key in ("roc_auc", "pr_auc"):
        np.testing.assert_allclose(ev.ci[key], expected[key], rtol=1e-12)


def test_patient_scores_average_a_patients_images() -> None:
    from covidxray.metrics import patient_scores

    proba = np.array([[0.2, 0.8], [0.6, 0.4], [0.9, 0.1], [0.5, 0.5]])
    y, mean = patient_scores([1, 1, 0, 0], proba, ["p", "p", "q", "p"])
    # p's images hold two classes: a row per class, in order of appearance
    assert y.tolist() == [1, 0, 0]
    np.testing.assert_allclose(mean[:, 1], [0.6, 0.1, 0.5])
    with pytest.raises(ValueError, match="one label, probability row and patient"):
        patient_scores([1], proba, ["p"])
