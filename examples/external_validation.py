"""External validation: train on one source, test on others.

Description:
    Trains the paper's CNN with the library's defaults (256 x 256 grayscale, the
    X-ray augmentation, balanced class weights, 10 epochs; what
    `covidxray train DATA` does) on a training set, once per seed, then
    evaluates each model on the training set's own test split and on every
    external set, whole. The model file's training record leaves out any
    image the model saw; single-class external sets report what they can
    (sensitivity on positives only) and say what they cannot. Writes a
    Markdown report with each seed's figures and their mean and spread.

    Without a data folder it runs on two SYNTHETIC demo sets, to show the
    mechanics only.

How to run:
    python examples/external_validation.py /path/to/seed-xray \\
        --external /path/to/hannover-covid --external /path/to/ieee8023-2020-06 \\
        --seeds 3 --out external
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from covidxray._quiet import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow loads: no start-up noise

import keras  # noqa: E402

from covidxray import Augmenter, Classifier, build_cnn, load_dataset  # noqa: E402
from covidxray.datasets import make_synthetic  # noqa: E402

METRICS = ("sensitivity", "specificity", "roc_auc")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", help="training set (default: synthetic)")
    parser.add_argument(
        "--external", action="append", default=[], help="an external set (repeat)"
    )
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--out", default="external")
    return parser.parse_args(argv)


def synthetic_sets() -> tuple[Path, list[Path]]:
    print("No data given: SYNTHETIC demo sets (not X-rays), to show the mechanics.")
    folder = Path(tempfile.mkdtemp(prefix="covidxray-external-"))
    train = make_synthetic(folder / "train", n_per_class=40, test_per_class=10)
    other = make_synthetic(folder / "positives", n_per_class=12, seed=7)
    shutil.rmtree(other / "normal")  # an external set of positives only
    return train, [other]


def cell(ev, metric: str) -> str:
    if metric in ev.unavailable:
        return "n/a"
    low, high = ev.ci.get(metric, (float("nan"), float("nan")))
    return f"{ev.metrics[metric]:.3f} ({low:.2f}-{high:.2f})"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.data is None:
        train_root, externals = synthetic_sets()
    else:
        train_root, externals = Path(args.data), [Path(p) for p in args.external]
    size = (args.image_size, args.image_size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in range(args.seeds):
        data = load_dataset(train_root, image_size=size, seed=seed)
        keras.utils.set_random_seed(seed)
        clf = Classifier(build_cnn((*size, 1)), class_names=data.class_names, seed=seed)
        clf.fit(
            data, epochs=args.epochs, augmenter=Augmenter.xray(seed=seed), verbose=0
        )
        clf.save(out / f"paper_cnn_{seed}.keras")
        for name, source in [(f"{train_root.name} (test)", data)] + [
            (p.name, p) for p in externals
        ]:
            ev = clf.evaluate(source, seed=seed)
            rows.append((seed, name, ev))
            print(f"seed {seed} | {name}: n={len(ev.y_true)} | ", end="")
            print(" | ".join(f"{m} {cell(ev, m)}" for m in METRICS))

    lines = [
        f"# External validation: the paper's CNN trained on {train_root.name}",
        "",
        "| evaluated on | seed | " + " | ".join(METRICS) + " |",
        "|---|---|" + "---|" * len(METRICS),
    ]
    for seed, name, ev in rows:
        cells = [name, str(seed), *(cell(ev, m) for m in METRICS)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| evaluated on | images scored | exact copies of training images, left "
        "out | near-copies, kept |",
        "|---|---|---|---|",
    ]
    for seed, name, ev in rows:
        if seed == 0:
            seen = (ev.meta.get("n_seen", 0), ev.meta.get("n_near_seen", 0))
            lines.append(f"| {name} | {len(ev.y_true)} | {seen[0]} | {seen[1]} |")
    lines += ["", "Mean and spread (min-max) over seeds:", ""]
    lines += ["| evaluated on | " + " | ".join(METRICS) + " |"]
    lines += ["|---|" + "---|" * len(METRICS)]
    for name in dict.fromkeys(name for _, name, _ in rows):
        cells = [name]
        for metric in METRICS:
            values = [
                ev.metrics[metric]
                for _, n, ev in rows
                if n == name and metric not in ev.unavailable
            ]
            cells.append(
                f"{statistics.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"
                if values
                else "n/a"
            )
        lines.append("| " + " | ".join(cells) + " |")
    (out / "external.md").write_text("\n".join(lines) + "\n")
    print(f"Wrote {out / 'external.md'} and {args.seeds} model files.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
