"""The lung test: does a trained model need the lungs at all?

Description:
    Loads a model file saved by covidxray and runs `Classifier.lung_test` on a
    dataset: the images `evaluate` would score, segmented with the shipped
    lung segmenter and scored as they are, with only the lungs, with the
    lungs removed, and with the same area removed just outside the lungs (the
    control). Prints the table with 95% intervals and the reading in words,
    writes it as lung_test.md and lung_test.json, and draws lung_test.png:
    three COVID-19 and three other images in the four versions, each with the
    model's probability of COVID-19.

How to run:
    pip install ".[plots]"
    covidxray train /path/to/seed-xray --out model.keras
    python examples/lung_test.py model.keras /path/to/seed-xray/test --out lungs
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np

from covidxray._quiet import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow loads: no start-up noise

from covidxray import Classifier, CovidXrayWarning, LungSegmenter, load_dataset  # noqa: E402
from covidxray.lungs.ablation import VARIANTS, blank  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("model", help="a .keras file saved by covidxray")
parser.add_argument("data", help="dataset folder (all its images are scored)")
parser.add_argument("--out", default="lungs")
parser.add_argument("--bootstrap", type=int, default=1000)
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

clf = Classifier.load(args.model)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", CovidXrayWarning)  # listed in `excluded`
    result = clf.lung_test(args.data, n_bootstrap=args.bootstrap)
print(result.to_markdown())
(out / "lung_test.md").write_text(result.to_markdown() + "\n")
(out / "lung_test.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")

# ------------------------------------------------------------ the figure
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

prep = clf.preprocessing_
data = load_dataset(
    args.data,
    image_size=prep.image_size,
    color_mode=prep.color_mode,
    resize=prep.resize,
    validation_split=0.0,
    deduplicate=False,
)
positive = clf.class_names[clf.positive_index]
records = data.records
shown = [r for r in records if r.label == data.positive_class][:3]
shown += [r for r in records if r.label != data.positive_class][:3]
x = clf.preprocess(data.images_of(shown))
gray = np.clip(np.rint(x.mean(axis=-1) * 255), 0, 255).astype(np.uint8)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", CovidXrayWarning)
    masks = [m.mask for m in LungSegmenter().predict(list(gray))]
names = {
    "as_is": "as is",
    "lungs_only": "lungs only",
    "lungs_removed": "lungs removed",
    "control": "control",
}
fig, axes = plt.subplots(len(shown), 4, figsize=(8, 2.1 * len(shown)))
for col, variant in enumerate(VARIANTS):
    images = blank(x, masks, variant)
    p = clf.predict_proba(images)[:, clf.positive_index]
    auc = result.evaluations[variant].metrics["roc_auc"]
    axes[0, col].set_title(f"{names[variant]}\nROC AUC {auc:.2f}", fontsize=9)
    for row in range(len(shown)):
        ax = axes[row, col]
        ax.imshow(images[row].mean(axis=-1), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        truth = "COVID-19" if shown[row].label == data.positive_class else "other"
        ax.set_xlabel(f"{truth}: P({positive}) {p[row]:.2f}", fontsize=8)
fig.suptitle(result.reading.split(". ")[0] + ".", fontsize=9, wrap=True)
fig.tight_layout()
fig.savefig(out / "lung_test.png", dpi=110)
print(
    f"Wrote {out / 'lung_test.md'}, {out / 'lung_test.json'}, {out / 'lung_test.png'}"
)
