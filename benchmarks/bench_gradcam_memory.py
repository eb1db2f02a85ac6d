"""Benchmark: peak memory of `covidxray predict FOLDER --gradcam OUT`.

Writes synthetic 1024 x 1024 JPEG radiographs (100 different pictures, copied
to make up the count), saves a seed CNN at 224 x 224 (random weights: Grad-CAM
costs the same whatever the weights), then runs the command in a child process
on 200 and on 2,000 files and reads the child's peak resident memory. Memory
that does not grow with the folder gives a ratio near 1.

Run by hand:
    python benchmarks/bench_gradcam_memory.py [--sizes 200 2000]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from covidxray import Classifier, Preprocessing, build_cnn
from covidxray.datasets import synthetic_xray

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--sizes", type=int, nargs="+", default=[200, 2000])
args = parser.parse_args()

work = Path(tempfile.mkdtemp(prefix="bench-gradcam-"))
rng = np.random.default_rng(0)
pictures = []
for k in range(100):
    path = work / "pictures" / f"{k:03d}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(synthetic_xray(rng, (1024, 1024), opacities=k % 2 == 0)).save(
        path, quality=90
    )
    pictures.append(path)

prep = Preprocessing((224, 224))
clf = Classifier(build_cnn(prep.input_shape), class_names=("normal", "covid"))
x = rng.integers(0, 256, (8, *prep.input_shape), dtype=np.uint8)
clf.fit((x, np.array([0, 1] * 4)), epochs=1, verbose=0)
clf.preprocessing_ = prep
clf.save(work / "model.keras")

print("covidxray predict MODEL FOLDER --gradcam OUT, seed CNN at 224 x 224, ")
print("1024 x 1024 JPEG inputs, one process per run\n")
print(f"{'images':>8}{'peak RSS (MB)':>15}{'seconds':>10}")
peaks = []
for n in args.sizes:
    folder = work / f"in-{n}"
    folder.mkdir()
    for k in range(n):
        shutil.copyfile(pictures[k % len(pictures)], folder / f"{k:05d}.jpg")
    out = work / f"cams-{n}"
    command = [
        sys.executable,
        "-c",
        "import resource, sys; from covidxray.cli import main; "
        "code = main(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); "
        "sys.exit(code)",
        "predict",
        str(work / "model.keras"),
        str(folder),
        "--gradcam",
        str(out),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    peak_mb = int(done.stderr.strip().splitlines()[-1]) / 1024
    assert len(list(out.iterdir())) == n
    peaks.append(peak_mb)
    print(f"{n:>8}{peak_mb:>15.0f}{seconds:>10.1f}")
print(
    f"\npeak at {args.sizes[-1]} / peak at {args.sizes[0]}: {peaks[-1] / peaks[0]:.2f}"
)
shutil.rmtree(work)
