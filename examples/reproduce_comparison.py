"""Reproduce the published comparison: seed CNN vs MobileNet, ResNet, DenseNet.

Description:
    The original project reported accuracy 0.99 (its CNN), 0.98 (ResNet101V2), 0.96
    (DenseNet201) and 0.69 (MobileNetV2). Its test split holds exact copies of
    training images, and its two classes come from different sources. This
    script trains the same models the same way twice: on the paper's split as
    given, and on an audited split with the copies removed and a validation set
    held out from train. It writes results.md, results.csv, results.json and
    plots (ROC curves, confusion matrices, training curves) to --out.

    Without a data folder it runs on covidxray's SYNTHETIC demo set and says so.

How to run:
    pip install .
    python examples/reproduce_comparison.py --quick               # smoke run
    python examples/reproduce_comparison.py /path/to/seed-xray \\
        --image-size 128 --epochs 5 --weights imagenet --out results
    # Offline: --weights none (random init) or --weights DIR (Keras .h5 files).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from covidxray._quiet import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow loads: no start-up noise

from covidxray import WeightsUnavailableError, run_comparison  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "data", nargs="?", help="dataset folder (default: synthetic demo set)"
    )
    parser.add_argument(
        "--out", default="results", help="output folder (default: results)"
    )
    parser.add_argument(
        "--models", nargs="+", help="subset, e.g. cnn mobilenetv2 resnet50"
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="imagenet, none, or a folder/file of Keras weights "
        "(default: imagenet, or none with --quick)",
    )
    parser.add_argument("--epochs", type=int, help="epochs per model (default 10)")
    parser.add_argument(
        "--image-size", type=int, help="square input size (default 256)"
    )
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="seeds per model (seed, seed+1, ...): mean, sd and every seed's row",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run in well under a minute"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.data is None:
        print(
            "No data folder given: running on the SYNTHETIC demo set (not real X-rays)."
        )
    try:
        result = run_comparison(
            args.data,
            out_dir=args.out,
            models=args.models,
            weights=args.weights or "auto",
            epochs=args.epochs,
            image_size=args.image_size,
            quick=args.quick,
            seed=args.seed,
            seeds=range(args.seed, args.seed + args.seeds),
        )
    except WeightsUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(result.to_markdown())
    plots = sorted(Path(args.out).glob("*.png"))
    missing = " (no plots: pip install 'covidxray[plots]')"
    note = f" and {len(plots)} plots" if plots else missing
    print(f"Wrote results.md, results.csv, results.json{note} to {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
