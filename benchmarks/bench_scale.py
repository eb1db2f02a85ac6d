"""Benchmark: scanning 30,000 images, beside `image_dataset_from_directory`.

Writes N synthetic 512 x 512 grayscale JPEGs in two class folders (1,000 drawn
pictures, each file made different by a small random patch, so that no two
files are copies), then, each in its own child process:

- covidxray: `load_dataset(root, image_size=(224, 224))`, the whole scan
  (decode at full resolution, validate, three hashes, resize into the uint8
  cache), then one pass over the training batches;
- Keras: `image_dataset_from_directory(root, image_size=(224, 224),
  color_mode="grayscale")`, one pass (decode and resize; nothing cached).

Prints seconds, images per second and peak resident memory of each, and the
ratios. Run by hand:
    python benchmarks/bench_scale.py [--n 30000] [--n 200000]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from covidxray.datasets import synthetic_xray

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--n", type=int, nargs="+", default=[30000])
parser.add_argument("--folder", help="where to write the images (default: a temp dir)")
args = parser.parse_args()

OURS = """
import resource, sys, time
import tensorflow  # imported before the clock starts, as the baseline's keras is
from covidxray import load_dataset
start = time.perf_counter()
data = load_dataset(sys.argv[1], image_size=(224, 224), validation_split=0.0)
n = sum(int(x.shape[0]) for x, _ in data.train)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"RESULT {n} {seconds:.2f} {peak:.0f}")
"""
BASELINE = """
import resource, sys, time
import keras
start = time.perf_counter()
ds = keras.utils.image_dataset_from_directory(
    sys.argv[1], image_size=(224, 224), color_mode="grayscale", batch_size=32)
n = sum(int(x.shape[0]) for x, _ in ds)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"RESULT {n} {seconds:.2f} {peak:.0f}")
"""


def write(root: Path, n: int) -> float:
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    pictures = [
        synthetic_xray(rng, (512, 512), opacities=k % 2 == 0) for k in range(1000)
    ]
    for cls in ("covid", "normal"):
        (root / cls).mkdir(parents=True, exist_ok=True)
    for k in range(n):
        arr = pictures[k % len(pictures)].copy()
        y, x = rng.integers(0, 500, 2)
        arr[y : y + 8, x : x + 8] = rng.integers(0, 256, (8, 8))
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=90)
        cls = "covid" if k % len(pictures) % 2 == 0 else "normal"
        (root / cls / f"{k:06d}.jpg").write_bytes(buf.getvalue())
    return time.perf_counter() - start


def run(code: str, root: Path) -> tuple[int, float, float]:
    done = subprocess.run(
        [sys.executable, "-c", code, str(root)],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT"))
    n, seconds, peak = line.split()[1:]
    return int(n), float(seconds), float(peak)


base = Path(args.folder) if args.folder else Path(tempfile.mkdtemp(prefix="bench-"))
for n in args.n:
    root = base / f"scale-{n}"
    made = write(root, n) if not root.exists() else 0.0
    ours = run(OURS, root)
    theirs = run(BASELINE, root)
    print(f"\n{n} images of 512 x 512 (written in {made:.0f} s), to 224 x 224:")
    print(f"{'':24}{'covidxray':>12}{'baseline':>12}{'ratio':>8}")
    for label, i in (("seconds", 1), ("peak memory MB", 2)):
        print(
            f"{label:24}{ours[i]:>12.1f}{theirs[i]:>12.1f}{ours[i] / theirs[i]:>8.2f}"
        )
    rate = ours[0] / ours[1], theirs[0] / theirs[1]
    print(f"{'images/s':24}{rate[0]:>12.0f}{rate[1]:>12.0f}{rate[0] / rate[1]:>8.2f}")
