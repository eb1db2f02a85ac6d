"""`Classifier(lung_focus=...)`: the penalty on input gradients outside the
lungs moves what a model looks at, and is checked and kept."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from covidxray import Classifier, build_cnn, load_dataset
from covidxray.training.focus import focus_batches, input_gradient_outside

SIZE = 48


def shortcut_set(n: int = 256, seed: int = 0):
    """Images whose label shows twice: a little brighter lungs (noisy) and a
    white corner marker outside them (exact): the marker is the easy cue."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.uniform(0.2, 0.4, (n, SIZE, SIZE, 1)).astype(np.float32)
    mask = np.zeros((SIZE, SIZE), bool)
    mask[8:42, 6:21] = mask[8:42, 27:42] = True
    noise = rng.normal(0, 0.05, (n, int(mask.sum())))
    x[:, mask, 0] += (0.15 * y[:, None] + noise).astype(np.float32)
    x[y == 1, :6, :6, 0] = 1.0
    return np.clip(x, 0, 1), y, np.repeat(mask[None], n, axis=0)


def outside_share(clf: Classifier, x: np.ndarray, masks: np.ndarray) -> float:
    """The median share of squared input gradient outside the lungs."""
    outside = input_gradient_outside(
        clf.model_, x, (~masks).astype(np.float32), training=False
    )
    total = input_gradient_outside(
        clf.model_, x, np.ones(masks.shape, np.float32), training=False
    )
    return float(np.median(np.asarray(outside) / np.asarray(total)))


@pytest.mark.slow
def test_lung_focus_moves_the_models_gradients_into_the_lungs() -> None:
    x, y, masks = shortcut_set()
    no_marker = x.copy()
    no_marker[:, :6, :6, 0] = 0.3
    names = np.array(["non", "covid"])
    shares, accuracies = {}, {}
    for strength in (0.0, 10.0):
        keras.utils.set_random_seed(0)
        clf = Classifier(
            build_cnn((SIZE, SIZE, 1)), class_names=list(names), lung_focus=strength
        )
        clf.fit((x, y), epochs=12, batch_size=32, verbose=0, lung_masks=masks)
        shares[strength] = outside_share(clf, x[:64], masks[:64])
        accuracies[strength] = float(np.mean(clf.predict(no_marker) == names[y]))
    # Measured: 0.88 without the penalty, 0.03 with it.
    assert shares[0.0] > 0.5 and shares[10.0] < 0.5 * shares[0.0], shares
    # Without the marker, only the focused model still tells the classes apart.
    assert accuracies[10.0] > 0.8 and accuracies[0.0] < 0.7, accuracies
    assert "lung_focus_penalty" in clf.history_


def test_lung_focus_is_checked_before_training_and_kept_in_the_file(
    tmp_path: Path,
) -> None:
    x, y, masks = shortcut_set(16)
    model = build_cnn((SIZE, SIZE, 1))
    with pytest.raises(ValueError, match="lung_focus needs each training image"):
        Classifier(model, class_names=["non", "covid"], lung_focus=1.0).fit(
            (x, y), epochs=1, verbose=0
        )
    with pytest.raises(ValueError, match="`lung_focus` argument.*>= 0"):
        Classifier(model, class_names=["non", "covid"], lung_focus=-1.0).fit(
            (x, y), epochs=1, verbose=0
        )
    with pytest.raises(ValueError, match="none of the 16 training images"):
        Classifier(model, class_names=["non", "covid"], lung_focus=1.0).fit(
            (x, y), epochs=1, verbose=0, lung_masks=np.zeros_like(masks)
        )
    clf = Classifier(model, class_names=["non", "covid"], lung_focus=2.5)
    clf.fit((x, y), epochs=1, verbose=0, lung_masks=masks)
    loaded = Classifier.load(clf.save(tmp_path / "focus.keras"))
    assert loaded.lung_focus == 2.5 and loaded.metadata_.lung_focus == 2.5
    assert loaded.metadata_.segmenter is None  # the caller's masks: no segmenter


def test_lung_focus_on_a_dataset_uses_its_masks_and_reports_the_penalty(
    synthetic_root: Path, fake_lungs
) -> None:
    data = load_dataset(synthetic_root, image_size=(SIZE, SIZE), lung_masks=True)
    clf = Classifier(
        build_cnn((SIZE, SIZE, 1)), class_names=data.class_names, lung_focus=1.0
    )
    clf.fit(data, epochs=2, verbose=0)  # class weights, and validation data
    assert fake_lungs.calls == len(data.records)  # found once, by the scan
    assert {"loss", "val_loss", "lung_focus_penalty"} <= set(clf.history_)
    assert all(v > 0 for v in clf.history_["lung_focus_penalty"])
    assert clf.get_config().segmenter == fake_lungs().info()
    with pytest.raises(ValueError, match="lung_focus needs the gradients"):
        clf.fit(data, epochs=1, verbose=0, cache_features=True)
    with pytest.raises(ValueError, match="tf.distribute strategy"):
        clf.fit(data, epochs=1, verbose=0, strategy=tf.distribute.MirroredStrategy())


def test_the_penalty_stream_pairs_each_image_with_where_its_lungs_are_not() -> None:
    x, _, masks = shortcut_set(4)
    images = (x * 255).astype(np.uint8)
    batch, outside = next(iter(focus_batches(images, masks, 4, seed=0)))
    assert batch.shape == (4, SIZE, SIZE, 1) and outside.shape == (4, SIZE, SIZE)
    assert float(np.max(batch)) <= 1.0
    np.testing.assert_array_equal(np.asarray(outside), (~masks).astype(np.float32))
    with pytest.raises(ValueError, match="one lung mask"):
        focus_batches(images, masks[:, :10], 4, seed=0)
