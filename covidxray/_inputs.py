"""Any input a `Classifier` accepts, turned into batches the model takes.

Images go through the classifier's `Preprocessing`, so a file is decoded and
resized here exactly as the dataset scan did at training time.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image

from ._validation import check_choice
from .augment import Augmenter
from .data.decode import COLOR_MODES, RESIZE_MODES, find_images
from .data.labels import canon, is_covid_name
from .data.loader import (
    NO_CLASS,
    XrayDataset,
    balanced_class_weights,
    with_transform,
)
from .data.preprocessing import Preprocessing
from .data.records import Record
from .errors import CovidXrayWarning, DataError

__all__ = [
    "PREDICT_BATCH",
    "ImageInput",
    "array_batches",
    "class_weights",
    "image_batches",
    "load_for_evaluation",
    "probabilities",
    "resolve_preprocessing",
    "scores",
    "training_batches",
]

PREDICT_BATCH = 64

ImageInput = Any  # path(s), directory, PIL image(s), numpy array(s) or tf.data


def image_batches(
    x: ImageInput, prep: Preprocessing, batch_size: int = PREDICT_BATCH
) -> Iterator[np.ndarray]:
    """Float32 batches in [0, 1] of shape (n, *prep.input_shape).

    Args:
        x: A file path, a folder, a list of paths, a PIL image, a numpy array
            (H, W), (H, W, C), (N, H, W) or (N, H, W, C) (uint8, or float in
            [0, 1]), or a `tf.data` dataset of images or `(images, labels)`.
        prep: How to decode and resize files, images and arrays.
        batch_size: Images per batch.
    """
    if isinstance(x, tf.data.Dataset):
        for item in x:
            images = np.asarray(item[0] if isinstance(item, tuple) else item)
            yield _to_float(images)
        return
    if isinstance(x, np.ndarray) and x.ndim == 3 and x.shape[-1] not in (1, 3, 4):
        x = x[..., None]  # (N, H, W): a batch of grayscale images
    if isinstance(x, np.ndarray) and x.ndim == 4:
        if x.shape[1:] == prep.input_shape:  # already the model's size: no resize
            for start in range(0, len(x), batch_size):
                yield _to_float(x[start : start + batch_size])
            return
        items: list[Any] = list(x)
    elif isinstance(x, (str, os.PathLike, Image.Image, np.ndarray)):
        items = [x]
    else:
        items = list(x)
    files: list[Any] = []
    for item in items:
        if isinstance(item, (str, os.PathLike)) and Path(item).is_dir():
            found = find_images(item)
            if not found:
                raise DataError(f"Found no images under '{item}'.")
            files.extend(found)
        else:
            files.append(item)
    for start in range(0, len(files), batch_size):
        chunk = [prep.load(item) for item in files[start : start + batch_size]]
        yield np.stack(chunk).astype(np.float32) / 255.0


def _to_float(images: np.ndarray) -> np.ndarray:
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    return images.astype(np.float32) / scale


def array_batches(
    data: Any, batch_size: int, *, shuffle: bool, seed: int | None = 0
) -> tf.data.Dataset:
    """A `tf.data` dataset as it is, or `(x, y)` arrays as float32 batches."""
    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, tuple) and len(data) == 2:
        x = np.asarray(data[0])
        y = np.asarray(data[1]).astype(np.int32).reshape(-1)
        if x.ndim == 3:
            x = x[..., None]
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} images but y has {len(y)} labels.")
        ds = tf.data.Dataset.from_tensor_slices((_to_float(x), y))
        if shuffle:
            ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    raise TypeError(
        "Expected an XrayDataset, a tf.data.Dataset of (images, labels), or a tuple "
        f"(x, y) of arrays. Received: {type(data).__name__}."
    )


def _seeded_transform(augmenter: Any) -> Callable[[Any, Any], Any] | None:
    """The stateless fast path of an `Augmenter`, or None for another callable."""
    if not isinstance(augmenter, Augmenter):
        return None
    return functools.partial(augmenter.augment, output_dtype="float32")


def training_batches(
    train: Any,
    validation_data: Any,
    *,
    batch_size: int | None,
    augmenter: Any,
    seed: int | None,
) -> tuple[tf.data.Dataset, tf.data.Dataset | None, np.ndarray | tf.data.Dataset]:
    """Training and validation batches, and where the training labels are: an
    array, or the batches before augmentation (read only if class weights
    need them).

    An augmenter with a stateless `augment(images, seed)` method (an
    `Augmenter`) runs with one seed per batch from a stream seeded by its own
    seed, or else by `seed`: the same seeds give the same batches. On an
    `XrayDataset` it works on the uint8 cache, through the dataset's public
    `transform` hook. Any other callable is mapped over the batches.
    """
    transform = _seeded_transform(augmenter) if augmenter is not None else None
    own_seed = getattr(augmenter, "seed", None)
    transform_seed = own_seed if own_seed is not None else seed
    if isinstance(train, XrayDataset):
        train_ds = train.as_tf_dataset(
            "train",
            shuffle=True,
            batch_size=batch_size,
            transform=transform,
            transform_seed=transform_seed,
        )
        if train_ds is None:
            raise DataError(f"The training split of '{train.source}' is empty.")
        if validation_data is None:
            validation_data = train.as_tf_dataset("val", batch_size=batch_size)
        labels: np.ndarray | tf.data.Dataset = train.labels("train")
    else:
        train_ds = array_batches(train, batch_size or 32, shuffle=True, seed=seed)
        labels = (
            np.asarray(train[1]).reshape(-1) if isinstance(train, tuple) else train_ds
        )
        if transform is not None:
            train_ds = with_transform(train_ds, transform, transform_seed)
    if augmenter is not None and transform is None:
        train_ds = train_ds.map(
            lambda x, y: (augmenter(x), y), num_parallel_calls=tf.data.AUTOTUNE
        ).prefetch(tf.data.AUTOTUNE)
    val_ds = (
        array_batches(validation_data, batch_size or 32, shuffle=False)
        if validation_data is not None
        else None
    )
    return train_ds, val_ds, labels


def class_weights(
    class_weight: str | Mapping[int, float] | None,
    labels: np.ndarray | tf.data.Dataset,
    n_classes: int,
) -> dict[int, float] | None:
    """Resolve `fit`'s `class_weight`: None, a dict, or `"balanced"`."""
    if class_weight is None:
        return None
    if isinstance(class_weight, Mapping):
        return {int(k): float(v) for k, v in class_weight.items()}
    check_choice("class_weight", class_weight, ("balanced",), "fit")
    if isinstance(labels, tf.data.Dataset):
        labels = np.concatenate([np.asarray(y).reshape(-1) for _, y in labels])
    return balanced_class_weights(labels, n_classes)


