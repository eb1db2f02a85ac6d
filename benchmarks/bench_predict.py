"""Benchmark: latency of Classifier.predict_proba on one file.

Against two baselines in this one process: decoding the file plus a direct
model call (the floor), and decoding plus `model.predict` (what a naive user
writes). The paper's CNN at 256 x 256, 50 repetitions after 5 warm-up calls.
Prints median latencies in milliseconds and the ratios.

Run by hand:
    COVIDXRAY_SEED_DATA=/path/to/seed-xray python benchmarks/bench_predict.py
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from _common import data_root

from covidxray import Classifier, Preprocessing, build_cnn

SIZE, REPEATS = 256, 50
root, name = data_root()
files = sorted(p for p in (root / "test").rglob("*") if p.is_file())[:REPEATS]
print(f"data: {name}; {len(files)} files; seed CNN at {SIZE}x{SIZE} grayscale")

model = build_cnn((SIZE, SIZE, 1))
clf = Classifier(model, class_names=["non", "covid"])
clf.fit(
    (np.zeros((2, SIZE, SIZE, 1), np.float32), np.array([0, 1])), epochs=1, verbose=0
)


PREP = Preprocessing((SIZE, SIZE))  # as predict_proba decodes


def decode(path) -> np.ndarray:
    return PREP.load(path)[None].astype(np.float32) / 255.0


def median_ms(fn) -> float:
    for path in files[:5]:
        fn(path)
    times = []
    for path in files:
        start = time.perf_counter()
        fn(path)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


ours = median_ms(lambda p: clf.predict_proba(p))
direct = median_ms(lambda p: np.asarray(model(decode(p), training=False)))
keras_predict = median_ms(lambda p: model.predict(decode(p), verbose=0))

print(f"{'one file, median ms':36}{'ms':>8}{'vs covidxray':>14}")
print(f"{'covidxray predict_proba':36}{ours:8.2f}{1.0:14.2f}")
print(f"{'decode + direct model call':36}{direct:8.2f}{direct / ours:14.2f}")
print(f"{'decode + model.predict':36}{keras_predict:8.2f}{keras_predict / ours:14.2f}")
