"""The pixel cache file: decoded, resized uint8 images that a later run reuses.

A cache file starts with a 64-byte preamble (the magic `CXRCACHE`, the format
version, and where the JSON header lies), then the pixels, row after row,
then (when the scan found the lungs) each row's lung mask at the model's input
size, as bits, then the JSON header: the `Preprocessing`, `max_pixels`, the
segmenter's version and weights hash when masks are kept, the arrays' shapes,
a CRC-32 of every pixel row (`checksums`) and of every mask row
(`mask_checksums`), and for every file content (its SHA-256), the row that
holds it and what the scan measured (and found wrong with its lung mask), or
why it could not be read. On reuse the header must fit the file exactly and
every row served must match its checksum; a damaged file is a `DataError`
naming it, and is left as it is (delete it and the next run rebuilds it).

A file is written under a temporary name in the same folder and linked to its
final name only when complete, so a reader never sees half a cache and two
writers never mix their rows. An existing file that is not a matching cache is
never written over.

The scan that fills it is `covidxray.data.scan`. See
`docs/guides/datasets.md` and `docs/guides/lungs.md`.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .decode import ImageInfo
from .preprocessing import Preprocessing
from .tempfiles import file_mode

logger = logging.getLogger("covidxray")

__all__ = [
    "CACHE_FORMAT",
    "CacheFile",
    "LungScan",
    "default_cache_dir",
    "mask_shape",
    "row_checksums",
    "temporary_store",
]

MAGIC = b"CXRCACHE"
#: 1: no checksums. 2: a CRC-32 per pixel row, checked on reuse.
CACHE_FORMAT = 2
_PREAMBLE = 64  # magic (8), format (u32), pad (u32), header offset (u64), size (u64)
#: Environment variable naming the folder of temporary file caches.
CACHE_DIR_VARIABLE = "COVIDXRAY_CACHE_DIR"


@dataclass(frozen=True)
class LungScan:
    """The lung masks a scan found, one per row of the pixel store.

    Attributes:
        masks: uint8 `(rows, height, ceil(width / 8))`: each row's mask at
            the model's input size, packed 8 pixels a byte
            (`np.unpackbits(..., axis=-1, count=width)` undoes it).
        problems: File path -> why its mask is implausible (empty, too small
            or too large, not two lungs), for the files where it is.
        segmenter: The segmenter's version and weights hash.
    """

    masks: np.ndarray
    problems: dict[str, tuple[str, ...]] = field(default_factory=dict)
    segmenter: dict[str, str] = field(default_factory=dict)


def mask_shape(pixel_shape: tuple[int, ...]) -> tuple[int, int, int]:
    rows, height, width = pixel_shape[:3]
    return (rows, height, (width + 7) // 8)


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
    shape: Any = header.get("shape")
    masks: Any = header.get("masks")

    def sizes_ok(value: Any) -> bool:
        return (
            isinstance(value, list)
            and bool(value)
            and all(isinstance(v, int) and v >= 0 for v in value)
        )

    if (
        not sizes_ok(shape)
        or (masks is not None and not (sizes_ok(masks) and masks[0] == shape[0]))
        or _PREAMBLE + _nbytes(shape) + (_nbytes(masks) if masks else 0) != offset
    ):
        raise _damaged(
            path,
            f"its header's pixel shape {shape!r} (and lung masks {masks!r}) does "
            f"not fit the {offset - _PREAMBLE:,} bytes before the header",
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


def _nbytes(shape: Any) -> int:
    return int(np.prod(shape, dtype=np.int64))


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
    ) -> (
        tuple[
            np.ndarray,
            list[int | None],
            list[ImageInfo | str | None],
            LungScan | None,
        ]
        | None
    ):
        """The cached pixels for files with these SHA-256s, if the file exists.

        Returns:
            None when no file is at the path; else the read-only pixel array,
            the row of each file, per file its `ImageInfo`, the reason it
            could not be read (a str), or None where `hashes` had None, and
            the lung masks when the file keeps them (else None).

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
            "it keeps no lung masks, and lung masks were asked for"
            if key == "segmenter" and key not in header
            else f"{key}: cache has {header.get(key)!r}, asked for {value!r}"
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
        problems: dict[str, tuple[str, ...]] = {}
        try:
            for k, h in enumerate(hashes):
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
                    if entry.get("lungs") and k < len(paths):
                        problems[paths[k]] = tuple(entry["lungs"])
        except (TypeError, ValueError, KeyError) as exc:
            raise _damaged(self.path, f"an image entry is malformed ({exc})") from None
        if any(r is not None and not 0 <= r < shape[0] for r in rows):
            raise _damaged(self.path, f"an image's row is outside its {shape[0]} rows")
        _check_rows(self.path, pixels, header.get("checksums"), rows, paths)
        lungs = None
        if header.get("masks"):
            masks = np.memmap(
                self.path,
                dtype=np.uint8,
                mode="r",
                offset=offset + int(np.prod(shape)),
                shape=tuple(header["masks"]),
            )
            _check_rows(self.path, masks, header.get("mask_checksums"), rows, paths)
            lungs = LungScan(masks, problems, dict(header.get("segmenter") or {}))
        logger.info("Reused the cache '%s'; no image was decoded.", self.path)
        return pixels, rows, infos, lungs

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

    def create(self, shape: tuple[int, ...], masks: bool = False) -> _Writer:
        """Start a new cache file of `shape` under a temporary name (with
        room for packed lung masks when `masks`)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(
                f"Could not create the folder of the cache '{self.path}': "
                f"{exc.strerror or exc}."
            ) from exc
        return _Writer(self, shape, mask_shape(shape) if masks else None)


class _Writer:
    """Fills a temporary file, then links it to the cache path."""

    def __init__(
        self,
        cache: CacheFile,
        shape: tuple[int, ...],
        mask_shape: tuple[int, ...] | None = None,
    ) -> None:
        self.cache = cache
        self.shape = shape
        self.mask_shape = mask_shape
        self.masks: np.memmap[Any, Any] | None = None
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
            size = _PREAMBLE + int(np.prod(shape))
            size += int(np.prod(mask_shape)) if mask_shape is not None else 0
            os.truncate(self.temp, size)  # sparse: written row by row
            self.store = np.memmap(
                self.temp, dtype=np.uint8, mode="r+", offset=_PREAMBLE, shape=shape
            )
            if mask_shape is not None:
                self.masks = np.memmap(
                    self.temp,
                    dtype=np.uint8,
                    mode="r+",
                    offset=_PREAMBLE + int(np.prod(shape)),
                    shape=mask_shape,
                )
        except OSError as exc:
            _remove_quietly(self.temp)
            raise DataError(
                f"Could not write the cache '{cache.path}' ({np.prod(shape):,} "
                f"bytes): {exc.strerror or exc}."
            ) from exc
        weakref.finalize(self.store, _remove_quietly, self.temp)

    def publish(
        self,
        hashes: Sequence[str | None],
        outcomes: Sequence[ImageInfo | str | None],
        lung_problems: Sequence[Sequence[str]] = (),
    ) -> np.ndarray:
        """Write the header, then give the file its name if no other writer
        has. Returns the pixel array (the file's rows). `lung_problems` gives
        each row's implausible-mask findings, when the file keeps masks."""
        images: dict[str, Any] = {}
        for row, (h, outcome) in enumerate(zip(hashes, outcomes, strict=True)):
            if h is None or outcome is None or h in images:
                continue
            if isinstance(outcome, str):
                images[h] = {"error": outcome}
            else:
                images[h] = {"row": row, "info": dataclasses.asdict(outcome)}
                if row < len(lung_problems) and lung_problems[row]:
                    images[h]["lungs"] = list(lung_problems[row])
        self.store.flush()
        header = {
            **self.cache.settings,
            "shape": list(self.shape),
            "checksums": row_checksums(self.store),
            **(
                {
                    "masks": list(self.mask_shape),
                    "mask_checksums": row_checksums(self.masks),
                }
                if self.mask_shape is not None and self.masks is not None
                else {}
            ),
            "fingerprint": hashlib.sha256("".join(sorted(images)).encode()).hexdigest(),
            "images": images,
        }
        self.store.flush()
        if self.masks is not None:
            self.masks.flush()
        body = json.dumps(header).encode()
        offset = _PREAMBLE + int(np.prod(self.shape))
        if self.mask_shape is not None:
            offset += int(np.prod(self.mask_shape))
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
        if self.masks is not None:
            self.masks.flags.writeable = False
        return self.store

    def abort(self) -> None:
        """Remove the temporary file (the scan failed)."""
        _remove_quietly(self.temp)
