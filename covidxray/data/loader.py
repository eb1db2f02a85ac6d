"""`load_dataset` and `XrayDataset`: from files on disk to `tf.data` batches."""

from __future__ import annotations

import copy
import functools
import hashlib
import logging
import os
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from .._progress import Progress
from .._validation import check_choice, check_image_size, check_positive_int
from ..errors import CovidXrayWarning, DataError
from .cache import CacheFile, temporary_store
from .decode import COLOR_MODES, DEFAULT_MAX_PIXELS, RESIZE_MODES, ImageInfo, Window
from .labels import make_label_map
from .layouts import LAYOUTS, ReadContext, detect_layout, is_synthetic
from .preprocessing import Preprocessing
from .records import Entry, Record, count_by_source
from .split import COPY_BITS, SPLIT_ORDER, assign_splits, check_fractions
from .split import deduplicate as deduplicate_records

if TYPE_CHECKING:
    import tensorflow as tf

#: A transform of uint8 batches for `XrayDataset.as_tf_dataset`: called with
#: images (N, H, W, C) uint8 and a stateless seed (an int32 tensor of shape (2,)),
#: it returns float32 images in [0, 1] (or uint8, then scaled to [0, 1]).
Transform = Callable[[Any, Any], Any]
#: What `load_dataset` reads: a path, a list of paths, or a dict name -> path.
Sources = Union[str, "os.PathLike[str]", Sequence[Any], Mapping[str, Any]]

logger = logging.getLogger("covidxray")

__all__ = ["Transform", "XrayDataset", "load_dataset", "with_transform"]

DEFAULT_CACHE_MEMORY_LIMIT = 2 * 1024**3
#: How `XrayDataset.dropped` names findings that map to no class.
NO_CLASS = "no class for finding "


class _Problems:
    """Raise or collect per-file problems, as `on_error` says."""

    def __init__(self, on_error: str) -> None:
        self.on_error = on_error
        self.skipped: list[tuple[str, str]] = []
        #: Files that failed for want of a package, not for their content.
        self.need_package: set[str] = set()

    def report(self, path: str, reason: str) -> None:
        if self.on_error == "raise":
            raise DataError(f"'{path}': {reason}")
        self.skipped.append((path, reason))

    def add(self, path: str, error: DataError) -> None:
        if getattr(error, "needs_package", False):
            self.need_package.add(path)
        if self.on_error == "raise":
            raise error
        self.skipped.append((path, str(error)))


def _allocate(
    shape: tuple[int, ...],
    cache: bool,
    limit: int,
    folder: str | os.PathLike[str] | None,
) -> np.ndarray | None:
    """The uint8 pixel store: in memory, or a temporary memory-mapped file in
    `folder` when larger than `limit` bytes."""
    if not cache:
        return None
    if int(np.prod(shape)) <= limit:
        return np.zeros(shape, dtype=np.uint8)
    logger.info(
        "The image cache needs %.1f MB, over cache_memory_limit=%.1f MB; "
        "using a file cache.",
        np.prod(shape) / 1e6,
        limit / 1e6,
    )
    return temporary_store(shape, folder)


def _file_hashes(
    entries: Sequence[Entry], problems: _Problems, num_workers: int | None
) -> list[str | None]:
    """SHA-256 of each file's bytes (None for a file that cannot be read)."""

    def work(entry: Entry) -> str | DataError:
        try:
            with open(entry.path, "rb") as fh:
                return hashlib.sha256(fh.read()).hexdigest()
        except OSError as exc:
            return DataError(f"Could not read '{entry.path}': {exc.strerror or exc}.")

    out: list[str | None] = []
    with ThreadPoolExecutor(max_workers=_workers(num_workers)) as pool:
        for entry, result in zip(entries, pool.map(work, entries), strict=True):
            if isinstance(result, DataError):
                problems.add(entry.path, result)
                out.append(None)
            else:
                out.append(result)
    return out


def _workers(num_workers: int | None) -> int:
    return num_workers or min(8, (os.cpu_count() or 1) + 1)


def _fill(
    entries: Sequence[Entry],
    cache: bool | str | os.PathLike[str],
    problems: _Problems,
    prep: Preprocessing,
    *,
    max_pixels: int,
    num_workers: int | None,
    memory_limit: int,
    cache_dir: str | os.PathLike[str] | None,
) -> tuple[np.ndarray | None, list[ImageInfo | None], list[int]]:
    """The pixel store, what the scan measured per entry (None: unreadable),
    and each entry's row in the store."""
    shape = (len(entries), *prep.input_shape)
    if not isinstance(cache, (str, os.PathLike)):
        store = _allocate(shape, cache, memory_limit, cache_dir)
        infos = _scan(
            entries,
            store,
            problems,
            prep,
            max_pixels=max_pixels,
            num_workers=num_workers,
        )
        return store, infos, list(range(len(entries)))
    cache_file = CacheFile(
        cache, {"preprocessing": prep.to_dict(), "max_pixels": max_pixels}
    )
    # A file already there is reused without a lock. Otherwise processes
    # sharing the path (a cluster's workers on a shared disk) take turns:
    # the first scans and writes, the others then find its file.
    reused = _reuse(cache_file, entries, problems, num_workers)
    if reused is not None:
        return reused
    with cache_file.lock():
        reused = _reuse(cache_file, entries, problems, num_workers)
        if reused is not None:
            return reused
        return _scan_into_file(
            cache_file, entries, problems, prep, max_pixels, num_workers
        )


