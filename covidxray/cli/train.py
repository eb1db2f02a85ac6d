"""`covidxray train`, `crossval` and `compare`: models trained from data."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from typing import Any

from .._choices import AUGMENT_PRESETS
from ..data.dataset import BALANCE_BY
from ..data.preprocessing import COLOR_MODES, EQUALIZE_MODES, LUNG_MODES, RESIZE_MODES
from . import args as kinds
from .args import CLASS_MAP_HELP, DATA_HELP, EXIT_OK, sources

#: The `--augment` names of `train` and `crossval`: `Augmenter.preset`'s, or
#: none. "seed" is the deprecated name of "paper" (accepted, with a warning).
AUGMENTS = (*AUGMENT_PRESETS, "none")
_DEPRECATED_AUGMENTS = {"seed": "paper"}
#: What `covidxray train` does when not told otherwise; why, in the docs'
#: "Sources and shortcuts" guide.
DEFAULT_RECIPE: dict[str, Any] = {
    "augment": "xray",
    "resize": "stretch",
    "trim": 0.0,
    "equalize": "none",
    "balance": "none",
    "spectral_decoupling": 0.0,
    "lungs": "none",
    "lung_focus": 0.0,
}


def _weights(value: str) -> str | None:
    return None if value.lower() == "none" else value


def _cmd_train(args: argparse.Namespace) -> int:
    import keras

    from .. import Classifier, load_dataset
    from .._persist import check_model_path

    check_model_path(args.out, "--out")  # before scanning and training
    if args.checkpoint:
        check_model_path(args.checkpoint, "--checkpoint")
    data = load_dataset(
        sources(args.data),
        image_size=_image_size(args),
        color_mode=args.color_mode,
        batch_size=args.batch_size,
        seed=args.seed,
        resize=args.resize,
        trim=args.trim,
        window=args.window,
        equalize=args.equalize,
        lungs=args.lungs,
        lung_masks=args.lung_focus > 0,
        class_map=args.class_map,
    )
    keras.utils.set_random_seed(args.seed)  # reproducible initial weights
    model = _model_builder(args)(data.preprocessing.input_shape)
    print(data.summary())
    augmenter = _augmenter(args.augment, args.seed)
    clf = Classifier(
        model,
        class_names=data.class_names,
        learning_rate=args.learning_rate,
        spectral_decoupling=args.spectral_decoupling,
        lung_focus=args.lung_focus,
        seed=args.seed,
    )
    clf.fit(
        data.balanced(args.balance) if args.balance != "none" else data,
        epochs=args.epochs,
        augmenter=augmenter,
        early_stopping=args.early_stopping,
        checkpoint=args.checkpoint,
        verbose=0 if args.quiet else "auto",
    )
    clf.save(args.out)
    if data.split_records("val"):
        # The validation images chose the best epoch: seen, and said so.
        evaluation = clf.evaluate(data, split="val", include_seen=True, n_bootstrap=0)
        shown = {k: round(v, 4) for k, v in evaluation.metrics.items()}
        print(f"Validation (used to select the model): {json.dumps(shown)}")
    print(f"Saved {args.out}")
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from .. import run_comparison

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
        verbose=0 if args.quiet else "auto",
    )
    print(result.to_markdown())
    return EXIT_OK


def _augmenter(name: str, seed: int) -> Any:
    """The augmenter a `--augment` name means, or None for `none`."""
    from .. import Augmenter

    if name in _DEPRECATED_AUGMENTS:
        new = _DEPRECATED_AUGMENTS[name]
        logging.getLogger("covidxray").warning(
            "--augment %s is deprecated; use --augment %s instead.", name, new
        )
        name = new
    return Augmenter.preset(name, seed=seed) if name != "none" else None


def _image_size(args: argparse.Namespace) -> tuple[int, int]:
    """`--image-size`, else 256 for the paper's CNN and 224 for a backbone."""
    size = args.image_size
    if size is None:
        size = 256 if args.model == "cnn" else 224
    return (size, size)


def _model_builder(args: argparse.Namespace) -> Callable[[tuple[int, ...]], Any]:
    """The model `--model` (and `--weights`) names, as a function of the input
    shape."""
    from .. import build_cnn, build_pretrained

    if args.model == "cnn":
        return build_cnn
    weights = _weights(args.weights)
    return lambda shape: build_pretrained(
        args.model, input_shape=shape, weights=weights
    )


