"""`load_dataset` and `XrayDataset`: from files on disk to `tf.data` batches."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
import weakref
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._progress import Progress
from ..datasets import is_synthetic
from ..errors import CovidXrayWarning, DataError
from .decode import (
    COLOR_MODES,
    DEFAULT_MAX_PIXELS,
    RESIZE_MODES,
    ImageInfo,
    check_choice,
    decode_file,
    image_to_array,
)
from .labels import make_label_map
from .layouts import LAYOUTS, ReadContext, detect_layout
from .records import Entry, Record
from .split import SPLIT_ORDER, assign_splits, check_fractions
from .split import deduplicate as deduplicate_records

if TYPE_CHECKING:
    import tensorflow as tf

    from ..augment import Augmenter

logger = logging.getLogger("covidxray")

__all__ = ["XrayDataset", "load_dataset"]

DEFAULT_CACHE_MEMORY_LIMIT = 2 * 1024**3


class _Problems:
    """Raise or collect per-file problems, as `on_error` says."""

    def __init__(self, on_error: str) -> None:
        self.on_error = on_error
        self.skipped: list[tuple[str, str]] = []

    def report(self, path: str, reason: str) -> None:
        if self.on_error == "raise":
            raise DataError(f"'{path}': {reason}")
        self.skipped.append((path, reason))

    def add(self, path: str, error: DataError) -> None:
        if self.on_error == "raise":
            raise error
        self.skipped.append((path, str(error)))


def _allocate(
    shape: tuple[int, ...], cache: bool | str | os.PathLike[str], limit: int
) -> np.ndarray | None:
    """The uint8 pixel store: in memory, or a memory-mapped file when too large."""
    if cache is False:
        return None
    nbytes = int(np.prod(shape))
    if cache is True and nbytes <= limit:
        return np.zeros(shape, dtype=np.uint8)
    if cache is True:
        handle, name = tempfile.mkstemp(prefix="covidxray-cache-", suffix=".u8")
        os.close(handle)
        logger.info(
            "The image cache needs %.1f MB, over cache_memory_limit=%.1f MB; "
            "using the file cache '%s'.",
            nbytes / 1e6,
            limit / 1e6,
            name,
        )
        store = np.memmap(name, dtype=np.uint8, mode="w+", shape=shape)
        weakref.finalize(store, _remove_quietly, name)
        return store
    path = Path(cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    return np.memmap(path, dtype=np.uint8, mode="w+", shape=shape)


def _remove_quietly(name: str) -> None:
    try:
        os.remove(name)
    except OSError:
        pass


def _scan(
    entries: Sequence[Entry],
    store: np.ndarray | None,
    problems: _Problems,
    *,
    image_size: tuple[int, int],
    color_mode: str,
    resize: str,
    max_pixels: int,
    num_workers: int | None,
) -> list[ImageInfo | None]:
    """Decode every file once: validate it, hash it and fill the pixel store."""

    def work(i: int) -> ImageInfo | DataError:
        try:
            img, info = decode_file(
                entries[i].path, max_pixels=max_pixels, draft_to=image_size
            )
            if store is not None:
                store[i] = image_to_array(
                    img, image_size, color_mode=color_mode, resize=resize
                )
            return info
        except DataError as exc:
            return exc
        except (ValueError, OSError) as exc:  # a mode Pillow cannot convert
            return DataError(
                f"'{entries[i].path}' could not be converted to {color_mode}: {exc}"
            )

    workers = num_workers or min(8, (os.cpu_count() or 1) + 1)
    infos: list[ImageInfo | None] = []
    bar = Progress(len(entries), "Scanning images")
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        for i, result in enumerate(pool.map(work, range(len(entries)))):
            bar.update()
            if isinstance(result, DataError):
                problems.add(entries[i].path, result)
                infos.append(None)
            else:
                infos.append(result)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return infos


def load_dataset(
    source: str | os.PathLike[str],
    *,
    image_size: Sequence[int] = (224, 224),
    color_mode: str = "grayscale",
    batch_size: int = 32,
    validation_split: float = 0.15,
    test_split: float | None = None,
    seed: int = 0,
    positive_class: str | None = None,
    classes: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    deduplicate: bool = True,
    on_error: str = "raise",
    cache: bool | str | os.PathLike[str] = True,
    layout: str = "auto",
    resize: str = "stretch",
    views: Sequence[str] | None = None,
    modality: str | None = "X-ray",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    cache_memory_limit: int = DEFAULT_CACHE_MEMORY_LIMIT,
    num_workers: int | None = None,
) -> XrayDataset:
    """Read a chest X-ray dataset in its own layout into an `XrayDataset`.

    Every file is decoded once while scanning, before any training: broken files
    are found now, never halfway through an epoch. The decoded, resized uint8
    pixels are cached (in memory, or in a file), and `tf.data` turns them into
    float32 batches in [0, 1].

    Args:
        source: A dataset folder, or its metadata/manifest/split file.
        image_size: `(height, width)` of the images the model sees.
        color_mode: `"grayscale"` (1 channel) or `"rgb"` (3 channels).
        batch_size: Images per batch.
        validation_split: Fraction of the training pool held out for validation
            (unused when the source has its own validation split).
        test_split: None keeps the source's own test split (if any). A float
            re-splits all images into train, validation and test.
        seed: Seed for the splits and the shuffling of the training set.
        positive_class: The positive class of a binary task. By default the
            class named like COVID.
        classes: For more than two classes: a list of class names, or a dict from
            class name to the findings that belong to it. Findings match segments
            of the `/` hierarchy, most specific first.
        deduplicate: Keep one copy of each image content (same bytes or pixels),
            the one in the earliest split, so no content is in two splits.
        on_error: `"raise"` stops at the first bad file with a `DataError`;
            `"skip"` leaves bad files out, lists them in `.skipped` and warns once.
        cache: True caches pixels in memory (a temporary file above
            `cache_memory_limit` bytes); a path caches in that file; False
            decodes from disk every epoch.
        layout: `"auto"`, or one of `"folder"`, `"ieee8023"`, `"figure1"`,
            `"actualmed"`, `"coronahack"`, `"covidx"`, `"manifest"`.
        resize: `"stretch"`, `"pad"` (keep aspect, black borders) or `"crop"`
            (keep aspect, centre crop).
        views: Keep only these views (e.g. `("PA", "AP")`) in metadata layouts.
        modality: Keep only this modality in metadata layouts; None keeps all.
        max_pixels: Refuse larger images (decompression bombs).
        cache_memory_limit: Largest in-memory cache, in bytes.
        num_workers: Threads that decode while scanning.

    Returns:
        The `XrayDataset`.

    Raises:
        DataError: A file or folder is missing, unreadable or wrong (with
            `on_error="raise"`), or the data has fewer than two classes.
        ValueError: An argument has a value that is not allowed.

    Example:
        >>> import tempfile
        >>> from covidxray import load_dataset
        >>> from covidxray.datasets import make_synthetic
        >>> root = make_synthetic(
        ...     tempfile.mkdtemp(), n_per_class=10, image_size=(32, 32))
        >>> ds = load_dataset(root, image_size=(32, 32), batch_size=4)
        >>> ds.class_names, ds.positive_class
        (('normal', 'covid'), 'covid')
        >>> images, labels = next(iter(ds.train))
        >>> images.shape, images.dtype.name
        (TensorShape([4, 32, 32, 1]), 'float32')
    """
    check_choice("color_mode", color_mode, COLOR_MODES, "load_dataset")
    check_choice("resize", resize, RESIZE_MODES, "load_dataset")
    check_choice("on_error", on_error, ("raise", "skip"), "load_dataset")
    check_choice("layout", layout, ("auto", *LAYOUTS), "load_dataset")
    size = _check_size(image_size)
    check_fractions(validation_split, test_split)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            "The `batch_size` argument of load_dataset must be a positive integer. "
            f"Received: {batch_size!r}."
        )
    root = Path(source)
    if not root.exists():
        raise DataError(f"The dataset source '{root}' does not exist.")
    layout_name = detect_layout(root) if layout == "auto" else layout
    logger.info("Reading '%s' as layout %r.", root, layout_name)

    problems = _Problems(on_error)
    ctx = ReadContext(report=problems.report, views=views, modality=modality)
    entries = _unique_paths(LAYOUTS[layout_name].read(root, ctx))
    if not entries:
        raise DataError(
            f"Found no labelled images in '{root}' (layout {layout_name!r})."
        )

    label_map = make_label_map(
        [e.finding for e in entries],
        classes=classes,
        positive_class=positive_class,
        keep_names=layout_name in ("folder", "manifest"),
    )
    dropped = Counter(ctx.dropped)
    kept_entries = []
    for entry in entries:
        if label_map.mapping[entry.finding] is None:
            dropped[f"finding {entry.finding}"] += 1
        else:
            kept_entries.append(entry)
    if dropped:
        logger.info("Dropped images that map to no class: %s", dict(dropped))

    channels = 1 if color_mode == "grayscale" else 3
    store = _allocate((len(kept_entries), *size, channels), cache, cache_memory_limit)
    infos = _scan(
        kept_entries,
        store,
        problems,
        image_size=size,
        color_mode=color_mode,
        resize=resize,
        max_pixels=max_pixels,
        num_workers=num_workers,
    )

    records: list[Record] = []
    rows: dict[str, int] = {}
    for row, (entry, info) in enumerate(zip(kept_entries, infos, strict=True)):
        if info is None:
            continue
        label = label_map.mapping[entry.finding]
        assert label is not None
        records.append(_record(entry, label, info))
        rows[entry.path] = row
    if problems.skipped:
        warnings.warn(
            f"Skipped {len(problems.skipped)} of {len(entries)} files that could not "
            f"be read, e.g. {problems.skipped[0][0]!r} ({problems.skipped[0][1]}). "
            "The full list is in the dataset's `.skipped`.",
            CovidXrayWarning,
            stacklevel=2,
        )
    present = {r.label for r in records}
    if len(present) < 2:
        raise DataError(
            f"Found only the class(es) {sorted(present)} among the readable images of "
            f"'{root}'; at least two classes are needed."
        )

    removed: list[tuple[Record, Record]] = []
    if deduplicate:
        records, removed = deduplicate_records(records)
    records = assign_splits(
        records, validation_split=validation_split, test_split=test_split, seed=seed
    )
    return XrayDataset(
        records,
        class_names=label_map.class_names,
        positive_class=label_map.positive_class,
        image_size=size,
        color_mode=color_mode,
        resize=resize,
        batch_size=batch_size,
        seed=seed,
        pixels=store,
        rows=rows,
        skipped=problems.skipped,
        duplicates_removed=removed,
        dropped=dict(dropped),
        layout=layout_name,
        source=str(root),
        max_pixels=max_pixels,
    )


def _check_size(image_size: Sequence[int]) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(
            "The `image_size` argument must be a pair (height, width) of positive "
            f"integers. Received: {image_size!r}."
        ) from None
    if height < 1 or width < 1:
        raise ValueError(
            "The `image_size` argument must be a pair (height, width) of positive "
            f"integers. Received: {image_size!r}."
        )
    return height, width


def _unique_paths(entries: Sequence[Entry]) -> list[Entry]:
    seen: dict[str, Entry] = {}
    for entry in entries:
        if entry.path in seen:
            logger.info(
                "'%s' is listed more than once; kept the first row.", entry.path
            )
            continue
        seen[entry.path] = entry
    return list(seen.values())


def _record(entry: Entry, label: str, info: ImageInfo) -> Record:
    return Record(
        path=entry.path,
        label=label,
        split=entry.split or "train",
        patient_id=entry.patient_id,
        source=entry.source,
        finding=entry.finding,
        sha256=info.sha256,
        pixel_hash=info.pixel_hash,
        phash=info.phash,
        width=info.width,
        height=info.height,
        mode=info.mode,
        format=info.format,
        n_bytes=info.n_bytes,
    )


def balanced_class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """Weights n / (k * n_class) per class index; 0 for an absent class."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=n_classes)
    total = int(counts.sum())
    return {
        i: float(total / (n_classes * counts[i])) if counts[i] else 0.0
        for i in range(n_classes)
    }


