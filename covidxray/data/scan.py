"""The scan: every file decoded once, checked, hashed and stored.

`fill` decodes every file once (in threads), checks it, hashes it and writes
its pixels into the store (in memory, a temporary file, or a cache file at a
path, `covidxray.data.cache`), or reuses a matching cache file without
decoding. With lungs (`Preprocessing(lungs=...)`, or `lung_masks=True`) it
finds them with the shipped U-Net, a batch at a time, and keeps the masks
beside the pixels (`LungScan`). See `docs/guides/datasets.md` and
`docs/guides/lungs.md`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .._progress import Progress
from ..errors import DataError
from .boxes import crop_to_box
from .cache import CacheFile, LungScan, mask_shape, temporary_store
from .decode import ImageInfo
from .identity import file_hash
from .preprocessing import Preprocessing
from .reading import read_limited
from .records import Entry

logger = logging.getLogger("covidxray")

__all__ = ["LUNG_CHUNK", "Problems", "fill"]


class Problems:
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
    entries: Sequence[Entry], problems: Problems, num_workers: int | None
) -> list[str | None]:
    """SHA-256 of each file's bytes (None for a file that cannot be read)."""

    def work(entry: Entry) -> str | DataError:
        try:
            return file_hash(read_limited(entry.path))
        except DataError as exc:
            return exc

    out: list[str | None] = []
    with ThreadPoolExecutor(max_workers=_workers(num_workers)) as pool:
        for entry, result in zip(entries, pool.map(work, entries), strict=True):
            if isinstance(result, DataError):
                problems.add(entry.path, result)
                out.append(None)
            else:
                out.append(result)
    return out


def _keys(hashes: Sequence[str | None], entries: Sequence[Entry]) -> list[str | None]:
    """The cache's key of each file: its SHA-256, with its box when only a
    box of it is read (the same file cut to two boxes is two rows)."""
    return [
        h if h is None or e.box is None else f"{h}@{','.join(map(str, e.box))}"
        for h, e in zip(hashes, entries, strict=True)
    ]


def _workers(num_workers: int | None) -> int:
    return num_workers or min(8, (os.cpu_count() or 1) + 1)


Filled = tuple[np.ndarray | None, list[ImageInfo | None], list[int], "LungScan | None"]


def fill(
    entries: Sequence[Entry],
    cache: bool | str | os.PathLike[str],
    problems: Problems,
    prep: Preprocessing,
    *,
    max_pixels: int,
    num_workers: int | None,
    memory_limit: int,
    cache_dir: str | os.PathLike[str] | None,
    lung_masks: bool = False,
) -> Filled:
    """The pixel store, what the scan measured per entry (None: unreadable),
    each entry's row in the store, and the lung masks when `prep` needs the
    lungs or `lung_masks` asks for them (else None)."""
    shape = (len(entries), *prep.input_shape)
    lungs = lung_masks or prep.needs_lungs
    if not isinstance(cache, (str, os.PathLike)):
        store = _allocate(shape, cache or lungs, memory_limit, cache_dir)
        masks = np.zeros(mask_shape(shape), np.uint8) if lungs else None
        infos, found = _scan(
            entries,
            store,
            problems,
            prep,
            max_pixels=max_pixels,
            num_workers=num_workers,
            masks=masks,
        )
        if not cache:  # the scan needed a store for the lungs; keep none
            store = None
        return store, infos, list(range(len(entries))), found
    settings: dict[str, Any] = {
        "preprocessing": prep.to_dict(),
        "max_pixels": max_pixels,
    }
    if lungs:
        settings["segmenter"] = _segmenter_info()
    cache_file = CacheFile(cache, settings)
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
            cache_file, entries, problems, prep, max_pixels, num_workers, lungs
        )


def _segmenter_info() -> dict[str, str]:
    from ..lungs.unet import default_lung_model  # TensorFlow: only now

    return default_lung_model().info()


def _reuse(
    cache_file: CacheFile,
    entries: Sequence[Entry],
    problems: Problems,
    num_workers: int | None,
) -> Filled | None:
    """What `fill` returns, from the cache file at the path; None when there
    is no file there yet."""
    if not os.path.exists(cache_file.path):
        return None
    checked = Problems("skip")  # unreadable files are reported once, below
    hashes = _keys(_file_hashes(entries, checked, num_workers), entries)
    reused = cache_file.reuse(hashes, [e.path for e in entries])
    if reused is None:
        return None
    pixels, rows, found, lungs = reused
    kept: list[ImageInfo | None] = []
    reasons = dict(checked.skipped)
    for entry, outcome in zip(entries, found, strict=True):
        if isinstance(outcome, ImageInfo):
            kept.append(outcome)
            continue
        reason = outcome or reasons.get(entry.path, "unreadable")
        problems.add(entry.path, DataError(reason))
        kept.append(None)
    return pixels, kept, [-1 if r is None else r for r in rows], lungs


