"""Saving safely: a target checked before any work, and temporary files
beside it, named so that a later save can tell a killed run's leftovers from
a save in progress, removed on SIGTERM as on any error, and given the mode
the umask asks for.

See the "Faults survived" section of `docs/reliability.md`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

logger = logging.getLogger("covidxray")

__all__ = [
    "STALE_SECONDS",
    "check_writable",
    "file_mode",
    "remove_stale",
    "temp_prefix",
    "terminate_as_exit",
]

#: A temporary file not written to for this long is a leftover, whoever made it.
STALE_SECONDS = 3600


def check_writable(
    path: str | os.PathLike[str], where: str, *, folder: bool = False
) -> Path:
    """Check, before any work, that `path` can be written: its folder exists
    and is writable, and `path` is not a folder (or, with `folder`, not a
    file). Returns `path` as a `Path`.

    Raises:
        ValueError: The message names `path`, `where` and what is wrong.

    Examples:
        >>> check_writable("no-such-folder/r.html", "report")
        Traceback (most recent call last):
        ...
        ValueError: Cannot write 'no-such-folder/r.html' (report): the folder ...
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(
            f"Cannot write '{path}' ({where}): the folder '{parent}' does not "
            "exist. Create it first."
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(
            f"Cannot write '{path}' ({where}): the folder '{parent}' is not writable."
        )
    if folder and target.exists() and not target.is_dir():
        raise ValueError(
            f"Cannot write '{path}' ({where}): it is a file, not a folder."
        )
    if not folder and target.is_dir():
        raise ValueError(f"Cannot write '{path}' ({where}): it is a folder.")
    return target


def temp_prefix(stem: str) -> str:
    """The prefix of a temporary file for `stem`: `.<stem>-<host>.<pid>-`, so
    that a later save knows whether the process that made it still runs."""
    host = socket.gethostname().replace("-", "_") or "host"
    return f".{stem}-{host}.{os.getpid()}-"


def _is_stale(path: Path, stem: str, now: float) -> bool:
    try:
        if now - path.stat().st_mtime > STALE_SECONDS:
            return True
    except OSError:
        return False
    owner = path.name[len(stem) + 2 :].rsplit("-", 1)[0]
    host, _, pid = owner.rpartition(".")
    if host != socket.gethostname().replace("-", "_") or not pid.isdigit():
        return False  # another machine's, or an old name: its age decides
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True  # the process that wrote it is gone
    except OSError:
        return False
    return False


def remove_stale(folder: Path, stem: str, suffix: str, keep: str = "") -> list[Path]:
    """Remove the temporary files (or folders) `.<stem>-*<suffix>` in
    `folder` that a killed run left: made by a process of this machine that
    no longer runs, or not written to for `STALE_SECONDS`. Returns the paths
    removed."""
    removed = []
    now = time.time()
    for path in folder.glob(f".{stem}-*{suffix}"):
        if str(path) != keep and _is_stale(path, stem, now):
            with contextlib.suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(path)
    if removed:
        logger.info(
            "Removed %d temporary files left by killed runs: %s",
            len(removed),
            ", ".join(str(p) for p in removed),
        )
    return removed


def file_mode() -> int:
    """The mode a new file gets under the process's umask (0o666 & ~umask),
    read without changing the umask where Linux shows it."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, at once back
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """While inside, SIGTERM raises `SystemExit(143)` in the main thread
    instead of ending the process at once, so `finally` and `except` blocks
    remove their temporary files. Does nothing outside the main thread, or
    when SIGTERM already has a handler of its own."""
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
