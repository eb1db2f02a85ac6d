"""What an evaluation scores: which split, which images the model saw, and how
a dataset's classes map onto the model's.

`Classifier.evaluate` and `tune_threshold` hand `scores` a `FittedModel`: the
Keras model with what it needs to score (its `Preprocessing`, class names,
positive class, training record and feature cache), never the `Classifier`.
`scores` reads a folder with the model's own `Preprocessing`, picks the split,
leaves out what the training record says the model saw, and maps labels to the
model's classes. See `docs/architecture.md`.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ._choices import SCORE_BY
from ._inputs import PREDICT_BATCH, array_batches, image_batches, probabilities
from ._seen import TrainingRecord
from ._validation import check_choice
from ._version import provenance
from .data.checks import unknown_binary_findings
from .data.dataset import XrayDataset
from .data.labels import canon, is_covid_name
from .data.preprocessing import Preprocessing
from .data.records import Record
from .data.split import EVALUATION_SPLITS
from .errors import AllSeenError, CovidXrayWarning, DataError
from .features import FeatureCache
from .metrics import Evaluation, patient_scores

__all__ = [
    "FittedModel",
    "evaluation",
    "load_for_evaluation",
    "model_labels",
    "read_for",
    "scores",
    "select",
]


@dataclass(frozen=True)
class FittedModel:
    """A fitted model and what scoring it needs, as plain values.

    Attributes:
        model: The Keras model, taking float images in [0, 1].
        preprocessing: How files and arrays are decoded and resized for it.
        class_names: Class names in the model's label-index order.
        positive_index: The index of the positive class (binary tasks).
        record: The content record of its training images, or None.
        feature_cache: A `FeatureCache` for a frozen backbone, or None.
        threshold: The decision threshold on P(positive).
        seed: The classifier's seed, for the provenance of an evaluation.
    """

    model: keras.Model
    preprocessing: Preprocessing
    class_names: tuple[str, ...]
    positive_index: int = 1
    record: TrainingRecord | None = None
    feature_cache: FeatureCache | None = None
    threshold: float = 0.5
    seed: int | None = None

    def predict_proba(self, batches: Any) -> np.ndarray:
        """Class probabilities (N, n_classes) of images or float batches."""
        return probabilities(
            self.model, batches, len(self.class_names), self.feature_cache
        )


def evaluation(
    fitted: FittedModel,
    y: np.ndarray,
    proba: np.ndarray,
    meta: Mapping[str, Any],
    *,
    n_bootstrap: int,
    seed: int,
    records: Sequence[Record] = (),
) -> Evaluation:
    """An `Evaluation` of scored images at the model's threshold, with the
    versions that made it and the classifier's seed in `meta`, and the
    records scored (image rows only) in `records`."""
    binary = len(fitted.class_names) == 2
    ev = Evaluation.from_predictions(
        y,
        proba,
        class_names=list(fitted.class_names),
        positive_class=fitted.class_names[fitted.positive_index] if binary else None,
        threshold=fitted.threshold,
        n_bootstrap=n_bootstrap,
        seed=seed,
        meta={**meta, **provenance(), "seed": fitted.seed},
    )
    if len(records) == len(ev.y_true):
        ev.records = tuple(records)
    return ev


def scores(
    fitted: FittedModel,
    data: Any,
    *,
    split: str | None,
    where: str,
    check_seen: bool = True,
    include_seen: bool = False,
    by: str = "image",
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], list[Record]]:
    """Labels, probabilities, what was scored (`meta`) and the records scored
    (image rows; none for arrays or `by="patient"`) for a fitted model.

    Args:
        fitted: The model and what scoring it needs.
        data: An `XrayDataset`, a dataset folder or file (read with the
            model's own preprocessing; one class is enough), a `tf.data`
            dataset of `(images, labels)`, or `(x, y)` arrays.
        split: For a dataset: `"train"`, `"val"`, `"test"` or `"all"`; None
            means its test split, or all its images when it has none (an
            external set).
        where: The method asking, for messages.
        check_seen: Leave out images the model saw in training or validation
            (by content), unless `include_seen`.
        include_seen: Keep the seen images (and say so in `meta`).
        by: `"image"`, or `"patient"`: one row per patient, the mean
            probability of its images (`metrics.patient_scores`). `meta`
            counts patients beside images either way.
    """
    check_choice("by", by, SCORE_BY, where)
    if not isinstance(data, (XrayDataset, str, os.PathLike)):
        if by == "patient":
            raise ValueError(
                f"by='patient' in {where} needs a dataset, whose records name "
                f"their patients. Received: {type(data).__name__}."
            )
        if split is not None:
            raise ValueError(
                f"The `split` argument of {where} applies to a dataset only. "
                f"Received: split={split!r} with {type(data).__name__}."
            )
        y, proba, meta = _array_scores(
            fitted, array_batches(data, PREDICT_BATCH, shuffle=False)
        )
        return y, proba, meta, []
    data, records, labels, meta = select(
        fitted,
        data,
        split=split,
        where=where,
        check_seen=check_seen,
        include_seen=include_seen,
    )
    # One pass of `predict_proba`'s two steps over the chunks: a frozen
    # backbone's weights are checked once for the feature cache, not per chunk.
    batches = (
        batch
        for i in range(0, len(records), PREDICT_BATCH)
        for batch in image_batches(
            data.images_of(records[i : i + PREDICT_BATCH]), fitted.preprocessing
        )
    )
    proba = fitted.predict_proba(batches)
    patients = [
        f"{r.source}:{r.patient_id}" if r.patient_id else r.path for r in records
    ]
    meta.update(n=len(records), n_images=len(records), n_patients=len(set(patients)))
    if by == "patient":
        labels, proba = patient_scores(labels, proba, patients)
        meta.update(by="patient", n=len(labels))
        return labels, proba, meta, []
    return labels, proba, meta, records


def select(
    fitted: FittedModel,
    data: XrayDataset | str | os.PathLike[str],
    *,
    split: str | None,
    where: str,
    check_seen: bool = True,
    include_seen: bool = False,
) -> tuple[XrayDataset, list[Record], np.ndarray, dict[str, Any]]:
    """What an evaluation of a dataset scores, before any image is read: the
    dataset (a folder read with the model's own preprocessing), its records
    of the split, their labels in the model's classes, and `meta`.

    Images the model saw in training or validation are left out unless
    `include_seen` (or `check_seen` is False), as in `scores`.
    """
    if isinstance(data, (str, os.PathLike)):
        data = load_for_evaluation(
            data,
            preprocessing=fitted.preprocessing,
            class_names=fitted.class_names,
            positive_index=fitted.positive_index,
        )
    records, meta = _pick_split(data, split, where)
    _check_modality(fitted.record, records, meta, where)
    # classes the model lacks: an error
    labels = model_labels(data, records, fitted.class_names, fitted.positive_index)
    found = {
        r.finding: fitted.class_names[i] for r, i in zip(records, labels, strict=True)
    }
    meta["classes_found"] = dict(sorted(found.items()))  # finding -> model's class
    if check_seen:
        kept = _unseen(fitted.record, records, meta, include_seen, where)
        records, labels = [records[i] for i in kept], labels[kept]
    return data, records, labels, meta


def _array_scores(
    fitted: FittedModel, ds: tf.data.Dataset
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    probs, labels = [], []
    for x, y in ds:
        # As `Classifier.predict_proba` does on each batch of arrays.
        batches = image_batches(np.asarray(x), fitted.preprocessing)
        probs.append(fitted.predict_proba(batches))
        labels.append(np.asarray(y).reshape(-1))
    if not probs:
        raise ValueError("No labelled images to score.")
    meta = {"seen_checked": False}  # arrays carry no content hashes to compare
    return np.concatenate(labels).astype(int), np.concatenate(probs), meta


def read_for(
    fitted: FittedModel,
    source: str | os.PathLike[str],
    class_map: Mapping[str, str] | None = None,
) -> XrayDataset:
    """`load_for_evaluation` with a fitted model's preprocessing and classes."""
    return load_for_evaluation(
        source,
        preprocessing=fitted.preprocessing,
        class_names=fitted.class_names,
        positive_index=fitted.positive_index,
        class_map=class_map,
    )


def load_for_evaluation(
    source: str | os.PathLike[str],
    *,
    preprocessing: Preprocessing,
    class_names: Sequence[str],
    positive_index: int = 1,
    class_map: Mapping[str, str] | None = None,
) -> XrayDataset:
    """Read a dataset as the model reads images: its `Preprocessing`, its
    classes, no new splits, no deduplication (the training record decides what
    was seen), and one class is enough. Class folders whose names match
    neither class of a binary model are an error (rename them with
    `class_map`)."""
    from .data.catalog import load_dataset

    prep = preprocessing
    names = list(class_names)
    binary = len(names) == 2
    positive = names[positive_index] if binary else None
    if positive is not None and is_covid_name(positive):
        positive = None  # the COVID rule training used: 'COVID-19, ARDS' counts
    data = load_dataset(
        source,
        image_size=prep.image_size,
        color_mode=prep.color_mode,
        resize=prep.resize,
        window=prep.window,
        trim=prep.trim,
        equalize=prep.equalize,
        lungs=prep.lungs,
        positive_class=positive,
        classes=None if binary else names,
        validation_split=0.0,
        deduplicate=False,
        min_classes=1,
        class_map=class_map,
    )
    unknown = sorted(data.unmatched_findings)
    if binary and all(v in ("folder", "manifest") for v in data.layouts.values()):
        negative = names[1 - positive_index]
        strays = unknown_binary_findings(
            [r.finding for r in data.records], negative, names[positive_index]
        )
        if strays:
            raise DataError(
                f"The class folders {strays} of '{source}' match neither class of "
                f"the model {names}. Say what each is with class_map= (on the "
                f"command line: --class-map {strays[0]}={negative},...)."
            )
    if unknown:
        raise DataError(
            f"The classes {unknown} of '{source}' are not among the model's "
            f"classes {names}."
        )
    return data


def _pick_split(
    data: XrayDataset, split: str | None, where: str
) -> tuple[list[Record], dict[str, Any]]:
    if split is None:
        split = "test" if data.split_records("test") else "all"
    check_choice("split", split, EVALUATION_SPLITS, where)
    records = list(data.records) if split == "all" else data.split_records(split)
    if not records:
        hint = (
            " Load the data with validation_split > 0, or pass validation data; "
            "the test split is never used for it."
            if split == "val"
            else ""
        )
        raise DataError(
            f"The {split} split of '{data.source}' is empty: no labelled images "
            f"for {where}.{hint}"
        )
    what = "external set: all" if split == "all" else f"{split} split:"
    meta = {
        "data_fingerprint": data.fingerprint(),
        "source": data.source,
        "split": split,
        "data_seed": data.seed,
        "n_total": len(records),
        "scope": f"{what} {len(records)} images of '{data.source}'",
    }
    return records, meta


def _check_modality(
    record: TrainingRecord | None,
    records: Sequence[Record],
    meta: dict[str, Any],
    where: str,
) -> None:
    """Warn when the images are of a modality the model never learnt from (a
    model without a record, or with an older one, learnt from X-rays)."""
    trained = record.modalities if record is not None else ("X-ray",)
    found = Counter(r.modality for r in records)
    meta.update(modalities=dict(found), training_modalities=list(trained))
    other = sorted(set(found) - set(trained))
    if other:
        n = sum(found[m] for m in other)
        warnings.warn(
            f"This model was trained on {' and '.join(trained)} images, and "
            f"{where} scores {n} {' and '.join(other)} images ({meta['scope']}). "
            "A model says little about a modality it never learnt from: train "
            "on that modality to evaluate on it.",
            CovidXrayWarning,
            stacklevel=5,
        )


def _unseen(
    record: TrainingRecord | None,
    records: list[Record],
    meta: dict[str, Any],
    include_seen: bool,
    where: str,
) -> list[int]:
    """The positions of the records to score: those whose content the model
    did not see (all of them with `include_seen`, or without a record)."""
    if record is None:
        warnings.warn(
            f"This model has no record of its training images (it was saved by an "
            f"older covidxray, or fitted on arrays), so {where} cannot check "
            "whether the data overlap its training data.",
            CovidXrayWarning,
            stacklevel=5,
        )
        meta["seen_checked"] = False
        return list(range(len(records)))
    check = record.check(records)
    complete = bool(record.info.get("complete", True))
    if not complete:
        warnings.warn(
            "This model was also trained on arrays or tf.data, which leave no "
            f"record: {where} can only leave out images from its recorded datasets.",
            CovidXrayWarning,
            stacklevel=5,
        )
    meta.update(
        seen_checked=True,
        record_complete=complete,
        n_seen=len(check.exact),
        seen_reason="the same file bytes or the same decoded pixels",
        include_seen=include_seen,
        n_near_seen=len(check.near),
        near_seen_files=[records[i].path for i in check.near],
    )
    if include_seen:
        return list(range(len(records)))
    exact = set(check.exact)
    kept = [i for i in range(len(records)) if i not in exact]
    if not kept:
        raise AllSeenError(
            f"All {len(records)} images to score ({meta['scope']}) were seen in "
            f"training or validation ({meta['seen_reason']}). Evaluate on images "
            "the model never saw, or pass include_seen=True (--include-seen) to "
            "score them anyway.",
            n_images=len(records),
        )
    return kept


def model_labels(
    data: XrayDataset,
    records: Sequence[Record],
    class_names: Sequence[str],
    positive_index: int = 1,
) -> np.ndarray:
    """The model's class index of each record: by role (positive or not) for
    two classes, by name for more.

    Raises:
        DataError: With more than two classes, a record's class is not one of
            the model's.
    """
    names = list(class_names)
    if len(names) == 2:
        pos = positive_index
        return np.array(
            [pos if r.label == data.positive_class else 1 - pos for r in records],
            dtype=int,
        )
    index = {canon(n): i for i, n in enumerate(names)}
    unknown = sorted({r.label for r in records if canon(r.label) not in index})
    if unknown:
        raise DataError(
            f"The classes {unknown} of '{data.source}' are not among the model's "
            f"classes {names}."
        )
    return np.array([index[canon(r.label)] for r in records], dtype=int)
