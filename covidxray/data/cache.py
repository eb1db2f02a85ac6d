"""The pixel cache file: decoded, resized uint8 images that a later run reuses.

A cache file starts with a 64-byte preamble (the magic `CXRCACHE`, the format
version, and where the JSON header lies), then the pixels, row after row, then
the JSON header: the `Preprocessing`, `max_pixels`, the pixel array's shape,
a CRC-32 of every pixel row (`checksums`), and for every file content (its
SHA-256), the row that holds it and what the scan measured, or why it could
not be read. On reuse the header must fit the file exactly and every row
served must match its checksum; a damaged file is a `DataError` naming it,
and is left as it is (delete it and the next run rebuilds it).

A file is written under a temporary name in the same folder and linked to its
final name only when complete, so a reader never sees half a cache and two
writers never mix their rows. An existing file that is not a matching cache is
never written over.

The scan lives here too: `fill` decodes every file once (in threads), checks
it, hashes it and writes its pixels into the store (in memory, a temporary
file, or a cache file at a path), or reuses a matching cache file without
decoding. See `docs/guides/datasets.md`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import struct
import tempfile
import weakref
import zlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import Progress
from ..errors import DataError
from .decode import ImageInfo
from .identity import file_hash
from .preprocessing import Preprocessing
from .reading import read_limited
from .records import Entry
from .tempfiles import file_mode

logger = logging.getLogger("covidxray")

__all__ = [
    "CACHE_FORMAT",
    "CacheFile",
    "Problems",
    "default_cache_dir",
    "fill",
    "row_checksums",
    "temporary_store",
]

MAGIC = b"CXRCACHE"
#: 1: no checksums. 2: a CRC-32 per pixel row, checked on reuse.
CACHE_FORMAT = 2
_PREAMBLE = 64  # magic (8), format (u32), pad (u32), header offset (u64), size (u64)
#: Environment variable naming the folder of temporary file caches.
CACHE_DIR_VARIABLE = "COVIDXRAY_CACHE_DIR"


def default_cache_dir() -> Path:
    """Where a cache too large for memory goes when no folder is given:
    `$COVIDXRAY_CACHE_DIR` when set, else the system's temporary folder
    (`tempfile.gettempdir()`, which follows `$TMPDIR`)."""
    return Path(os.environ.get(CACHE_DIR_VARIABLE) or tempfile.gettempdir())


def temporary_store(
    shape: tuple[int, ...],
    folder: str | os.PathLike[str] | None,
    dtype: Any = np.uint8,
    prefix: str = "covidxray-cache-",
    fix: str = "Pass cache_dir=",
) -> np.ndarray:
    """A memory-mapped array in a temporary file in `folder` (default:
    `default_cache_dir()`), deleted when the array is garbage-collected.
    `fix` starts the error's advice: the argument that names the folder."""
    where = Path(folder) if folder is not None else default_cache_dir()
    try:
        where.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=prefix, suffix=".bin", dir=where)
    except OSError as exc:
        raise DataError(
            f"Could not create a cache file in '{where}': {exc}. {fix} (or set "
            f"{CACHE_DIR_VARIABLE}) to a writable folder."
        ) from exc
    os.close(handle)
    store = np.memmap(name, dtype=dtype, mode="w+", shape=shape)
    weakref.finalize(store, _remove_quietly, name)
    logger.info("Caching %.1f MB in '%s'.", store.nbytes / 1e6, name)
    return store


def _remove_quietly(name: str) -> None:
    try:
        os.remove(name)
    except OSError:
        pass


def _read_header(path: Path) -> tuple[dict[str, Any], int] | None:
    """The JSON header and pixel offset of a cache file; None when `path` is
    not a covidxray cache file.

    Raises:
        DataError: The file starts as a cache file but its header does not
            fit it (edited, truncated or damaged).
    """
    try:
        with open(path, "rb") as fh:
            preamble = fh.read(_PREAMBLE)
            if len(preamble) < _PREAMBLE or preamble[:8] != MAGIC:
                return None
            _, _, offset, size = struct.unpack("<IIQQ", preamble[8:32])
            total = os.fstat(fh.fileno()).st_size
            if offset + size != total or size > total:
                raise _damaged(
                    path,
                    f"its preamble puts a {size:,}-byte header at byte {offset:,}, "
                    f"but the file is {total:,} bytes",
                )
            fh.seek(offset)
            header = json.loads(fh.read(size).decode())
    except (OSError, struct.error):
        return None
    except (ValueError, RecursionError) as exc:  # JSON or UTF-8
        raise _damaged(path, f"its header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise _damaged(path, "its header is not a JSON object")
    shape = header.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(v, int) and v >= 0 for v in shape)
        or _PREAMBLE + int(np.prod(shape, dtype=np.int64)) != offset
    ):
        raise _damaged(
            path,
            f"its header's pixel shape {shape!r} does not fit the "
            f"{offset - _PREAMBLE:,} bytes of pixels before the header",
        )
    return header, _PREAMBLE


