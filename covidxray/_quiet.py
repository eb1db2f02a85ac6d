"""A quiet start: TensorFlow's C++ start-up lines hidden, its errors kept.

The `covidxray` command and the examples call `quiet_tensorflow` before
anything imports TensorFlow. Importing the library itself changes nothing: a
program that imports covidxray keeps TensorFlow's own logging, and its own
environment.

Why more than the environment variable: TensorFlow reads
`TF_CPP_MIN_LOG_LEVEL` for the messages it logs once its logging is set up,
but the lines it prints while it loads (`All log messages before
absl::InitializeLog() is called are written to STDERR`, the oneDNN and
`Could not find cuda drivers` info lines) come before that, at any level, and
the failed `cuInit` of a machine without a GPU is an error-level line, which
only level 3 would hide, with every real error. So, unless the person chose
for themselves:

- `TF_CPP_MIN_LOG_LEVEL` is set to 2 (errors only) for the rest of the run;
- while TensorFlow is first imported and lists its devices (where those lines
  are printed), the process's standard error (file descriptor 2) passes
  through a filter that drops only info and warning lines in TensorFlow's
  format, the absl banner, and the `cuInit` failure when TensorFlow has just
  said that this machine has no CUDA driver. Every other line (errors, fatal
  lines, Python's own output) is passed on as it came.

Nothing is changed when `verbose` is true (the command's `--verbose`), when
`TF_CPP_MIN_LOG_LEVEL` is already set (the person's choice: TensorFlow's own
behaviour), when `TF_CPP_MAX_VLOG_LEVEL` or `TF_CPP_VMODULE` asks for more
detail, or when TensorFlow is already imported. See `docs/guides/cli.md`.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

__all__ = ["Filter", "filtered_stderr", "quiet_tensorflow"]

LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
#: Variables that ask TensorFlow for more detail: with one set, nothing is hidden.
DETAIL_VARIABLES = ("TF_CPP_MAX_VLOG_LEVEL", "TF_CPP_VMODULE")
#: The level set when the person set none: info and warnings hidden.
QUIET_LEVEL = "2"

#: An info or warning line of TensorFlow's C++ logging (absl's format).
_INFO_OR_WARNING = re.compile(r"^[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] ")
_BANNER = "WARNING: All log messages before absl::InitializeLog() is called"
_NO_DRIVER = "Could not find cuda drivers on your machine"
_CUINIT = re.compile(r"^E\d{4} .*\] failed call to cuInit: ")


class Filter:
    """Decides, line by line, what reaches standard error during the import.

    Examples:
        >>> f = Filter()
        >>> f.keep("I0000 00:00:17.5  15 cudart_stub.cc:31] Could not find cuda "
        ...        "drivers on your machine, GPU will not be used.")
        False
        >>> f.keep("E0000 00:00:17.6  15 cuda_platform.cc:52] failed call to "
        ...        "cuInit: INTERNAL: CUDA error: UNKNOWN ERROR (303)")
        False
        >>> f.keep("E0000 00:00:17.7  15 op_kernel.cc:1] something real failed")
        True
        >>> f.keep("Traceback (most recent call last):")
        True
    """

    def __init__(self) -> None:
        self.no_driver = False
        self.dropped = 0

    def keep(self, line: str) -> bool:
        """Whether to pass one line (without its newline) on."""
        drop = False
        if line.startswith(_BANNER):
            drop = True
        elif _INFO_OR_WARNING.match(line):
            self.no_driver = self.no_driver or _NO_DRIVER in line
            drop = True
        elif _CUINIT.match(line):
            drop = self.no_driver  # the consequence of no driver, said just before
        self.dropped += drop
        return not drop


def _forward(read_fd: int, write_fd: int, keep: Callable[[str], bool]) -> None:
    """Copy lines from `read_fd` to `write_fd`, those `keep` accepts."""
    pending = b""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        out = [ln + b"\n" for ln in lines if keep(ln.decode("utf-8", "replace"))]
        _write_all(write_fd, b"".join(out))
    if pending and keep(pending.decode("utf-8", "replace")):
        _write_all(write_fd, pending)
    os.close(read_fd)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(fd, data) :]
        except OSError:
            return


@contextlib.contextmanager
def filtered_stderr(keep: Callable[[str], bool]) -> Iterator[None]:
    """Pass what the process writes to file descriptor 2 (C++ code included)
    through `keep`, line by line, while the block runs; lines `keep` refuses
    are dropped, the others reach the real standard error in order.

    If the descriptors cannot be set up (no descriptor 2), the block runs
    unfiltered.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(Exception):  # Linux: room for a burst of lines
        import fcntl

        fcntl.fcntl(write_fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    thread = threading.Thread(
        target=_forward, args=(read_fd, saved, keep), name="covidxray-stderr"
    )
    thread.daemon = True
    thread.start()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer closes: the thread ends
        thread.join(timeout=10)
        os.close(saved)


class _QuietLoader(importlib.abc.Loader):
    """TensorFlow's own loader, run with standard error filtered."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with filtered_stderr(Filter().keep):
            self.loader.exec_module(module)
            # The device search prints the failed cuInit: do it now, inside.
            with contextlib.suppress(Exception):
                module.config.list_physical_devices()


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` once, the first time anything imports it, and hands
    it `_QuietLoader`; then leaves `sys.meta_path`."""

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tensorflow":
            return None
        self.remove()
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _QuietLoader(spec.loader)
        return spec

    def remove(self) -> None:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)


def quiet_tensorflow(verbose: bool = False) -> Callable[[], None]:
    """Hide TensorFlow's C++ info and warning lines, and its start-up noise,
    for this run; its errors still show (see the module's description).

    Call it before anything imports TensorFlow. Nothing is imported now: the
    filter waits for the first `import tensorflow` (or `import keras`).

    Args:
        verbose: True leaves TensorFlow's logging as it is (`--verbose`).

    Returns:
        A function that undoes what was set, for a caller that runs the
        command in its own process (tests, `main()` called from Python):
        the variable is restored and an unused filter removed. TensorFlow,
        once imported, keeps the level it read.

    Examples:
        >>> import os
        >>> before = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
        >>> undo = quiet_tensorflow(verbose=True)  # verbose: nothing changes
        >>> os.environ.get("TF_CPP_MIN_LOG_LEVEL") == before
        True
        >>> undo()
    """
    if (
        verbose
        or LEVEL_VARIABLE in os.environ
        or any(name in os.environ for name in DETAIL_VARIABLES)
        or "tensorflow" in sys.modules
    ):
        return lambda: None
    os.environ[LEVEL_VARIABLE] = QUIET_LEVEL
    finder = _QuietFinder()
    sys.meta_path.insert(0, finder)

    def undo() -> None:
        finder.remove()
        if os.environ.get(LEVEL_VARIABLE) == QUIET_LEVEL:
            del os.environ[LEVEL_VARIABLE]

    return undo
