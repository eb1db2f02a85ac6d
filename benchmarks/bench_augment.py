"""Benchmark: covidxray's Augmenter against the paper's ImageDataGenerator pipeline.

Both read seed-xray/train at 256 x 256 RGB with the paper's training
augmentation (rotation 40, shear 0.2, zoom 0.2, shift 0.2, horizontal flip,
brightness 0.2-1.0, fill 'nearest'), batch 32, in this one process:

- covidxray: load_dataset + Augmenter.paper_training() on the uint8 cache, as
  Classifier.fit runs it; the first epoch includes the scan.
- seed: tf_keras' ImageDataGenerator(...).flow_from_directory, which decodes
  and augments every image with NumPy/SciPy on every epoch.

Prints images/s for the first epoch and a later epoch, and the ratios.
Needs the benchmark-only dependency tf-keras (`pip install tf-keras`).

Run by hand:
    COVIDXRAY_SEED_DATA=/path/to/seed-xray python benchmarks/bench_augment.py
"""

from __future__ import annotations

import functools

from _common import count_images, data_root, table, timed, warm_file_cache

from covidxray import Augmenter, load_dataset

try:
    from tf_keras.preprocessing.image import ImageDataGenerator
except ImportError as exc:  # pragma: no cover
    raise SystemExit("This benchmark needs tf-keras: pip install tf-keras") from exc

SIZE = (256, 256)
root, name = data_root()
train_dir = root / "train"
print(f"data: {name}, folder {train_dir}, {SIZE[0]}x{SIZE[1]} RGB, batch 32")

augmenter = Augmenter.paper_training(seed=0)
warm_file_cache(train_dir)


def ours_pipeline():
    data = load_dataset(
        train_dir, image_size=SIZE, color_mode="rgb", validation_split=0.0
    )
    # What Classifier.fit(data, augmenter=...) iterates: the uint8 cache,
    # augmented on its way to float32 through the dataset's transform hook.
    # Built once, iterated every epoch.
    transform = functools.partial(augmenter.augment, output_dtype="float32")
    return data, data.as_tf_dataset(
        "train", shuffle=True, transform=transform, transform_seed=augmenter.seed
    )


scan_s, (data, pipeline) = timed(ours_pipeline)
first_s, n = timed(lambda: count_images(pipeline))
later_s, _ = timed(lambda: count_images(pipeline))
ours_first, ours_later = n / (scan_s + first_s), n / later_s

generator = ImageDataGenerator(
    rescale=1.0 / 255,
    shear_range=0.2,
    zoom_range=0.2,
    rotation_range=40,
    brightness_range=[0.2, 1.0],
    width_shift_range=0.2,
    height_shift_range=0.2,
    horizontal_flip=True,
    fill_mode="nearest",
)
flow = generator.flow_from_directory(
    train_dir, target_size=SIZE, batch_size=32, class_mode="binary", seed=0
)


def seed_epoch() -> int:
    seen = 0
    for _ in range(len(flow)):
        x, _ = next(flow)
        seen += len(x)
    return seen


seed_first_s, n_seed = timed(seed_epoch)
seed_later_s, _ = timed(seed_epoch)
seed_first, seed_later = n_seed / seed_first_s, n_seed / seed_later_s

rows = [
    ("first epoch (images/s)", ours_first, seed_first, ours_first / seed_first),
    ("later epoch (images/s)", ours_later, seed_later, ours_later / seed_later),
]
print(table(("covidxray", "seed"), rows))
print(f"images: covidxray {n}, seed {n_seed}; scan {scan_s:.1f}s of covidxray's first")
