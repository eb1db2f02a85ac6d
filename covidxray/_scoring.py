"""What an evaluation scores: which split, which images the model saw, and how
a dataset's classes map onto the model's.

`Classifier.evaluate` and `tune_threshold` call `scores`; it reads a folder
with the model's own `Preprocessing`, picks the split, leaves out what the
model's training record says it saw, and maps labels to the model's classes.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import tensorflow as tf

from ._inputs import PREDICT_BATCH, array_batches, image_batches, probabilities
from ._validation import check_choice
from .data.catalog import NO_CLASS
from .data.dataset import XrayDataset
from .data.labels import canon, is_covid_name
from .data.records import Record
from .errors import CovidXrayWarning, DataError

__all__ = ["load_for_evaluation", "scores"]


def scores(
    clf: Any,
    data: Any,
    *,
    split: str | None,
    where: str,
    check_seen: bool = True,
    include_seen: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Labels, probabilities and what was scored (`meta`) for a fitted classifier.

    Args:
        clf: A fitted `Classifier` (its `model_`, `feature_cache`,
            `predict_proba` for arrays, `preprocessing_`, `class_names`,
            `positive_class` and `training_record_` are used).
        data: An `XrayDataset`, a dataset folder or file (read with the
            model's own preprocessing; one class is enough), a `tf.data`
            dataset of `(images, labels)`, or `(x, y)` arrays.
        split: For a dataset: `"train"`, `"val"`, `"test"` or `"all"`; None
            means its test split, or all its images when it has none (an
            external set).
        where: The method asking, for messages.
        check_seen: Leave out images the model saw in training or validation
            (by content), unless `include_seen`.
    """
    if isinstance(data, (str, os.PathLike)):
        data = load_for_evaluation(clf, data)
    if not isinstance(data, XrayDataset):
        if split is not None:
            raise ValueError(
                f"The `split` argument of {where} applies to a dataset only. "
                f"Received: split={split!r} with {type(data).__name__}."
            )
        return _array_scores(clf, array_batches(data, PREDICT_BATCH, shuffle=False))
    records, meta = _pick_split(data, split, where)
    labels = _model_labels(data, records, clf)  # classes the model lacks: an error
    found = {
        r.finding: clf.class_names[i] for r, i in zip(records, labels, strict=True)
    }
    meta["classes_found"] = dict(sorted(found.items()))  # finding -> model's class
    if check_seen:
        kept = _unseen(clf, records, meta, include_seen, where)
        records, labels = [records[i] for i in kept], labels[kept]
    # One pass of `predict_proba`'s two steps over the chunks: a frozen
    # backbone's weights are checked once for the feature cache, not per chunk.
    batches = (
        batch
        for i in range(0, len(records), PREDICT_BATCH)
        for batch in image_batches(
            data.images_of(records[i : i + PREDICT_BATCH]), clf.preprocessing_
        )
    )
    proba = probabilities(
        clf.model_, batches, len(clf.class_names), getattr(clf, "feature_cache", None)
    )
    meta["n"] = len(records)
    return labels, proba, meta


def _array_scores(
    clf: Any, ds: tf.data.Dataset
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    probs, labels = [], []
    for x, y in ds:
        probs.append(clf.predict_proba(np.asarray(x)))
        labels.append(np.asarray(y).reshape(-1))
    if not probs:
        raise ValueError("No labelled images to score.")
    meta = {"seen_checked": False}  # arrays carry no content hashes to compare
    return np.concatenate(labels).astype(int), np.concatenate(probs), meta


def load_for_evaluation(clf: Any, source: str | os.PathLike[str]) -> XrayDataset:
    """Read a dataset as the model reads images: its `Preprocessing`, its
    classes, no new splits, no deduplication (the training record decides what
    was seen), and one class is enough."""
    from .data.catalog import load_dataset

    prep = clf.preprocessing_
    names = list(clf.class_names)
    binary = len(names) == 2
    positive = names[clf.positive_index] if binary else None
    if positive is not None and is_covid_name(positive):
        positive = None  # the COVID rule training used: 'COVID-19, ARDS' counts
    data = load_dataset(
        source,
        image_size=prep.image_size,
        color_mode=prep.color_mode,
        resize=prep.resize,
        positive_class=positive,
        classes=None if binary else names,
        validation_split=0.0,
        deduplicate=False,
        min_classes=1,
    )
    unknown = sorted(
        k.removeprefix(NO_CLASS) for k in data.dropped if k.startswith(NO_CLASS)
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
    check_choice("split", split, ("train", "val", "test", "all"), where)
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


def _unseen(
    clf: Any,
    records: list[Record],
    meta: dict[str, Any],
    include_seen: bool,
    where: str,
) -> list[int]:
    """The positions of the records to score: those whose content the model
    did not see (all of them with `include_seen`, or without a record)."""
    record = getattr(clf, "training_record_", None)
    if record is None:
        warnings.warn(
            f"This model has no record of its training images (it was saved by an "
            f"older covidxray, or fitted on arrays), so {where} cannot check "
            "whether the data overlap its training data.",
            CovidXrayWarning,
            stacklevel=4,
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
            stacklevel=4,
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
        raise DataError(
            f"All {len(records)} images to score ({meta['scope']}) were seen in "
            f"training or validation ({meta['seen_reason']}). Evaluate on images "
            "the model never saw, or pass include_seen=True (--include-seen) to "
            "score them anyway."
        )
    return kept


def _model_labels(data: XrayDataset, records: list[Record], clf: Any) -> np.ndarray:
    """The model's class index of each record: by role (positive or not) for
    two classes, by name for more."""
    names = list(clf.class_names)
    if len(names) == 2:
        pos = clf.positive_index
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
