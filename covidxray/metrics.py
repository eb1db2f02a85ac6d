"""`Evaluation`: the metrics of a classifier on labelled data, with 95% CIs."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .calibration import DEFAULT_BINS, Reliability, bootstrap_ece, reliability_curve

if TYPE_CHECKING:
    from .data.records import Record

__all__ = [
    "Evaluation",
    "choose_threshold",
    "patient_scores",
    "wilson_interval",
]

_Z95 = 1.959963984540054


def wilson_interval(successes: int, total: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (95% by default).

    Examples:
        >>> lo, hi = wilson_interval(90, 100)
        >>> round(lo, 4), round(hi, 4)
        (0.8256, 0.9448)
    """
    if total == 0:
        return (math.nan, math.nan)
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _ratio(a: int, b: int) -> float:
    return a / b if b else math.nan


def _binary_counts(y: np.ndarray, pred: np.ndarray) -> dict[str, int]:
    return {
        "tp": int(np.sum((y == 1) & (pred == 1))),
        "fn": int(np.sum((y == 1) & (pred == 0))),
        "tn": int(np.sum((y == 0) & (pred == 0))),
        "fp": int(np.sum((y == 0) & (pred == 1))),
    }


def _rates(
    c: dict[str, int],
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    tp, fn, tn, fp = c["tp"], c["fn"], c["tn"], c["fp"]
    sens, spec = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    ppv, npv = _ratio(tp, tp + fp), _ratio(tn, tn + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    values = {
        "sensitivity": sens,
        "specificity": spec,
        "ppv": ppv,
        "npv": npv,
        "f1": f1,
    }
    cis = {
        "sensitivity": wilson_interval(tp, tp + fn),
        "specificity": wilson_interval(tn, tn + fp),
        "ppv": wilson_interval(tp, tp + fp),
        "npv": wilson_interval(tn, tn + fn),
    }
    return values, cis


def _auc_pair(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    if len(np.unique(y)) < 2:
        return (math.nan, math.nan)
    return float(roc_auc_score(y, score)), float(average_precision_score(y, score))


def _fast_roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties averaged."""
    from scipy.stats import rankdata

    ranks = rankdata(score)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _fast_average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Average precision over distinct thresholds, as scikit-learn computes it."""
    order = np.argsort(-score, kind="mergesort")
    s, yy = score[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(yy) - 1]
    tps = np.cumsum(yy)[last]
    precision = tps / (last + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _bootstrap_auc(
    y: np.ndarray, score: np.ndarray, n: int, seed: int
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of ROC AUC and average precision, by
    `scipy.stats.bootstrap` over paired (label, score) resamples.

    SciPy draws the `n` resamples from `numpy.random.default_rng(seed)` and
    computes both statistics on each; a resample that holds one class has no
    AUC and is left out before the 2.5th and 97.5th percentiles are taken (so
    SciPy's own interval, which would be NaN then, is not used). The bounds
    are identical to those of the loop this replaced (one `rng.integers` draw
    per resample, the same percentiles): same seed, same resamples, same
    numbers, in about the same time.
    """
    from scipy.stats import DegenerateDataWarning, bootstrap

    if n <= 0 or len(np.unique(y)) < 2:
        return {"roc_auc": (math.nan, math.nan), "pr_auc": (math.nan, math.nan)}

    def both(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        rows = np.atleast_2d(idx)
        out = np.full((2, len(rows)), np.nan)
        for j, row in enumerate(rows):
            yb, sb = y[row], score[row]
            if yb.min() != yb.max():
                out[:, j] = _fast_roc_auc(yb, sb), _fast_average_precision(yb, sb)
        return out if np.ndim(idx) > 1 else out[:, 0]

    with warnings.catch_warnings():
        # One-class resamples are NaN here and left out below, on purpose.
        warnings.simplefilter("ignore", DegenerateDataWarning)
        result = bootstrap(
            (np.arange(len(y)),),
            both,
            n_resamples=n,
            method="percentile",
            paired=True,
            vectorized=True,
            rng=np.random.default_rng(seed),
        )
    rocs, prs = result.bootstrap_distribution
    kept = ~np.isnan(rocs)
    rocs, prs = rocs[kept], prs[kept]
    return {
        "roc_auc": (float(np.percentile(rocs, 2.5)), float(np.percentile(rocs, 97.5))),
        "pr_auc": (float(np.percentile(prs, 2.5)), float(np.percentile(prs, 97.5))),
    }


def patient_scores(
    y: Sequence[int] | np.ndarray,
    proba: np.ndarray,
    patients: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """One row per patient: its class and the mean probability of its images.

    A CT volume gives hundreds of slices per patient, and slices of one
    patient are not independent: scored by slice, the sample size is
    overstated and the intervals are too narrow. Scored by patient, the
    bootstrap of `Evaluation.from_predictions` resamples patients. A patient
    whose images hold two classes gives one row per class. Patients keep the
    order in which they first appear.

    Args:
        y: Class index of each image.
        proba: Class probabilities of each image, shape (N, k).
        patients: The patient of each image (an image without one: its path).

    Returns:
        The class of each patient, shape (P,), and its mean probabilities,
        shape (P, k).

    Examples:
        >>> import numpy as np
        >>> y, p = patient_scores(
        ...     [1, 1, 0], np.array([[0.2, 0.8], [0.4, 0.6], [0.9, 0.1]]),
        ...     ["a", "a", "b"])
        >>> y.tolist(), p[:, 1].round(2).tolist()
        ([1, 0], [0.7, 0.1])
    """
    labels = np.asarray(y, dtype=int).reshape(-1)
    prob = np.asarray(proba, dtype=np.float64)
    if not len(labels) == len(prob) == len(patients):
        raise ValueError(
            f"patient_scores needs one label, probability row and patient per "
            f"image. Received {len(labels)}, {len(prob)} and {len(patients)}."
        )
    keys = list(zip(patients, labels.tolist(), strict=True))
    index = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    rows = np.array([index[key] for key in keys], dtype=int)
    sums = np.zeros((len(index), prob.shape[1]))
    np.add.at(sums, rows, prob)
    counts = np.bincount(rows, minlength=len(index))
    return np.array([c for _, c in index], dtype=int), sums / counts[:, None]


@dataclass
class Evaluation:
    """Metrics of a classifier on labelled data.

    For two classes the metrics are about the positive class at `threshold`.
    For more, sensitivity and the others are one-vs-rest per class (in
    `per_class`), and the headline figures are their macro averages.

    Attributes:
        metrics: accuracy, balanced_accuracy, sensitivity, specificity, ppv,
            npv, f1, roc_auc, pr_auc, brier, log_loss, and ece: the expected
            calibration error over `n_bins` equal-count bins (the positive
            class's probability for two classes, top-label confidence for
            more; see `covidxray.calibration`).
        ci: 95% intervals: Wilson for proportions, a seeded bootstrap for the
            AUCs and the ECE.
        confusion_matrix: Rows are true classes, columns predicted classes.
        support: Images per true class.
        per_class: One-vs-rest metrics per class (multi-class only).
        unavailable: Metrics that these data cannot measure, with the reason
            (a positives-only set has no specificity); their value is NaN in
            `metrics` and null in `to_dict`.
        meta: Provenance: library and TensorFlow versions, seed, data fingerprint.
        reliability: The reliability curve's points (`Reliability`: mean
            predicted probability, observed fraction and count per bin), or
            None in an `Evaluation` built without them.
        records: The dataset records scored, in the order of `y_true` and
            `y_score`, when `Classifier.evaluate` scored a dataset's images
            (empty for arrays, `tf.data` and `by="patient"`; not in `to_dict`).

    Examples:
        >>> import numpy as np
        >>> from covidxray import Evaluation
        >>> ev = Evaluation.from_predictions(
        ...     [0, 0, 0, 1, 1], [0.1, 0.6, 0.2, 0.9, 0.4],
        ...     class_names=["non", "covid"], n_bootstrap=0)
        >>> ev.confusion_matrix.tolist()
        [[2, 1], [1, 1]]
        >>> ev.metrics["sensitivity"], ev.metrics["specificity"]
        (0.5, 0.6666666666666666)
        >>> ev.reliability.count
        (1, 1, 1, 1, 1)
    """

    class_names: tuple[str, ...]
    positive_class: str | None
    threshold: float
    metrics: dict[str, float]
    ci: dict[str, tuple[float, float]]
    confusion_matrix: np.ndarray
    support: dict[str, int]
    y_true: np.ndarray = field(repr=False)
    y_score: np.ndarray = field(repr=False)
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    reliability: Reliability | None = None
    records: tuple[Record, ...] = field(default=(), repr=False, compare=False)

    @property
    def notes(self) -> list[str]:
        """What was scored and left out, as Markdown lines: the scope,
        patients beside images, images seen in training left out (or kept),
        near-copies kept, an overlap that could not be checked."""
        return [line for line in _scope_lines(self.meta) if line]

    def __getattr__(self, name: str) -> float:
        metrics = self.__dict__.get("metrics", {})
        if name in metrics:
            return float(metrics[name])
        raise AttributeError(f"'Evaluation' object has no attribute {name!r}")

    @classmethod
    def from_predictions(
        cls,
        y_true: Sequence[int] | np.ndarray,
        y_prob: Sequence[float] | np.ndarray,
        *,
        class_names: Sequence[str],
        positive_class: str | None = None,
        threshold: float = 0.5,
        n_bootstrap: int = 1000,
        seed: int = 0,
        meta: dict[str, Any] | None = None,
        n_bins: int = DEFAULT_BINS,
    ) -> Evaluation:
        """Compute every metric from true class indices and probabilities.

        Args:
            y_true: Class indices, shape (N,).
            y_prob: For two classes, P(class 1) of shape (N,), or (N, 2); for
                more, shape (N, k).
            class_names: Class names, index order.
            positive_class: For two classes, the positive class (default:
                `class_names[1]`).
            threshold: Decision threshold on P(positive) (two classes).
            n_bootstrap: Bootstrap resamples for the AUC and ECE intervals
                (0: none).
            seed: Seed of the bootstrap.
            meta: Provenance to keep with the numbers.
            n_bins: Equal-count bins of the ECE and the reliability curve.
        """
        from sklearn.metrics import confusion_matrix, log_loss

        names = tuple(class_names)
        k = len(names)
        y = np.asarray(y_true, dtype=int).reshape(-1)
        prob = np.asarray(y_prob, dtype=np.float64)
        if k == 2:
            pos = names.index(positive_class) if positive_class else 1
            p1 = prob[:, 1] if prob.ndim == 2 else prob.reshape(-1)
            p_pos = p1 if pos == 1 else 1.0 - p1
            full = np.stack([1 - p1, p1], axis=1)
        else:
            full = prob
            if full.ndim != 2 or full.shape[1] != k:
                raise ValueError(
                    f"Expected probabilities of shape (N, {k}) for {k} classes. "
                    f"Received shape {prob.shape}."
                )
        if len(full) != len(y):
            raise ValueError(
                f"y_true has {len(y)} labels but y_prob has {len(full)} rows."
            )
        if len(y) == 0:
            raise ValueError("Cannot evaluate on zero images.")
        if (
            isinstance(n_bootstrap, bool)
            or not isinstance(n_bootstrap, int)
            or (n_bootstrap < 0)
        ):
            raise ValueError(
                "The `n_bootstrap` argument must be an integer >= 0 (0: no "
                f"intervals). Received: {n_bootstrap!r}."
            )
        clipped = np.clip(full, 1e-7, 1 - 1e-7)
        metrics: dict[str, float] = {}
        ci: dict[str, tuple[float, float]] = {}
        per_class: dict[str, dict[str, float]] = {}
        if k == 2:
            is_pos = (y == pos).astype(int)
            pred_pos = (p_pos >= threshold).astype(int)
            pred = np.where(pred_pos == 1, pos, 1 - pos)
            counts = _binary_counts(is_pos, pred_pos)
            values, cis = _rates(counts)
            metrics.update(values)
            ci.update(cis)
            metrics["roc_auc"], metrics["pr_auc"] = _auc_pair(is_pos, p_pos)
            ci.update(_bootstrap_auc(is_pos, p_pos, n_bootstrap, seed))
            metrics["brier"] = float(np.mean((p_pos - is_pos) ** 2))
            metrics["balanced_accuracy"] = (
                values["sensitivity"] + values["specificity"]
            ) / 2
        else:
            pred = np.argmax(full, axis=1)
            for i, name in enumerate(names):
                counts = _binary_counts((y == i).astype(int), (pred == i).astype(int))
                values, _ = _rates(counts)
                roc, pr = _auc_pair((y == i).astype(int), full[:, i])
                per_class[name] = {**values, "roc_auc": roc, "pr_auc": pr}
            for key in (
                "sensitivity",
                "specificity",
                "ppv",
                "npv",
                "f1",
                "roc_auc",
                "pr_auc",
            ):
                metrics[key] = float(np.nanmean([per_class[n][key] for n in names]))
            metrics["balanced_accuracy"] = metrics["sensitivity"]
            onehot = np.eye(k)[y]
            metrics["brier"] = float(np.mean(np.sum((full - onehot) ** 2, axis=1)))
        if k == 2:
            confidence, hit, kind = p_pos, is_pos, "positive class"
        else:
            confidence, hit, kind = full.max(axis=1), pred == y, "top label"
        curve = reliability_curve(confidence, hit, n_bins=n_bins, kind=kind)
        metrics["ece"] = curve.ece
        if n_bootstrap:
            ci["ece"] = bootstrap_ece(
                confidence, hit, n_bins=n_bins, n=n_bootstrap, seed=seed
            )
        unavailable = _unavailable(names, y, pos if k == 2 else None)
        for key in unavailable:
            metrics[key] = math.nan
            ci.pop(key, None)
        correct = int(np.sum(pred == y))
        metrics["accuracy"] = correct / len(y)
        ci["accuracy"] = wilson_interval(correct, len(y))
        metrics["log_loss"] = float(log_loss(y, clipped, labels=list(range(k))))
        matrix = confusion_matrix(y, pred, labels=list(range(k)))
        support = {name: int(np.sum(y == i)) for i, name in enumerate(names)}
        return cls(
            class_names=names,
            positive_class=(names[pos] if k == 2 else positive_class),
            threshold=float(threshold),
            metrics={key: float(v) for key, v in sorted(metrics.items())},
            ci=ci,
            confusion_matrix=matrix,
            support=support,
            y_true=y,
            y_score=full,
            per_class=per_class,
            unavailable=unavailable,
            meta=dict(meta or {}),
            reliability=curve,
        )

    def to_dict(self) -> dict[str, Any]:
        """Metrics, intervals, confusion matrix, support and provenance as a dict."""
        return {
            "class_names": list(self.class_names),
            "positive_class": self.positive_class,
            "threshold": self.threshold,
            "n": int(len(self.y_true)),
            "metrics": {k: _clean(v) for k, v in self.metrics.items()},
            "ci95": {k: [_clean(a), _clean(b)] for k, (a, b) in self.ci.items()},
            "confusion_matrix": self.confusion_matrix.tolist(),
            "support": self.support,
            "per_class": {
                c: {k: _clean(v) for k, v in m.items()}
                for c, m in self.per_class.items()
            },
            "unavailable": dict(self.unavailable),
            "meta": self.meta,
            "reliability": (
                self.reliability.to_dict() if self.reliability is not None else None
            ),
        }

    def to_markdown(self) -> str:
        """A Markdown table of the metrics with their 95% intervals."""
        lines = [f"{line}  " for line in _scope_lines(self.meta)]
        lines += ["| metric | value | 95% CI |", "|---|---|---|"]
        for key, value in self.metrics.items():
            if key in self.unavailable:
                lines.append(f"| {key} | n/a | {self.unavailable[key]} |")
                continue
            lo, hi = self.ci.get(key, (math.nan, math.nan))
            interval = "" if math.isnan(lo) else f"{lo:.3f} - {hi:.3f}"
            lines.append(f"| {key} | {value:.3f} | {interval} |")
        header = " | ".join(self.class_names)
        lines += ["", f"Confusion matrix (rows true, columns predicted: {header}):", ""]
        lines += [
            "    " + " ".join(f"{v:6d}" for v in row) for row in self.confusion_matrix
        ]
        if self.reliability is not None and self.reliability.count:
            lines += ["", *_reliability_lines(self.reliability)]
        return "\n".join(lines) + "\n"


def _reliability_lines(curve: Reliability) -> list[str]:
    lines = [
        f"Reliability ({curve.kind}, {len(curve.count)} equal-count bins; "
        f"ECE {curve.ece:.3f}):",
        "",
        "| bin | images | mean predicted | observed |",
        "|---|---|---|---|",
    ]
    rows = zip(curve.mean_predicted, curve.observed, curve.count, strict=True)
    for i, (p, o, c) in enumerate(rows, 1):
        lines.append(f"| {i} | {c} | {p:.3f} | {o:.3f} |")
    return lines


_NEEDS_NEGATIVES = ("specificity", "ppv", "npv", "f1", "roc_auc", "pr_auc")
_NEEDS_POSITIVES = ("sensitivity", "ppv", "npv", "f1", "roc_auc", "pr_auc")


def _unavailable(
    names: tuple[str, ...], y: np.ndarray, pos: int | None
) -> dict[str, str]:
    """The metrics that data with a class missing cannot measure, and why."""
    present = set(np.unique(y).tolist())
    if pos is None:  # multi-class: the AUCs of an absent class are undefined
        missing = [n for i, n in enumerate(names) if i not in present]
        if not missing:
            return {}
        reason = f"no images of {', '.join(missing)} in the data"
        every = ("sensitivity", "specificity", "ppv", "npv", "f1", "roc_auc", "pr_auc")
        return {key: reason for key in (*every, "balanced_accuracy")}
    if pos not in present:
        reason = f"no {names[pos]} images in the data"
        keys = _NEEDS_POSITIVES
    elif 1 - pos not in present:
        reason = f"no {names[1 - pos]} images in the data"
        keys = _NEEDS_NEGATIVES
    else:
        return {}
    return {key: reason for key in (*keys, "balanced_accuracy")}


def _scope_lines(meta: dict[str, Any]) -> list[str]:
    """What was scored, for the top of a report."""
    lines = []
    if meta.get("scope"):
        lines.append(str(meta["scope"]))
    lines += _sample_lines(meta)
    if meta.get("include_seen") and meta.get("n_seen"):
        lines.append(
            f"**Includes {meta['n_seen']} images seen in training or validation: "
            "these numbers are inflated.**"
        )
    elif meta.get("n_seen"):
        lines.append(
            f"Left out {meta['n_seen']} images seen in training or validation "
            f"({meta.get('seen_reason', 'same content')})."
        )
    if meta.get("n_near_seen"):
        lines.append(
            f"{meta['n_near_seen']} images look like training images (perceptual "
            "hash) and were kept: check them (`meta['near_seen_files']`)."
        )
    if meta.get("seen_checked") is False:
        lines.append(
            "The model has no record of its training images: overlap unchecked."
        )
    return lines + ([""] if lines else [])


def _sample_lines(meta: dict[str, Any]) -> list[str]:
    """Patients beside images, and a modality the model never learnt."""
    lines = []
    n, patients = meta.get("n"), meta.get("n_patients")
    if meta.get("by") == "patient":
        lines.append(
            f"Scored by patient: {n} patients, each by the mean probability of "
            f"its {meta.get('n_images')} images in all; the intervals resample "
            "patients."
        )
    elif patients and n and patients < n:
        lines.append(
            f"{n} images of {patients} patients: the intervals count images as "
            "independent and are too narrow; evaluate(by='patient') "
            "(`--by patient`) scores patients."
        )
    trained = meta.get("training_modalities") or []
    other = sorted(set(meta.get("modalities") or {}) - set(trained))
    if trained and other:
        lines.append(
            f"**The model was trained on {', '.join(trained)} images and scored "
            f"{', '.join(other)} images: these numbers say little.**"
        )
    return lines


def _clean(value: float) -> float | None:
    return (
        None
        if value is None or (isinstance(value, float) and math.isnan(value))
        else value
    )


def choose_threshold(
    is_positive: np.ndarray, score: np.ndarray, target: Any = "youden"
) -> float:
    """The decision threshold on `score` that meets `target` on these labels.

    Args:
        is_positive: Boolean labels.
        score: Scores (probabilities of the positive class).
        target: `"youden"` maximises sensitivity + specificity - 1;
            `{"sensitivity": x}` gives the highest threshold whose sensitivity
            is at least x; `{"specificity": x}` the lowest threshold whose
            specificity is at least x.

    Examples:
        >>> import numpy as np
        >>> y = np.array([False, False, True, True])
        >>> choose_threshold(y, np.array([0.1, 0.4, 0.35, 0.8]))
        0.8
        >>> choose_threshold(y, np.array([0.1, 0.4, 0.35, 0.8]), {"sensitivity": 1.0})
        0.35
    """
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(is_positive, score)
    thresholds = np.minimum(thresholds, 1.0)  # roc_curve's first is +inf
    error = (
        "The `target` argument of tune_threshold must be 'youden', "
        f"{{'sensitivity': x}} or {{'specificity': x}}. Received: {target!r}."
    )
    if isinstance(target, str):
        if target != "youden":
            raise ValueError(error)
        return float(thresholds[int(np.argmax(tpr - fpr))])
    if not isinstance(target, Mapping) or len(target) != 1:
        raise ValueError(error)
    ((key, value),) = target.items()
    if key == "sensitivity":
        ok = np.nonzero(tpr >= value)[0]
        best = int(ok[0]) if len(ok) else len(tpr) - 1
    elif key == "specificity":
        ok = np.nonzero(1 - fpr >= value)[0]
        best = int(ok[-1]) if len(ok) else 0
    else:
        raise ValueError(error)
    return float(thresholds[best])
