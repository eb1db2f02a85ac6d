"""The `covidxray` command: a thin layer over the public API.

Exit codes: 0 success; 1 bad data, file or argument value; 2 bad usage;
3 pretrained weights unavailable.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import _cli_args as kinds
from . import _progress
from ._choices import AUGMENT_PRESETS, SCORE_BY
from ._version import __version__
from .data.catalog import source_name
from .data.dataset import BALANCE_BY
from .data.preprocessing import COLOR_MODES, EQUALIZE_MODES, LUNG_MODES, RESIZE_MODES
from .data.split import EVALUATION_SPLITS
from .data.tempfiles import terminate_as_exit
from .errors import DataError, WeightsUnavailableError

__all__ = ["main"]

EXIT_OK, EXIT_DATA, EXIT_USAGE, EXIT_WEIGHTS = 0, 1, 2, 3
_CHUNK = 64  # images per step of `covidxray predict`
#: What `covidxray train` does when not told otherwise; why, in the docs'
#: "Sources and shortcuts" guide.
#: The `--augment` names of `train` and `crossval`: `Augmenter.preset`'s, or
#: none. "seed" is the deprecated name of "paper" (accepted, with a warning).
AUGMENTS = (*AUGMENT_PRESETS, "none")
_DEPRECATED_AUGMENTS = {"seed": "paper"}
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


def _cmd_audit(args: argparse.Namespace) -> int:
    from . import audit

    report = audit(_sources(args.data), shortcut_probe=not args.no_probe)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.to_markdown())
    return EXIT_OK


def _cmd_train(args: argparse.Namespace) -> int:
    import keras

    from . import Classifier, load_dataset
    from ._persist import check_model_path

    check_model_path(args.out, "--out")  # before scanning and training
    if args.checkpoint:
        check_model_path(args.checkpoint, "--checkpoint")
    data = load_dataset(
        _sources(args.data),
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


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from . import Classifier

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


def _cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from . import Classifier, overlay

    clf = Classifier.load(args.model)
    files = _image_files(args.images)
    out = Path(args.gradcam) if args.gradcam else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    prep, positive = clf.preprocessing_, clf.positive_index
    results: list[dict[str, Any]] = []
    # A chunk at a time: each file is decoded once, with the model's own
    # preprocessing, and memory does not grow with the number of files. A file
    # that cannot be read is named, and the others are still predicted.
    for start in range(0, len(files), _CHUNK):
        names = files[start : start + _CHUNK]
        rows, good = _decode_chunk(prep, names)
        if good:
            pixels = np.stack([pixels for *_, pixels in good])
            proba = clf.predict_proba(pixels)
            labels = clf.labels_from_proba(proba)
            heatmaps = clf.explain(pixels) if out is not None else None
        for j, (k, img, box, _) in enumerate(good):
            row: dict[str, Any] = {
                "file": names[k],
                "label": str(labels[j]),
                "probability": float(proba[j, positive]),
                "probability_of": clf.class_names[positive],
            }
            if out is not None and heatmaps is not None:
                # The heatmap is mapped back through the crop (a CT body box,
                # trim, the lungs) and the resize, so it lands where the
                # model looked.
                target = out / f"{start + k:04d}_{Path(names[k]).stem}_gradcam.png"
                heat = prep.map_back(heatmaps[j], img.size, box)
                overlay(img, heat).save(target)
                row["gradcam"] = str(target)
            rows[k] = row
        results += [rows[k] for k in range(len(names))]
    _print_predictions(results, args.json, args.skip_bad)
    failed = any("error" in row for row in results)
    return EXIT_DATA if failed and not args.skip_bad else EXIT_OK


def _decode_chunk(
    prep: Any, names: Sequence[str]
) -> tuple[dict[int, dict[str, Any]], list[tuple[int, Any, Any, Any]]]:
    """Decode each file of a chunk: `(rows, good)`, a result row naming the
    error of each file that cannot be read (by position), and `(position,
    image, the part of it the model sees, pixels)` of each one that can. A
    COVIDx CT slice is cut to its body box; with `lungs`, the chunk's lungs
    are found in one batch."""
    from .data.boxes import crop_to_box
    from .data.covidx_ct import body_box

    rows: dict[int, dict[str, Any]] = {}
    decoded: list[tuple[int, Any, Any, Any]] = []
    for k, name in enumerate(names):
        try:
            img = prep.decode(name)[0]
            box = body_box(name)
            decoded.append((k, img, box, crop_to_box(img, box, name=name)))
        except DataError as exc:
            rows[k] = {"file": name, "error": str(exc)}
    lungs = prep.lung_masks([d[3] for d in decoded], [names[d[0]] for d in decoded])
    good: list[tuple[int, Any, Any, Any]] = []
    for (k, img, box, inside), mask in zip(decoded, lungs, strict=True):
        try:
            pixels = prep.to_array(inside, name=names[k], lungs=mask)
            good.append((k, img, prep.seen_box(img, box, mask), pixels))
        except DataError as exc:
            rows[k] = {"file": names[k], "error": str(exc)}
    return rows, good


def _print_predictions(
    results: Sequence[dict[str, Any]], as_json: bool, skip_bad: bool
) -> None:
    """Print one row per file (TSV fields escaped), then each bad file's
    error on stderr."""
    if as_json:
        print(json.dumps(list(results), indent=2))
    else:
        for row in results:
            name = kinds.tsv_field(row["file"])
            if "error" in row:
                print(f"error\t\t{name}")
            else:
                print(f"{row['label']}\t{row['probability']:.4f}\t{name}")
    failed = [row for row in results if "error" in row]
    for row in failed:
        print(f"covidxray predict: error: {row['error']}", file=sys.stderr)
    if failed:
        print(
            f"covidxray predict: {len(failed)} of {len(results)} files could not be "
            "read (named above)" + ("; skipped (--skip-bad)." if skip_bad else "."),
            file=sys.stderr,
        )


def _image_files(items: Sequence[str]) -> list[str]:
    """The image files named, folders expanded; a DataError for a missing one."""
    from .data import find_images

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


def _cmd_segment(args: argparse.Namespace) -> int:
    import warnings

    import numpy as np
    from PIL import Image

    from . import LungSegmenter

    files = _image_files(args.images)
    out = Path(args.out)
    targets: dict[str, str] = {}
    for name in files:  # every name checked before anything is written
        target = str(out / f"{Path(name).stem}.png")
        if target in targets:
            raise DataError(
                f"'{targets[target]}' and '{name}' would both be written to "
                f"'{target}': segment them into different --out folders."
            )
        targets[target] = name
    out.mkdir(parents=True, exist_ok=True)
    segmenter = LungSegmenter()
    pairs = list(targets.items())
    flagged = 0
    for start in range(0, len(files), _CHUNK):
        names = files[start : start + _CHUNK]
        with warnings.catch_warnings():
            # Reported below, one line per file, with the mask it concerns.
            warnings.filterwarnings("ignore", message="Implausible lung mask")
            masks = segmenter.predict(names, names=names)
        for (target, name), result in zip(
            pairs[start : start + _CHUNK], masks, strict=True
        ):
            pixels = np.where(result.mask, 255, 0).astype(np.uint8)
            Image.fromarray(pixels, "L").save(target)
            if not result.plausible:
                flagged += 1
                print(
                    f"covidxray segment: warning: implausible lung mask for "
                    f"'{name}': {'; '.join(result.problems)}",
                    file=sys.stderr,
                )
            print(f"{result.area:.3f}\t{target}\t{name}")
    if flagged:
        print(
            f"covidxray segment: {flagged} of {len(files)} masks are implausible "
            "(listed above); look at them before using them.",
            file=sys.stderr,
        )
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from . import run_comparison

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
    from . import Augmenter

    if name in _DEPRECATED_AUGMENTS:
        new = _DEPRECATED_AUGMENTS[name]
        logging.getLogger("covidxray").warning(
            "--augment %s is deprecated; use --augment %s instead.", name, new
        )
        name = new
    return Augmenter.preset(name, seed=seed) if name != "none" else None


_CLASS_MAP_HELP = (
    "FOLDER=CLASS,...: what each class folder is, e.g. cats=non,dogs=covid "
    "(folders whose names match no class are refused)"
)
_DATA_HELP = (
    "dataset folder(s) or metadata file(s); several are read as one dataset with "
    "a source each (named after its folder, or NAME=PATH)"
)


def _image_size(args: argparse.Namespace) -> tuple[int, int]:
    """`--image-size`, else 256 for the paper's CNN and 224 for a backbone."""
    size = args.image_size
    if size is None:
        size = 256 if args.model == "cnn" else 224
    return (size, size)


