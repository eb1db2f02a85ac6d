"""Benchmark: Classifier.fit with feature caching against a plain model.fit.

A frozen MobileNetV2 (random weights, so nothing is downloaded) with the paper's
head, 10 epochs on seed-xray/train at 160 x 160, batch 32, in this one process.
covidxray runs the frozen backbone once and trains the head on cached
features; the baseline `model.fit` runs the backbone on every batch of every
epoch. Prints wall times and the ratio.

Run by hand:
    COVIDXRAY_SEED_DATA=/path/to/seed-xray python benchmarks/bench_fit.py
"""

from __future__ import annotations

import keras
from _common import data_root, table, timed

from covidxray import Classifier, build_pretrained, load_dataset

SIZE, EPOCHS = 160, 10
root, name = data_root()
data = load_dataset(root / "train", image_size=(SIZE, SIZE), validation_split=0.15)
print(
    f"data: {name}, train {len(data.split_records('train'))}, val "
    f"{len(data.split_records('val'))}, {SIZE}x{SIZE}, {EPOCHS} epochs"
)


def model() -> keras.Model:
    return build_pretrained("mobilenetv2", input_shape=(SIZE, SIZE, 1), weights=None)


clf = Classifier(model(), class_names=data.class_names, learning_rate=1e-4)
ours_s, _ = timed(lambda: clf.fit(data, epochs=EPOCHS, verbose=0))
assert clf.feature_cache_used_

plain = model()
plain.compile(
    optimizer=keras.optimizers.Adam(1e-4),
    loss="binary_crossentropy",
    metrics=["accuracy"],
)
base_s, _ = timed(
    lambda: plain.fit(
        data.train,
        validation_data=data.val,
        epochs=EPOCHS,
        class_weight=data.class_weights(),
        verbose=0,
    )
)

rows = [("wall time (s)", ours_s, base_s, base_s / ours_s)]
print(table(("covidxray", "model.fit"), rows))
print("ratio = model.fit time / covidxray time")
