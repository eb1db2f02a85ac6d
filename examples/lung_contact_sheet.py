"""A contact sheet of the shipped lung segmenter's masks on sources it never saw.

Description:
    The segmenter was trained on COVID-19 images of the ieee8023 collection
    only. This draws its masks on images with no mask to compare against:
    seed-xray's `non` images (CheXpert studies), hannover-covid (another
    hospital) and the ieee8023 collection's own non-COVID images. Each
    thumbnail shows the mask in red over the image, and a mask that fails the
    plausibility checks is framed in yellow with its reason in the caption
    file. Look at it by eye: these images have no ground truth.

How to run:
    pip install .
    python examples/lung_contact_sheet.py \\
        --seed-xray ../shared/datasets/seed-xray \\
        --hannover ../shared/datasets/hannover-covid \\
        --ieee8023 ../shared/datasets/ieee8023-2020-06 \\
        --out docs/img/lung_contact_sheet.png
"""

from __future__ import annotations

import argparse
import csv
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from covidxray._quiet import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow loads: no start-up noise

from covidxray import LungSegmenter  # noqa: E402
from covidxray.data import find_images  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--seed-xray", required=True)
parser.add_argument("--hannover", required=True)
parser.add_argument("--ieee8023", required=True)
parser.add_argument("--per-source", type=int, default=8)
parser.add_argument("--thumb", type=int, default=150)
parser.add_argument("--out", default="lung_contact_sheet.png")
args = parser.parse_args()


def every_kth(files: list[str], k: int) -> list[str]:
    """`k` files spread evenly over the sorted list: no choosing by eye."""
    files = sorted(files)
    step = max(1, len(files) // k)
    return files[::step][:k]


ieee = Path(args.ieee8023)
with open(ieee / "metadata.csv", newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
not_covid = [
    str(ieee / "images" / r["filename"])
    for r in rows
    if "covid" not in r["finding"].lower()
    and (ieee / "images" / r["filename"]).is_file()
]
sources = {
    "seed-xray non (CheXpert)": every_kth(
        find_images(Path(args.seed_xray) / "test" / "non"), args.per_source
    ),
    "hannover-covid": every_kth(
        find_images(Path(args.hannover) / "covid"), args.per_source
    ),
    "ieee8023 non-COVID": every_kth(not_covid, args.per_source),
}

segmenter = LungSegmenter()
t = args.thumb
sheet = Image.new("RGB", (t * args.per_source, (t + 18) * len(sources)), "white")
draw = ImageDraw.Draw(sheet)
flagged = []
for row, (label, files) in enumerate(sources.items()):
    y0 = row * (t + 18)
    draw.text((4, y0 + 3), label, fill="black")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # listed below instead
        masks = segmenter.predict(files)
    for col, (name, result) in enumerate(zip(files, masks, strict=True)):
        image = Image.open(name).convert("RGB")
        red = Image.new("RGB", image.size, (255, 0, 0))
        alpha = Image.fromarray(np.where(result.mask, 90, 0).astype(np.uint8), "L")
        image.paste(red, (0, 0), alpha)
        image.thumbnail((t, t))
        x0 = col * t + (t - image.width) // 2
        sheet.paste(image, (x0, y0 + 18 + (t - image.height) // 2))
        if not result.plausible:
            flagged.append(f"{label}: {Path(name).name}: {'; '.join(result.problems)}")
            draw.rectangle(
                (col * t, y0 + 18, col * t + t - 1, y0 + 17 + t),
                outline=(255, 200, 0),
                width=3,
            )
sheet.save(args.out)
print(f"Wrote {args.out}: {sum(len(v) for v in sources.values())} images.")
print(f"{len(flagged)} implausible masks:")
for line in flagged:
    print(" ", line)
