"""The tf.data pipeline: batches, shuffling, the uncached path, transforms, weights."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from covidxray import load_dataset
from covidxray.data.pipeline import balanced_class_weights, batches, draw_weights
from covidxray.data.preprocessing import Preprocessing
from covidxray.data.records import Record
from helpers import write_image


def test_tf_batches_are_float_in_unit_range_and_labels_match(
    synthetic_root: Path,
) -> None:
    ds = load_dataset(
        synthetic_root, image_size=(32, 32), batch_size=5, color_mode="rgb"
    )
    xs, ys = [], []
    for x, y in ds.val:
        xs.append(x.numpy())
        ys.append(y.numpy())
    x = np.concatenate(xs)
    assert x.dtype == np.float32 and x.shape[1:] == (32, 32, 3)
    np.testing.assert_array_equal(np.concatenate(ys), ds.labels("val"))
    np.testing.assert_allclose(x, ds.images("val") / 255.0, atol=1e-6)


def test_train_is_reshuffled_each_epoch_but_same_content(synthetic_root: Path) -> None:
    ds = load_dataset(synthetic_root, image_size=(16, 16), batch_size=64)
    first = next(iter(ds.train))[1].numpy()
    second = next(iter(ds.train))[1].numpy()
    train = ds.train
    epoch1 = np.concatenate([y.numpy() for _, y in train])
    epoch2 = np.concatenate([y.numpy() for _, y in train])
    assert sorted(epoch1) == sorted(epoch2)
    assert not np.array_equal(epoch1, epoch2) or not np.array_equal(first, second)


def test_uncached_pipeline_gives_the_same_pixels(synthetic_root: Path) -> None:
    cached = load_dataset(synthetic_root, image_size=(16, 16))
    uncached = load_dataset(synthetic_root, image_size=(16, 16), cache=False)
    a = np.concatenate([x.numpy() for x, _ in cached.val])
    b = np.concatenate([x.numpy() for x, _ in uncached.val])
    np.testing.assert_array_equal(a, b)


def test_class_weights_are_balanced(tmp_path: Path) -> None:
    for k in range(4):
        write_image(tmp_path / "covid" / f"c{k}.png", seed=k)
    for k in range(12):
        write_image(tmp_path / "non" / f"n{k}.png", seed=100 + k)
    ds = load_dataset(tmp_path, image_size=(8, 8), validation_split=0.0)
    assert ds.class_weights() == {0: 16 / 24, 1: 16 / 8}


def test_transform_hook_and_the_deprecated_augmenter_argument(
    synthetic_root: Path,
) -> None:
    data = load_dataset(synthetic_root, image_size=(32, 32), batch_size=8)
    seen = []

    def invert(images, seed):  # any callable on uint8 batches with a seed
        seen.append((images.dtype, tuple(seed.shape)))
        return 255 - images  # uint8 out: scaled to [0, 1] by the pipeline

    ds = data.as_tf_dataset("val", transform=invert, transform_seed=3)
    x = np.concatenate([b.numpy() for b, _ in ds])
    np.testing.assert_allclose(x, (255 - data.images("val")) / 255.0, atol=1e-6)
    assert x.dtype == np.float32 and seen[0] == (tf.uint8, (2,))
    with pytest.raises(ValueError, match="needs dtype='float32'"):
        data.as_tf_dataset("val", transform=invert, dtype="uint8")
    from covidxray import Augmenter

    with pytest.warns(DeprecationWarning, match="`augmenter` argument"):
        old = data.as_tf_dataset("val", augmenter=Augmenter.xray(seed=1))
    new = data.as_tf_dataset(
        "val",
        transform=functools.partial(
            Augmenter.xray(seed=1).augment, output_dtype="float32"
        ),
        transform_seed=1,
    )
    np.testing.assert_array_equal(
        np.concatenate([b.numpy() for b, _ in old]),
        np.concatenate([b.numpy() for b, _ in new]),
    )


# ------------------------------------- the pipeline as a function of records


def test_batches_need_records_labels_and_pixels_only() -> None:
    recs = [
        Record(f"{i}.png", "covid" if i % 2 else "normal", "train", None, "a",
               "", "", "", "", 4, 4, "L", "PNG", 1)
        for i in range(6)
    ]  # fmt: skip
    pixels = np.arange(6, dtype=np.uint8)[:, None, None, None] * np.ones(
        (1, 4, 4, 1), np.uint8
    )
    rows = {r.path: 5 - i for i, r in enumerate(recs)}  # rows in reverse
    labels = np.array([i % 2 for i in range(6)], np.int32)
    ds = batches(
        recs, labels, preprocessing=Preprocessing((4, 4)), pixels=pixels,
        rows=rows, max_pixels=100, batch_size=4, seed=0, split="train",
        dtype="uint8",
    )  # fmt: skip
    images, y = (np.concatenate(part) for part in zip(*ds, strict=True))
    assert images.dtype == np.uint8 and images.shape == (6, 4, 4, 1)
    assert images[:, 0, 0, 0].tolist() == [5, 4, 3, 2, 1, 0]
    assert y.tolist() == labels.tolist()
    weights = np.array([0, 0, 0, 0, 0, 1.0])  # always the last record
    drawn = batches(
        recs, labels, preprocessing=Preprocessing((4, 4)), pixels=pixels,
        rows=rows, max_pixels=100, batch_size=6, seed=0, split="train",
        dtype="uint8", shuffle=True, weights=weights,
    )  # fmt: skip
    images, _ = next(iter(drawn))
    assert np.asarray(images)[:, 0, 0, 0].tolist() == [0] * 6


def test_balanced_class_weights_and_uniform_draws() -> None:
    assert balanced_class_weights(np.array([0, 0, 0, 1]), 3) == {
        0: 4 / 9,
        1: 4 / 3,
        2: 0.0,
    }
    uniform = draw_weights([], None)
    assert uniform.shape == (0,)
