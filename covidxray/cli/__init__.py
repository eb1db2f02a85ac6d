"""The `covidxray` command: a thin layer over the public API.

Each subcommand lives in the module of its concept (`train`, `evaluate`,
`report`, `predict`, ...), which adds its own parser; `args` holds what the arguments
mean. Exit codes: 0 success; 1 bad data, file or argument value; 2 bad usage;
3 pretrained weights unavailable.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from .. import _progress
from .._quiet import quiet_tensorflow
from .._version import __version__
from ..data.tempfiles import terminate_as_exit
from ..errors import DataError, WeightsUnavailableError
from . import audit, evaluate, export, predict, report, train
from .args import EXIT_DATA, EXIT_OK, EXIT_USAGE, EXIT_WEIGHTS
from .train import AUGMENTS, DEFAULT_RECIPE

__all__ = [
    "AUGMENTS",
    "DEFAULT_RECIPE",
    "EXIT_DATA",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_WEIGHTS",
    "build_parser",
    "main",
]

#: The modules that add the subcommands, in the order `--help` lists them.
_COMMANDS = (audit, train, evaluate, report, predict, export)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `covidxray` command."""
    parser = argparse.ArgumentParser(
        prog="covidxray",
        description="Chest X-ray COVID-19 classification with leak and shortcut "
        "audits. "
        "Research use only; not for clinical use.",
    )
    parser.add_argument(
        "--version", action="version", version=f"covidxray {__version__}"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log details too (debug level), and TensorFlow's start-up lines",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress: no scan bar, no epoch lines, only results and errors",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in _COMMANDS:
        command.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `covidxray` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Before anything imports TensorFlow: its C++ start-up lines hidden, its
    # errors kept, unless --verbose or TF_CPP_MIN_LOG_LEVEL says otherwise.
    loud_again = quiet_tensorflow(verbose=args.verbose)
    # Progress a person can follow: on a terminal, the scan's bar and Keras'
    # epoch bars; in a log file or a pipe, one line per epoch (the library's
    # INFO messages). --quiet turns both off.
    level = logging.WARNING if args.quiet else logging.INFO
    if args.verbose and not args.quiet:
        level = logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    library = logging.getLogger("covidxray")
    library.addHandler(handler)
    library.setLevel(level)
    _progress.BARS = not args.quiet
    try:
        with terminate_as_exit():  # SIGTERM: temporary files are removed
            code: Any = args.func(args)
    except WeightsUnavailableError as exc:
        print(f"covidxray {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_WEIGHTS
    except (DataError, ValueError, OSError) as exc:
        print(f"covidxray {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_DATA
    finally:
        library.removeHandler(handler)
        _progress.BARS = True
        loud_again()
    return int(code)
