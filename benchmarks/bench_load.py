"""Benchmark: load_dataset against keras.utils.image_dataset_from_directory.

Both read seed-xray/train (1,113 images) at 256 x 256 grayscale in this one
process. The first epoch includes covidxray's scan (validation, hashing,
decoding into the uint8 cache); the baseline decodes in its first epoch and
caches float32 tensors with `.cache()`. Prints images/s for the first and a
cached epoch (the fastest of 5), the growth of resident memory, and the
ratios; then the pipeline alone against plain tf.data.

Run by hand:
    COVIDXRAY_SEED_DATA=/path/to/seed-xray python benchmarks/bench_load.py
"""

from __future__ import annotations

import keras
import tensorflow as tf
from _common import count_images, data_root, rss_mb, table, timed, warm_file_cache

from covidxray import load_dataset

SIZE = (256, 256)
root, name = data_root()
train_dir = root / "train"
print(f"data: {name}, folder {train_dir}, {SIZE[0]}x{SIZE[1]} grayscale, batch 32")

warm_file_cache(train_dir)

# covidxray: the first epoch is load_dataset (scan) plus one pass over all images.
before = rss_mb()
scan_s, data = timed(
    lambda: load_dataset(train_dir, image_size=SIZE, validation_split=0.0)
)
train = data.train  # built once and iterated every epoch, as Keras' fit does
first_s, n = timed(lambda: count_images(train))
ours_first = n / (scan_s + first_s)
# A cached epoch: the fastest of 5 passes (one pass is 35 batches, ~0.05 s).
cached_s = min(timed(lambda: count_images(train))[0] for _ in range(5))
ours_cached = n / cached_s
ours_mem = rss_mb() - before

# baseline: image_dataset_from_directory + cache, as the Keras guides suggest.
before = rss_mb()
base = (
    keras.utils.image_dataset_from_directory(
        train_dir,
        image_size=SIZE,
        color_mode="grayscale",
        batch_size=32,
        shuffle=True,
        seed=0,
    )
    .cache()
    .prefetch(tf.data.AUTOTUNE)
)
base_first_s, n_base = timed(lambda: count_images(base))
base_cached_s = min(timed(lambda: count_images(base))[0] for _ in range(5))
base_mem = rss_mb() - before

base_first, base_cached = n_base / base_first_s, n_base / base_cached_s
rows = [
    ("first epoch (images/s)", ours_first, base_first, ours_first / base_first),
    ("cached epoch (images/s)", ours_cached, base_cached, ours_cached / base_cached),
    ("memory growth (MB)", ours_mem, base_mem, ours_mem / max(base_mem, 1.0)),
]
print(table(("covidxray", "baseline"), rows))
print(
    f"images: covidxray {n}, baseline {n_base}; scan {scan_s:.1f}s of covidxray's first"
)


def label_order(dataset):
    return [tuple(labels.numpy().ravel().tolist()) for _, labels in dataset]


# The baseline's .cache() comes after its shuffle: its cached epochs replay one
# order. covidxray's reshuffle (the images of a pass are the same, in new order).
print(
    "same batches every cached epoch: baseline "
    f"{label_order(base) == label_order(base)}, covidxray "
    f"{label_order(train) == label_order(train)}"
)

# The pipeline alone (issue 23): covidxray's batches over the uint8 pixels of
# the same images in memory, against plain tf.data over the same array
# (`from_tensor_slices(...).shuffle(n).batch(32)`, then the same cast), both
# reshuffled every pass. No scan, no files: what one epoch costs once cached.
pixels = data.images("train")
labels = data.labels("train")
records = data.split_records("train")
rows = {r.path: k for k, r in enumerate(records)}


def pipeline(dtype: str) -> tf.data.Dataset:
    from covidxray.data.pipeline import batches

    return batches(
        records, labels, preprocessing=data.preprocessing, pixels=pixels,
        rows=rows, max_pixels=data.max_pixels, batch_size=32, seed=0,
        split="train", shuffle=True, dtype=dtype,
    )  # fmt: skip


def plain(dtype: str) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((pixels, labels))
    ds = ds.shuffle(len(labels), seed=0, reshuffle_each_iteration=True).batch(32)
    if dtype == "float32":
        ds = ds.map(
            lambda x, y: (tf.cast(x, tf.float32) / 255.0, y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return ds.prefetch(tf.data.AUTOTUNE)


def best_rate(ds: tf.data.Dataset, passes: int = 5) -> float:
    """Images/s of the fastest of `passes` passes, after one warm-up pass."""
    count_images(ds)
    return max(
        n / s for s, n in (timed(lambda: count_images(ds)) for _ in range(passes))
    )


rows_alone = []
for dtype in ("float32", "uint8"):
    ours_rate, plain_rate = best_rate(pipeline(dtype)), best_rate(plain(dtype))
    rows_alone.append(
        (f"pipeline, {dtype} (images/s)", ours_rate, plain_rate, ours_rate / plain_rate)
    )
print(f"\nthe pipeline alone, {len(labels)} images in memory, {SIZE[0]}x{SIZE[1]}x1")
print(table(("covidxray", "tf.data"), rows_alone))
