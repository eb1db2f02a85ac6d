"""`load_dataset`: from files on disk to an `XrayDataset`, as a short pipeline.

read (each source in its layout, `layouts`) -> label (findings to classes,
`labels`) -> scan (decode, check, hash and cache every file once, `cache`) ->
deduplicate (`split.deduplicate`, by `identity.SAME_PICTURE`) -> split
(`split.assign_splits`, per source). See `docs/guides/datasets.md`.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Union

from .._validation import check_choice, check_image_size, check_positive_int
from ..errors import CovidXrayWarning, DataError
from . import checks, identity
from .dataset import XrayDataset, describe_sources
from .decode import COLOR_MODES, DEFAULT_MAX_PIXELS, RESIZE_MODES, ImageInfo, Window
from .labels import LabelMap, make_label_map
from .layouts import LAYOUTS, ReadContext, detect_layout
from .preprocessing import LUNG_MODES, Preprocessing, report_lungs
from .records import Entry, Record
from .scan import Problems, fill
from .split import assign_splits, check_fractions
from .split import deduplicate as deduplicate_records

#: What `load_dataset` reads: a path, a list of paths, or a dict name -> path.
Sources = Union[str, "os.PathLike[str]", Sequence[Any], Mapping[str, Any]]

logger = logging.getLogger("covidxray")

__all__ = ["DEFAULT_CACHE_MEMORY_LIMIT", "NO_CLASS", "load_dataset", "source_name"]

DEFAULT_CACHE_MEMORY_LIMIT = 2 * 1024**3
#: How `XrayDataset.dropped` names findings that map to no class (the same
#: findings are `XrayDataset.unmatched_findings`, as data).
NO_CLASS = "no class for finding "


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
    lungs: str = "none",
    lung_masks: bool = False,
    views: Sequence[str] | None = None,
    modality: str | None = "X-ray",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    cache_memory_limit: int = DEFAULT_CACHE_MEMORY_LIMIT,
    cache_dir: str | os.PathLike[str] | None = None,
    num_workers: int | None = None,
    min_classes: int = 2,
    class_map: Mapping[str, str] | None = None,
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
            (perceptual hashes within `SAME_PICTURE.copy_bits()` bits, 12 of
            256), and a copy whose split its source fixed is kept before one
            in a source without splits (a source's own test set stays whole).
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
            `"actualmed"`, `"coronahack"`, `"covidx"`, `"covidx-ct"` (CT
            slices, each read inside its body box), `"manifest"`.
        resize: `"stretch"`, `"pad"` (keep aspect, black borders) or `"crop"`
            (keep aspect, centre crop).
        window: How raw pixel values become 8 bits: `"auto"` (8-bit images
            unchanged, deeper ones scaled by their real bit depth, DICOM by
            its own window), `"percentile"` (each image between its 0.5th and
            99.5th percentiles) or `(low, high)` raw values.
        trim: Above 0, cut uniform borders (frames, padding), then this
            fraction of each side, where burnt-in text and markers sit.
        equalize: `"none"`, `"histogram"` or `"clahe"` (see `Preprocessing`).
        lungs: `"none"`, `"crop"` (crop to the lungs plus a margin) or
            `"mask"` (crop, and set everything outside the lungs to 0); the
            shipped `LungSegmenter` finds them while scanning (see
            `Preprocessing`). Its masks are then kept too.
        lung_masks: Also keep each image's lung mask at the model's input
            size (`XrayDataset.lung_masks_of`), as `Classifier(lung_focus=...)`
            uses, without changing the pixels. Masks are kept in a cache file
            beside the pixels, and found once.
        views: Keep only these views (e.g. `("PA", "AP")`) in metadata layouts.
        modality: Keep only this modality in metadata layouts with a
            modality column; None keeps all. (`covidx-ct` is CT throughout;
            every record knows its `modality`.)
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
        class_map: Rename findings (class folder names, label values) before
            the classes are decided, e.g. `{"cats": "non", "dogs": "covid"}`
            (on the command line `--class-map cats=non,dogs=covid`). A name
            that is no finding of the data is an error.

    Returns:
        The `XrayDataset`.

    Raises:
        DataError: A file or folder is missing, unreadable or wrong (with
            `on_error="raise"`), the data has fewer than `min_classes`
            classes, or deduplication left a class with no images (say, all
            its images were copies of another class's).
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
    prep = _preprocessing(
        image_size, color_mode, resize, window, trim, equalize, lungs, on_error, layout
    )
    check_positive_int("batch_size", batch_size, "load_dataset")
    check_choice("min_classes", min_classes, (1, 2), "load_dataset")
    sources = _named_sources(source)
    fractions = _test_fractions(test_split, sources, validation_split)
    problems = Problems(on_error)
    ctx = ReadContext(report=problems.report, views=views, modality=modality)
    # read -> label -> scan -> deduplicate -> split
    entries, layouts, owner = _read(sources, layout, ctx)
    entries = checks.apply_class_map(entries, class_map)
    if all(v in ("folder", "manifest") for v in layouts.values()):
        checks.check_case_collisions(entries, describe_sources(sources))
    label_map = make_label_map(
        [e.finding for e in entries],
        classes=classes,
        positive_class=positive_class,
        keep_names=all(v in ("folder", "manifest") for v in layouts.values()),
        single_class=min_classes < 2,
    )
    kept, unmatched, dropped = _labelled(entries, label_map, ctx.dropped)
    store, infos, store_rows, found_lungs = fill(
        kept,
        cache,
        problems,
        prep,
        max_pixels=max_pixels,
        num_workers=num_workers,
        memory_limit=cache_memory_limit,
        cache_dir=cache_dir,
        lung_masks=lung_masks,
    )
    records, rows = _records(kept, infos, store_rows, label_map)
    if found_lungs is not None:
        report_lungs(list(found_lungs.problems.items()), len(records))
    _check_readable(records, problems, len(entries), min_classes, sources)
    removed: list[tuple[Record, Record]] = []
    if deduplicate:
        records, removed = _deduplicated(records, entries, label_map, sources)
    return XrayDataset(
        _split(records, sources, owner, validation_split, fractions, seed),
        class_names=label_map.class_names,
        positive_class=label_map.positive_class,
        preprocessing=prep,
        batch_size=batch_size,
        seed=seed,
        pixels=store,
        rows=rows,
        skipped=problems.skipped,
        duplicates_removed=removed,
        dropped=dropped,
        unmatched_findings=unmatched,
        layout=next(iter(layouts.values())) if len(sources) == 1 else "multi-source",
        max_pixels=max_pixels,
        sources={name: str(root) for name, root in sources.items()},
        layouts=layouts,
        label_mapping={f: c for f, c in label_map.mapping.items() if c is not None},
        lungs=found_lungs,
    )


def _deduplicated(
    records: list[Record],
    entries: Sequence[Entry],
    label_map: LabelMap,
    sources: Mapping[str, Path],
) -> tuple[list[Record], list[tuple[Record, Record]]]:
    """`split.deduplicate`, then a `DataError` when it emptied a class."""
    kept, removed = deduplicate_records(
        records,
        cross_source_bits=identity.SAME_PICTURE.copy_bits(256),
        fixed={e.path for e in entries if e.split is not None},
    )
    checks.check_emptied_classes(
        records, kept, removed, label_map.class_names, describe_sources(sources)
    )
    return kept, removed


def _preprocessing(
    image_size: Sequence[int],
    color_mode: str,
    resize: str,
    window: Window,
    trim: float,
    equalize: str,
    lungs: str,
    on_error: str,
    layout: str,
) -> Preprocessing:
    """Check the choices of `load_dataset`, then build its `Preprocessing`."""
    check_choice("color_mode", color_mode, COLOR_MODES, "load_dataset")
    check_choice("resize", resize, RESIZE_MODES, "load_dataset")
    check_choice("on_error", on_error, ("raise", "skip"), "load_dataset")
    check_choice("layout", layout, ("auto", *LAYOUTS), "load_dataset")
    check_choice("lungs", lungs, LUNG_MODES, "load_dataset")
    return Preprocessing(
        check_image_size(image_size, "load_dataset"),
        color_mode=color_mode,
        resize=resize,
        window=window,
        trim=trim,
        equalize=equalize,
        lungs=lungs,
    )


def _read(
    sources: Mapping[str, Path], layout: str, ctx: ReadContext
) -> tuple[list[Entry], dict[str, str], dict[str, str]]:
    """Read every source in its layout: the entries, the layout of each
    source, and the source that owns each path."""
    several = len(sources) > 1
    layouts: dict[str, str] = {}
    entries: list[Entry] = []
    owner: dict[str, str] = {}
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
            if e.path in owner:
                raise DataError(
                    f"'{e.path}' is in two sources, {owner[e.path]!r} and "
                    f"{name!r}. Give each file to one source."
                )
            owner[e.path] = name
    return _unique_paths(entries), layouts, owner


def _labelled(
    entries: Sequence[Entry], label_map: LabelMap, dropped_by_reader: Mapping[str, int]
) -> tuple[list[Entry], dict[str, int], dict[str, int]]:
    """The entries whose finding maps to a class; the findings that map to
    none, with their counts; and every reason an image was dropped (the
    readers' and `NO_CLASS` + finding), with its count."""
    kept: list[Entry] = []
    unmatched: Counter[str] = Counter()
    for entry in entries:
        if label_map.mapping[entry.finding] is None:
            unmatched[entry.finding] += 1
        else:
            kept.append(entry)
    dropped = Counter(dropped_by_reader)
    for finding, count in unmatched.items():
        dropped[f"{NO_CLASS}{finding}"] += count
    if dropped:
        logger.info("Dropped images that map to no class: %s", dict(dropped))
    return kept, dict(unmatched), dict(dropped)


def _records(
    entries: Sequence[Entry],
    infos: Sequence[ImageInfo | None],
    store_rows: Sequence[int],
    label_map: LabelMap,
) -> tuple[list[Record], dict[str, int]]:
    """A record per readable entry, and each one's row in the pixel store."""
    records: list[Record] = []
    rows: dict[str, int] = {}
    for row, (entry, info) in enumerate(zip(entries, infos, strict=True)):
        if info is None:
            continue
        label = label_map.mapping[entry.finding]
        assert label is not None
        records.append(_record(entry, label, info))
        rows[entry.path] = store_rows[row]
    return records, rows


def _check_readable(
    records: Sequence[Record],
    problems: Problems,
    n_files: int,
    min_classes: int,
    sources: Mapping[str, Path],
) -> None:
    """Warn once about skipped files; raise when the readable images hold
    fewer than `min_classes` classes."""
    if problems.skipped:
        warnings.warn(
            f"Skipped {len(problems.skipped)} of {n_files} files that could not "
            f"be read, e.g. {problems.skipped[0][0]!r} ({problems.skipped[0][1]}). "
            "The full list is in the dataset's `.skipped`.",
            CovidXrayWarning,
            stacklevel=3,
        )
    present = {r.label for r in records}
    if len(present) < min_classes:
        raise DataError(
            f"Found only the class(es) {sorted(present)} among the readable images of "
            f"'{describe_sources(sources)}'; at least {min_classes} classes are "
            "needed. To evaluate on a set with one class, pass it to "
            "Classifier.evaluate, or load it with min_classes=1."
        )


def _split(
    records: Sequence[Record],
    sources: Mapping[str, Path],
    owner: Mapping[str, str],
    validation_split: float,
    fractions: Mapping[str, float | None],
    seed: int,
) -> list[Record]:
    """Split each source's records on its own, whole patients at a time."""
    out: list[Record] = []
    for name in sources:
        out += assign_splits(
            [r for r in records if owner[r.path] == name],
            validation_split=validation_split,
            test_split=fractions[name],
            seed=seed,
        )
    return out


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
        modality=entry.modality,
        box=entry.box,
    )