def _row_shape(settings: Mapping[str, Any]) -> tuple[int, ...] | None:
    """The shape of one row the settings' `Preprocessing` gives, if any."""
    try:
        return Preprocessing.from_dict(settings["preprocessing"]).input_shape
    except (KeyError, TypeError, ValueError):
        return None


def _damaged(path: Path, why: str) -> DataError:
    return DataError(
        f"The cache '{path}' is damaged: {why}. It was left as it is; delete it, "
        "and the next run rebuilds it."
    )


def row_checksums(pixels: np.ndarray) -> list[int]:
    """The CRC-32 of each row (image) of a pixel array, as the cache stores."""
    return [zlib.crc32(np.ascontiguousarray(row).data) for row in pixels]


def _check_rows(
    path: Path,
    pixels: np.ndarray,
    stored: Any,
    rows: Sequence[int | None],
    paths: Sequence[str],
) -> None:
    """Raise when a row served does not match its stored checksum."""
    if not isinstance(stored, list) or len(stored) != len(pixels):
        raise _damaged(path, "its header lacks a checksum per pixel row")
    bad = [
        k
        for k, row in enumerate(rows)
        if row is not None and zlib.crc32(pixels[row].data) != stored[row]
    ]
    if bad:
        named = ", ".join(f"'{paths[k]}'" for k in bad[:3] if k < len(paths))
        raise _damaged(
            path,
            f"the pixels of {len(bad)} of the {len(rows)} images asked for do not "
            f"match their checksums{', e.g. ' + named if named else ''}",
        )