class XrayDataset:
    """A scanned, split and cached X-ray dataset. Made by `load_dataset`.

    Attributes:
        records: One `Record` per image kept, with its split.
        class_names: Class names; index 1 is the positive class when binary.
        positive_class: The positive class, or None for multi-class without one.
        image_size: `(height, width)` of the images served.
        color_mode: `"grayscale"` or `"rgb"`.
        resize: The resize policy.
        skipped: `(path, reason)` for each file left out by `on_error="skip"`.
        duplicates_removed: `(removed, kept)` record pairs left out by
            `deduplicate=True`.
        dropped: Count of images whose finding maps to no class, by reason.
        layout: The layout that was read.
        source: The path it was read from.

    Example:
        >>> import tempfile
        >>> from covidxray import load_dataset
        >>> from covidxray.datasets import make_synthetic
        >>> root = make_synthetic(
        ...     tempfile.mkdtemp(), n_per_class=10, image_size=(32, 32))
        >>> ds = load_dataset(root, image_size=(32, 32), validation_split=0.2)
        >>> ds.counts()
        {'train': {'normal': 8, 'covid': 8}, 'val': {'normal': 2, 'covid': 2}}
    """

    def __init__(
        self,
        records: Sequence[Record],
        *,
        class_names: Sequence[str],
        positive_class: str | None,
        image_size: tuple[int, int],
        color_mode: str,
        resize: str,
        batch_size: int,
        seed: int,
        pixels: np.ndarray | None,
        rows: Mapping[str, int],
        skipped: Sequence[tuple[str, str]] = (),
        duplicates_removed: Sequence[tuple[Record, Record]] = (),
        dropped: Mapping[str, int] | None = None,
        layout: str = "",
        source: str = "",
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.records = list(records)
        self.class_names = tuple(class_names)
        self.positive_class = positive_class
        self.image_size = image_size
        self.color_mode = color_mode
        self.resize = resize
        self.batch_size = batch_size
        self.seed = seed
        self.skipped = list(skipped)
        self.duplicates_removed = list(duplicates_removed)
        self.dropped = dict(dropped or {})
        self.layout = layout
        self.source = source
        self.max_pixels = max_pixels
        self._pixels = pixels
        self._rows = dict(rows)

    # ----------------------------------------------------------------- records

    def split_records(self, split: str) -> list[Record]:
        """The records of one split (`"train"`, `"val"` or `"test"`)."""
        check_choice("split", split, SPLIT_ORDER, "XrayDataset")
        return [r for r in self.records if r.split == split]

    def labels(self, split: str) -> np.ndarray:
        """Class indices of one split, as int32, in record order."""
        index = {name: i for i, name in enumerate(self.class_names)}
        return np.array([index[r.label] for r in self.split_records(split)], np.int32)

    def images(self, split: str) -> np.ndarray:
        """The uint8 pixels of one split, shape (N, H, W, C), in record order."""
        recs = self.split_records(split)
        channels = 1 if self.color_mode == "grayscale" else 3
        if not recs:
            return np.zeros((0, *self.image_size, channels), np.uint8)
        return np.stack([self._pixels_of(r.path) for r in recs])

    def _pixels_of(self, path: str) -> np.ndarray:
        if self._pixels is not None:
            return np.asarray(self._pixels[self._rows[path]])
        img, _ = decode_file(path, max_pixels=self.max_pixels, draft_to=self.image_size)
        return image_to_array(
            img, self.image_size, color_mode=self.color_mode, resize=self.resize
        )

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and class (splits with no image are left out)."""
        out: dict[str, dict[str, int]] = {}
        for split in SPLIT_ORDER:
            recs = self.split_records(split)
            if recs:
                counter = Counter(r.label for r in recs)
                out[split] = {name: counter.get(name, 0) for name in self.class_names}
        return out

    def class_weights(self) -> dict[int, float]:
        """Balanced class weights of the training split: n / (k * n_class).

        Example:
            >>> from covidxray.data.loader import XrayDataset
            >>> from covidxray.data.records import Record
            >>> recs = [
            ...     Record(f"{i}", "covid" if i < 2 else "non", "train", None, None,
            ...            "", "", "", "", 1, 1, "L", "PNG", 1)
            ...     for i in range(8)
            ... ]
            >>> ds = XrayDataset(
            ...     recs, class_names=("non", "covid"), positive_class="covid",
            ...     image_size=(8, 8), color_mode="grayscale", resize="stretch",
            ...     batch_size=2, seed=0, pixels=None, rows={})
            >>> ds.class_weights()
            {0: 0.6666666666666666, 1: 2.0}
        """
        labels = self.labels("train")
        if labels.size == 0:
            raise DataError("The training split is empty; no class weights to compute.")
        return balanced_class_weights(labels, len(self.class_names))

    def fingerprint(self) -> str:
        """A SHA-256 of the records (content, label, split) and pixel settings.

        Two runs with the same fingerprint saw the same images, labels and splits.
        """
        digest = hashlib.sha256()
        digest.update(
            f"{self.class_names}|{self.image_size}|{self.color_mode}|{self.resize}".encode()
        )
        for rec in sorted(self.records, key=lambda r: (r.split, r.sha256, r.path)):
            digest.update(f"{rec.sha256}|{rec.label}|{rec.split}\n".encode())
        return digest.hexdigest()

    def summary(self) -> str:
        """A short text summary: source, layout, classes and counts per split."""
        note = " - SYNTHETIC demo data, not X-rays" if is_synthetic(self.source) else ""
        lines = [
            f"XrayDataset from '{self.source}' (layout {self.layout!r}){note}",
            f"  classes: {list(self.class_names)} (positive: {self.positive_class})",
            f"  images: {self.image_size[0]}x{self.image_size[1]} {self.color_mode}, "
            f"resize={self.resize!r}",
        ]
        for split, per_class in self.counts().items():
            detail = ", ".join(f"{k} {v}" for k, v in per_class.items())
            lines.append(f"  {split}: {sum(per_class.values())} ({detail})")
        if self.duplicates_removed:
            lines.append(f"  duplicates removed: {len(self.duplicates_removed)}")
        if self.skipped:
            lines.append(f"  files skipped: {len(self.skipped)}")
        if self.dropped:
            lines.append(f"  images dropped (no class): {sum(self.dropped.values())}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"XrayDataset(n={len(self.records)}, classes={list(self.class_names)}, "
            f"splits={ {k: sum(v.values()) for k, v in self.counts().items()} })"
        )

    # ----------------------------------------------------------------- tf.data

    @property
    def train(self) -> tf.data.Dataset | None:
        """Training batches `(float32 images in [0, 1], int32 labels)`, reshuffled
        every epoch, or None when the split is empty."""
        return self.as_tf_dataset("train", shuffle=True)

    @property
    def val(self) -> tf.data.Dataset | None:
        """Validation batches in record order, or None when the split is empty."""
        return self.as_tf_dataset("val")

    @property
    def test(self) -> tf.data.Dataset | None:
        """Test batches in record order, or None when the split is empty."""
        return self.as_tf_dataset("test")

    def as_tf_dataset(
        self,
        split: str,
        *,
        shuffle: bool = False,
        batch_size: int | None = None,
        dtype: str = "float32",
        augmenter: Augmenter | None = None,
    ) -> tf.data.Dataset | None:
        """Batches of one split as a `tf.data.Dataset`.

        Args:
            split: `"train"`, `"val"` or `"test"`.
            shuffle: Reshuffle every epoch (seeded with the dataset's seed).
            batch_size: Defaults to the dataset's batch size.
            dtype: `"float32"` gives images in [0, 1]; `"uint8"` the raw cache.
            augmenter: An `Augmenter` applied to the uint8 batches on their way to
                float32 (its fast path); requires `dtype="float32"`.

        Returns:
            A dataset of `(images, labels)`, or None when the split is empty.
        """
        import tensorflow as tf

        check_choice("dtype", dtype, ("float32", "uint8"), "as_tf_dataset")
        recs = self.split_records(split)
        if not recs:
            return None
        labels = self.labels(split)
        channels = 1 if self.color_mode == "grayscale" else 3
        if self._pixels is not None:
            rows = np.array([self._rows[r.path] for r in recs], dtype=np.int64)
            pixels = self._pixels

            def gather(idx: np.ndarray) -> np.ndarray:
                return np.asarray(pixels[idx])

            ds = tf.data.Dataset.from_tensor_slices((rows, labels))
            if shuffle:
                ds = ds.shuffle(
                    len(recs), seed=self.seed, reshuffle_each_iteration=True
                )
            ds = ds.batch(batch_size or self.batch_size)
            ds = ds.map(
                lambda idx, y: (
                    tf.numpy_function(gather, [idx], tf.uint8, stateful=False),
                    y,
                ),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        else:
            paths = np.array([r.path for r in recs])
            size, mode, resize, limit = (
                self.image_size,
                self.color_mode,
                self.resize,
                self.max_pixels,
            )

            def read(path: bytes) -> np.ndarray:
                img, _ = decode_file(path.decode(), max_pixels=limit, draft_to=size)
                return image_to_array(img, size, color_mode=mode, resize=resize)

            ds = tf.data.Dataset.from_tensor_slices((paths, labels))
            if shuffle:
                ds = ds.shuffle(
                    len(recs), seed=self.seed, reshuffle_each_iteration=True
                )
            ds = ds.map(
                lambda p, y: (
                    tf.numpy_function(read, [p], tf.uint8, stateful=False),
                    y,
                ),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
            ds = ds.batch(batch_size or self.batch_size)
        shape = (None, *self.image_size, channels)

        if augmenter is not None:
            if dtype != "float32":
                raise ValueError("An augmenter needs dtype='float32' in as_tf_dataset.")
            # One stateless seed per batch, zipped in order: the same augmenter
            # seed gives the same images whatever the parallelism.
            seeds = tf.data.Dataset.random(
                seed=augmenter.seed, rerandomize_each_iteration=True
            ).batch(2)

            def augment(
                batch: tuple[tf.Tensor, tf.Tensor], seed: tf.Tensor
            ) -> tuple[tf.Tensor, tf.Tensor]:
                x = tf.ensure_shape(batch[0], shape)
                key = tf.cast(seed % (2**31 - 1), tf.int32)
                x = augmenter.augment(x, key, output_dtype="float32")
                return x, tf.ensure_shape(batch[1], (None,))

            ds = tf.data.Dataset.zip((ds, seeds)).map(
                augment, num_parallel_calls=tf.data.AUTOTUNE
            )
            return ds.prefetch(tf.data.AUTOTUNE)

        def finish(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            x = tf.ensure_shape(x, shape)
            if dtype == "float32":
                x = tf.cast(x, tf.float32) / 255.0
            return x, tf.ensure_shape(y, (None,))

        return ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
            tf.data.AUTOTUNE
        )