def _cmd_crossval(args: argparse.Namespace) -> int:
    from .. import load_dataset
    from ..crossval import leave_one_source_out

    data = load_dataset(
        sources(args.data),
        image_size=_image_size(args),
        batch_size=args.batch_size,
        seed=args.seed,
    )
    if not args.json:
        print(data.summary())
    build = _model_builder(args)

    def augment(seed: int) -> Any:
        return _augmenter(args.augment, seed)

    result = leave_one_source_out(
        data,
        build,
        epochs=args.epochs,
        augmenter=augment,
        seed=args.seed,
        n_bootstrap=args.bootstrap,
        verbose=0 if args.quiet else "auto",
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print(result.to_markdown())
    return EXIT_OK


def _add_augment(p: argparse.ArgumentParser) -> None:
    """`--augment`, as `train` and `crossval` take it (deprecated names too)."""
    p.add_argument(
        "--augment",
        choices=(*AUGMENTS, *_DEPRECATED_AUGMENTS),
        metavar="{" + ",".join(AUGMENTS) + "}",
        default=DEFAULT_RECIPE["augment"],
        help=f"{', '.join(AUGMENTS)} (default: {DEFAULT_RECIPE['augment']})",
    )


def add_parsers(sub: Any) -> None:
    """Add `train`, `crossval`, `compare` to the subcommands."""
    p = sub.add_parser("train", help="train a model and save it as a .keras file")
    p.add_argument("data", nargs="+", help=DATA_HELP)
    p.add_argument(
        "--model", default="cnn", help="cnn or a backbone name (default: cnn)"
    )
    p.add_argument("--out", required=True, help="output .keras file")
    p.add_argument("--epochs", type=kinds.EPOCHS, default=10)
    p.add_argument(
        "--image-size",
        type=kinds.IMAGE_SIZE,
        help="default 256 for cnn, 224 for backbones",
    )
    p.add_argument("--color-mode", choices=COLOR_MODES, default="grayscale")
    _add_augment(p)
    p.add_argument(
        "--weights", default="imagenet", help="imagenet, none, or a file/folder"
    )
    p.add_argument("--resize", choices=RESIZE_MODES, default=DEFAULT_RECIPE["resize"])
    p.add_argument(
        "--trim",
        type=kinds.TRIM,
        default=DEFAULT_RECIPE["trim"],
        help="cut uniform borders, then this fraction of each side (0: off)",
    )
    p.add_argument(
        "--window",
        type=kinds.window,
        default="auto",
        help="auto, percentile, or LOW,HIGH raw values",
    )
    p.add_argument(
        "--equalize",
        choices=EQUALIZE_MODES,
        default=DEFAULT_RECIPE["equalize"],
    )
    p.add_argument(
        "--balance",
        choices=("none", *BALANCE_BY),
        default=DEFAULT_RECIPE["balance"],
        help="draw training batches so classes weigh the same (within each source)",
    )
    p.add_argument(
        "--spectral-decoupling",
        type=kinds.SPECTRAL_DECOUPLING,
        default=DEFAULT_RECIPE["spectral_decoupling"],
        help="strength of the L2 penalty on the logits (0: off)",
    )
    p.add_argument(
        "--lungs",
        choices=LUNG_MODES,
        default=DEFAULT_RECIPE["lungs"],
        help="crop to the lungs found by the shipped segmenter, or also blank "
        "everything outside them (mask)",
    )
    p.add_argument(
        "--lung-focus",
        type=kinds.LUNG_FOCUS,
        default=DEFAULT_RECIPE["lung_focus"],
        help="strength of the penalty on input gradients outside the lungs (0: off)",
    )
    p.add_argument("--batch-size", type=kinds.BATCH_SIZE, default=32)
    p.add_argument("--learning-rate", type=kinds.LEARNING_RATE, default=1e-3)
    p.add_argument("--early-stopping", type=kinds.PATIENCE, help="patience in epochs")
    p.add_argument(
        "--checkpoint", help="best-epoch .keras file; resumes if interrupted"
    )
    p.add_argument("--seed", type=kinds.SEED, default=0)
    p.add_argument("--class-map", type=kinds.class_map, help=CLASS_MAP_HELP)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "crossval",
        help="leave one source out: train on all sources but one, score the one "
        "left out, for each source",
    )
    p.add_argument(
        "--by", choices=["source"], default="source", help="what to hold out"
    )
    p.add_argument("data", nargs="+", help=DATA_HELP)
    p.add_argument("--model", default="cnn", help="cnn or a backbone name")
    p.add_argument("--epochs", type=kinds.EPOCHS, default=10)
    p.add_argument(
        "--image-size", type=kinds.IMAGE_SIZE, help="default 256 for cnn, 224 else"
    )
    _add_augment(p)
    p.add_argument("--weights", default="imagenet", help="imagenet, none, or a file")
    p.add_argument("--batch-size", type=kinds.BATCH_SIZE, default=32)
    p.add_argument(
        "--bootstrap", type=kinds.BOOTSTRAP, default=1000, help="AUC resamples"
    )
    p.add_argument("--seed", type=kinds.SEED, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_crossval)

    p = sub.add_parser("compare", help="the published comparison, leaky and audited")
    p.add_argument(
        "data", nargs="?", help="dataset folder (default: synthetic demo set)"
    )
    p.add_argument("--out", default="results")
    p.add_argument("--models", nargs="+")
    p.add_argument(
        "--weights",
        help="imagenet, none, or a folder (default imagenet; none with --quick)",
    )
    p.add_argument("--epochs", type=kinds.EPOCHS)
    p.add_argument("--image-size", type=kinds.IMAGE_SIZE)
    p.add_argument("--seed", type=kinds.SEED, default=0, help="the first seed")
    p.add_argument(
        "--seeds",
        type=kinds.SEEDS,
        default=1,
        help="train each model with this many seeds (seed, seed+1, ...); the "
        "report gives each seed's row and the mean and sd",
    )
    p.add_argument("--quick", action="store_true")
    p.set_defaults(func=_cmd_compare)
