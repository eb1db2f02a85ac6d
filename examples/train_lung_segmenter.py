"""Train the lung segmenter that ships with covidxray.

Description:
    Trains the small U-Net of `covidxray.lungs.build_lung_unet` on the
    human-drawn lung masks of the ieee8023 collection (V7 Labs, CC BY 4.0),
    with patients kept whole: 70% of the patients train it, 10% choose its
    epoch, and 20% are held out to measure it. Dice and IoU are measured on
    the held-out patients at each mask's own size, through `LungSegmenter`
    (the shipped pipeline, cleaning included), with 95% intervals from a
    bootstrap over patients. Value 127 (a device over the lung) counts as lung.

    Writes the weights (package data, `covidxray/lungs/lung_unet.npz`
    by default) and a JSON report of what it measured. The run is
    deterministic: the same seed on the same machine gives the same weights.

How to run:
    pip install .
    python examples/train_lung_segmenter.py \\
        --masks ../shared/datasets/ieee8023-lung-masks \\
        --images ../shared/datasets/ieee8023-2020-06 \\
        --report docs/data/lung_segmenter.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--masks", required=True, help="ieee8023-lung-masks folder")
parser.add_argument("--images", required=True, help="ieee8023-2020-06 folder")
parser.add_argument(
    "--out",
    default=str(
        Path(__file__).resolve().parents[1] / "covidxray" / "lungs" / "lung_unet.npz"
    ),
    help="weights file to write (default: the package's own)",
)
parser.add_argument("--report", help="JSON file for the measured results")
parser.add_argument("--epochs", type=int, default=40)
parser.add_argument("--batch-size", type=int, default=8)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

from covidxray._quiet import quiet_tensorflow  # noqa: E402

quiet_tensorflow()  # before TensorFlow loads: no start-up noise

import keras  # noqa: E402  (after argparse: --help stays fast)
import tensorflow as tf  # noqa: E402

from covidxray import Augmenter  # noqa: E402
from covidxray.lungs import (  # noqa: E402
    SEGMENTER_SIZE,
    LungSegmenter,
    build_lung_unet,
    save_weights,
)
from covidxray.lungs.masks import (  # noqa: E402
    MaskPair,
    read_mask,
    read_mask_pairs,
    split_by_patient,
)

SIZE = SEGMENTER_SIZE
keras.utils.set_random_seed(args.seed)
tf.config.experimental.enable_op_determinism()

# ---------------------------------------------------------------- the data
split = split_by_patient(read_mask_pairs(args.masks, args.images), seed=args.seed)
for part, items in split.items():
    print(f"{part}: {len(items)} images of {len({p.patient for p in items})} patients")


def arrays(items: list[MaskPair]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for pair in items:
        gray = Image.open(pair.image).convert("L")
        gray = gray.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        m = Image.fromarray(read_mask(pair.mask).astype(np.float32), "F")
        xs.append(np.asarray(gray, np.float32) / 255.0)
        ys.append(np.asarray(m.resize((SIZE, SIZE), Image.Resampling.BILINEAR)) > 0.5)
    return np.stack(xs)[..., None], np.stack(ys)[..., None].astype(np.float32)


x_train, y_train = arrays(split["train"])
x_val, y_val = arrays(split["val"])

# ------------------------------------------------------- augmentation, loss
# One geometric Augmenter, applied with the same stateless seed to the image
# and to its mask: both move together.
geometry = Augmenter(
    rotation=10,
    zoom=0.15,
    shift=0.06,
    horizontal_flip=True,
    fill_mode="constant",
    seed=args.seed,
)


def augment(x: tf.Tensor, y: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    x = geometry.augment(x, seed)
    y = tf.cast(geometry.augment(y, seed) > 0.5, tf.float32)
    n = tf.shape(x)[0]
    seeds = tf.random.experimental.stateless_split(seed, 4)
    gamma = tf.exp(tf.random.stateless_uniform([n, 1, 1, 1], seeds[0], -0.4, 0.4))
    x = tf.clip_by_value(x, 1e-6, 1.0) ** gamma
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    contrast = tf.random.stateless_uniform([n, 1, 1, 1], seeds[1], 0.7, 1.3)
    shift = tf.random.stateless_uniform([n, 1, 1, 1], seeds[2], -0.1, 0.1)
    x = (x - mean) * contrast + mean + shift
    noise = tf.random.stateless_normal(tf.shape(x), seeds[3]) * 0.02
    return tf.clip_by_value(x + noise, 0.0, 1.0), y


def loss(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    bce = keras.losses.binary_crossentropy(y, p)
    inter = tf.reduce_sum(y * p, axis=[1, 2, 3])
    dice = (2 * inter + 1) / (tf.reduce_sum(y + p, axis=[1, 2, 3]) + 1)
    return tf.reduce_mean(bce, axis=[1, 2]) + (1 - dice)


def dice_at(y: np.ndarray, p: np.ndarray) -> float:
    inter = (y & p).sum()
    total = y.sum() + p.sum()
    return 1.0 if total == 0 else float(2 * inter / total)


steps = int(np.ceil(len(x_train) / args.batch_size))
train_ds = (
    tf.data.Dataset.from_tensor_slices((x_train, y_train))
    .shuffle(len(x_train), seed=args.seed)
    .batch(args.batch_size)
    .enumerate()
    .map(
        lambda i, xy: augment(*xy, tf.stack([tf.cast(i, tf.int32), args.seed])),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    .prefetch(2)
)
model = build_lung_unet(SIZE)
schedule = keras.optimizers.schedules.CosineDecay(1e-3, args.epochs * steps, alpha=0.02)
model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss)
print(f"U-Net: {model.count_params():,} parameters, {SIZE} px, {args.epochs} epochs")

best, best_epoch, start = -1.0, -1, time.monotonic()
out = Path(args.out)
for epoch in range(args.epochs):
    history = model.fit(train_ds, epochs=1, verbose=0)
    p_val = model.predict(x_val, batch_size=16, verbose=0) >= 0.5
    val = float(
        np.mean([dice_at(y > 0.5, p) for y, p in zip(y_val, p_val, strict=True)])
    )
    print(
        f"epoch {epoch + 1}: loss {history.history['loss'][-1]:.4f}, val Dice {val:.4f}"
    )
    if val > best:
        best, best_epoch = val, epoch + 1
        best_weights = model.get_weights()
train_seconds = time.monotonic() - start
model.set_weights(best_weights)
save_weights(model, out)  # float16, as shipped: what is measured below

# ---------------------------------------- held-out patients, at full size
segmenter = LungSegmenter(out)
test = split["test"]
start = time.monotonic()
masks = segmenter.predict([str(pair.image) for pair in test])
seconds_per_image = (time.monotonic() - start) / len(test)
dice, iou = [], []
for pair, result in zip(test, masks, strict=True):
    truth = read_mask(pair.mask)  # 127 (a device over the lung) is lung
    inter, union = (truth & result.mask).sum(), (truth | result.mask).sum()
    dice.append(dice_at(truth, result.mask))
    iou.append(float(inter / union) if union else 1.0)
dice_a, iou_a = np.array(dice), np.array(iou)
groups = np.array([pair.patient for pair in test])
unique = np.unique(groups)
members = [np.flatnonzero(groups == g) for g in unique]
rng = np.random.default_rng(args.seed)
boot_d, boot_i = [], []
for _ in range(2000):  # resample patients, not images
    take = np.concatenate(
        [members[k] for k in rng.integers(0, len(unique), len(unique))]
    )
    boot_d.append(dice_a[take].mean())
    boot_i.append(iou_a[take].mean())
report = {
    "size": SIZE,
    "parameters": model.count_params(),
    "epochs": args.epochs,
    "best_epoch": best_epoch,
    "val_dice_at_size": best,
    "train_images": len(split["train"]),
    "val_images": len(split["val"]),
    "test_images": len(test),
    "test_patients": int(len(unique)),
    "dice": float(dice_a.mean()),
    "dice_ci95": [
        float(np.percentile(boot_d, 2.5)),
        float(np.percentile(boot_d, 97.5)),
    ],
    "dice_median": float(np.median(dice_a)),
    "dice_min": float(dice_a.min()),
    "iou": float(iou_a.mean()),
    "iou_ci95": [float(np.percentile(boot_i, q)) for q in (2.5, 97.5)],
    "flagged_implausible": [m.name for m in masks if not m.plausible],
    "seconds_per_image": seconds_per_image,
    "train_seconds": train_seconds,
    "weights_sha256": segmenter.weights_sha256,
    "seed": args.seed,
}
print(json.dumps(report, indent=2))
if args.report:
    Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
