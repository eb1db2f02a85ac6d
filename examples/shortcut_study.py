"""The shortcut study: which recipe makes the paper's CNN learn less of the source?

Description:
    Trains the paper's CNN with each recipe option, and with all of them
    combined, on seed-xray alone and on all three sources at hand
    (seed-xray, ieee8023-2020-06 and hannover-covid), with several seeds, and
    measures for every model:

    - `ieee_auc`: ROC AUC within ieee8023-2020-06, on its held-out patients
      (both classes from one source: no source cue can inflate it);
    - `seed_auc`: ROC AUC on seed-xray's test split, audited (copies left out);
    - `hannover_sens`: sensitivity on hannover-covid, when not trained on;
    - `probe_r2`: how much of the model's output (its logit) on those
      evaluation images the source probe's image statistics explain
      (cross-validated R^2): a model that learned the source is predicted by
      them;
    - `seed_lungs_removed_auc` (with `--lung-test`): the lung test's ROC AUC
      on seed-xray's audited test split with the lungs removed (filled with
      the median outside them): far above 0.5, the model does not need the
      lungs; and `seed_lung_control_auc`, the same area removed outside the
      lungs instead (a drop there is the blanking, not the lungs).

    All three sources are read as one dataset, so copies across sources are
    found and kept once, before any split: ieee8023's held-out patients hold
    no copy of a training image. ieee8023 holds out 25% of its patients;
    seed-xray keeps its own test split; hannover-covid is held out entirely
    when training on seed-xray. Writes runs.json and table.md. The results
    and their reading are in the docs' "Sources and shortcuts" guide.

How to run:
    pip install .
    export COVIDXRAY_SEED_DATA=/path/to/seed-xray
    export COVIDXRAY_IEEE8023_DATA=/path/to/ieee8023-2020-06
    export COVIDXRAY_EXTERNAL_DATA=/path/to/hannover-covid
    python examples/shortcut_study.py --seeds 3 --epochs 10 --out results/study

    (about 10-25 s a model on 2 CPU cores at 128 px; 72 models in all. The
    lung recipes first find the lungs of every image, about 0.06 s each.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from covidxray._quiet import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow loads: no start-up noise

import keras  # noqa: E402

from covidxray import Augmenter, Classifier, LungSegmenter, build_cnn, load_dataset  # noqa: E402
from covidxray._probe import IMAGE_FEATURES, image_features, predicts  # noqa: E402

#: Each recipe: preprocessing (for load_dataset) and training options.
RECIPES: dict[str, dict[str, Any]] = {
    "baseline": {},
    "crop": {"resize": "crop"},
    "pad + trim": {"resize": "pad", "trim": 0.08},
    "percentile window": {"window": "percentile"},
    "CLAHE": {"equalize": "clahe"},
    "acquisition augment": {"augment": "acquisition"},
    "source-balanced": {"balance": "source"},
    "spectral decoupling": {"spectral_decoupling": 0.1},
    "lungs crop": {"lungs": "crop"},
    "lungs mask": {"lungs": "mask"},
    "lung focus": {"lung_focus": 10.0, "lung_masks": True},
    "combined": {
        "resize": "crop",
        "trim": 0.08,
        "equalize": "clahe",
        "augment": "acquisition",
        "balance": "source",
        "spectral_decoupling": 0.1,
    },
}
PREPROCESSING = ("resize", "trim", "window", "equalize", "lungs", "lung_masks")
SETTINGS = {"seed-xray": ["seed"], "all three": ["seed", "ieee8023", "hannover"]}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed-data", default=os.environ.get("COVIDXRAY_SEED_DATA"))
    p.add_argument("--ieee8023-data", default=os.environ.get("COVIDXRAY_IEEE8023_DATA"))
    p.add_argument("--external-data", default=os.environ.get("COVIDXRAY_EXTERNAL_DATA"))
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument(
        "--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS)
    )
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument(
        "--lung-test",
        action="store_true",
        help="add the lung test's lungs-removed ROC AUC on seed-xray's test split",
    )
    p.add_argument("--out", default="results/shortcut_study")
    args = p.parse_args()
    missing = [
        name
        for name in ("seed_data", "ieee8023_data", "external_data")
        if not getattr(args, name)
    ]
    if missing:
        options = ", ".join("--" + m.replace("_", "-") for m in missing)
        p.error(f"Give the data folders: {options}")
    return args


def load(args: argparse.Namespace, recipe: dict[str, Any]) -> Any:
    options = {k: v for k, v in recipe.items() if k in PREPROCESSING}
    return load_dataset(
        {
            "seed": args.seed_data,
            "ieee8023": args.ieee8023_data,
            "hannover": args.external_data,
        },
        image_size=(args.image_size, args.image_size),
        test_split={"ieee8023": 0.25},
        seed=0,
        **options,
    )


class SegmentOnce:
    """The shipped segmenter, each image's mask found once per preprocessing
    (the lung test of every model of a recipe sees the same images)."""

    def __init__(self) -> None:
        self.segmenter = LungSegmenter()
        self.found: dict[str, Any] = {}

    def predict(self, images: Any, *, names: list[str]) -> list[Any]:
        todo = [k for k, n in enumerate(names) if n not in self.found]
        if todo:
            masks = self.segmenter.predict(
                [images[k] for k in todo], names=[names[k] for k in todo]
            )
            self.found.update(zip([names[k] for k in todo], masks, strict=True))
        return [self.found[n] for n in names]

    def info(self) -> dict[str, str]:
        return self.segmenter.info()


def one_run(
    data: Any,
    recipe: dict[str, Any],
    sources: list[str],
    seed: int,
    epochs: int,
    segmenter: SegmentOnce | None = None,
) -> dict[str, Any]:
    train = data.subset(sources)
    if recipe.get("balance"):
        train = train.balanced(recipe["balance"])
    keras.utils.set_random_seed(seed)
    clf = Classifier(
        build_cnn(data.preprocessing.input_shape),
        class_names=data.class_names,
        seed=seed,
        spectral_decoupling=recipe.get("spectral_decoupling", 0.0),
        lung_focus=recipe.get("lung_focus", 0.0),
    )
    augmenter = (
        Augmenter.acquisition(seed=seed)
        if recipe.get("augment") == "acquisition"
        else Augmenter.xray(seed=seed)
    )
    start = time.perf_counter()
    clf.fit(train, epochs=epochs, augmenter=augmenter, verbose=0)
    row: dict[str, Any] = {"seconds": time.perf_counter() - start}
    ieee = clf.evaluate(data.subset(["ieee8023"]), split="test", n_bootstrap=0)
    seed_test = clf.evaluate(data.subset(["seed"]), split="test", n_bootstrap=0)
    row["ieee_auc"] = ieee.metrics["roc_auc"]
    row["ieee_specificity"] = ieee.metrics["specificity"]
    row["seed_auc"] = seed_test.metrics["roc_auc"]
    if segmenter is not None:
        lungs = clf.lung_test(
            data.subset(["seed"]),
            split="test",
            segmenter=segmenter,  # type: ignore[arg-type]
            saliency=False,
            n_bootstrap=0,
        )
        aucs = {k: e.metrics["roc_auc"] for k, e in lungs.evaluations.items()}
        row["seed_lungs_removed_auc"] = aucs["lungs_removed"]
        row["seed_lung_control_auc"] = aucs["control"]
    if "hannover" not in sources:
        hannover = clf.evaluate(data.subset(["hannover"]), split="all", n_bootstrap=0)
        row["hannover_sens"] = hannover.metrics["sensitivity"]
    # How much of the model's output the image statistics explain.
    records = (
        data.subset(["seed"]).split_records("test")
        + data.subset(["ieee8023"]).split_records("test")
        + (data.subset(["hannover"]).records if "hannover" not in sources else [])
    )
    proba = np.clip(clf.predict_proba(data.images_of(records))[:, 1], 1e-6, 1 - 1e-6)
    x = image_features(records, data.images_of, IMAGE_FEATURES)
    row["probe_r2"] = predicts(x, np.log(proba / (1 - proba)), seed)
    return row


def summary(rows: list[dict[str, Any]], key: str) -> str:
    values = [r[key] for r in rows if r.get(key) is not None and np.isfinite(r[key])]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main() -> None:
    args = parse()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"args": vars(args), "runs": []}
    cached: dict[str, Any] = {}
    segmenter: SegmentOnce | None = None
    for name in args.recipes:
        recipe = RECIPES[name]
        key = json.dumps({k: recipe.get(k) for k in PREPROCESSING})
        if key not in cached:
            cached.clear()  # one preprocessing in memory at a time
            cached[key] = load(args, recipe)
            segmenter = SegmentOnce() if args.lung_test else None
        data = cached[key]
        for setting in args.settings:
            for seed in range(args.seeds):
                row = one_run(
                    data, recipe, SETTINGS[setting], seed, args.epochs, segmenter
                )
                row.update(recipe=name, setting=setting, seed=seed)
                results["runs"].append(row)
                print(json.dumps(row), flush=True)
                (out / "runs.json").write_text(json.dumps(results, indent=1))
    lines = [
        "| recipe | trained on | ieee8023 within-source AUC | seed-xray audited AUC "
        "| hannover sensitivity | probe R² of the output "
        "| seed-xray AUC, lungs removed | the same area removed outside them |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in args.recipes:
        for setting in args.settings:
            rows = [
                r
                for r in results["runs"]
                if r["recipe"] == name and r["setting"] == setting
            ]
            lines.append(
                f"| {name} | {setting} | {summary(rows, 'ieee_auc')} | "
                f"{summary(rows, 'seed_auc')} | {summary(rows, 'hannover_sens')} | "
                f"{summary(rows, 'probe_r2')} | "
                f"{summary(rows, 'seed_lungs_removed_auc')} | "
                f"{summary(rows, 'seed_lung_control_auc')} |"
            )
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
