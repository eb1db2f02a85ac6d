"""The published comparison, reproduced: the paper's CNN against pretrained backbones,
on the paper's leaky split and on an audited split.

`run_comparison` is what `examples/reproduce_comparison.py` and
`covidxray compare` run. It follows the paper's protocol, restated on the docs
page *Reproducing the published comparison*: the paper's CNN at 256 x 256 x 3
with the paper's augmentation and Adam at 1e-3; frozen ImageNet backbones with
the paper's head, Adam at 1e-4, batch 8, no augmentation.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._validation import check_image_size, check_positive_int
from ._version import provenance
from .audit import audit
from .data.cache import default_cache_dir
from .data.catalog import load_dataset
from .data.layouts import is_synthetic
from .datasets import make_synthetic
from .errors import CovidXrayWarning, DataError
from .lungs.ablation import lung_table

if TYPE_CHECKING:
    from .features import FeatureCache

logger = logging.getLogger("covidxray")

__all__ = [
    "DEFAULT_MODELS",
    "PAPER_REPORTED",
    "Comparison",
    "run_comparison",
    "summarise",
]

#: The original project's published figures, measured on leaky splits
#: (docs/comparison.md).
PAPER_REPORTED: dict[str, dict[str, float]] = {
    "cnn": {"accuracy": 0.99, "loss": 0.06},
    "mobilenetv2": {"accuracy": 0.69, "loss": 0.74},
    "resnet101v2": {"accuracy": 0.98, "loss": 0.11},
    "densenet201": {"accuracy": 0.96, "loss": 0.07},
}
#: Deprecated name of `PAPER_REPORTED`.
SEED_REPORTED = PAPER_REPORTED
DEFAULT_MODELS: tuple[str, ...] = ("cnn", "mobilenetv2", "resnet101v2", "densenet201")
QUICK_MODELS: tuple[str, ...] = DEFAULT_MODELS  # all four families, at 64 px
#: The rows of a set scored whole by each audited-split model.
EXTERNAL = "external"
SPLITS = {
    "seed (leaky)": {"deduplicate": False, "validation_split": 0.0},
    "audited": {"deduplicate": True, "validation_split": 0.15},
}
_METRICS = ("accuracy", "sensitivity", "specificity", "ppv", "roc_auc")
#: The order of the report's first table: the figures people compare first.
_SHOWN = ("sensitivity", "specificity", "roc_auc", "accuracy", "ppv")


@dataclass
class Comparison:
    """Results of `run_comparison`: one row per split, model and seed.

    Attributes:
        rows: Per split, model and seed: the metrics with their 95% intervals.
        audit: What the audit of the data as given found.
        meta: Settings, versions and data fingerprints.
        summary: Per split and model: the mean and standard deviation of each
            metric over the seeds (`sd` is NaN for one seed).
        lungs: Per model, its lung test on the audited test split (first
            seed), as `LungTest.to_dict()`; a model whose test could not run
            has `{"error": ...}`.
    """

    rows: list[dict[str, Any]]
    audit: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    summary: list[dict[str, Any]] = field(default_factory=list)
    lungs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_markdown(self) -> str:
        """The results as Markdown: per split, the figures people compare
        first, then the details."""
        meta = self.meta
        lines = []
        if meta.get("synthetic"):
            lines += [
                "**SYNTHETIC DEMO DATA.** These numbers come from covidxray's "
                "synthetic demo set, not from X-rays. They say nothing about chest "
                "X-ray diagnosis.",
                "",
            ]
        seeds = meta.get("seeds", [meta.get("seed")])
        lines += [
            "# Reproducing the published comparison",
            "",
            f"Data: `{meta.get('data')}`; image size {meta.get('image_size')}; "
            f"epochs {meta.get('epochs')}; weights: {meta.get('weights')}; "
            f"seeds {', '.join(str(s) for s in seeds)}.",
            "",
            f"Audit of the data as given: {self.audit.get('cross_split_duplicates')} "
            "test images are exact copies of training images; the metadata shortcut "
            f"probe reaches ROC AUC {_fmt(self.audit.get('shortcut_auc'))}.",
            "",
        ]
        backbones = [m for m in meta.get("models", []) if m != "cnn"]
        if (
            len(seeds) > 1
            and backbones
            and str(meta.get("weights")) in ("None", "none")
        ):
            lines += [
                "Each random-weight backbone was drawn once, with the first seed, "
                "and kept for every seed: the spread over seeds is that of the "
                "trained heads, splits and order, not of the backbones.",
                "",
            ]
        for split in (*SPLITS, EXTERNAL):
            rows = [r for r in self.rows if r["split"] == split]
            if rows:
                lines += self._split_tables(split, rows, len(seeds))
        if self.lungs:
            lines += [f"## The lung test (audited split, seed {seeds[0]})", ""]
            lines += [lung_table(self.lungs), ""]
        lines += [
            "95% intervals: Wilson for proportions, bootstrap for ROC AUC. The paper's "
            "accuracy and loss were measured on a few batches of an overlapping "
            "split. The leaky split scores test images the models saw in training, "
            "as the seed did.",
            "",
        ]
        return "\n".join(lines)

    def _split_tables(
        self, split: str, rows: list[dict[str, Any]], n_seeds: int
    ) -> list[str]:
        first = rows[0]
        seen = first.get("n_seen_in_test", 0)
        note = f", **{seen} of them seen in training**" if seen else ""
        title = f"{split} split (test n = {first['n_test']}{note})"
        if split == EXTERNAL:
            title = (
                f"external set, scored whole by the audited models (n = "
                f"{first['n_test']}): `{self.meta.get('external')}`"
            )
        lines = [f"## {title}", ""]
        header = "| model | sensitivity | specificity | ROC AUC | accuracy | PPV |"
        rule = "|---|---|---|---|---|---|"
        if n_seeds > 1:
            lines += [f"Mean ± sd over {n_seeds} seeds:", "", header, rule]
            for s in (r for r in self.summary if r["split"] == split):
                cells = [_label({**s, "weights": self.meta.get("weights")})]
                cells += [
                    f"{_fmt(s[f'{m}_mean'])} ± {_fmt(s[f'{m}_sd'])}" for m in _SHOWN
                ]
                lines.append("| " + " | ".join(cells) + " |")
            lines += ["", "Each seed:", ""]
            header = header.replace("| model |", "| model | seed |")
            rule += "---|"
        lines += [header, rule]
        for r in rows:
            cells = [_label(r), *([str(r["seed"])] if n_seeds > 1 else [])]
            cells += [_with_ci(r, m) for m in _SHOWN]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            "| model | params | train s | log loss | seed's accuracy | seed's loss |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            if r["seed"] != first["seed"]:
                continue
            cells = [
                r["model"],
                f"{r['params']:,}",
                f"{r['train_seconds']:.0f}",
                _fmt(r["test_loss"]),
                _fmt(r["seed_accuracy"], 2),
                _fmt(r["seed_loss"], 2),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return [*lines, ""]

    def write(self, out_dir: str | os.PathLike[str]) -> list[Path]:
        """Write results.md, results.csv (one row per split, model and seed) and
        results.json (with the summary) into `out_dir`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.md").write_text(self.to_markdown())
        keys = list(self.rows[0]) if self.rows else []
        with open(out / "results.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)
        payload = {
            "meta": self.meta,
            "audit": self.audit,
            "summary": self.summary,
            "rows": self.rows,
            "lungs": self.lungs,
        }
        (out / "results.json").write_text(json.dumps(payload, indent=2, default=_json))
        return [out / "results.md", out / "results.csv", out / "results.json"]


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample standard deviation of each metric over the seeds, per
    split and model.

    Examples:
        >>> rows = [{"split": "audited", "model": "cnn", "seed": s,
        ...          **{m: v for m in _METRICS}} for s, v in ((0, 0.5), (1, 0.7))]
        >>> s = summarise(rows)[0]
        >>> s["n_seeds"], round(s["roc_auc_mean"], 3), round(s["roc_auc_sd"], 3)
        (2, 0.6, 0.141)
    """
    out = []
    keys = dict.fromkeys((r["split"], r["model"]) for r in rows)
    for split, model in keys:
        mine = [r for r in rows if r["split"] == split and r["model"] == model]
        summary: dict[str, Any] = {"split": split, "model": model, "n_seeds": len(mine)}
        for metric in _METRICS:
            values = np.array([r[metric] for r in mine], dtype=float)
            values = values[~np.isnan(values)]
            summary[f"{metric}_mean"] = (
                float(values.mean()) if len(values) else math.nan
            )
            summary[f"{metric}_sd"] = (
                float(values.std(ddof=1)) if len(values) > 1 else math.nan
            )
        out.append(summary)
    return out


def _label(row: dict[str, Any]) -> str:
    """The model's name, with "random weights" for a backbone without them."""
    if row["model"] != "cnn" and str(row.get("weights")) in ("None", "none"):
        return f"{row['model']} (random weights)"
    return str(row["model"])


def _json(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else str(value)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _with_ci(row: dict[str, Any], metric: str) -> str:
    lo, hi = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
    text = _fmt(row[metric])
    if lo is None or (isinstance(lo, float) and math.isnan(lo)):
        return text
    return f"{text} ({_fmt(lo)}-{_fmt(hi)})"


def _build(
    name: str,
    size: int,
    weights: Any,
    seed: int = 0,
    backbones: dict[str, Any] | None = None,
) -> Any:
    """The paper's CNN or a backbone with the paper's head, initialised from `seed`.

    Without pretrained weights, the first random backbone built for a name is
    kept in `backbones` and reused for every later seed, as ImageNet weights
    would be: a frozen backbone is then one fixed feature extractor (whose
    features a `FeatureCache` computes once), and the seeds vary the head's
    weights, the splits and the order of training.
    """
    import keras

    from .models import build_cnn, build_pretrained, find_backbone

    keras.utils.set_random_seed(seed)  # the same initial weights on every run
    if name == "cnn":
        return build_cnn((size, size, 3))
    model = build_pretrained(
        name, input_shape=(size, size, 3), weights=weights, head="paper", dropout=0.5
    )
    backbone = find_backbone(model)
    if backbones is not None and weights is None and backbone is not None:
        if name in backbones:
            backbone.set_weights(backbones[name])
        else:
            backbones[name] = backbone.get_weights()
    return model


def _demo_set(
    folder: Path, quick: bool, size: int, seed: int, external: Any
) -> tuple[Path, Any]:
    """The synthetic demo set of `run_comparison` in `folder`, and its external
    set (the same kind of images, without the cue) unless one is given."""
    side = (max(size, 64), max(size, 64))
    root = make_synthetic(
        folder / "demo",
        n_per_class=60 if quick else 120,
        test_per_class=15 if quick else 40,
        leaked=3,
        image_size=side,
        seed=seed,
        source_cue=True,
    )
    if external is None:
        external = make_synthetic(
            folder / "clean-control",
            n_per_class=15 if quick else 40,
            image_size=side,
            seed=seed + 1,
        )
    logger.info("No data given: using the SYNTHETIC demo set at '%s'.", root)
    return root, external


def run_comparison(
    data: str | os.PathLike[str] | None = None,
    *,
    out_dir: str | os.PathLike[str] = "results",
    models: Sequence[str] | None = None,
    weights: str | os.PathLike[str] | None = "auto",
    epochs: int | None = None,
    image_size: int | None = None,
    quick: bool = False,
    seed: int = 0,
    seeds: Sequence[int] | None = None,
    n_bootstrap: int | None = None,
    plots: bool = True,
    external: str | os.PathLike[str] | None = None,
    lung_test: bool = True,
    verbose: str | int = "auto",
) -> Comparison:
    """Train and evaluate the paper's models on the seed split and an audited split.

    The seed split is the data as given (duplicates kept, no validation set),
    scored as the seed scored it: test images that are copies of training
    images included (the report says how many). The audited split removes
    every test image that also sits in train and holds out 15% of train for
    validation. Both train the same way; only the data differ, so the gap
    between them is what the leak was worth.

    Args:
        data: A dataset folder (e.g. seed-xray). None uses the synthetic demo
            set, which carries the seed data's traps: 3 test images are copies
            of training images, and every COVID image carries a source cue (a
            frame and a burnt-in marker, another file format and size). It
            says so in every output.
        out_dir: Where results.md, results.csv, results.json and plots go.
        models: `"cnn"` and backbone names (`list_backbones()`); by default the
            seed's four (`cnn`, `mobilenetv2`, `resnet101v2`, `densenet201`), or
            `cnn` and `mobilenetv2` with `quick`.
        weights: Backbone weights: `"imagenet"`, None (or `"none"`), or a file
            or folder. `"auto"` means `"imagenet"`, or None with `quick`.
            ImageNet weights are fetched before any training, so a missing
            download stops the run at once.
        epochs: Epochs for every model (default 10: the paper's 100 epochs of
            1/10 of the data for the CNN, and 10 for the backbones).
        image_size: Square input size (default 256, as the seed).
        quick: A first look in about a minute: 64 px, 6 epochs, the four
            model families, 200 bootstrap resamples, and a small synthetic set
            unless data is given.
        seed: Seed of splits, weights, augmentation and bootstrap.
        seeds: Train and evaluate every model once per seed (each seed makes
            its own splits, augmentation and trained weights' starting point;
            a backbone without pretrained weights is drawn once, with the
            first seed, and kept as a fixed feature extractor); the result
            has a row per seed and a mean and standard deviation per model.
            Default: `[seed]`. One run is one sample: differences between
            runs can be as large as the effect being measured.
        n_bootstrap: Bootstrap resamples for the ROC AUC intervals (1000, or
            200 with `quick`).
        plots: Also write ROC curves, confusion matrices and training curves
            (needs matplotlib).
        verbose: Keras' verbosity while training; `"auto"` shows progress bars
            on a terminal only (each epoch is also logged at INFO level).
        external: A set from another source, scored whole by each model
            trained on the audited split (its rows are the `"external"`
            split). With the synthetic demo set, a clean control set is made:
            the same images without the source cue.
        lung_test: Also run each model's lung test (`Classifier.lung_test`)
            on the audited test split, with the first seed; the report gets a
            table of it and results.json its `"lungs"`.

    Returns:
        The `Comparison`; its files are already written.

    Raises:
        WeightsUnavailableError: ImageNet weights were asked for and cannot be had.
        ValueError: An unknown model name.
    """
    from .features import FeatureCache
    from .models import list_backbones

    models = list(models or (QUICK_MODELS if quick else DEFAULT_MODELS))
    n_bootstrap = int(
        n_bootstrap if n_bootstrap is not None else (200 if quick else 1000)
    )
    unknown = [m for m in models if m != "cnn" and m not in list_backbones()]
    if unknown or not models:
        raise ValueError(
            "The `models` argument of run_comparison must name 'cnn' or backbones from "
            f"{', '.join(list_backbones())}. Received: {list(models)!r}."
        )
    if weights == "auto":
        weights = None if quick else "imagenet"
    elif isinstance(weights, str) and weights.lower() == "none":
        weights = None
    # None means the default; 0 or less is refused, never read as the default.
    size = image_size if image_size is not None else (64 if quick else 256)
    check_image_size((size, size), "run_comparison")
    n_epochs = epochs if epochs is not None else (6 if quick else 10)
    check_positive_int("epochs", n_epochs, "run_comparison")
    synthetic = data is None
    root = Path("SYNTHETIC") if data is None else Path(data)  # type: ignore[arg-type]
    synthetic = synthetic or is_synthetic(root)
    # Fetch (or fail on) every backbone's weights before training anything.
    for name in models:
        if name != "cnn" and weights is not None:
            _build(name, size, weights)

    run_seeds = [int(s) for s in (seeds if seeds is not None else [seed])]
    if not run_seeds:
        raise ValueError("The `seeds` argument of run_comparison needs a seed.")
    # One scan: every later load reads the pixels and hashes from this file.
    folder = default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(
        prefix="covidxray-compare-", dir=folder, ignore_cleanup_errors=True
    ) as scratch:
        pixel_cache = Path(scratch) / "pixels.cache"
        if data is None:  # the demo set lives in `scratch`: removed at the end
            root, external = _demo_set(Path(scratch), quick, size, seed, external)

        def load(split: str, run_seed: int) -> Any:
            return load_dataset(
                root,
                image_size=(size, size),
                color_mode="rgb",
                batch_size=32,
                seed=run_seed,
                cache=pixel_cache,
                **SPLITS[split],  # type: ignore[arg-type]
            )

        first = load("seed (leaky)", run_seeds[0])
        report = audit(first, seed=seed, shortcut_probe=True)
        audit_summary = {
            "cross_split_duplicates": sum(
                len(g["paths"]) - 1 for g in report.cross_split_duplicates
            ),
            "near_duplicate_pairs_across_splits": sum(
                p["cross_split"] for p in report.near_duplicates
            ),
            "shortcut_auc": report.shortcut_auc,
            "warnings": report.warnings,
        }
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, Any]] = []
        curves: dict[str, dict[str, Any]] = {split: {} for split in SPLITS}
        fingerprints: dict[str, str] = {}
        features = FeatureCache()  # each frozen backbone runs once per image
        backbones: dict[str, Any] = {}
        outside_data = None
        lungs: dict[str, dict[str, Any]] = {}
        for run_seed in run_seeds:
            for split in SPLITS:
                reuse = (split, run_seed) == ("seed (leaky)", run_seeds[0])
                dataset = first if reuse else load(split, run_seed)
                if split not in fingerprints:  # the first seed's
                    fingerprints[split] = dataset.fingerprint()
                for name in models:
                    clf, evaluation = _train_and_score(
                        _build(name, size, weights, run_seed, backbones),
                        name,
                        dataset,
                        split,
                        n_epochs,
                        run_seed,
                        n_bootstrap,
                        verbose,
                        features,
                    )
                    trained = _Trained(  # the row's facts, as plain values
                        params=int(clf.model_.count_params()),
                        fit_seconds=float(clf.fit_seconds_),
                        feature_cache_used=bool(clf.feature_cache_used_),
                        history=dict(clf.history_),
                    )
                    rows.append(
                        _row(
                            split, name, run_seed, trained, dataset, evaluation, weights
                        )
                    )
                    if external is not None and split == "audited":
                        if outside_data is None:  # read once, as the models read it
                            outside_data = clf.read_dataset(external)
                        outside = clf.evaluate(
                            outside_data, n_bootstrap=n_bootstrap, seed=run_seed
                        )
                        rows.append(
                            _row(
                                EXTERNAL,
                                name,
                                run_seed,
                                trained,
                                dataset,
                                outside,
                                weights,
                            )
                        )
                    if lung_test and split == "audited" and run_seed == run_seeds[0]:
                        try:
                            with warnings.catch_warnings():  # named in `excluded`
                                warnings.simplefilter("ignore", CovidXrayWarning)
                                test = clf.lung_test(dataset, n_bootstrap=n_bootstrap)
                            lungs[name] = test.to_dict()
                        except DataError as exc:  # no plausible mask, one class
                            logger.warning("Lung test of %s skipped: %s", name, exc)
                            lungs[name] = {"error": str(exc)}
                    if run_seed == run_seeds[0]:
                        curves[split][name] = evaluation
                        if plots:
                            _plot_model(out, split, name, trained.history, evaluation)
    logger.info("Frozen-backbone features: %r.", features)
    if plots:
        _plot_roc(out, curves)
    meta = {
        "synthetic": synthetic,
        "data": f"SYNTHETIC demo set ({root})" if synthetic else str(root),
        "image_size": size,
        "epochs": n_epochs,
        "weights": str(weights),
        "seed": run_seeds[0],
        "seeds": run_seeds,
        "models": list(models),
        "external": None if external is None else str(external),
        "data_fingerprints": fingerprints,
        **provenance(),
        "python": sys.version.split()[0],
        "command": " ".join(sys.argv),
    }
    result = Comparison(
        rows=rows,
        audit=audit_summary,
        meta=meta,
        summary=summarise(rows),
        lungs=lungs,
    )
    result.write(out)
    return result