def _model_builder(args: argparse.Namespace) -> Callable[[tuple[int, ...]], Any]:
    """The model `--model` (and `--weights`) names, as a function of the input
    shape."""
    from . import build_cnn, build_pretrained

    if args.model == "cnn":
        return build_cnn
    weights = _weights(args.weights)
    return lambda shape: build_pretrained(
        args.model, input_shape=shape, weights=weights
    )


def _sources(items: list[str]) -> Any:
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


def _cmd_crossval(args: argparse.Namespace) -> int:
    from . import load_dataset
    from .crossval import leave_one_source_out

    data = load_dataset(
        _sources(args.data),
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
        "-v", "--verbose", action="store_true", help="log details too (debug level)"
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress: no scan bar, no epoch lines, only results and errors",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("audit", help="find duplicates, patient overlap and shortcuts")
    p.add_argument("data", nargs="+", help=_DATA_HELP)
    p.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    p.add_argument("--no-probe", action="store_true", help="skip the shortcut probe")
    p.set_defaults(func=_cmd_audit)

    p = sub.add_parser("train", help="train a model and save it as a .keras file")
    p.add_argument("data", nargs="+", help=_DATA_HELP)
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
    p.add_argument(
        "--augment",
        choices=(*AUGMENTS, *_DEPRECATED_AUGMENTS),
        metavar="{" + ",".join(AUGMENTS) + "}",
        default=DEFAULT_RECIPE["augment"],
        help=f"{', '.join(AUGMENTS)} (default: {DEFAULT_RECIPE['augment']})",
    )
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
    p.add_argument("--class-map", type=kinds.class_map, help=_CLASS_MAP_HELP)
    p.set_defaults(func=_cmd_train)

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
    p.add_argument("--class-map", type=kinds.class_map, help=_CLASS_MAP_HELP)
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

    p = sub.add_parser("predict", help="a label and a probability for each image")
    p.add_argument("model", help="a .keras file saved by covidxray")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--gradcam", metavar="OUTDIR", help="write a Grad-CAM overlay per image"
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="exit 0 even when some files could not be read (they are still "
        "named, in the output and on stderr)",
    )
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "segment",
        help="lung masks with the shipped lung segmenter: one 8-bit PNG per "
        "image (255 lung, 0 not), at the image's size",
    )
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--out", required=True, help="folder for <image stem>.png masks")
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser(
        "crossval",
        help="leave one source out: train on all sources but one, score the one "
        "left out, for each source",
    )
    p.add_argument(
        "--by", choices=["source"], default="source", help="what to hold out"
    )
    p.add_argument("data", nargs="+", help=_DATA_HELP)
    p.add_argument("--model", default="cnn", help="cnn or a backbone name")
    p.add_argument("--epochs", type=kinds.EPOCHS, default=10)
    p.add_argument(
        "--image-size", type=kinds.IMAGE_SIZE, help="default 256 for cnn, 224 else"
    )
    p.add_argument(
        "--augment",
        choices=(*AUGMENTS, *_DEPRECATED_AUGMENTS),
        metavar="{" + ",".join(AUGMENTS) + "}",
        default=DEFAULT_RECIPE["augment"],
        help=f"{', '.join(AUGMENTS)} (default: {DEFAULT_RECIPE['augment']})",
    )
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `covidxray` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
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
    return int(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
