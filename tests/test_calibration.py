"""Tests of the ECE, its interval and the reliability curve
(`covidxray.calibration`), and of how `Evaluation` carries them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from covidxray import Evaluation
from covidxray.calibration import (
    bootstrap_ece,
    expected_calibration_error,
    reliability_curve,
)


def calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels drawn from Bernoulli(p): calibrated by design."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=n)
    return p, (rng.uniform(size=n) < p).astype(int)


def test_a_hand_computed_example() -> None:
    # Sorted: [0.1, 0.3 | 0.6, 0.9], labels [0, 1 | 0, 1]. Bin 1: mean 0.2,
    # observed 0.5; bin 2: mean 0.75, observed 0.5. ECE = (2*0.3 + 2*0.25)/4.
    p, y = [0.9, 0.1, 0.6, 0.3], [1, 0, 0, 1]
    curve = reliability_curve(p, y, n_bins=2)
    assert curve.mean_predicted == pytest.approx((0.2, 0.75))
    assert curve.observed == (0.5, 0.5)
    assert curve.count == (2, 2)
    assert expected_calibration_error(p, y, n_bins=2) == pytest.approx(0.275)
    assert curve.ece == pytest.approx(0.275)


def test_equal_count_bins_have_equal_counts() -> None:
    p, y = calibrated(1003, seed=1)
    curve = reliability_curve(p, y, n_bins=10)
    assert len(curve.count) == 10 and sum(curve.count) == 1003
    assert max(curve.count) - min(curve.count) <= 1
    # bins follow the sorted probabilities: their means increase
    assert list(curve.mean_predicted) == sorted(curve.mean_predicted)
    # fewer images than bins: one bin per image
    assert reliability_curve([0.2, 0.4, 0.9], [0, 1, 1]).count == (1, 1, 1)


def test_a_calibrated_sample_scores_near_zero_and_its_interval_covers_it() -> None:
    p, y = calibrated(2000, seed=0)
    ece = expected_calibration_error(p, y)
    lo, hi = bootstrap_ece(p, y, n=300, seed=0)
    assert ece < 0.04
    assert lo <= ece <= hi < 0.08


def test_a_miscalibrated_sample_scores_high_with_a_separate_interval() -> None:
    p, y = calibrated(2000, seed=0)
    shifted = p**3  # far too low: labels were drawn from p
    ece = expected_calibration_error(shifted, y)
    lo, hi = bootstrap_ece(shifted, y, n=300, seed=0)
    assert ece > 0.2
    assert lo <= ece <= hi
    assert lo > bootstrap_ece(p, y, n=300, seed=0)[1]


def test_the_interval_is_seeded_and_none_without_resamples() -> None:
    p, y = calibrated(300, seed=2)
    assert bootstrap_ece(p, y, n=100, seed=3) == bootstrap_ece(p, y, n=100, seed=3)
    assert all(math.isnan(v) for v in bootstrap_ece(p, y, n=0))


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0.5], [1], n_bins=0)
    with pytest.raises(ValueError, match="one outcome per probability"):
        reliability_curve([0.5, 0.2], [1])


def test_evaluation_carries_ece_interval_and_points_into_json() -> None:
    p, y = calibrated(400, seed=4)
    ev = Evaluation.from_predictions(
        y, p, class_names=["non", "covid"], n_bootstrap=200, seed=0
    )
    assert ev.metrics["ece"] == pytest.approx(expected_calibration_error(p, y))
    lo, hi = ev.ci["ece"]
    assert lo <= ev.metrics["ece"] <= hi
    assert ev.reliability is not None and sum(ev.reliability.count) == 400
    doc = json.loads(json.dumps(ev.to_dict()))
    assert doc["metrics"]["ece"] == pytest.approx(ev.metrics["ece"])
    assert doc["ci95"]["ece"] == [pytest.approx(lo), pytest.approx(hi)]
    points = doc["reliability"]
    assert points["binning"] == "equal-count" and points["kind"] == "positive class"
    assert len(points["mean_predicted"]) == len(points["observed"]) == 10
    assert sum(points["count"]) == 400
    assert "| ece |" in ev.to_markdown() and "equal-count bins" in ev.to_markdown()


def test_a_negative_positive_class_bins_its_own_probability() -> None:
    # positive class at index 0: the curve is of P(class 0). 303 images in 10
    # bins: the bins of p and of 1 - p differ, so binning the wrong class's
    # probability gives other points.
    p, y = calibrated(303, seed=5)
    ev = Evaluation.from_predictions(
        1 - y,
        np.column_stack([p, 1 - p]),
        class_names=["covid", "non"],
        positive_class="covid",
        n_bootstrap=0,
    )
    right, wrong = reliability_curve(p, y), reliability_curve(1 - p, 1 - y)
    assert ev.reliability is not None
    assert ev.reliability.mean_predicted == pytest.approx(right.mean_predicted)
    assert right.mean_predicted != pytest.approx(wrong.mean_predicted)
    assert ev.metrics["ece"] == pytest.approx(expected_calibration_error(p, y))
    assert "ece" not in ev.ci


def test_multi_class_uses_top_label_confidence() -> None:
    proba = np.array(
        [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]]
    )
    y = np.array([0, 1, 0, 1])  # right, right, wrong, wrong
    ev = Evaluation.from_predictions(
        y, proba, class_names=["a", "b", "c"], n_bootstrap=0, n_bins=2
    )
    assert ev.reliability is not None and ev.reliability.kind == "top label"
    # sorted confidences [0.4, 0.6 | 0.7, 0.8], correct [0, 0 | 1, 1]
    assert ev.metrics["ece"] == pytest.approx((2 * 0.5 + 2 * 0.25) / 4)