def _train_and_score(
    model: Any,
    name: str,
    dataset: Any,
    split: str,
    epochs: int,
    seed: int,
    n_bootstrap: int,
    verbose: str | int,
    features: FeatureCache,
) -> tuple[Any, Any]:
    """Train one model the paper's way on one split; score its test split (the
    leaky split with the images seen in training, as the seed did)."""
    from .augment import Augmenter
    from .classifier import Classifier

    is_cnn = name == "cnn"
    clf = Classifier(
        model,
        class_names=dataset.class_names,
        learning_rate=1e-3 if is_cnn else 1e-4,
        seed=seed,
        feature_cache=None if is_cnn else features,
    )
    clf.fit(
        dataset,
        epochs=epochs,
        class_weight=None,
        augmenter=Augmenter.paper_training(seed=seed) if is_cnn else None,
        batch_size=32 if is_cnn else 8,
        verbose=verbose,
    )
    evaluation = clf.evaluate(
        dataset,
        split="test",
        include_seen=split == "seed (leaky)",
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    return clf, evaluation


@dataclass(frozen=True)
class _Trained:
    """What a comparison row reports of one trained model."""

    params: int
    fit_seconds: float
    feature_cache_used: bool
    history: dict[str, list[float]]


def _row(
    split: str,
    name: str,
    seed: int,
    trained: _Trained,
    dataset: Any,
    evaluation: Any,
    weights: Any,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "split": split,
        "model": name,
        "seed": seed,
        "weights": "-" if name == "cnn" else str(weights),
        "params": trained.params,
        "train_seconds": round(trained.fit_seconds, 2),
        "feature_cache": trained.feature_cache_used,
        "n_train": len(dataset.split_records("train")),
        "n_test": int(len(evaluation.y_true)),
        "n_seen_in_test": int(evaluation.meta.get("n_seen", 0)),
        "data_fingerprint": dataset.fingerprint(),
        "test_loss": evaluation.metrics["log_loss"],
    }
    for metric in _METRICS:
        row[metric] = evaluation.metrics[metric]
        lo, hi = evaluation.ci.get(metric, (math.nan, math.nan))
        row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = lo, hi
    reported = PAPER_REPORTED.get(name, {})
    row["seed_accuracy"] = reported.get("accuracy", math.nan)
    row["seed_loss"] = reported.get("loss", math.nan)
    logger.info(
        "%s / %s / seed %d: %s",
        split,
        name,
        seed,
        {m: round(row[m], 3) for m in _METRICS},
    )
    return row


def _slug(text: str) -> str:
    return "_".join("".join(c if c.isalnum() else " " for c in text).split())


def _plot_model(
    out: Path, split: str, name: str, history: dict[str, list[float]], evaluation: Any
) -> None:
    from .plots import plot_confusion_matrix, plot_history

    try:
        plot_history(history, path=out / f"history_{name}_{_slug(split)}.png")
        plot_confusion_matrix(
            evaluation,
            title=f"{name}, {split}",
            path=out / f"confusion_{name}_{_slug(split)}.png",
        )
    except ImportError:
        logger.info("matplotlib is not installed; skipped the plots.")


def _plot_roc(out: Path, curves: dict[str, dict[str, Any]]) -> None:
    from .plots import plot_roc

    for split, by_model in curves.items():
        if by_model:
            try:
                plot_roc(by_model, path=out / f"roc_{_slug(split)}.png")
            except ImportError:
                logger.info("matplotlib is not installed; skipped the ROC plot.")
