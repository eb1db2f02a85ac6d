"""Evaluations that separate the source from the disease.

- `evaluate_by_source`: one evaluation per source. In a source that holds both
  classes, no source cue can tell them apart, so its ROC AUC is the number a
  shortcut cannot inflate.
- `leave_one_source_out`: for each source, train on all the others and
  evaluate on the one left out: how a model does on a source it never saw.

A source with one class gets the metrics one class can give (sensitivity for
positives only, specificity for negatives only); the others are reported as
unavailable, with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from ._seen import TrainingRecord
from .classifier import Classifier
from .data.dataset import XrayDataset
from .errors import DataError
from .features import FeatureCache
from .metrics import Evaluation

logger = logging.getLogger("covidxray")

__all__ = ["SourceEvaluation", "evaluate_by_source", "leave_one_source_out"]

_HEADLINE = ("sensitivity", "specificity", "roc_auc")


@dataclass
class SourceEvaluation:
    """Evaluations per source.

    Attributes:
        kind: `"within-source"` or `"leave-one-source-out"`.
        evaluations: Source name -> its `Evaluation`.
        trained_on: Source name -> the sources the model it was scored with
            was trained on.
        counts: Source name -> images scored per class.
        skipped: Source name -> why it has no evaluation.
    """

    kind: str
    evaluations: dict[str, Evaluation] = field(default_factory=dict)
    trained_on: dict[str, list[str]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "kind": self.kind,
            "sources": {
                name: {
                    "trained_on": self.trained_on.get(name, []),
                    "counts": self.counts.get(name, {}),
                    **ev.to_dict(),
                }
                for name, ev in self.evaluations.items()
            },
            "skipped": self.skipped,
        }

    def to_markdown(self) -> str:
        """One row per source: sensitivity, specificity and ROC AUC with 95%
        intervals; metrics a source cannot give are shown as a dash."""
        title = {
            "within-source": "Evaluation within each source",
            "leave-one-source-out": "Leave one source out",
        }.get(self.kind, self.kind)
        lines = [
            f"# {title}",
            "",
            "| source | images | trained on | sensitivity | specificity | ROC AUC |",
            "|---|---|---|---|---|---|",
        ]
        notes: list[str] = []
        for name, ev in self.evaluations.items():
            cells = []
            for metric in _HEADLINE:
                value = ev.metrics.get(metric, float("nan"))
                if not np.isfinite(value):
                    cells.append("—")
                    continue
                low, high = ev.ci.get(metric, (float("nan"), float("nan")))
                interval = f" [{low:.2f}, {high:.2f}]" if np.isfinite(low) else ""
                cells.append(f"{value:.3f}{interval}")
            counts = ", ".join(f"{k} {v}" for k, v in self.counts.get(name, {}).items())
            trained = ", ".join(self.trained_on.get(name, [])) or "—"
            lines.append(
                f"| {name} | {counts} | {trained} | " + " | ".join(cells) + " |"
            )
            for metric, reason in ev.unavailable.items():
                if metric in _HEADLINE:
                    notes.append(f"- {name}, {metric}: {reason}")
        for name, reason in self.skipped.items():
            notes.append(f"- {name}: not evaluated, {reason}")
        if notes:
            lines += ["", *notes]
        lines += [
            "",
            "95% intervals: Wilson for proportions, bootstrap for ROC AUC. Within a "
            "source that holds both classes, the ROC AUC is the number no source "
            "cue can inflate.",
        ]
        return "\n".join(lines) + "\n"


def _sources(data: XrayDataset) -> list[str]:
    return list(data.source_table())


def evaluate_by_source(
    clf: Classifier,
    data: XrayDataset,
    *,
    split: str = "test",
    include_seen: bool = False,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> SourceEvaluation:
    """Evaluate a fitted classifier separately on each source of `data`.

    Args:
        clf: A fitted `Classifier`.
        data: A dataset with a `source` on every record (several sources, or
            one whose layout names sources, such as COVIDx).
        split: The split scored in each source (`"all"` for every image).
        include_seen: Keep images the model saw in training (see
            `Classifier.evaluate`).
        n_bootstrap: Bootstrap resamples for the AUC intervals.
        seed: Seed of the bootstrap.

    Returns:
        A `SourceEvaluation`; sources with no image to score are in `skipped`.

    Examples:
        >>> import tempfile
        >>> from covidxray import Classifier, build_cnn, load_dataset
        >>> from covidxray.crossval import evaluate_by_source
        >>> from covidxray.datasets import make_synthetic
        >>> a = make_synthetic(tempfile.mkdtemp(), n_per_class=8, image_size=(48, 48))
        >>> b = make_synthetic(
        ...     tempfile.mkdtemp(), n_per_class=6, image_size=(48, 48), seed=1)
        >>> data = load_dataset({"a": a, "b": b}, image_size=(48, 48),
        ...                     test_split=0.3)
        >>> clf = Classifier(build_cnn((48, 48, 1)), class_names=data.class_names)
        >>> report = evaluate_by_source(clf.fit(data, epochs=1, verbose=0), data,
        ...                             n_bootstrap=0)
        >>> sorted(report.evaluations)
        ['a', 'b']
    """
    result = SourceEvaluation(kind="within-source")
    record = getattr(clf, "training_record_", None)
    trained = sorted({str(s) for s in _trained_sources(record)})
    for name in _sources(data):
        part = data.subset([name])
        records = part.records if split == "all" else part.split_records(split)
        if not records:
            result.skipped[name] = f"it has no {split} split"
            continue
        try:
            ev = clf.evaluate(
                part,
                split=split,
                include_seen=include_seen,
                n_bootstrap=n_bootstrap,
                seed=seed,
            )
        except DataError as exc:
            result.skipped[name] = str(exc)
            continue
        result.evaluations[name] = ev
        result.trained_on[name] = trained
        result.counts[name] = dict(ev.support)  # the images scored
    return result


def _trained_sources(record: TrainingRecord | None) -> list[str]:
    """The source names a training record holds (none for no record)."""
    if record is None:
        return []
    names = []
    for entry in record.info.get("datasets", []):
        names += _source_names(entry)
    return names


def _source_names(entry: Mapping[str, Any]) -> list[str]:
    """The source names of one dataset of a training record: its structured
    `sources`, or in a file saved before they were kept, its display text
    (`"name=path, name=path"` for several sources, a path or names else)."""
    if "sources" in entry:
        return [str(s["name"]) for s in entry["sources"]]
    names = []
    for part in str(entry.get("source", "")).split(", "):
        names.append(part.split("=")[0] if "=" in part else part)
    return names


def leave_one_source_out(
    data: XrayDataset,
    build_model: Callable[[tuple[int, int, int]], keras.Model],
    *,
    epochs: int = 10,
    augmenter: Callable[[int], Any] | None = None,
    classifier_kwargs: Mapping[str, Any] | None = None,
    fit_kwargs: Mapping[str, Any] | None = None,
    sources: Sequence[str] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    verbose: str | int = 0,
) -> SourceEvaluation:
    """For each source, train on all the others and evaluate on it.

    Each model trains on the other sources' training splits (their
    validation splits give `val_loss`, which picks the best epoch only with
    `early_stopping` or `checkpoint` in `fit_kwargs`) and is scored on every
    image of the source left out. Copies across sources (and sub-sources) were
    removed when `data` was loaded with `deduplicate=True`, so the source left
    out holds no copy of a training image.

    Args:
        data: A dataset of two or more sources.
        build_model: Makes a fresh Keras model for an input shape, e.g.
            `build_cnn` or `lambda shape: build_pretrained("resnet50",
            input_shape=shape, weights=None)`.
        epochs: Epochs per model.
        augmenter: Makes the augmenter of a run from its seed (e.g.
            `Augmenter.xray`), or None.
        classifier_kwargs: More arguments of `Classifier` (e.g.
            `spectral_decoupling`). The runs share one `FeatureCache` (or the
            `feature_cache` given here), so a frozen backbone whose weights are
            the same in every run (pretrained, or built after the same seed)
            runs once per image.
        fit_kwargs: More arguments of `Classifier.fit`.
        sources: The sources to leave out in turn; default: all.
        n_bootstrap: Bootstrap resamples for the AUC intervals.
        seed: Seed of the initial weights, the training and the bootstrap.
        verbose: Keras verbosity of each fit.

    Returns:
        A `SourceEvaluation` of kind `"leave-one-source-out"`. A source whose
        removal leaves training data with one class is in `skipped`.

    Raises:
        ValueError: `data` has fewer than two sources, or `sources` names one
            it does not have.
    """
    names = _sources(data)
    if len(names) < 2:
        raise ValueError(
            "leave_one_source_out needs a dataset of two or more sources. "
            f"Received one with the sources {names}."
        )
    chosen = list(sources) if sources is not None else names
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise ValueError(
            f"The `sources` argument of leave_one_source_out names {unknown}; the "
            f"dataset's sources are {names}."
        )
    result = SourceEvaluation(kind="leave-one-source-out")
    kwargs = {"feature_cache": FeatureCache(), **dict(classifier_kwargs or {})}
    for name in chosen:
        others = [n for n in names if n != name]
        train = data.subset(others)
        labels = {r.label for r in train.split_records("train")}
        if len(labels) < 2:
            result.skipped[name] = (
                f"the other sources hold only {sorted(labels)} in their training splits"
            )
            continue
        logger.info("Leaving out %s; training on %s.", name, ", ".join(others))
        keras.utils.set_random_seed(seed)
        clf = Classifier(
            build_model(data.preprocessing.input_shape),
            class_names=data.class_names,
            positive_class=data.positive_class,
            seed=seed,
            **kwargs,
        )
        clf.fit(
            train,
            epochs=epochs,
            augmenter=augmenter(seed) if augmenter is not None else None,
            verbose=verbose,
            **dict(fit_kwargs or {}),
        )
        try:
            ev = clf.evaluate(
                data.subset([name]), split="all", n_bootstrap=n_bootstrap, seed=seed
            )
        except DataError as exc:  # e.g. every image seen (deduplicate=False)
            result.skipped[name] = str(exc)
            continue
        result.evaluations[name] = ev
        result.trained_on[name] = others
        result.counts[name] = dict(ev.support)
    return result
