"""Benchmark: peak memory of a frozen-backbone `fit` at 1,000 and 10,000 images.

Writes synthetic 224 x 224 images, then in a child process per size loads them
(uint8 cache in memory) and fits a frozen MobileNetV2 (random weights: the
memory is the same with ImageNet weights) with the paper's head for 2 epochs.
`fit` runs the backbone once and trains the head on cached features; the paper's
head starts with 2 x 2 average pooling and a flatten, which move into the
cached features: 3 x 3 x 1,280 floats (46 KB) per image instead of the
7 x 7 x 1,280 feature map (251 KB). Prints the child's peak resident memory,
the size of the uint8 image cache and of the feature cache, and how the peak
grows against them.

Run by hand:
    python benchmarks/bench_feature_memory.py [--sizes 1000 10000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from covidxray.datasets import make_synthetic

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
args = parser.parse_args()

CHILD = """
import resource, sys
import keras
from covidxray import Classifier, FeatureCache, build_pretrained, load_dataset
data = load_dataset(sys.argv[1], image_size=(224, 224), validation_split=0.1)
keras.utils.set_random_seed(0)
model = build_pretrained("mobilenetv2", input_shape=(224, 224, 1), weights=None)
cache = FeatureCache()
clf = Classifier(model, class_names=data.class_names, feature_cache=cache)
clf.fit(data, epochs=2, verbose=0, cache_features=True)
assert clf.feature_cache_used_
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"RESULT {peak:.0f} {data._pixels.nbytes / 1e6:.0f} {cache.nbytes / 1e6:.1f}")
"""

work = Path(tempfile.mkdtemp(prefix="bench-features-"))
print("frozen MobileNetV2 (random weights) + seed head, 224 x 224 grayscale, 2 epochs")
print(
    f"{'images':>8}{'peak RSS MB':>13}{'image cache MB':>16}{'features MB':>13}{'s':>8}"
)
rows = []
for n in args.sizes:
    root = make_synthetic(work / f"n{n}", n_per_class=n // 2, image_size=(224, 224))
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(root)],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - start
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT"))
    peak, images, features = (float(v) for v in line.split()[1:])
    rows.append((n, peak, images, features))
    print(f"{n:>8}{peak:>13.0f}{images:>16.0f}{features:>13.1f}{seconds:>8.0f}")
if len(rows) >= 2:
    (n0, p0, i0, f0), (n1, p1, i1, f1) = rows[0], rows[-1]
    print(
        f"\npeak grew by {p1 - p0:.0f} MB from {n0} to {n1} images; the image "
        f"cache by {i1 - i0:.0f} MB and the feature cache by {f1 - f0:.0f} MB"
    )
