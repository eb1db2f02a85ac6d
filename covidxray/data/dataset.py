"""`XrayDataset`: the records of a scanned dataset, views of them, and reports.

An `XrayDataset` holds records (one per image, with its split), the pixels the
scan stored, and where they came from (`sources`, name -> path). Views
(`subset`, `balanced`) share its pixels. Reports (`counts`, `summary`,
`source_table`, `fingerprint`) read its records. Its `tf.data` batches are
made by `pipeline.batches`, from the records, labels and draw weights it hands
over. See `docs/guides/datasets.md`.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import warnings
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import check_choice
from ..errors import DataError
from .boxes import Box
from .cache import LungScan
from .checks import summary_lines
from .decode import DEFAULT_MAX_PIXELS
from .layouts import is_synthetic
from .pipeline import Transform, balanced_class_weights, batches, draw_weights
from .preprocessing import Preprocessing, report_lungs
from .records import Record, count_by_source
from .split import SPLIT_ORDER

#: What `XrayDataset.balanced` can balance: classes, or classes within sources.
BALANCE_BY = ("class", "source")

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["XrayDataset", "describe_sources"]


def describe_sources(sources: Mapping[str, Any]) -> str:
    """Display text of sources (name -> path): the path of one, `name=path`
    pairs of several, "" of none.

    Examples:
        >>> describe_sources({"a": "/data/a", "b": "/data/b"})
        'a=/data/a, b=/data/b'
    """
    if len(sources) == 1:
        return str(next(iter(sources.values())))
    return ", ".join(f"{name}={root}" for name, root in sources.items())


def _ct_lines(
    records: Sequence[Record], mapping: Mapping[str, str], several: bool
) -> list[str]:
    """Summary lines on modality, patients, body boxes and (one source)
    findings, where they say something: CT slices, or a mix of modalities."""
    modalities = Counter(r.modality for r in records)
    if set(modalities) <= {"X-ray"}:
        return []
    lines = []
    if len(modalities) > 1:
        mix = ", ".join(f"{k} {v}" for k, v in sorted(modalities.items()))
        lines.append(
            f"  modality: MIXED ({mix}): a model can tell the modality apart more "
            "easily than the finding"
        )
    else:
        lines.append(f"  modality: {next(iter(modalities))}")
    patients: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for rec in records:
        if rec.patient_id:
            patients[rec.split].add((str(rec.source), rec.patient_id))
    if patients:
        per = ", ".join(f"{s} {len(patients[s])}" for s in SPLIT_ORDER if s in patients)
        lines.append(
            f"  patients: {per} (slices of one patient are not independent samples)"
        )
    boxed = sum(r.box is not None for r in records)
    if boxed:
        lines.append(f"  body boxes: {boxed} of {len(records)} images read inside them")
    if not several:
        found = Counter(r.finding for r in records)
        pairs = [f"{f} {n} -> {mapping.get(f, '?')}" for f, n in sorted(found.items())]
        lines.append(f"  findings -> classes: {', '.join(pairs)}")
    return lines


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
        dropped: Count of images left out before the scan, by reason (a
            filtered view or modality, a blank finding, a finding that maps
            to no class), for display.
        unmatched_findings: Findings that map to no class -> their count (the
            same images as the `"no class for finding ..."` keys of
            `dropped`, as data).
        layout: The layout that was read (`"multi-source"` for several).
        source: Read-only display text: the path it was read from (for
            several sources, `name=path` pairs; for a `subset`, the names).
        sources: Source name -> path (a str), in the order given.
        source_names: The names of the sources this dataset holds: those of
            `sources`, or for a `subset` the names it kept (a sub-source such
            as `"covidx/sirm"` included).
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
        unmatched_findings: Mapping[str, int] | None = None,
        lungs: LungScan | None = None,
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
        self.unmatched_findings = dict(unmatched_findings or {})
        self.layout = layout
        self.max_pixels = max_pixels
        self.sources = {str(k): str(v) for k, v in (sources or {}).items()}
        self.source_names: tuple[str, ...] = tuple(self.sources)
        self._source = source or describe_sources(self.sources)
        self.layouts = dict(layouts or {})
        self.label_mapping = dict(label_mapping or {})
        self._pixels = pixels
        self._rows = dict(rows)
        self._lungs = lungs
        #: Packed masks found on first use when the scan kept none (by path;
        #: shared by views, like the pixels).
        self._found_masks: dict[str, np.ndarray] = {}
        self._found_problems: dict[str, tuple[str, ...]] = {}
        #: `"class"` or `"source"` for a view made by `balanced`, else None.
        self.sampling: str | None = None

    @property
    def source(self) -> str:
        """Where the images come from, as text for messages: the path read
        (for several sources, `name=path` pairs; for a `subset`, the names
        kept). Use `sources` and `source_names` as data."""
        return self._source

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
        return np.stack([self._pixels_of(r.path, box=r.box) for r in records])

    def _pixels_of(self, path: str, box: Box | None = None) -> np.ndarray:
        if self._pixels is not None:
            return np.asarray(self._pixels[self._rows[path]])
        return self.preprocessing.load(path, max_pixels=self.max_pixels, box=box)

    # ------------------------------------------------------------------ lungs

    @property
    def lung_problems(self) -> dict[str, tuple[str, ...]]:
        """File path -> why the scan found its lung mask implausible (empty,
        too small or large, not two lungs), for the images kept where it
        did (or `lung_masks_of` did, on first use); empty when nothing
        looked for the lungs."""
        found = self._lungs.problems if self._lungs is not None else {}
        held = {r.path for r in self.records}
        return {
            p: why for p, why in {**found, **self._found_problems}.items() if p in held
        }

    @property
    def lung_segmenter(self) -> dict[str, str] | None:
        """The version and weights hash of the segmenter that found the
        scan's masks; None when the scan kept none."""
        return dict(self._lungs.segmenter) if self._lungs is not None else None

    def lung_masks_of(self, records: Sequence[Record]) -> np.ndarray:
        """Boolean lung masks `(N, height, width)` of some records, on the
        model's input as the pixels are.

        The scan's masks when it found the lungs (`load_dataset(lungs=...)`
        or `lung_masks=True`, from each image at its own size); otherwise the
        shipped segmenter runs once on each image's served pixels, on first
        use (a model-size image: coarser).
        """
        height, width = self.image_size
        if not records:
            return np.zeros((0, height, width), bool)
        if self._lungs is not None:
            packed = np.stack([self._lungs.masks[self._rows[r.path]] for r in records])
        else:
            todo = {r.path: r for r in records if r.path not in self._found_masks}
            if todo:
                self._find_lungs(list(todo.values()))
            packed = np.stack([self._found_masks[r.path] for r in records])
        return np.unpackbits(packed, axis=-1, count=width).astype(bool)

    def _find_lungs(self, records: Sequence[Record]) -> None:
        """Segment the served pixels of records the scan found no lungs for,
        64 at a time; warn about the implausible masks, by name."""
        from ..lungs.unet import default_lung_model  # TensorFlow: only now

        model, found = default_lung_model(), []
        for start in range(0, len(records), 64):
            part = records[start : start + 64]
            masks = model.masks(list(self.images_of(part)), [r.path for r in part])
            for rec, lung in zip(part, masks, strict=True):
                self._found_masks[rec.path] = np.packbits(lung.mask, axis=-1)
                if lung.problems:
                    self._found_problems[rec.path] = lung.problems
                    found.append((rec.path, lung.problems))
        report_lungs(found, len(records), refuse_empty=False)

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
        view.source_names = tuple(names)
        view._source = ", ".join(names)
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
        check_choice("by", by, BALANCE_BY, "balanced")
        view = copy.copy(self)
        view.sampling = by
        return view

    def draw_weights(self, split: str) -> np.ndarray:
        """The chance of each record of `split` per draw (sums to 1): uniform,
        or as `balanced` says."""
        return draw_weights(self.split_records(split), self.sampling)

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
            >>> from covidxray.data.dataset import XrayDataset
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
            box = "" if rec.box is None else f"|{rec.box}"  # the part read
            digest.update(f"{rec.sha256}|{rec.label}|{rec.split}{box}\n".encode())
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
        if self.preprocessing.needs_lungs or self._lungs is not None:
            lungs = self.preprocessing.lungs
            flagged = len(self.lung_problems)
            note = f" ({flagged} implausible masks: see .lung_problems)"
            shown = lungs if lungs != "none" else "masks kept"
            lines.append(f"  lungs: {shown}{note if flagged else ''}")
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
        lines += _ct_lines(self.records, self.label_mapping, len(self.sources) > 1)
        if self.duplicates_removed:
            across = sum(a.source != b.source for a, b in self.duplicates_removed)
            extra = f" ({across} copies across sources)" if across else ""
            lines.append(f"  duplicates removed: {len(self.duplicates_removed)}{extra}")
        lines += summary_lines(self.duplicates_removed)
        if self.skipped:
            lines.append(f"  files skipped: {len(self.skipped)}")
        other = {k: v for k, v in self.dropped.items() if k.startswith("modality ")}
        if len(other) < len(self.dropped):
            n = sum(self.dropped.values()) - sum(other.values())
            lines.append(f"  images dropped (no class): {n}")
        if other:
            shown = ", ".join(f"{k[9:]} {v}" for k, v in sorted(other.items()))
            lines.append(
                f"  rows of another modality left out: {shown} (this reads "
                "X-rays only; load_dataset(modality=None) keeps every row)"
            )
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
        return batches(
            recs,
            self.labels(split),
            preprocessing=self.preprocessing,
            pixels=self._pixels,
            rows=self._rows,
            max_pixels=self.max_pixels,
            batch_size=batch_size or self.batch_size,
            seed=self.seed,
            split=split,
            shuffle=shuffle,
            weights=None if self.sampling is None else self.draw_weights(split),
            dtype=dtype,
            transform=transform,
            transform_seed=transform_seed,
            shard=shard,
        )
