"""Train, save, load, predict and explain with Grad-CAM.

Description:
    Trains the paper's CNN on a dataset (by default the SYNTHETIC demo set), saves
    it as one .keras file, loads it back as a fresh Classifier, predicts on the
    test images and writes a Grad-CAM overlay per image plus a grid, so you can
    see where the model looks. On real data, heatmaps on borders, text or
    corners mean the model learned the source, not the lungs.

How to run:
    pip install ".[plots]"
    python examples/predict_and_explain.py --out explain
    python examples/predict_and_explain.py /path/to/seed-xray --epochs 15
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from covidxray._quiet import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow loads: no start-up noise

from covidxray import Augmenter, Classifier, build_cnn, load_dataset, overlay  # noqa: E402
from covidxray.datasets import make_synthetic  # noqa: E402
from covidxray.plots import plot_gradcam_grid  # noqa: E402

parser = argparse.ArgumentParser(description="Predict and explain with Grad-CAM.")
parser.add_argument(
    "data", nargs="?", help="dataset folder (default: synthetic demo set)"
)
parser.add_argument("--out", default="explain", help="output folder (default: explain)")
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--image-size", type=int, default=128)
args = parser.parse_args()

if args.data is None:
    print("No data folder given: using the SYNTHETIC demo set (not real X-rays).")
    root = make_synthetic(
        tempfile.mkdtemp(), n_per_class=60, test_per_class=8, image_size=(128, 128)
    )
else:
    root = Path(args.data)
size = args.image_size
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

# Train the paper's CNN on grayscale input and save it as one file.
data = load_dataset(root, image_size=(size, size), batch_size=16)
clf = Classifier(
    build_cnn((size, size, 1)), class_names=data.class_names, learning_rate=2e-3
)
clf.fit(data, epochs=args.epochs, augmenter=Augmenter.xray(seed=0), verbose=0)
clf.save(out / "model.keras")

# A fresh classifier from the file predicts on raw files by itself.
loaded = Classifier.load(out / "model.keras")
files = [r.path for r in data.split_records("test")][:8]
labels = loaded.predict(files)
probabilities = loaded.predict_proba(files)[:, 1]
heatmaps = loaded.explain(files)

# The classifier's Preprocessing reads a file as the model saw it; map_back
# puts a heatmap from the model's input back onto the decoded image, through
# any crop (trim, or the lungs with Preprocessing(lungs="crop")).
prep = loaded.preprocessing_
for k, (path, label, p, heat) in enumerate(
    zip(files, labels, probabilities, heatmaps, strict=True)
):
    image, _ = prep.decode(path)
    (lungs,) = prep.lung_masks([image], [path])  # None unless lungs is set
    box = prep.seen_box(image, lungs=lungs)
    overlay(image, prep.map_back(heat, image.size, box)).save(out / f"gradcam_{k}.png")
    print(f"{label:>8}  P({loaded.class_names[1]})={p:.3f}  {Path(path).name}")

titles = [f"{label} {p:.2f}" for label, p in zip(labels, probabilities, strict=True)]
plot_gradcam_grid(
    data.images("test")[: len(files)], heatmaps, titles, path=out / "gradcam_grid.png"
)
print(f"Wrote model.keras, gradcam_*.png and gradcam_grid.png to {out}/")