def _scan_into_file(
    cache_file: CacheFile,
    entries: Sequence[Entry],
    problems: Problems,
    prep: Preprocessing,
    max_pixels: int,
    num_workers: int | None,
    lungs: bool = False,
) -> Filled:
    """`fill` for a cache file not written yet: scan, then write it."""
    cache = cache_file.path
    shape = (len(entries), *prep.input_shape)
    writer = cache_file.create(shape, masks=lungs)
    try:
        infos, found = _scan(
            entries,
            writer.store,
            problems,
            prep,
            max_pixels=max_pixels,
            num_workers=num_workers,
            masks=writer.masks,
        )
    except BaseException:
        writer.abort()
        raise
    rows = list(range(len(entries)))
    if problems.need_package & {e.path for e in entries}:
        writer.abort()  # this run keeps its pixels; the next one writes the file
        logger.warning(
            "Did not save the cache '%s': %d files need a package that is not "
            "installed (see `.skipped`), and a cache must not remember that.",
            cache,
            len(problems.need_package),
        )
        return writer.store, infos, rows, found
    reasons = dict(problems.skipped)
    failed = [e for e, info in zip(entries, infos, strict=True) if info is None]
    failed_hashes = dict(
        zip(
            (e.path for e in failed),
            _file_hashes(failed, Problems("skip"), num_workers),
            strict=True,
        )
    )
    hashes = _keys(
        [
            info.sha256 if info is not None else failed_hashes[e.path]
            for e, info in zip(entries, infos, strict=True)
        ],
        entries,
    )
    outcomes: list[ImageInfo | str | None] = [
        info if info is not None else reasons.get(e.path)
        for e, info in zip(entries, infos, strict=True)
    ]
    lung_problems = (
        [found.problems.get(e.path, ()) for e in entries] if found is not None else []
    )
    pixels = writer.publish(hashes, outcomes, lung_problems)
    if found is not None and writer.masks is not None:
        found = dataclasses.replace(found, masks=writer.masks)
    return pixels, infos, rows, found


#: Images decoded and segmented together when a scan finds the lungs.
LUNG_CHUNK = 32


def _scan(
    entries: Sequence[Entry],
    store: np.ndarray | None,
    problems: Problems,
    prep: Preprocessing,
    *,
    max_pixels: int,
    num_workers: int | None,
    masks: np.ndarray | None = None,
) -> tuple[list[ImageInfo | None], LungScan | None]:
    """Decode every file once: validate it, hash it and fill the pixel store
    (and, with `masks`, find its lungs and fill the mask store)."""
    if masks is not None or prep.needs_lungs:
        if store is None or masks is None:
            raise ValueError("A scan that finds the lungs needs both stores.")
        return _scan_lungs(
            entries,
            store,
            masks,
            problems,
            prep,
            max_pixels=max_pixels,
            num_workers=num_workers,
        )

    def work(i: int) -> ImageInfo | DataError:
        path = entries[i].path
        try:
            img, info = prep.decode(path, max_pixels=max_pixels)
            if store is not None:
                store[i] = prep.to_array(img, name=path, box=entries[i].box)
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
    return infos, None


def _scan_lungs(
    entries: Sequence[Entry],
    store: np.ndarray,
    masks: np.ndarray,
    problems: Problems,
    prep: Preprocessing,
    *,
    max_pixels: int,
    num_workers: int | None,
) -> tuple[list[ImageInfo | None], LungScan]:
    """`_scan` that also finds the lungs: `LUNG_CHUNK` files are decoded (in
    threads), segmented in one batch, then cropped, masked and resized."""
    from ..lungs.unet import default_lung_model  # TensorFlow: only now

    segmenter = default_lung_model()
    infos: list[ImageInfo | None] = [None] * len(entries)
    found: dict[str, tuple[str, ...]] = {}
    bar = Progress(len(entries), "Scanning images and finding the lungs")
    pool = ThreadPoolExecutor(max_workers=_workers(num_workers))

    def decode(i: int) -> Any:
        path = entries[i].path
        try:
            img, info = prep.decode(path, max_pixels=max_pixels)
            return crop_to_box(img, entries[i].box, name=path), info  # CT body
        except DataError as exc:
            return exc

    def work(item: tuple[int, Any, ImageInfo, Any]) -> DataError | None:
        i, img, info, lung = item
        path = entries[i].path
        try:
            store[i] = prep.to_array(img, name=path, lungs=lung.mask)
        except DataError as exc:
            return exc
        seen = prep.mask_array(img, lung.mask)
        masks[i] = np.packbits(seen, axis=-1)[:, : masks.shape[-1]]
        infos[i] = info
        if lung.problems:
            found[path] = lung.problems
        return None

    try:
        for start in range(0, len(entries), LUNG_CHUNK):
            chunk = range(start, min(len(entries), start + LUNG_CHUNK))
            decoded = {}
            for i, result in zip(chunk, pool.map(decode, chunk), strict=True):
                if isinstance(result, DataError):
                    problems.add(entries[i].path, result)
                else:
                    decoded[i] = result
            names = [entries[i].path for i in decoded]
            lungs = segmenter.masks([img for img, _ in decoded.values()], names)

            items = [
                (i, img, info, lung)
                for (i, (img, info)), lung in zip(decoded.items(), lungs, strict=True)
            ]
            for (i, *_), error in zip(items, pool.map(work, items), strict=True):
                if error is not None:
                    problems.add(entries[i].path, error)
            bar.update(len(chunk))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return infos, LungScan(masks, found, segmenter.info())
