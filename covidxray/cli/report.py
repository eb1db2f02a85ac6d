"""`covidxray report`: one self-contained HTML file of a model on datasets."""

from __future__ import annotations

import argparse
from typing import Any

from . import args as kinds
from .args import CLASS_MAP_HELP, EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from .. import Classifier
    from ..report import check_report_path, report

    check_report_path(args.out, "--out")  # before loading and scoring
    clf = Classifier.load(args.model)
    path = report(
        clf,
        list(args.data),
        args.out,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        lung_test=not args.no_lung_test,
        gallery=args.gallery,
        class_map=args.class_map,
    )
    print(f"Wrote {path}")
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    """Add `report` to the subcommands."""
    p = sub.add_parser(
        "report",
        help="one self-contained HTML file: the model, its training data, and "
        "per dataset the metrics with 95%% CIs, ROC, calibration, lung test and "
        "the most confident mistakes",
    )
    p.add_argument("model", help="a .keras file saved by covidxray")
    p.add_argument(
        "data",
        nargs="+",
        help="dataset folder(s) or metadata file(s), one section each",
    )
    p.add_argument("--out", required=True, help="the HTML file to write")
    p.add_argument(
        "--bootstrap", type=kinds.BOOTSTRAP, default=1000, help="AUC and ECE resamples"
    )
    p.add_argument("--seed", type=kinds.SEED, default=0, help="seed of the bootstrap")
    p.add_argument(
        "--gallery",
        type=kinds.integer(0, 1000),
        default=6,
        help="false positives and false negatives shown, each (0: none)",
    )
    p.add_argument(
        "--no-lung-test", action="store_true", help="skip the lung test (faster)"
    )
    p.add_argument("--class-map", type=kinds.class_map, help=CLASS_MAP_HELP)
    p.set_defaults(func=_cmd_report)
