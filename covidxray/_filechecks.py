"""Checks of a classifier file before and after it is read: the size of every
zip member before any is unpacked, and the metadata against the model.

A `.keras` file is a zip archive; a member's declared size is what Python's
`zipfile` (and Keras, which reads `config.json` with it) will unpack at most,
so checking it first bounds the memory and time a hostile file can take. The
limits are in `docs/reliability.md`.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import DataError

__all__ = [
    "DEFAULT_MEMBER_LIMIT",
    "MAX_MEMBERS",
    "MEMBER_LIMITS",
    "check_against_model",
    "check_members",
    "check_stored_values",
]

MiB = 1024**2
#: The largest uncompressed size of each member of a classifier file, in bytes.
MEMBER_LIMITS: Mapping[str, int] = {
    "covidxray.json": 1 * MiB,  # class names, threshold, preprocessing
    "covidxray_seen.bin": 256 * MiB,  # 16 bytes per training image
    "config.json": 64 * MiB,  # Keras' model config
    "metadata.json": 1 * MiB,  # Keras' version stamp
}
#: The limit of any other member (the weights, `model.weights.h5`).
DEFAULT_MEMBER_LIMIT = 8 * 1024 * MiB
#: The most members a classifier file may hold.
MAX_MEMBERS = 10_000


def check_members(path: Path) -> None:
    """Refuse a zip archive whose members would unpack to more than their
    limit, before anything is unpacked.

    Raises:
        DataError: Naming the file, the member, its declared size and the limit.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"'{path}' is corrupted: {exc}") from exc
    if len(infos) > MAX_MEMBERS:
        raise DataError(
            f"'{path}' holds {len(infos):,} zip members, over the limit of "
            f"{MAX_MEMBERS:,}; it is not a classifier file covidxray wrote."
        )
    for info in infos:
        limit = MEMBER_LIMITS.get(info.filename, DEFAULT_MEMBER_LIMIT)
        if info.file_size > limit:
            raise DataError(
                f"'{path}' is refused: its member '{info.filename}' unpacks to "
                f"{info.file_size:,} bytes ({info.compress_size:,} compressed), over "
                f"the limit of {limit:,} bytes for it. The file may be a zip bomb."
            )


def check_stored_values(values: Mapping[str, Any], path: Path) -> None:
    """Check the class names and threshold a classifier file stores.

    Raises:
        DataError: Fewer than two class names, names that repeat, or a
            threshold that is not a finite number in [0, 1].
    """
    names = values.get("class_names")
    if (
        not isinstance(names, Sequence)
        or isinstance(names, str)
        or len(names) < 2
        or not all(isinstance(n, str) and n for n in names)
    ):
        raise DataError(
            f"The covidxray metadata in '{path}' is invalid: class_names must be a "
            f"list of at least two non-empty names. Found: {names!r}."
        )
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise DataError(
            f"The covidxray metadata in '{path}' is invalid: the class names "
            f"{repeated} appear more than once in {list(names)}."
        )
    threshold = values.get("threshold")
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not math.isfinite(threshold)
        or not 0.0 <= threshold <= 1.0
    ):
        raise DataError(
            f"The covidxray metadata in '{path}' is invalid: threshold must be a "
            f"finite number in [0, 1]. Found: {threshold!r}."
        )


def check_against_model(
    model: Any,
    class_names: Sequence[str],
    input_shape: tuple[int, int, int],
    path: Path,
) -> None:
    """Check that a file's metadata fits its model: one output unit (or two)
    for two classes, one per class for more; the image size and channels
    where the model's input fixes them.

    Raises:
        DataError: Naming the file, what the metadata says and what the model
            has.
    """
    units = model.output_shape[-1]
    n = len(class_names)
    allowed = (1, 2) if n == 2 else (n,)
    if units not in allowed:
        raise DataError(
            f"The covidxray metadata in '{path}' does not fit its model: "
            f"{n} class names {list(class_names)}, but the model has {units} "
            f"output units (expected {' or '.join(map(str, allowed))})."
        )
    fixed = tuple(model.input_shape[1:])
    if len(fixed) != 3 or any(
        have is not None and have != want
        for have, want in zip(fixed, input_shape, strict=True)
    ):
        raise DataError(
            f"The covidxray metadata in '{path}' does not fit its model: the "
            f"preprocessing gives images of shape {input_shape}, but the model "
            f"takes {tuple(model.input_shape[1:])}."
        )
