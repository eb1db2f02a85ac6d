"""Reading a file's bytes with limits: regular files only, and no more bytes
than a stated limit, both checked before anything is read.

A FIFO would block a reader forever, a device such as `/dev/zero` never
ends, and a sparse file can claim gigabytes; each is refused by name, also
when reached through a symbolic link. The limits are in
`docs/reliability.md`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import DataError

__all__ = ["MAX_FILE_BYTES", "MAX_TABLE_BYTES", "read_limited", "read_table_bytes"]

#: The largest image file read, in bytes (a chest X-ray DICOM is tens of MB).
MAX_FILE_BYTES = 512 * 1024**2
#: The largest metadata table (CSV, TXT) read, in bytes.
MAX_TABLE_BYTES = 256 * 1024**2

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(path: str, mode: int) -> DataError | None:
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    target = ""
    if os.path.islink(path):
        target = f" (a link to '{os.path.realpath(path)}')"
    return DataError(f"'{path}'{target} is {kind}; only regular files are read.")


def read_limited(path: str | os.PathLike[str], limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes.

    The file's kind and size are checked before it is opened (following
    links), and again on the open file, which is opened without blocking, so
    a FIFO swapped in meanwhile cannot hang the reader.

    Raises:
        DataError: The file is missing, unreadable, not a regular file (a
            FIFO, device, socket or folder), or larger than `limit`. The
            message names the file.

    Examples:
        >>> read_limited("/dev/null")
        Traceback (most recent call last):
        ...
        covidxray.errors.DataError: '/dev/null' is a character device; ...
    """
    name = os.fspath(path)
    try:
        first = os.stat(name)
    except FileNotFoundError as exc:
        raise DataError(f"File not found: '{name}'.") from exc
    except OSError as exc:
        raise DataError(f"Could not read '{name}': {exc.strerror or exc}.") from exc
    problem = _not_regular(name, first.st_mode)
    if problem is not None:
        raise problem
    _check_size(name, first.st_size, limit)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(name, flags)
    except OSError as exc:
        raise DataError(f"Could not read '{name}': {exc.strerror or exc}.") from exc
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        problem = _not_regular(name, st.st_mode)
        if problem is not None:
            raise problem
        _check_size(name, st.st_size, limit)
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise DataError(f"Could not read '{name}': {exc.strerror or exc}.") from exc
    _check_size(name, len(data), limit)  # it grew while read
    return data


def _check_size(name: str, size: int, limit: int) -> None:
    if size > limit:
        raise DataError(
            f"'{name}' is {size:,} bytes, over the limit of {limit:,} bytes for "
            "one file; it is not read."
        )


def read_table_bytes(path: Path) -> bytes:
    """`read_limited` with the limit of a metadata table."""
    if not os.path.lexists(path):
        raise DataError(f"Could not read '{path}': no such file.")
    return read_limited(path, MAX_TABLE_BYTES)
