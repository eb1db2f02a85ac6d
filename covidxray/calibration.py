"""Calibration: the expected calibration error (ECE) over equal-count bins, its
bootstrap interval, and the reliability curve's points.

A model is calibrated when, of the images it gives a probability of about
0.8, about 80% are positive. The predictions are sorted and cut into
`n_bins` bins of equal count (the counts differ by at most one); each bin has
a mean predicted probability and an observed fraction positive, and

    ECE = sum over bins b of (n_b / N) * |mean p_b - fraction positive_b|.

For two classes, p is the probability of the positive class and "positive"
its label. For more, the ECE is the standard top-label one: p is the
highest probability of each image and "positive" means that its class was
right. The binned ECE is biased upward on small samples (a perfectly
calibrated model scores about 0.03 on 1000 images with 10 bins), and its
interval is the bootstrap percentile interval of that estimate. See
`docs/guides/training.md`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_BINS",
    "Reliability",
    "bootstrap_ece",
    "expected_calibration_error",
    "reliability_curve",
]

#: Bins of the ECE and of the reliability diagram.
DEFAULT_BINS = 10


@dataclass(frozen=True)
class Reliability:
    """The points of a reliability diagram: one per equal-count bin.

    Attributes:
        mean_predicted: Mean predicted probability of each bin.
        observed: Fraction of each bin that is positive (top-label: correct).
        count: Images in each bin.
        kind: `"positive class"` (two classes) or `"top label"` (more).
        ece: The expected calibration error of these bins.
    """

    mean_predicted: tuple[float, ...]
    observed: tuple[float, ...]
    count: tuple[int, ...]
    kind: str = "positive class"

    @property
    def ece(self) -> float:
        """Sum over bins of n_b / N * |mean p_b - observed_b|."""
        n = sum(self.count)
        if n == 0:
            return math.nan
        return float(
            sum(
                c * abs(p - o)
                for p, o, c in zip(
                    self.mean_predicted, self.observed, self.count, strict=True
                )
            )
            / n
        )

    def to_dict(self) -> dict[str, Any]:
        """The points as lists, for JSON."""
        return {
            "kind": self.kind,
            "bins": len(self.count),
            "binning": "equal-count",
            "mean_predicted": list(self.mean_predicted),
            "observed": list(self.observed),
            "count": list(self.count),
        }


def _check(
    p: Sequence[float] | np.ndarray, hit: Sequence[int] | np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray]:
    prob = np.asarray(p, dtype=np.float64).reshape(-1)
    outcome = np.asarray(hit, dtype=np.float64).reshape(-1)
    if len(prob) != len(outcome):
        raise ValueError(
            f"Calibration needs one outcome per probability. Received "
            f"{len(prob)} probabilities and {len(outcome)} outcomes."
        )
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(
            f"The `n_bins` argument must be an integer >= 1. Received: {n_bins!r}."
        )
    return prob, outcome


def reliability_curve(
    p: Sequence[float] | np.ndarray,
    hit: Sequence[int] | np.ndarray,
    *,
    n_bins: int = DEFAULT_BINS,
    kind: str = "positive class",
) -> Reliability:
    """The reliability curve over equal-count bins of sorted probabilities.

    Args:
        p: Predicted probabilities, shape (N,).
        hit: 1 where the image is positive (or, top-label, correctly
            classified), 0 otherwise.
        n_bins: Bins (at most one per image); their counts differ by at most 1.
        kind: What `p` is, kept with the points.

    Returns:
        A `Reliability`; empty (no bins) for no images.

    Examples:
        >>> curve = reliability_curve([0.1, 0.2, 0.8, 0.9], [0, 1, 1, 1], n_bins=2)
        >>> curve.count, curve.observed
        ((2, 2), (0.5, 1.0))
        >>> round(curve.ece, 3)  # (2 * |0.15 - 0.5| + 2 * |0.85 - 1.0|) / 4
        0.25
    """
    prob, outcome = _check(p, hit, n_bins)
    order = np.argsort(prob, kind="mergesort")
    bins = [b for b in np.array_split(order, min(n_bins, len(order))) if len(b)]
    return Reliability(
        mean_predicted=tuple(float(prob[b].mean()) for b in bins),
        observed=tuple(float(outcome[b].mean()) for b in bins),
        count=tuple(len(b) for b in bins),
        kind=kind,
    )


def expected_calibration_error(
    p: Sequence[float] | np.ndarray,
    hit: Sequence[int] | np.ndarray,
    *,
    n_bins: int = DEFAULT_BINS,
) -> float:
    """ECE over equal-count bins: sum of n_b / N * |mean p_b - observed_b|.

    Examples:
        >>> p, y = [0.2, 0.2, 0.8, 0.8], [0, 0, 1, 1]
        >>> round(expected_calibration_error(p, y, n_bins=2), 6)
        0.2
    """
    prob, outcome = _check(p, hit, n_bins)
    return _ece(prob, outcome, n_bins)


def _ece(prob: np.ndarray, outcome: np.ndarray, n_bins: int) -> float:
    if len(prob) == 0:
        return math.nan
    return float(_ece_rows(prob[None, :], outcome[None, :], n_bins)[0])


def _ece_rows(prob: np.ndarray, outcome: np.ndarray, n_bins: int) -> np.ndarray:
    """The ECE of each row of (R, N) probabilities and outcomes, with the bins
    of `reliability_curve` (a stable sort, then `numpy.array_split`'s sizes)."""
    n = prob.shape[1]
    order = np.argsort(prob, axis=1, kind="mergesort")
    p = np.take_along_axis(prob, order, axis=1)
    o = np.take_along_axis(outcome, order, axis=1)
    sizes = np.array([len(b) for b in np.array_split(np.arange(n), min(n_bins, n))])
    edges = np.r_[0, np.cumsum(sizes)]
    zero = np.zeros((len(p), 1))
    cp = np.concatenate([zero, np.cumsum(p, axis=1)], axis=1)[:, edges]
    co = np.concatenate([zero, np.cumsum(o, axis=1)], axis=1)[:, edges]
    return np.abs(np.diff(cp, axis=1) - np.diff(co, axis=1)).sum(axis=1) / n


def bootstrap_ece(
    p: Sequence[float] | np.ndarray,
    hit: Sequence[int] | np.ndarray,
    *,
    n_bins: int = DEFAULT_BINS,
    n: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """95% percentile interval of the ECE over `n` paired (probability,
    outcome) resamples, drawn from `numpy.random.default_rng(seed)` (one
    `rng.integers` draw per resample, as the AUC intervals of `Evaluation`).

    Returns (nan, nan) for `n` = 0 or fewer than two images.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> p = rng.uniform(size=500)
        >>> lo, hi = bootstrap_ece(p, rng.uniform(size=500) < p, n=200)
        >>> 0 < lo < hi < 0.15
        True
    """
    prob, outcome = _check(p, hit, n_bins)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"The `n` argument must be an integer >= 0. Received: {n!r}.")
    if n == 0 or len(prob) < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    size = len(prob)
    chunk = max(1, 2_000_000 // size)  # bounded memory on large sets
    dist = []
    for start in range(0, n, chunk):
        rows = rng.integers(0, size, (min(chunk, n - start), size))
        dist.append(_ece_rows(prob[rows], outcome[rows], n_bins))
    values = np.concatenate(dist)
    return (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))
