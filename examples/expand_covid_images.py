"""Expand a small class folder with augmented copies, as the seed did (84 -> 242).

Description:
    The original project wrote new augmented JPEGs into the COVID folder it read
    from, and its loop augmented only the last image it read, over and over.
    This script does what it meant to do: every source image is used evenly,
    the copies go to another folder, named `<stem>_aug<k>.jpg`, and nothing is
    overwritten. It uses the paper's expansion settings (rotation 5, shear 0.2,
    zoom 0.3, horizontal flip, brightness 0.2-1.0).

    Without --source it expands the covid folder of the SYNTHETIC demo set
    (84 images, like the paper's).

    Keep expanded copies out of any test set: a copy of a training image in
    the test set is a leak.

How to run:
    pip install .
    python examples/expand_covid_images.py
    python examples/expand_covid_images.py --source data/train/covid \\
        --out data/train_expanded/covid --total 158
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

from covidxray._quiet import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow loads: no start-up noise

from covidxray import Augmenter  # noqa: E402
from covidxray.datasets import make_synthetic  # noqa: E402

parser = argparse.ArgumentParser(
    description="Expand a class folder with augmented copies."
)
parser.add_argument(
    "--source", help="folder of images (default: synthetic covid folder)"
)
parser.add_argument(
    "--out", default="expanded", help="output folder (default: expanded)"
)
parser.add_argument(
    "--total", type=int, default=158, help="new images (default 158: 84 -> 242)"
)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

if args.source is None:
    print("No --source given: expanding the SYNTHETIC demo set's covid folder.")
    source = (
        make_synthetic(tempfile.mkdtemp(), n_per_class=84, image_size=(128, 128))
        / "covid"
    )
else:
    source = Path(args.source)

n_sources = sum(1 for p in source.iterdir() if p.is_file())
written = Augmenter.paper_expansion().expand(
    source, args.out, total=args.total, seed=args.seed
)

per_source = Counter(p.name.rsplit("_aug", 1)[0] for p in written)
total = n_sources + len(written)
print(f"{n_sources} source images + {len(written)} new = {total} images")
low, high = min(per_source.values()), max(per_source.values())
print(f"copies per source image: min {low}, max {high}")
print(f"written to {args.out}/")