def _reuse(
    cache_file: CacheFile,
    entries: Sequence[Entry],
    problems: _Problems,
    num_workers: int | None,
) -> tuple[np.ndarray | None, list[ImageInfo | None], list[int]] | None:
    """What `_fill` returns, from the cache file at the path; None when there
    is no file there yet."""
    if not os.path.exists(cache_file.path):
        return None
    checked = _Problems("skip")  # unreadable files are reported once, below
    hashes = _file_hashes(entries, checked, num_workers)
    reused = cache_file.reuse(hashes, [e.path for e in entries])
    if reused is None:
        return None
    pixels, rows, found = reused
    kept: list[ImageInfo | None] = []
    reasons = dict(checked.skipped)
    for entry, outcome in zip(entries, found, strict=True):
        if isinstance(outcome, ImageInfo):
            kept.append(outcome)
            continue
        reason = outcome or reasons.get(entry.path, "unreadable")
        problems.add(entry.path, DataError(reason))
        kept.append(None)
    return pixels, kept, [-1 if r is None else r for r in rows]


def _scan_into_file(
    cache_file: CacheFile,
    entries: Sequence[Entry],
    problems: _Problems,
    prep: Preprocessing,
    max_pixels: int,
    num_workers: int | None,
) -> tuple[np.ndarray | None, list[ImageInfo | None], list[int]]:
    """`_fill` for a cache file not written yet: scan, then write it."""
    cache = cache_file.path
    shape = (len(entries), *prep.input_shape)
    writer = cache_file.create(shape)
    try:
        infos = _scan(
            entries,
            writer.store,
            problems,
            prep,
            max_pixels=max_pixels,
            num_workers=num_workers,
        )
    except BaseException:
        writer.abort()
        raise
    if problems.need_package & {e.path for e in entries}:
        writer.abort()  # this run keeps its pixels; the next one writes the file
        logger.warning(
            "Did not save the cache '%s': %d files need a package that is not "
            "installed (see `.skipped`), and a cache must not remember that.",
            cache,
            len(problems.need_package),
        )
        return writer.store, infos, list(range(len(entries)))
    reasons = dict(problems.skipped)
    failed = [e for e, info in zip(entries, infos, strict=True) if info is None]
    failed_hashes = dict(
        zip(
            (e.path for e in failed),
            _file_hashes(failed, _Problems("skip"), num_workers),
            strict=True,
        )
    )
    hashes = [
        info.sha256 if info is not None else failed_hashes[e.path]
        for e, info in zip(entries, infos, strict=True)
    ]
    outcomes: list[ImageInfo | str | None] = [
        info if info is not None else reasons.get(e.path)
        for e, info in zip(entries, infos, strict=True)
    ]
    return writer.publish(hashes, outcomes), infos, list(range(len(entries)))


