"""Tests of Grad-CAM and overlays."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from PIL import Image

from covidxray import Classifier, build_cnn, build_pretrained, grad_cam, overlay

SIZE = 48
PATCH = 14


def patch_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class 1 has a bright square at a random place; class 0 has none."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.3, 0.05, (n, SIZE, SIZE, 1)).clip(0, 1).astype(np.float32)
    y = np.arange(n) % 2
    corners = rng.integers(0, SIZE - PATCH, (n, 2))
    for i in np.nonzero(y)[0]:
        r, c = corners[i]
        x[i, r : r + PATCH, c : c + PATCH] = 0.95
    return x, y.astype(np.int32), corners


def test_grad_cam_peak_falls_inside_the_patch() -> None:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="last_conv")(
        h
    )
    h = keras.layers.GlobalMaxPooling2D()(h)
    outputs = keras.layers.Dense(1, activation="sigmoid")(h)
    model = keras.Model(inputs, outputs)
    x, y, _ = patch_images(200, seed=0)
    clf = Classifier(model, class_names=["clear", "patch"], learning_rate=3e-3)
    clf.fit((x, y), epochs=8, verbose=0, batch_size=20)
    xt, yt, corners = patch_images(40, seed=1)
    assert (clf.predict(xt) == np.array(["clear", "patch"])[yt]).mean() > 0.9
    heat = clf.explain(xt)
    assert heat.shape == (40, SIZE, SIZE)
    hits = []
    for i in np.nonzero(yt)[0]:
        r, c = np.unravel_index(np.argmax(heat[i]), heat[i].shape)
        top, left = corners[i]
        hits.append(top - 1 <= r <= top + PATCH and left - 1 <= c <= left + PATCH)
    assert np.mean(hits) >= 0.8, np.mean(hits)


@pytest.mark.parametrize("channels", [1, 3])
def test_heatmap_shape_and_range_for_cnn_and_backbone(channels: int) -> None:
    x = np.random.default_rng(0).random((2, 64, 64, channels)).astype(np.float32)
    for model in (
        build_cnn((64, 64, channels)),
        build_pretrained("mobilenet", input_shape=(64, 64, channels), weights=None),
    ):
        heat = grad_cam(model, x)
        assert heat.shape == (2, 64, 64) and heat.dtype == np.float32
        assert heat.min() >= 0.0 and heat.max() <= 1.0


def test_layer_search_and_unknown_layer() -> None:
    model = build_pretrained("resnet50", input_shape=(64, 64, 1), weights=None)
    heat = grad_cam(model, np.zeros((1, 64, 64, 1)), layer="conv4_block6_out")
    assert heat.shape == (1, 64, 64)
    with pytest.raises(
        ValueError, match="Unknown layer 'nope' for Grad-CAM.*conv5_block3_out"
    ):
        grad_cam(model, np.zeros((1, 64, 64, 1)), layer="nope")


def test_overlay_blends_and_resizes() -> None:
    image = np.full((40, 30), 0.5, np.float32)
    out = overlay(image, np.zeros((10, 10)), alpha=0.0)
    assert isinstance(out, Image.Image) and out.size == (30, 40) and out.mode == "RGB"
    assert out.getpixel((5, 5)) == (128, 128, 128)
    hot = overlay(image, np.ones((40, 30)), alpha=1.0, colormap="jet")
    assert hot.getpixel((5, 5)) == (128, 0, 0)  # jet at 1.0 is dark red
    with pytest.raises(ValueError, match="`alpha` argument"):
        overlay(image, np.zeros((4, 4)), alpha=2)
