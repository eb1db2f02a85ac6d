"""What the `covidxray` command's arguments mean: the exit codes, the types
(every number is checked by the parser, before any work, and its message says
the valid range), and the data and image arguments read into paths.

`0` never means "the default": an option left out takes its default, and a
value given is used as it is or refused. The ranges are listed in
`docs/reliability.md`. This module imports nothing heavy.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._validation import MAX_IMAGE_SIDE
from ..data.catalog import source_name
from ..data.checks import parse_class_map
from ..errors import DataError

__all__ = [
    "CLASS_MAP_HELP",
    "DATA_HELP",
    "EXIT_DATA",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_WEIGHTS",
    "BATCH_SIZE",
    "BOOTSTRAP",
    "EPOCHS",
    "IMAGE_SIZE",
    "LEARNING_RATE",
    "LUNG_FOCUS",
    "PATIENCE",
    "SEED",
    "SEEDS",
    "SPECTRAL_DECOUPLING",
    "TRIM",
    "class_map",
    "image_files",
    "integer",
    "number",
    "sources",
    "tsv_field",
    "window",
]

#: Exit codes: success; bad data, file or argument value; bad usage (argparse);
#: pretrained weights unavailable.
EXIT_OK, EXIT_DATA, EXIT_USAGE, EXIT_WEIGHTS = 0, 1, 2, 3


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in `[low, high]` (no upper end when None).

    Examples:
        >>> integer(1)("3")
        3
        >>> integer(1)("0")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: must be an integer >= 1; received '0'
    """
    wanted = (
        f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    )

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {wanted}; received {text!r}")
        return value

    parse.__name__ = wanted  # argparse names the type in some messages
    return parse


def number(
    low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> Callable[[str], float]:
    """An argparse type: a finite number in the interval given.

    Examples:
        >>> number(0.0, 1.0, low_open=True)("0.01")
        0.01
        >>> number(0.0, 1.0, low_open=True)("-1")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: must be a number in (0, 1]; received '-1'
    """
    wanted = (
        f"a number in {'(' if low_open else '['}{low:g}, {high:g}"
        f"{')' if high_open else ']'}"
    )

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        inside = (
            math.isfinite(value)
            and (value > low if low_open else value >= low)
            and (value < high if high_open else value <= high)
        )
        if not inside:
            raise argparse.ArgumentTypeError(f"must be {wanted}; received {text!r}")
        return value

    parse.__name__ = wanted
    return parse


def window(text: str) -> str | tuple[float, float]:
    """An argparse type: `auto`, `percentile` or `LOW,HIGH` raw values.

    Examples:
        >>> window("0,4095")
        (0.0, 4095.0)
        >>> window("dark")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: must be auto, percentile or LOW,HIGH; \
received 'dark'
    """
    if text in ("auto", "percentile"):
        return text
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be auto, percentile or LOW,HIGH; received {text!r}"
        ) from None
    return (low, high)


def class_map(text: str) -> dict[str, str]:
    """An argparse type: `--class-map cats=non,dogs=covid` as a dict."""
    try:
        return parse_class_map(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def tsv_field(text: str) -> str:
    r"""A value as one TSV field: backslash, tab, newline and carriage return
    written as `\\`, `\t`, `\n` and `\r`.

    Examples:
        >>> tsv_field("a\tb\nc.png")
        'a\\tb\\nc.png'
    """
    return (
        text.replace("\\", "\\\\")
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )


EPOCHS = integer(1, 100_000)
IMAGE_SIZE = integer(8, MAX_IMAGE_SIDE)
BATCH_SIZE = integer(1, 65_536)
BOOTSTRAP = integer(0, 1_000_000)
PATIENCE = integer(1)
SEED = integer(0, 2**32 - 1)
SEEDS = integer(1, 1000)
LEARNING_RATE = number(0.0, 1.0, low_open=True)
TRIM = number(0.0, 0.5, high_open=True)
SPECTRAL_DECOUPLING = number(0.0, 1e6)
LUNG_FOCUS = number(0.0, 1e6)


CLASS_MAP_HELP = (
    "FOLDER=CLASS,...: what each class folder is, e.g. cats=non,dogs=covid "
    "(folders whose names match no class are refused)"
)
DATA_HELP = (
    "dataset folder(s) or metadata file(s); several are read as one dataset with "
    "a source each (named after its folder, or NAME=PATH)"
)


def image_files(items: Sequence[str]) -> list[str]:
    """The image files named, folders expanded; a DataError for a missing one."""
    from ..data import find_images

    files: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files.extend(find_images(path))
        elif path.is_file():
            files.append(str(path))
        else:
            raise DataError(f"No such file or folder: '{item}'.")
    if not files:
        raise DataError(f"Found no images in {list(items)}.")
    return files


def sources(items: list[str]) -> Any:
    """One path, or a dict name -> path for several (NAME=PATH or a folder)."""
    if len(items) == 1 and "=" not in items[0]:
        return items[0]
    named: dict[str, str] = {}
    for item in items:
        name, _, path = item.partition("=") if "=" in item else ("", "", item)
        key = name or source_name(Path(path))
        if key in named:
            raise DataError(
                f"Two sources are named {key!r}: '{named[key]}' and '{path}'. Name "
                "them with NAME=PATH."
            )
        named[key] = path
    return named