def _scan(
    entries: Sequence[Entry],
    store: np.ndarray | None,
    problems: _Problems,
    prep: Preprocessing,
    *,
    max_pixels: int,
    num_workers: int | None,
) -> list[ImageInfo | None]:
    """Decode every file once: validate it, hash it and fill the pixel store."""

    def work(i: int) -> ImageInfo | DataError:
        path = entries[i].path
        try:
            img, info = prep.decode(path, max_pixels=max_pixels)
            if store is not None:
                store[i] = prep.to_array(img, name=path)
            return info
        except DataError as exc:
            return exc

    workers = _workers(num_workers)
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
    source: Sources,
    *,
    image_size: Sequence[int] = (224, 224),
    color_mode: str = "grayscale",
    batch_size: int = 32,
    validation_split: float = 0.15,
    test_split: float | Mapping[str, float] | None = None,
    seed: int = 0,
    positive_class: str | None = None,
    classes: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    deduplicate: bool = True,
    on_error: str = "raise",
    cache: bool | str | os.PathLike[str] = True,
    layout: str = "auto",
    resize: str = "stretch",
    window: Window = "auto",
    trim: float = 0.0,
    equalize: str = "none",
    views: Sequence[str] | None = None,
    modality: str | None = "X-ray",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    cache_memory_limit: int = DEFAULT_CACHE_MEMORY_LIMIT,
    cache_dir: str | os.PathLike[str] | None = None,
    num_workers: int | None = None,
    min_classes: int = 2,
) -> XrayDataset:
    """Read a chest X-ray dataset in its own layout into an `XrayDataset`.

    Every file is decoded once while scanning, before any training: broken files
    are found now, never halfway through an epoch. The decoded, resized uint8
    pixels are cached (in memory, or in a file), and `tf.data` turns them into
    float32 batches in [0, 1].

    Args:
        source: A dataset folder, or its metadata/manifest/split file. Or
            several sources: a list of them (each named after its folder), or
            a dict from a name to each. Every source is read in its own
            layout; every record knows its `source`.
        image_size: `(height, width)` of the images the model sees.
        color_mode: `"grayscale"` (1 channel) or `"rgb"` (3 channels).
        batch_size: Images per batch.
        validation_split: Fraction of the training pool held out for validation
            (unused when the source has its own validation split).
        test_split: None keeps the source's own test split (if any). A float
            re-splits all images into train, validation and test. A dict
            gives a fraction per source name (sources it does not name keep
            their own split). Splits are made within each source, whole
            patients at a time.
        seed: Seed for the splits and the shuffling of the training set.
        positive_class: The positive class of a binary task. By default the
            class named like COVID.
        classes: For more than two classes: a list of class names, or a dict from
            class name to the findings that belong to it. Findings match segments
            of the `/` hierarchy, most specific first.
        deduplicate: Keep one copy of each image content (same bytes or pixels),
            the one in the earliest split, so no content is in two splits.
            Across sources, copies at another size or encoding count too
            (perceptual hashes within `COPY_BITS` bits), and a copy whose
            split its source fixed is kept before one in a source without
            splits (a source's own test set stays whole).
        on_error: `"raise"` stops at the first bad file with a `DataError`;
            `"skip"` leaves bad files out, lists them in `.skipped` and warns once.
        cache: True caches pixels in memory (a temporary file in `cache_dir`
            above `cache_memory_limit` bytes); False decodes from disk every
            epoch. A path keeps the cache in that file for later runs: a
            matching cache there (same preprocessing and `max_pixels`, holding
            every file asked for) is reused without decoding; a missing one is
            written (atomically); anything else there raises and is left as it
            is.
        layout: `"auto"`, or one of `"folder"`, `"ieee8023"`, `"figure1"`,
            `"actualmed"`, `"coronahack"`, `"covidx"`, `"manifest"`.
        resize: `"stretch"`, `"pad"` (keep aspect, black borders) or `"crop"`
            (keep aspect, centre crop).
        window: How raw pixel values become 8 bits: `"auto"` (8-bit images
            unchanged, deeper ones scaled by their real bit depth, DICOM by
            its own window), `"percentile"` (each image between its 0.5th and
            99.5th percentiles) or `(low, high)` raw values.
        trim: Above 0, cut uniform borders (frames, padding), then this
            fraction of each side, where burnt-in text and markers sit.
        equalize: `"none"`, `"histogram"` or `"clahe"` (see `Preprocessing`).
        views: Keep only these views (e.g. `("PA", "AP")`) in metadata layouts.
        modality: Keep only this modality in metadata layouts; None keeps all.
        max_pixels: Refuse larger images (decompression bombs).
        cache_memory_limit: Largest in-memory cache, in bytes.
        cache_dir: Folder of the temporary file cache used above
            `cache_memory_limit`. Default: `$COVIDXRAY_CACHE_DIR`, else the
            system's temporary folder.
        num_workers: Threads that decode while scanning.
        min_classes: The fewest classes the readable images may hold. 1 reads
            a single-class set (external positives only, say) for evaluation;
            for two classes its classes are then `non-<positive>` and
            `<positive>`.

    Returns:
        The `XrayDataset`.

    Raises:
        DataError: A file or folder is missing, unreadable or wrong (with
            `on_error="raise"`), or the data has fewer than `min_classes`
            classes.
        ValueError: An argument has a value that is not allowed.

    Examples:
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
    prep = Preprocessing(
        check_image_size(image_size, "load_dataset"),
        color_mode=color_mode,
        resize=resize,
        window=window,
        trim=trim,
        equalize=equalize,
    )
    check_positive_int("batch_size", batch_size, "load_dataset")
    check_choice("min_classes", min_classes, (1, 2), "load_dataset")
    sources = _named_sources(source)
    fractions = _test_fractions(test_split, sources, validation_split)
    several = len(sources) > 1

    problems = _Problems(on_error)
    ctx = ReadContext(report=problems.report, views=views, modality=modality)
    layouts: dict[str, str] = {}
    entries: list[Entry] = []
    dataset_of: dict[str, str] = {}
    for name, root in sources.items():
        layouts[name] = detect_layout(root) if layout == "auto" else layout
        logger.info("Reading '%s' as layout %r.", root, layouts[name])
        found = _unique_paths(LAYOUTS[layouts[name]].read(root, ctx))
        if not found:
            named = f" (source {name!r})" if several else ""
            raise DataError(
                f"Found no labelled images in '{root}'{named} "
                f"(layout {layouts[name]!r})."
            )
        # A layout that knows each row's own source (COVIDx) keeps it, under
        # the source's name when there are several.
        entries += [
            replace(e, source=_sub_source(name, e.source, several)) for e in found
        ]
        for e in found:
            if e.path in dataset_of:
                raise DataError(
                    f"'{e.path}' is in two sources, {dataset_of[e.path]!r} and "
                    f"{name!r}. Give each file to one source."
                )
            dataset_of[e.path] = name
    entries = _unique_paths(entries)

    label_map = make_label_map(
        [e.finding for e in entries],
        classes=classes,
        positive_class=positive_class,
        keep_names=all(v in ("folder", "manifest") for v in layouts.values()),
        single_class=min_classes < 2,
    )
    dropped = Counter(ctx.dropped)
    kept_entries = []
    for entry in entries:
        if label_map.mapping[entry.finding] is None:
            dropped[f"{NO_CLASS}{entry.finding}"] += 1
        else:
            kept_entries.append(entry)
    if dropped:
        logger.info("Dropped images that map to no class: %s", dict(dropped))

    store, infos, store_rows = _fill(
        kept_entries,
        cache,
        problems,
        prep,
        max_pixels=max_pixels,
        num_workers=num_workers,
        memory_limit=cache_memory_limit,
        cache_dir=cache_dir,
    )

    records: list[Record] = []
    rows: dict[str, int] = {}
    for row, (entry, info) in enumerate(zip(kept_entries, infos, strict=True)):
        if info is None:
            continue
        label = label_map.mapping[entry.finding]
        assert label is not None
        records.append(_record(entry, label, info))
        rows[entry.path] = store_rows[row]
    if problems.skipped:
        warnings.warn(
            f"Skipped {len(problems.skipped)} of {len(entries)} files that could not "
            f"be read, e.g. {problems.skipped[0][0]!r} ({problems.skipped[0][1]}). "
            "The full list is in the dataset's `.skipped`.",
            CovidXrayWarning,
            stacklevel=2,
        )
    present = {r.label for r in records}
    if len(present) < min_classes:
        raise DataError(
            f"Found only the class(es) {sorted(present)} among the readable images of "
            f"'{_describe(sources)}'; at least {min_classes} classes are needed. To "
            "evaluate on a set with one class, pass it to Classifier.evaluate, or "
            "load it with min_classes=1."
        )

    removed: list[tuple[Record, Record]] = []
    if deduplicate:
        records, removed = deduplicate_records(
            records,
            cross_source_bits=COPY_BITS,  # between sources or sub-sources
            fixed={e.path for e in entries if e.split is not None},
        )
    split_records: list[Record] = []
    for name in sources:
        split_records += assign_splits(
            [r for r in records if dataset_of[r.path] == name],
            validation_split=validation_split,
            test_split=fractions[name],
            seed=seed,
        )
    return XrayDataset(
        split_records,
        class_names=label_map.class_names,
        positive_class=label_map.positive_class,
        preprocessing=prep,
        batch_size=batch_size,
        seed=seed,
        pixels=store,
        rows=rows,
        skipped=problems.skipped,
        duplicates_removed=removed,
        dropped=dict(dropped),
        layout=next(iter(layouts.values())) if not several else "multi-source",
        source=_describe(sources),
        max_pixels=max_pixels,
        sources={name: str(root) for name, root in sources.items()},
        layouts=layouts,
        label_mapping={f: c for f, c in label_map.mapping.items() if c is not None},
    )


def _sub_source(name: str, own: str | None, several: bool) -> str:
    if own is None:
        return name
    return f"{name}/{own}" if several else own


def source_name(path: Path) -> str:
    """A source's default name: its folder's name (a table file: its folder)."""
    folder = path.parent if path.is_file() else path
    return folder.resolve().name or str(path)


def _named_sources(source: Any) -> dict[str, Path]:
    """The sources as an ordered dict name -> path, checked."""
    if isinstance(source, (str, os.PathLike)):
        items: list[tuple[str | None, Any]] = [(None, source)]
    elif isinstance(source, Mapping):
        items = [(str(k), v) for k, v in source.items()]
    elif isinstance(source, Sequence):
        items = [(None, v) for v in source]
    else:
        raise TypeError(
            "The `source` argument of load_dataset must be a path, a list of "
            f"paths or a dict from name to path. Received: {source!r}."
        )
    if not items:
        raise ValueError("The `source` argument of load_dataset names no source.")
    named: dict[str, Path] = {}
    for name, value in items:
        if not isinstance(value, (str, os.PathLike)):
            raise TypeError(
                f"Each source of load_dataset must be a path. Received: {value!r}."
            )
        root = Path(value)
        if not root.exists():
            raise DataError(f"The dataset source '{root}' does not exist.")
        key = name if name is not None else source_name(root)
        if key in named:
            raise DataError(
                f"Two sources are named {key!r}: '{named[key]}' and '{root}'. Pass a "
                "dict from name to path to name them apart."
            )
        named[key] = root
    return named


def _describe(sources: Mapping[str, Path]) -> str:
    if len(sources) == 1:
        return str(next(iter(sources.values())))
    return ", ".join(f"{name}={root}" for name, root in sources.items())


def _test_fractions(
    test_split: float | Mapping[str, float] | None,
    sources: Mapping[str, Path],
    validation_split: float,
) -> dict[str, float | None]:
    """The test fraction of each source (None: the source's own split)."""
    if isinstance(test_split, Mapping):
        unknown = sorted(set(test_split) - set(sources))
        if unknown:
            raise ValueError(
                f"The `test_split` argument of load_dataset names sources {unknown} "
                f"that are not among the sources {list(sources)}."
            )
        out = {name: test_split.get(name) for name in sources}
    else:
        out = dict.fromkeys(sources, test_split)
    for value in out.values():
        check_fractions(validation_split, value)
    return out


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
        bit_depth=info.bit_depth,
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
        preprocessing: The `Preprocessing` that made the pixels served; its
            `image_size`, `color_mode` and `resize` are also attributes here.
        skipped: `(path, reason)` for each file left out by `on_error="skip"`.
        duplicates_removed: `(removed, kept)` record pairs left out by
            `deduplicate=True`.
        dropped: Count of images whose finding maps to no class, by reason.
        layout: The layout that was read (`"multi-source"` for several).
        source: The path it was read from (for several sources, `name=path`
            pairs).
        sources: Source name -> path, in the order given.
        layouts: Source name -> the layout it was read as.
        label_mapping: Each finding (folder name, `finding` value...) -> its
            class.

    Examples:
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
        preprocessing: Preprocessing,
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
        sources: Mapping[str, str] | None = None,
        layouts: Mapping[str, str] | None = None,
        label_mapping: Mapping[str, str] | None = None,
    ) -> None:
        self.records = list(records)
        self.class_names = tuple(class_names)
        self.positive_class = positive_class
        self.preprocessing = preprocessing
        self.batch_size = batch_size
        self.seed = seed
        self.skipped = list(skipped)
        self.duplicates_removed = list(duplicates_removed)
        self.dropped = dict(dropped or {})
        self.layout = layout
        self.source = source
        self.max_pixels = max_pixels
        self.sources = dict(sources or {})
        self.layouts = dict(layouts or {})
        self.label_mapping = dict(label_mapping or {})
        self._pixels = pixels
        self._rows = dict(rows)
        #: `"class"` or `"source"` for a view made by `balanced`, else None.
        self.sampling: str | None = None

    @property
    def image_size(self) -> tuple[int, int]:
        """`(height, width)` of the images served."""
        return self.preprocessing.image_size

    @property
    def color_mode(self) -> str:
        """`"grayscale"` or `"rgb"`."""
        return self.preprocessing.color_mode

    @property
    def resize(self) -> str:
        """The resize policy: `"stretch"`, `"pad"` or `"crop"`."""
        return self.preprocessing.resize

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
        return self.images_of(self.split_records(split))

    def images_of(self, records: Sequence[Record]) -> np.ndarray:
        """The uint8 pixels of some of this dataset's records, (N, H, W, C)."""
        if not records:
            return np.zeros((0, *self.preprocessing.input_shape), np.uint8)
        return np.stack([self._pixels_of(r.path) for r in records])

    def _pixels_of(self, path: str) -> np.ndarray:
        if self._pixels is not None:
            return np.asarray(self._pixels[self._rows[path]])
        return self.preprocessing.load(path, max_pixels=self.max_pixels)

    def subset(self, sources: Sequence[str]) -> XrayDataset:
        """A view of the images of some sources, with their splits, sharing
        this dataset's pixel cache.

        Args:
            sources: Source names, as `Record.source` gives them (a name
                matches its sub-sources too: `"covidx"` keeps `"covidx/sirm"`).

        Raises:
            ValueError: A name matches no image.

        Examples:
            >>> import tempfile
            >>> from covidxray import load_dataset
            >>> from covidxray.datasets import make_synthetic
            >>> a = make_synthetic(
            ...     tempfile.mkdtemp(), n_per_class=4, image_size=(32, 32))
            >>> b = make_synthetic(
            ...     tempfile.mkdtemp(), n_per_class=3, image_size=(32, 32), seed=1)
            >>> both = load_dataset({"a": a, "b": b}, image_size=(8, 8))
            >>> len(both.subset(["b"]).records), both.subset(["b"]).source
            (6, 'b')
        """
        names = [str(n) for n in sources]
        held = {str(r.source) for r in self.records}
        unknown = [
            n for n in names if not any(h == n or h.startswith(n + "/") for h in held)
        ]
        if unknown:
            raise ValueError(
                f"The `sources` argument of subset names {unknown}, which hold no "
                f"image of this dataset. Its sources: {sorted(held)}."
            )

        def kept(rec: Record) -> bool:
            src = str(rec.source)
            return any(src == n or src.startswith(n + "/") for n in names)

        view = copy.copy(self)
        view.records = [r for r in self.records if kept(r)]
        view.duplicates_removed = [
            pair for pair in self.duplicates_removed if kept(pair[0])
        ]
        view.sources = {n: self.sources[n] for n in names if n in self.sources}
        view.source = ", ".join(names)
        return view

    def balanced(self, by: str = "source") -> XrayDataset:
        """A view of this dataset whose training batches are drawn, with
        replacement, so that classes weigh the same.

        With `by="class"`, every class has the same chance per draw. With
        `by="source"`, every source keeps its share of the draws, split
        equally among the classes it holds, so that within a source the label
        prior is no longer the source's (a source with one class keeps it).
        Each pass draws as many images as the split holds. Validation and
        test batches are unchanged. `Classifier.fit` then uses no class
        weights (its default `"balanced"` means none for such a view), and
        does not cache a frozen backbone's features, which would freeze one
        pass of draws.

        Examples:
            >>> import tempfile
            >>> from covidxray import load_dataset
            >>> from covidxray.datasets import make_synthetic
            >>> root = make_synthetic(
            ...     tempfile.mkdtemp(), n_per_class=6, image_size=(16, 16))
            >>> view = load_dataset(root, image_size=(16, 16)).balanced("class")
            >>> view.sampling, round(float(view.draw_weights("train").sum()), 6)
            ('class', 1.0)
        """
        check_choice("by", by, ("class", "source"), "balanced")
        view = copy.copy(self)
        view.sampling = by
        return view

    def draw_weights(self, split: str) -> np.ndarray:
        """The chance of each record of `split` per draw (sums to 1): uniform,
        or as `balanced` says."""
        recs = self.split_records(split)
        if not recs:
            return np.zeros(0)
        if self.sampling is None:
            return np.full(len(recs), 1.0 / len(recs))
        cells = Counter((r.source, r.label) for r in recs)
        if self.sampling == "class":
            per_label = Counter(r.label for r in recs)
            w = np.array([1.0 / (len(per_label) * per_label[r.label]) for r in recs])
        else:
            sources = Counter(r.source for r in recs)
            held = Counter(src for src, _ in cells)
            w = np.array(
                [
                    sources[r.source] / (held[r.source] * cells[(r.source, r.label)])
                    for r in recs
                ]
            )
        return w / w.sum()

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

        Examples:
            >>> from covidxray import Preprocessing
            >>> from covidxray.data.loader import XrayDataset
            >>> from covidxray.data.records import Record
            >>> recs = [
            ...     Record(f"{i}", "covid" if i < 2 else "non", "train", None, None,
            ...            "", "", "", "", 1, 1, "L", "PNG", 1)
            ...     for i in range(8)
            ... ]
            >>> ds = XrayDataset(
            ...     recs, class_names=("non", "covid"), positive_class="covid",
            ...     preprocessing=Preprocessing((8, 8)), batch_size=2, seed=0,
            ...     pixels=None, rows={})
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

    def source_table(self) -> dict[str, dict[str, int]]:
        """Images per source and class (all splits).

        Examples:
            >>> import tempfile
            >>> from covidxray import load_dataset
            >>> from covidxray.datasets import make_synthetic
            >>> a = make_synthetic(
            ...     tempfile.mkdtemp(), n_per_class=4, image_size=(32, 32))
            >>> b = make_synthetic(
            ...     tempfile.mkdtemp(), n_per_class=3, image_size=(32, 32), seed=1)
            >>> load_dataset({"a": a, "b": b}, image_size=(8, 8)).source_table()
            {'a': {'normal': 4, 'covid': 4}, 'b': {'normal': 3, 'covid': 3}}
        """
        return count_by_source(self.records, self.class_names)

    def summary(self) -> str:
        """A short text summary: sources, classes, counts per split and, for
        several sources, images per source and class and how each source's
        findings map to the classes."""
        synthetic = any(is_synthetic(p) for p in self.sources.values()) or (
            not self.sources and is_synthetic(self.source)
        )
        note = " - SYNTHETIC demo data, not X-rays" if synthetic else ""
        lines = [
            f"XrayDataset from '{self.source}' (layout {self.layout!r}){note}",
            f"  classes: {list(self.class_names)} (positive: {self.positive_class})",
            f"  images: {self.image_size[0]}x{self.image_size[1]} {self.color_mode}, "
            f"resize={self.resize!r}",
        ]
        for split, per_class in self.counts().items():
            detail = ", ".join(f"{k} {v}" for k, v in per_class.items())
            lines.append(f"  {split}: {sum(per_class.values())} ({detail})")
        table = self.source_table()
        if len(table) > 1:
            lines.append("  images per source and class:")
            width = max(len(n) for n in table)
            for name, per_class in table.items():
                detail = ", ".join(f"{k} {v}" for k, v in per_class.items())
                lines.append(f"    {name:<{width}}  {detail}")
        if len(self.sources) > 1:
            lines.append("  findings -> classes:")
            by_source: dict[str, set[str]] = defaultdict(set)
            for rec in self.records:
                by_source[str(rec.source).split("/")[0]].add(rec.finding)
            for name in self.sources:
                pairs = sorted(
                    f"{f} -> {self.label_mapping.get(f, '?')}" for f in by_source[name]
                )
                shown = ", ".join(pairs[:6]) + (", ..." if len(pairs) > 6 else "")
                lines.append(f"    {name}: {shown}")
        if self.duplicates_removed:
            across = sum(a.source != b.source for a, b in self.duplicates_removed)
            extra = f" ({across} copies across sources)" if across else ""
            lines.append(f"  duplicates removed: {len(self.duplicates_removed)}{extra}")
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
        transform: Transform | None = None,
        transform_seed: int | None = None,
        augmenter: Any = None,
        shard: tuple[int, int] | None = None,
    ) -> tf.data.Dataset | None:
        """Batches of one split as a `tf.data.Dataset`.

        The pipeline has three steps: uint8 batches (gathered from the cache,
        or decoded from disk with the dataset's `Preprocessing`), then an
        optional `transform` of those uint8 batches, then float32 in [0, 1].

        Args:
            split: `"train"`, `"val"` or `"test"`.
            shuffle: Reshuffle every epoch (seeded with the dataset's seed).
            batch_size: Defaults to the dataset's batch size.
            dtype: `"float32"` gives images in [0, 1]; `"uint8"` the raw cache.
            transform: A callable `transform(images, seed)` applied to each
                uint8 batch (N, H, W, C) on its way to float32. `seed` is a
                stateless seed, an int32 tensor of shape (2,), drawn per batch
                from a stream seeded by `transform_seed`, so the same seed gives
                the same batches whatever the parallelism. It returns float32
                images in [0, 1] (or uint8). An `Augmenter`'s fast path is
                `functools.partial(augmenter.augment, output_dtype="float32")`.
                Needs `dtype="float32"`.
            transform_seed: Seed of the per-batch seeds; default: the dataset's.
            augmenter: Deprecated; use `transform`. An `Augmenter`, applied
                through its public `augment` method.
            shard: `(index, count)`: only the `index`-th of `count` equal
                shares of each pass (for multi-worker training; the last
                `len % count` images of a pass are left out, so that every
                worker takes the same number of steps). tf.data's own
                auto-sharding is then turned off.

        Returns:
            A dataset of `(images, labels)`, or None when the split is empty.

        Examples:
            >>> import functools, tempfile
            >>> from covidxray import Augmenter, load_dataset
            >>> from covidxray.datasets import make_synthetic
            >>> root = make_synthetic(
            ...     tempfile.mkdtemp(), n_per_class=4, image_size=(40, 40))
            >>> data = load_dataset(root, image_size=(40, 40), batch_size=4)
            >>> aug = Augmenter.xray(seed=1)
            >>> batches = data.as_tf_dataset(
            ...     "train", shuffle=True, transform_seed=1,
            ...     transform=functools.partial(aug.augment, output_dtype="float32"))
            >>> images, labels = next(iter(batches))
            >>> images.dtype.name, tuple(images.shape)
            ('float32', (4, 40, 40, 1))
        """
        import tensorflow as tf

        check_choice("dtype", dtype, ("float32", "uint8"), "as_tf_dataset")
        if augmenter is not None:
            if transform is not None:
                raise ValueError("Pass `transform` or `augmenter`, not both.")
            warnings.warn(
                "The `augmenter` argument of as_tf_dataset is deprecated; pass "
                "transform=functools.partial(augmenter.augment, "
                "output_dtype='float32') and transform_seed=augmenter.seed.",
                DeprecationWarning,
                stacklevel=2,
            )
            transform = functools.partial(augmenter.augment, output_dtype="float32")
            transform_seed = augmenter.seed
        if transform is not None and dtype != "float32":
            raise ValueError(
                "A `transform` needs dtype='float32' in as_tf_dataset. "
                f"Received: dtype={dtype!r}."
            )
        recs = self.split_records(split)
        if not recs:
            return None
        labels = self.labels(split)
        size = batch_size or self.batch_size
        order = self._order(split, shuffle)
        if shard is not None:
            index, count = (int(v) for v in shard)
            if count < 1 or not 0 <= index < count:
                raise ValueError(
                    "The `shard` argument of as_tf_dataset must be (index, count) "
                    f"with 0 <= index < count. Received: {shard!r}."
                )
            share = len(recs) // count
            if share == 0:
                raise DataError(
                    f"The {split} split has {len(recs)} images, fewer than the "
                    f"{count} workers that share it."
                )
            order = order.shard(count, index).take(share)
        if self._pixels is not None:
            ds = self._cached_batches(recs, labels, size, order)
        else:
            ds = self._decoded_batches(recs, labels, size, order)
        shape = (None, *self.preprocessing.input_shape)

        def checked(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return tf.ensure_shape(x, shape), tf.ensure_shape(y, (None,))

        ds = ds.map(checked, num_parallel_calls=tf.data.AUTOTUNE)
        if transform is not None:
            seed = self.seed if transform_seed is None else transform_seed
            ds = with_transform(ds, transform, seed)
        elif dtype == "float32":
            ds = ds.map(
                lambda x, y: (tf.cast(x, tf.float32) / 255.0, y),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        if shard is not None:
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = (
                tf.data.experimental.AutoShardPolicy.OFF
            )
            ds = ds.with_options(options)
        return ds.prefetch(tf.data.AUTOTUNE)

    def _order(self, split: str, shuffle: bool) -> tf.data.Dataset:
        """Positions in the split, one pass: in order, reshuffled every pass,
        or drawn with `draw_weights` when this is a `balanced` view."""
        import tensorflow as tf

        n = len(self.split_records(split))
        if shuffle and self.sampling is not None:
            edges = tf.constant(np.cumsum(self.draw_weights(split))[:-1], tf.float64)
            draws = tf.data.Dataset.random(
                seed=self.seed, rerandomize_each_iteration=True
            ).take(n)
            return draws.map(
                lambda r: tf.searchsorted(
                    edges,
                    # Dataset.random gives integers in [0, 2**32).
                    tf.reshape(tf.cast(r % (2**32), tf.float64) / 2.0**32, [1]),
                    side="right",
                )[0]
            )
        order = tf.data.Dataset.range(n)
        if shuffle:
            order = order.shuffle(n, seed=self.seed, reshuffle_each_iteration=True)
        return order

    def _cached_batches(
        self,
        recs: list[Record],
        labels: np.ndarray,
        size: int,
        order: tf.data.Dataset,
    ) -> tf.data.Dataset:
        """uint8 batches gathered from the pixel cache by row index."""
        import tensorflow as tf

        rows = tf.constant([self._rows[r.path] for r in recs], tf.int64)
        targets = tf.constant(labels)
        pixels = self._pixels

        def gather(idx: np.ndarray) -> np.ndarray:
            return np.asarray(pixels[idx])  # type: ignore[index]

        ds = order.map(lambda i: (tf.gather(rows, i), tf.gather(targets, i)))
        return ds.batch(size).map(
            lambda idx, y: (
                tf.numpy_function(gather, [idx], tf.uint8, stateful=False),
                y,
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    def _decoded_batches(
        self,
        recs: list[Record],
        labels: np.ndarray,
        size: int,
        order: tf.data.Dataset,
    ) -> tf.data.Dataset:
        """uint8 batches decoded from disk, file by file, with `preprocessing`."""
        import tensorflow as tf

        prep, limit = self.preprocessing, self.max_pixels

        def read(path: bytes) -> np.ndarray:
            return prep.load(path.decode(), max_pixels=limit)

        paths = tf.constant([r.path for r in recs])
        targets = tf.constant(labels)
        ds = order.map(lambda i: (tf.gather(paths, i), tf.gather(targets, i)))
        ds = ds.map(
            lambda p, y: (tf.numpy_function(read, [p], tf.uint8, stateful=False), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        return ds.batch(size)


def with_transform(
    ds: tf.data.Dataset, transform: Transform, seed: int | None
) -> tf.data.Dataset:
    """Apply `transform(images, seed)` to `(images, labels)` batches.

    Each batch gets its own stateless seed (an int32 tensor of shape (2,))
    from a stream seeded by `seed`, zipped in order, so the same seed gives the
    same images whatever the parallelism. The result is float32; a transform
    that returns uint8 is scaled to [0, 1].
    """
    import tensorflow as tf

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(
        2, drop_remainder=True
    )

    def apply(
        batch: tuple[tf.Tensor, tf.Tensor], pair: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        x, y = batch
        out = tf.convert_to_tensor(transform(x, tf.cast(pair % (2**31 - 1), tf.int32)))
        if out.dtype == tf.uint8:
            out = tf.cast(out, tf.float32) / 255.0
        return tf.cast(out, tf.float32), y

    return tf.data.Dataset.zip((ds, seeds)).map(
        apply, num_parallel_calls=tf.data.AUTOTUNE
    )
