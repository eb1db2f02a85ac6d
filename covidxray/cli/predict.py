"""`covidxray predict` and `segment`: one result per image file."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError
from . import args as kinds
from .args import EXIT_DATA, EXIT_OK, image_files

_CHUNK = 64  # images per step of `covidxray predict` and `segment`


def _cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import Classifier, overlay

    clf = Classifier.load(args.model)
    files = image_files(args.images)
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
    from ..data.boxes import crop_to_box
    from ..data.covidx_ct import body_box

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


def _cmd_segment(args: argparse.Namespace) -> int:
    import warnings

    import numpy as np
    from PIL import Image

    from .. import LungSegmenter

    files = image_files(args.images)
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


def add_parsers(sub: Any) -> None:
    """Add `predict`, `segment` to the subcommands."""
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
