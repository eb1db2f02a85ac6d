"""`covidxray evaluate`: metrics with 95% intervals on images a model never saw."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .._choices import SCORE_BY
from ..data.split import EVALUATION_SPLITS
from ..errors import DataError
from . import args as kinds
from .args import CLASS_MAP_HELP, EXIT_OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .. import Classifier

    clf = Classifier.load(args.model)
    if args.lungs and len(clf.class_names) != 2:  # before any work
        raise DataError(
            f"--lungs needs a binary model; '{args.model}' has the classes "
            f"{list(clf.class_names)}."
        )
    # Read once: the lung test scores the same images again.
    data = clf.read_dataset(args.data, args.class_map)
    evaluation = clf.evaluate(
        data,
        split=args.split,
        include_seen=args.include_seen,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        by=args.by,
    )
    lungs = None
    if args.lungs:
        lungs = clf.lung_test(
            data,
            split=args.split,
            include_seen=args.include_seen,
            n_bootstrap=args.bootstrap,
            seed=args.seed,
        )
    if args.json:
        result = evaluation.to_dict()
        if lungs is not None:
            result["lungs"] = lungs.to_dict()
        print(json.dumps(result, indent=2, default=str))
    else:
        print(evaluation.to_markdown())
        if lungs is not None:
            print("\n## The lung test: does the model need the lungs?\n")
            print(lungs.to_markdown())
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    """Add `evaluate` to the subcommands."""
    p = sub.add_parser(
        "evaluate",
        help="metrics with 95%% CIs on images the model never saw: a dataset's "
        "test split, or all of an external set",
    )
    p.add_argument("model", help="a .keras file saved by covidxray")
    p.add_argument("data", help="dataset folder or metadata file")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--split",
        choices=EVALUATION_SPLITS,
        help="default: the test split, or all images when the data has none",
    )
    p.add_argument(
        "--include-seen",
        action="store_true",
        help="also score images the model saw in training (reported in bold)",
    )
    p.add_argument(
        "--bootstrap", type=kinds.BOOTSTRAP, default=1000, help="AUC resamples"
    )
    p.add_argument("--seed", type=kinds.SEED, default=0, help="seed of the bootstrap")
    p.add_argument("--class-map", type=kinds.class_map, help=CLASS_MAP_HELP)
    p.add_argument(
        "--by",
        choices=SCORE_BY,
        default="image",
        help="score each image, or each patient by the mean probability of its "
        "images, with intervals by patient (CT: hundreds of slices a patient)",
    )
    p.add_argument(
        "--lungs",
        action="store_true",
        help="also run the lung test: the same images with the lungs removed, "
        "only the lungs, and a control of the same area removed outside them",
    )
    p.set_defaults(func=_cmd_evaluate)