class CacheFile:
    """A pixel cache at a path the user chose: reused when it matches, else
    written once, atomically."""

    def __init__(self, path: str | os.PathLike[str], settings: Mapping[str, Any]):
        self.path = Path(path)
        self.settings = {"format": CACHE_FORMAT, **settings}

    def reuse(
        self, hashes: Sequence[str | None], paths: Sequence[str] = ()
    ) -> tuple[np.ndarray, list[int | None], list[ImageInfo | str | None]] | None:
        """The cached pixels for files with these SHA-256s, if the file exists.

        Returns:
            None when no file is at the path; else the read-only pixel array,
            the row of each file, and per file its `ImageInfo`, the reason it
            could not be read (a str), or None where `hashes` had None.

        Raises:
            DataError: The path holds something else than a cache, a cache
                made with other settings, or one without some of these files.
                The file is left as it is.
        """
        if not self.path.exists():
            return None
        found = _read_header(self.path)
        fix = "Delete it, or pass another cache path."
        if found is None:
            raise DataError(
                f"'{self.path}' exists and is not a covidxray cache file; it was "
                f"left as it is. Pass a path for the cache that does not exist yet."
            )
        header, offset = found
        differs = [
            f"{key}: cache has {header.get(key)!r}, asked for {value!r}"
            for key, value in self.settings.items()
            if header.get(key) != value
        ]
        if differs:
            raise DataError(
                f"The cache '{self.path}' was made with other settings "
                f"({'; '.join(differs)}). {fix}"
            )
        table = header.get("images")
        if not isinstance(table, dict):
            raise _damaged(self.path, "its header has no table of images")
        wanted = _row_shape(self.settings)
        if wanted is not None and tuple(header["shape"][1:]) != wanted:
            raise _damaged(
                self.path,
                f"its rows are {tuple(header['shape'][1:])} pixels, but its "
                f"preprocessing gives {wanted}",
            )
        missing = [k for k, h in enumerate(hashes) if h is not None and h not in table]
        if missing:
            named = ", ".join(f"'{paths[k]}'" for k in missing[:3] if k < len(paths))
            raise DataError(
                f"The cache '{self.path}' does not hold {len(missing)} of the "
                f"{len(hashes)} images asked for (the files changed or others were "
                f"added since it was written){', e.g. ' + named if named else ''}. "
                f"{fix}"
            )
        shape = tuple(header["shape"])
        pixels = np.memmap(
            self.path, dtype=np.uint8, mode="r", offset=offset, shape=shape
        )
        rows: list[int | None] = []
        infos: list[ImageInfo | str | None] = []
        try:
            for h in hashes:
                entry = table.get(h) if h is not None else None
                if entry is None:
                    rows.append(None)
                    infos.append(None)
                elif "error" in entry:
                    rows.append(None)
                    infos.append(str(entry["error"]))
                else:
                    rows.append(int(entry["row"]))
                    infos.append(ImageInfo(**entry["info"]))
        except (TypeError, ValueError, KeyError) as exc:
            raise _damaged(self.path, f"an image entry is malformed ({exc})") from None
        if any(r is not None and not 0 <= r < shape[0] for r in rows):
            raise _damaged(self.path, f"an image's row is outside its {shape[0]} rows")
        _check_rows(self.path, pixels, header.get("checksums"), rows, paths)
        logger.info("Reused the cache '%s'; no image was decoded.", self.path)
        return pixels, rows, infos

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on `.<name>.lock` beside the cache, so that
        processes scanning into one path take turns (the later ones then find
        the file and reuse it).

        Without `fcntl` (Windows), where the lock file cannot be made (a
        read-only folder), or where the file system refuses `flock` (some
        network file systems), nothing is locked and a note is logged.

        Yields:
            None, with the lock held (or not, as above).
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        name = self.path.with_name(f".{self.path.name}.lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(name, "a+b")  # noqa: SIM115 - closed below
        except OSError as exc:
            logger.info("Scanning without a lock on '%s': %s.", name, exc)
            yield
            return
        refused = None
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                logger.info("Waiting for another process writing '%s'.", self.path)
                fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as exc:  # ENOLCK, EOPNOTSUPP: no locks on this disk
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                handle.close()
                raise
            refused = str(exc)
        if refused is not None:  # outside the `except`: no error context
            logger.info("Scanning without a lock on '%s': %s.", name, refused)
        try:
            yield
        finally:
            handle.close()  # releases the lock

    def create(self, shape: tuple[int, ...]) -> _Writer:
        """Start a new cache file of `shape` under a temporary name."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(
                f"Could not create the folder of the cache '{self.path}': "
                f"{exc.strerror or exc}."
            ) from exc
        return _Writer(self, shape)


class _Writer:
    """Fills a temporary file, then links it to the cache path."""

    def __init__(self, cache: CacheFile, shape: tuple[int, ...]) -> None:
        self.cache = cache
        self.shape = shape
        try:
            handle, self.temp = tempfile.mkstemp(
                prefix=f".{cache.path.name}.", suffix=".tmp", dir=cache.path.parent
            )
        except OSError as exc:
            raise DataError(
                f"Could not write the cache '{cache.path}': {exc.strerror or exc}."
            ) from exc
        os.close(handle)
        try:
            self.store = np.memmap(
                self.temp, dtype=np.uint8, mode="w+", offset=_PREAMBLE, shape=shape
            )
        except OSError as exc:
            _remove_quietly(self.temp)
            raise DataError(
                f"Could not write the cache '{cache.path}' ({np.prod(shape):,} "
                f"bytes): {exc.strerror or exc}."
            ) from exc
        weakref.finalize(self.store, _remove_quietly, self.temp)

    def publish(
        self, hashes: Sequence[str | None], outcomes: Sequence[ImageInfo | str | None]
    ) -> np.ndarray:
        """Write the header, then give the file its name if no other writer
        has. Returns the pixel array (the file's rows)."""
        images: dict[str, Any] = {}
        for row, (h, outcome) in enumerate(zip(hashes, outcomes, strict=True)):
            if h is None or outcome is None or h in images:
                continue
            if isinstance(outcome, str):
                images[h] = {"error": outcome}
            else:
                images[h] = {"row": row, "info": dataclasses.asdict(outcome)}
        self.store.flush()
        header = {
            **self.cache.settings,
            "shape": list(self.shape),
            "checksums": row_checksums(self.store),
            "fingerprint": hashlib.sha256("".join(sorted(images)).encode()).hexdigest(),
            "images": images,
        }
        self.store.flush()
        body = json.dumps(header).encode()
        offset = _PREAMBLE + int(np.prod(self.shape))
        with open(self.temp, "r+b") as fh:
            fh.seek(offset)
            fh.write(body)
            fh.seek(0)
            fh.write(MAGIC + struct.pack("<IIQQ", CACHE_FORMAT, 0, offset, len(body)))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(self.temp, file_mode())  # mkstemp's 0600 -> the umask's
        try:
            os.link(self.temp, self.cache.path)  # fails if the name is taken
            _remove_quietly(self.temp)  # the pixels stay mapped, under the new name
            logger.info("Wrote the cache '%s'.", self.cache.path)
        except FileExistsError:
            _remove_quietly(self.temp)  # still mapped: this run keeps its pixels
            logger.info(
                "Another run wrote '%s' first; this run keeps its own pixels.",
                self.cache.path,
            )
        except OSError:  # no hard links here: rename, unless the name is taken
            if not self.cache.path.exists():
                os.replace(self.temp, self.cache.path)
                self.temp = str(self.cache.path)
        self.store.flags.writeable = False  # as a reused cache is: read-only
        return self.store

    def abort(self) -> None:
        """Remove the temporary file (the scan failed)."""
        _remove_quietly(self.temp)


# ------------------------------------------------------------------ the scan


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


def _workers(num_workers: int | None) -> int:
    return num_workers or min(8, (os.cpu_count() or 1) + 1)


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
    problems: Problems,
    num_workers: int | None,
) -> tuple[np.ndarray | None, list[ImageInfo | None], list[int]] | None:
    """What `fill` returns, from the cache file at the path; None when there
    is no file there yet."""
    if not os.path.exists(cache_file.path):
        return None
    checked = Problems("skip")  # unreadable files are reported once, below
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
    problems: Problems,
    prep: Preprocessing,
    max_pixels: int,
    num_workers: int | None,
) -> tuple[np.ndarray | None, list[ImageInfo | None], list[int]]:
    """`fill` for a cache file not written yet: scan, then write it."""
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
            _file_hashes(failed, Problems("skip"), num_workers),
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
    problems: Problems,
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
