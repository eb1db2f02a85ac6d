"""`covidxray export`: a model as a SavedModel or a TFLite file, to serve it
without covidxray (see `docs/guides/export.md`)."""

from __future__ import annotations

import argparse
from typing import Any

from .._choices import EXPORT_FORMATS
from .args import EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from .. import Classifier
    from ..export import check_export_path

    check_export_path(args.out, args.overwrite)  # before the model is read
    clf = Classifier.load(args.model)
    folder = clf.export(args.out, args.format, overwrite=args.overwrite)
    print(folder)
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    """Add `export` to the subcommands."""
    p = sub.add_parser(
        "export",
        help="write a model as a TensorFlow SavedModel (files and pixels "
        "signatures) or a TFLite file, to serve it without covidxray",
    )
    p.add_argument("model", help="a .keras file saved by covidxray")
    p.add_argument("--out", required=True, help="the folder to write")
    p.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        default="savedmodel",
        help="savedmodel (default): serving_default takes PNG/JPEG bytes, pixels "
        "takes uint8 pixels; tflite: model.tflite of the pixels path",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing non-empty folder (kept until the new one is "
        "complete)",
    )
    p.set_defaults(func=_cmd_export)