def resolve_preprocessing(
    data: Any,
    input_shape: tuple[int | None, ...],
    image_size: Any,
    color_mode: str | None,
    resize: str | None,
) -> Preprocessing:
    """The `Preprocessing` a fit uses: the Classifier's arguments first, then an
    `XrayDataset`'s own, then the model's input shape.

    Raises:
        ValueError: The dataset serves images of another shape than the model
            takes, or an argument has a value that is not allowed.
    """
    if isinstance(data, XrayDataset):
        served = data.preprocessing.input_shape
        wanted = tuple(input_shape[1:])
        if any(w is not None and w != s for w, s in zip(wanted, served, strict=True)):
            raise ValueError(
                f"The model takes images of shape {wanted}, but the dataset serves "
                f"{served} (image_size={data.image_size}, color_mode="
                f"{data.color_mode!r}). Build the model for the data, or load the "
                "data with the model's size and colour mode."
            )
        image_size = image_size or data.image_size
        color_mode = color_mode or data.color_mode
        resize = resize or data.resize
    if color_mode is not None:
        check_choice("color_mode", color_mode, COLOR_MODES, "Classifier")
    if resize is not None:
        check_choice("resize", resize, RESIZE_MODES, "Classifier")
    height, width, channels = input_shape[-3:]
    if not image_size:
        if height is None or width is None:
            raise ValueError(
                f"The model's input shape {tuple(input_shape)} has no fixed size: "
                "pass image_size= to Classifier, or fit on an XrayDataset."
            )
        image_size = (height, width)
    if color_mode is None:
        color_mode = "rgb" if channels == 3 else "grayscale"
    return Preprocessing(
        tuple(int(v) for v in image_size),  # type: ignore[arg-type]
        color_mode=color_mode,
        resize=resize or "stretch",
    )


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
        clf: A fitted `Classifier` (its `predict_proba`, `preprocessing_`,
            `class_names`, `positive_class` and `training_record_` are used).
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
    every = _model_labels(data, records, clf)  # classes the model lacks: an error
    found = {r.finding: clf.class_names[i] for r, i in zip(records, every, strict=True)}
    meta["classes_found"] = dict(sorted(found.items()))  # finding -> model's class
    if check_seen:
        records = _unseen(clf, records, meta, include_seen, where)
    labels = _model_labels(data, records, clf)
    proba = np.concatenate(
        [
            clf.predict_proba(data.images_of(records[i : i + PREDICT_BATCH]))
            for i in range(0, len(records), PREDICT_BATCH)
        ]
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
    from .data.loader import load_dataset

    prep = clf.preprocessing_
    names = list(clf.class_names)
    binary = len(names) == 2
    positive = (clf.positive_class or names[1]) if binary else None
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
) -> list[Record]:
    """Leave out (or count) the records whose content the model saw."""
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
        return records
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
        return records
    exact = set(check.exact)
    kept = [r for i, r in enumerate(records) if i not in exact]
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
        pos = names.index(clf.positive_class) if clf.positive_class else 1
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


def probabilities(
    model: Any, batches: Iterable[np.ndarray], n_classes: int
) -> np.ndarray:
    """Class probabilities (N, n_classes) of a model over float batches; one
    sigmoid unit becomes the two columns (1 - p, p)."""
    # A direct eager call per batch: no start-up cost of model.predict and no
    # tracing, so one image costs one forward pass.
    outputs = [
        np.asarray(model(tf.convert_to_tensor(b), training=False)) for b in batches
    ]
    if not outputs:
        return np.zeros((0, n_classes), np.float64)
    out = np.concatenate(outputs).astype(np.float64)
    if out.shape[-1] == 1:
        return np.stack([1 - out[:, 0], out[:, 0]], axis=1)
    return out
