"""Figures: training curves, ROC curves, reliability diagrams, confusion
matrices, Grad-CAM grids.

matplotlib is imported only when a function here is called; install it with
the `plots` extra: `pip install "covidxray[plots]"`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .calibration import Reliability
from .metrics import Evaluation

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "plot_calibration",
    "plot_confusion_matrix",
    "plot_gradcam_grid",
    "plot_history",
    "plot_roc",
]


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (5, 4)) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            'Plotting needs matplotlib. Install it with: pip install "covidxray[plots]"'
        ) from exc
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _plain(text: object) -> str:
    """`text` as matplotlib draws it literally: a `$` would start mathtext
    (and an unpaired or odd one raise in `savefig`), so it is escaped."""
    return str(text).replace("$", r"\$")


def _save(fig: Figure, path: str | os.PathLike[str] | None) -> Figure:
    if path is not None:
        fig.savefig(os.fspath(path), format="png")
    return fig


def plot_history(
    history: Mapping[str, Sequence[float]] | Any,
    *,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Loss and metric curves per epoch, training against validation.

    Args:
        history: A `Classifier` (its `history_`) or a dict of lists per metric.
        path: Save the figure there as a PNG.

    Examples:
        >>> from covidxray.plots import plot_history
        >>> fig = plot_history({"loss": [0.7, 0.5], "val_loss": [0.72, 0.6]})
        >>> len(fig.axes)
        1
    """
    hist = dict(getattr(history, "history_", history))
    metrics = [k for k in hist if not k.startswith("val_")]
    if not metrics:
        raise ValueError(
            "The `history` argument of plot_history has no metric to plot."
        )
    fig, axes = _figure(1, len(metrics), (4 * len(metrics), 3.2))
    for ax, name in zip(axes[0], metrics, strict=True):
        epochs = np.arange(1, len(hist[name]) + 1)
        ax.plot(epochs, hist[name], marker="o", label="train")
        if f"val_{name}" in hist:
            ax.plot(epochs, hist[f"val_{name}"], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(_plain(name))
        ax.legend()
    return _save(fig, path)


def plot_roc(
    curves: Mapping[str, Evaluation | tuple[Sequence[int], Sequence[float]]],
    *,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """ROC curves of several models on one plot, with their AUC in the legend.

    Args:
        curves: Name to an `Evaluation` or to `(y_true, p_positive)`.
        path: Save the figure there as a PNG.

    Examples:
        >>> from covidxray.plots import plot_roc
        >>> fig = plot_roc({"model": ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])})
        >>> fig.axes[0].get_legend().get_texts()[0].get_text()
        'model (AUC 0.75)'
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, axes = _figure(size=(5, 4.5))
    ax = axes[0][0]
    for name, value in curves.items():
        if isinstance(value, Evaluation):
            pos = list(value.class_names).index(
                value.positive_class or value.class_names[1]
            )
            y = (value.y_true == pos).astype(int)
            score = value.y_score[:, pos]
        else:
            y = np.asarray(value[0]).astype(int)
            score = np.asarray(value[1], dtype=float)
        fpr, tpr, _ = roc_curve(y, score)
        ax.plot(fpr, tpr, label=f"{_plain(name)} (AUC {roc_auc_score(y, score):.2f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_title("ROC")
    ax.legend(loc="lower right")
    return _save(fig, path)


def _confidences(evaluation: Evaluation) -> np.ndarray:
    """The probabilities that the reliability curve of `evaluation` bins."""
    if len(evaluation.class_names) == 2:
        pos = list(evaluation.class_names).index(
            evaluation.positive_class or evaluation.class_names[1]
        )
        return np.asarray(evaluation.y_score[:, pos])
    return np.asarray(evaluation.y_score.max(axis=1))


def plot_calibration(
    evaluation: Evaluation | Reliability,
    *,
    path: str | os.PathLike[str] | None = None,
    title: str = "",
) -> Figure:
    """The reliability diagram: observed fraction against mean predicted
    probability per equal-count bin, with the diagonal of a calibrated model.

    Each point is sized by its bin's count and labelled with it (where
    labels would overlap, the first of the close bins); the ECE is
    in the title. Given an `Evaluation`, a histogram of its predicted
    probabilities sits below the diagram.

    Args:
        evaluation: An `Evaluation` (its `reliability`), or a `Reliability`.
        path: Save the figure there as a PNG.
        title: Text before the ECE in the title.

    Examples:
        >>> from covidxray import Evaluation
        >>> from covidxray.plots import plot_calibration
        >>> ev = Evaluation.from_predictions(
        ...     [0, 0, 1, 1], [0.1, 0.6, 0.7, 0.9], class_names=["non", "covid"],
        ...     n_bootstrap=0, n_bins=2)
        >>> plot_calibration(ev).axes[0].get_title()
        'Reliability (ECE 0.275)'
    """
    if isinstance(evaluation, Evaluation):
        curve = evaluation.reliability
        if curve is None:
            raise ValueError(
                "The `evaluation` argument of plot_calibration has no reliability "
                "curve (it was built without one)."
            )
        scores: np.ndarray | None = _confidences(evaluation)
    elif isinstance(evaluation, Reliability):
        curve, scores = evaluation, None
    else:
        raise TypeError(
            "The `evaluation` argument of plot_calibration must be an Evaluation "
            f"or a Reliability. Received: {type(evaluation).__name__}."
        )
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            'Plotting needs matplotlib. Install it with: pip install "covidxray[plots]"'
        ) from exc
    fig = Figure(figsize=(5, 5.4 if scores is not None else 4.6), dpi=100)
    fig.set_layout_engine("constrained")
    if scores is not None:
        ax, hist = fig.subplots(
            2, 1, sharex=True, gridspec_kw={"height_ratios": [4, 1]}
        )
    else:
        ax, hist = fig.subplots(1, 1), None
    ax.plot(
        [0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="calibrated"
    )
    counts = np.asarray(curve.count, dtype=float)
    sizes = 30 + 270 * counts / counts.max() if len(counts) else counts
    ax.plot(curve.mean_predicted, curve.observed, color="C0", linewidth=1)
    ax.scatter(
        curve.mean_predicted,
        curve.observed,
        s=sizes,
        color="C0",
        alpha=0.8,
        label="bins (size: images)",
        zorder=3,
    )
    last = -1.0
    for x, y, c in zip(curve.mean_predicted, curve.observed, curve.count, strict=True):
        if x - last < 0.06:
            continue  # labels of close bins would overlap: the first speaks
        last = x
        ax.annotate(
            str(c), (x, y), textcoords="offset points", xytext=(6, -10), fontsize=7
        )
    what = "positive" if curve.kind == "positive class" else "correct (top label)"
    ax.set_ylabel(f"observed fraction {what}")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    lead = f"{_plain(title)} " if title else "Reliability "
    ax.set_title(f"{lead}(ECE {curve.ece:.3f})")
    ax.legend(loc="best", fontsize=8)
    if hist is not None and scores is not None:
        hist.hist(scores, bins=20, range=(0, 1), color="C0", alpha=0.6)
        hist.set_ylabel("images", fontsize=8)
        hist.set_xlabel("predicted probability")
    else:
        ax.set_xlabel("mean predicted probability")
    return _save(fig, path)


def plot_confusion_matrix(
    evaluation: Evaluation,
    *,
    path: str | os.PathLike[str] | None = None,
    title: str = "",
) -> Figure:
    """The confusion matrix of an `Evaluation`, counts in each cell.

    Examples:
        >>> from covidxray import Evaluation
        >>> from covidxray.plots import plot_confusion_matrix
        >>> ev = Evaluation.from_predictions(
        ...     [0, 1, 1], [0.2, 0.7, 0.4], class_names=["non", "covid"], n_bootstrap=0)
        >>> plot_confusion_matrix(ev).axes[0].get_xlabel()
        'predicted'
    """
    fig, axes = _figure(size=(4.2, 3.8))
    ax = axes[0][0]
    matrix = evaluation.confusion_matrix
    ax.imshow(matrix, cmap="Blues")
    names = [_plain(n) for n in evaluation.class_names]
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    top = matrix.max() if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            str(count),
            ha="center",
            va="center",
            color="white" if count > top / 2 else "black",
        )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(_plain(title) if title else "Confusion matrix")
    return _save(fig, path)


def plot_gradcam_grid(
    images: Any,
    heatmaps: Any,
    titles: Sequence[str] | None = None,
    *,
    alpha: float = 0.4,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """A grid of images with their Grad-CAM heatmaps overlaid.

    Examples:
        >>> import numpy as np
        >>> from covidxray.plots import plot_gradcam_grid
        >>> fig = plot_gradcam_grid(np.zeros((3, 16, 16, 1)), np.ones((3, 16, 16)))
        >>> len(fig.axes)
        3
    """
    from .explain import overlay

    images = list(images)
    heatmaps = list(heatmaps)
    if len(images) != len(heatmaps):
        raise ValueError(f"Got {len(images)} images but {len(heatmaps)} heatmaps.")
    cols = min(4, max(1, len(images)))
    rows = (len(images) + cols - 1) // cols
    fig, axes = _figure(rows, cols, (3 * cols, 3 * rows))
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(images):
            ax.imshow(overlay(images[k], heatmaps[k], alpha=alpha))
            if titles is not None:
                ax.set_title(_plain(titles[k]), fontsize=9)
    return _save(fig, path)
