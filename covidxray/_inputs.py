"""Any input a `Classifier` accepts, turned into batches the model takes.

Images go through the classifier's `Preprocessing`, so a file is decoded and
resized here exactly as the dataset scan did at training time (a COVIDx CT
slice inside its body box, `data.covidx_ct.body_box`; with `lungs`, a batch
of files has its lungs found together).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image

from ._validation import check_choice
from .augment import Augmenter
from .data.covidx_ct import body_box
from .data.dataset import XrayDataset
from .data.decode import COLOR_MODES, RESIZE_MODES, find_images
from .data.pipeline import balanced_class_weights, with_transform
from .data.preprocessing import Preprocessing
from .data.records import Record
from .errors import DataError
from .features import FeatureCache
from .training import worker_shard

logger = logging.getLogger("covidxray")

__all__ = [
    "PREDICT_BATCH",
    "ImageInput",
    "array_batches",
    "class_weights",
    "focus_stream",
    "image_batches",
    "probabilities",
    "resolve_preprocessing",
    "segmenter_used",
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
        items = files[start : start + batch_size]
        boxes = [
            body_box(item) if isinstance(item, (str, os.PathLike)) else None
            for item in items
        ]
        chunk = prep.load_many(items, boxes=boxes)  # the lungs: found in a batch
        yield chunk.astype(np.float32) / 255.0


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
    strategy: tf.distribute.Strategy | None = None,
) -> tuple[
    tf.data.Dataset, tf.data.Dataset | None, np.ndarray | tf.data.Dataset | None
]:
    """Training and validation batches, and where the training labels are: an
    array, or the batches before augmentation (read only if class weights
    need them).

    An augmenter with a stateless `augment(images, seed)` method (an
    `Augmenter`) runs with one seed per batch from a stream seeded by its own
    seed, or else by `seed`: the same seeds give the same batches. On an
    `XrayDataset` it works on the uint8 cache, through the dataset's public
    `transform` hook. Any other callable is mapped over the batches.

    Under a multi-worker `strategy`, each worker reads only its share of an
    `XrayDataset`'s batches (see `worker_shard`).
    """
    transform = _seeded_transform(augmenter) if augmenter is not None else None
    own_seed = getattr(augmenter, "seed", None)
    transform_seed = own_seed if own_seed is not None else seed
    if isinstance(train, XrayDataset):
        shard = worker_shard(strategy)
        train_ds = train.as_tf_dataset(
            "train",
            shuffle=True,
            batch_size=batch_size,
            transform=transform,
            transform_seed=transform_seed,
            shard=shard,
        )
        if train_ds is None:
            raise DataError(f"The training split of '{train.source}' is empty.")
        if validation_data is None:
            validation_data = train.as_tf_dataset(
                "val", batch_size=batch_size, shard=shard
            )
        labels: np.ndarray | tf.data.Dataset | None = _drawn_labels(train)
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


def _drawn_labels(data: XrayDataset) -> np.ndarray | None:
    """The training labels, or None for a `balanced` view: its draws already
    weigh the classes, and class weights on top would undo them (with
    `by="source"`, weights from the drawn totals would bring back each
    source's own label prior)."""
    return data.labels("train") if data.sampling is None else None


def class_weights(
    class_weight: str | Mapping[int, float] | None,
    labels: np.ndarray | tf.data.Dataset | None,
    n_classes: int,
) -> dict[int, float] | None:
    """Resolve `fit`'s `class_weight`: None, a dict, or `"balanced"`. With no
    labels (a `balanced` view), `"balanced"` means no weights."""
    if class_weight is None:
        return None
    if isinstance(class_weight, Mapping):
        return {int(k): float(v) for k, v in class_weight.items()}
    check_choice("class_weight", class_weight, ("balanced",), "fit")
    if labels is None:
        logger.info("A balanced view draws the classes evenly; no class weights.")
        return None
    if isinstance(labels, tf.data.Dataset):
        labels = np.concatenate([np.asarray(y).reshape(-1) for _, y in labels])
    return balanced_class_weights(np.asarray(labels), n_classes)


def focus_stream(
    strength: float,
    data: Any,
    lung_masks: np.ndarray | None,
    batch_size: int | None,
    seed: int | None,
) -> tuple[float, tf.data.Dataset] | None:
    """What `fit(lung_focus=...)` trains with: `(strength, the clean training
    images with their lung masks)`, or None when `strength` is 0.

    The masks are `lung_masks` when given, else an `XrayDataset`'s own
    (`lung_masks_of` its training records).

    Raises:
        ValueError: `strength` is negative, or there are no masks for these
            training images.
    """
    if not isinstance(strength, (int, float)) or not strength >= 0:
        raise ValueError(
            "The `lung_focus` argument of Classifier must be a number >= 0. "
            f"Received: {strength!r}."
        )
    if not strength:
        return None
    from .training.focus import focus_batches

    size = batch_size or getattr(data, "batch_size", None) or 32
    if isinstance(data, XrayDataset):
        records = data.split_records("train")
        images = data.images_of(records)
        masks = lung_masks if lung_masks is not None else data.lung_masks_of(records)
    elif isinstance(data, tuple) and len(data) == 2 and lung_masks is not None:
        images = np.asarray(data[0])
        if images.dtype != np.uint8:
            images = np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
        if images.ndim == 3:
            images = images[..., None]
        masks = lung_masks
    else:
        raise ValueError(
            "lung_focus needs each training image's lung mask: fit on an "
            "XrayDataset, or pass lung_masks= (one (H, W) mask per image) "
            "with (x, y) arrays."
        )
    return float(strength), focus_batches(images, masks, size, seed)


def segmenter_used(
    data: Any, preprocessing: Preprocessing, lung_masks: Any, lung_focus: float
) -> dict[str, str] | None:
    """The version and weights hash of the segmenter a fit's model depends
    on: the one that found an `XrayDataset`'s lungs (for `lungs`
    preprocessing, or the masks of `lung_focus`), or the installed one where
    it finds them later; None when no segmenter is involved (no lungs, or
    `lung_focus` on masks the caller gave)."""
    dataset = isinstance(data, XrayDataset)
    if not preprocessing.needs_lungs and not (
        lung_focus and lung_masks is None and dataset
    ):
        return None
    found = data.lung_segmenter if dataset else None
    if found is not None:
        return found
    from .lungs.unet import default_lung_model

    return default_lung_model().info()


def resolve_preprocessing(
    data: Any,
    input_shape: tuple[int | None, ...],
    image_size: Any,
    color_mode: str | None,
    resize: str | None,
) -> Preprocessing:
    """The `Preprocessing` a fit uses: the Classifier's arguments first, then an
    `XrayDataset`'s own (all of it: window, trim, equalisation and lungs
    too), then the model's input shape.

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
    # A dataset's window, trim, equalisation and lungs are how its pixels
    # were read: the model must read a file the same way at predict time.
    base = data.preprocessing if isinstance(data, XrayDataset) else Preprocessing()
    return dataclasses.replace(
        base,
        image_size=(int(image_size[0]), int(image_size[1])),
        color_mode=color_mode,
        resize=resize or "stretch",
    )


def probabilities(
    model: Any,
    batches: Iterable[np.ndarray],
    n_classes: int,
    cache: FeatureCache | None = None,
) -> np.ndarray:
    """Class probabilities (N, n_classes) of a model over float batches; one
    sigmoid unit becomes the two columns (1 - p, p). With a `cache`, a frozen
    backbone's features come from it."""

    parts = cache._parts(model) if cache is not None else None

    def run(b: np.ndarray) -> np.ndarray:
        if parts is not None:
            return cache._outputs(parts, b)  # type: ignore[union-attr]
        # A direct eager call per batch: no start-up cost of model.predict and
        # no tracing, so one image costs one forward pass.
        return np.asarray(model(tf.convert_to_tensor(b), training=False))

    outputs = [run(b) for b in batches]
    if not outputs:
        return np.zeros((0, n_classes), np.float64)
    out = np.concatenate(outputs).astype(np.float64)
    if out.shape[-1] == 1:
        return np.stack([1 - out[:, 0], out[:, 0]], axis=1)
    return out


def record_chunks(
    data: XrayDataset, records: Sequence[Record], preprocessing: Preprocessing
) -> Iterator[tuple[np.ndarray, list[str]]]:
    """The records' images as the model takes them (float32 (N, H, W, C) in
    [0, 1]), `PREDICT_BATCH` at a time, with their file names."""
    for i in range(0, len(records), PREDICT_BATCH):
        part = records[i : i + PREDICT_BATCH]
        images = np.concatenate(
            list(image_batches(data.images_of(part), preprocessing))
        )
        yield images, [r.path for r in part]
