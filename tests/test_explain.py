"""Tests of Grad-CAM and overlays."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from covidxray import (
    Classifier,
    build_pretrained,
    grad_cam,
    overlay,
)

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


def test_grad_cam_puts_most_of_its_mass_on_the_planted_square() -> None:
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
    heat = clf.explain((xt * 255).round().astype(np.uint8))  # as a user passes them
    assert heat.shape == (40, SIZE, SIZE)
    margin = 3  # the map is computed at half resolution, then upsampled
    inside, peaks = [], []
    for i in np.nonzero(yt)[0]:
        top, left = corners[i]
        box = np.zeros((SIZE, SIZE), bool)
        box[
            max(top - margin, 0) : top + PATCH + margin,
            max(left - margin, 0) : left + PATCH + margin,
        ] = True
        inside.append(heat[i][box].sum() / heat[i].sum())
        r, c = np.unravel_index(np.argmax(heat[i]), heat[i].shape)
        peaks.append(bool(box[r, c]))
    area = ((PATCH + 2 * margin) / SIZE) ** 2  # about 0.17 of the image
    assert np.median(inside) > 0.5, (np.median(inside), area)
    assert np.mean(peaks) >= 0.8, np.mean(peaks)


def reference_cam(model: keras.Model, x: np.ndarray, layer: str) -> np.ndarray:
    """Grad-CAM written out by hand for a build_pretrained model (gap head),
    layer by layer, without split_at_backbone."""
    backbone = model.get_layer("mobilenetv2")
    tap = keras.Model(
        backbone.inputs, [backbone.get_layer(layer).output, backbone.output]
    )
    stem, head = model.get_layer("stem"), model.get_layer("head")
    with tf.GradientTape() as tape:
        h = stem.get_layer("preprocess")(stem.get_layer("channel_repeat")(x))
        maps, out = tap(h, training=False)
        tape.watch(maps)
        pooled = head.get_layer("head_pool")(out)
        score = head.get_layer("output")(pooled)[:, 0]
    grads = tape.gradient(score, maps)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))[..., None]
    cam = tf.image.resize(cam, x.shape[1:3])[..., 0].numpy()
    return cam / cam.reshape(len(x), -1).max(axis=1).reshape(-1, 1, 1)


@pytest.mark.parametrize("layer", [None, "block_3_expand_relu"])
def test_backbone_layers_match_a_hand_written_grad_cam(layer: str | None) -> None:
    model = build_pretrained(
        "mobilenetv2", input_shape=(64, 64, 1), weights=None, head="gap"
    )
    model.get_layer("head").get_layer("output").set_weights(
        [np.full((1280, 1), 0.01), np.zeros(1)]
    )
    x = np.random.default_rng(0).random((3, 64, 64, 1)).astype(np.float32)
    ours = grad_cam(model, x, layer=layer, class_index=1)
    expected = reference_cam(model, x, layer or "out_relu")
    assert ours.std() > 0.01  # a map, not a constant
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_a_nested_model_that_is_not_registered_is_tapped_too() -> None:
    inner_in = keras.Input((32, 32, 1))
    inner_out = keras.layers.Conv2D(4, 3, padding="same", name="inner_conv")(inner_in)
    inner = keras.Model(inner_in, inner_out, name="my_block")  # not a registered name
    inputs = keras.Input((32, 32, 1))
    h = keras.layers.GlobalAveragePooling2D()(inner(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(h))
    x = np.random.default_rng(1).random((2, 32, 32, 1)).astype(np.float32)
    heat = grad_cam(model, x, layer="inner_conv")
    assert heat.shape == (2, 32, 32) and heat.std() > 0.0
    np.testing.assert_allclose(grad_cam(model, x), heat)  # the default picks it


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


@pytest.mark.parametrize("layer", [None, "block_3_expand_relu", "head_pool"])
def test_a_flat_model_of_before_gets_the_same_maps_as_its_named_parts(
    layer: str | None,
) -> None:
    # Models saved before build_pretrained named its parts are flat graphs:
    # the same weights give the same Grad-CAM either way, for a layer inside
    # the nested backbone and for the head's pooling (inside "head" today).
    from legacy_models import build_flat_pretrained

    flat = build_flat_pretrained("mobilenetv2", input_shape=(128, 128, 1), head="paper")
    nested = build_pretrained(
        "mobilenetv2", input_shape=(128, 128, 1), weights=None, head="paper"
    )
    head = nested.get_layer("head")
    dense = head.get_layer("head_dense")
    dense.set_weights([np.full(dense.kernel.shape, 0.01), np.zeros(64)])
    head.get_layer("output").set_weights([np.full((64, 1), 0.01), np.zeros(1)])
    flat.set_weights(nested.get_weights())
    x = np.random.default_rng(4).random((3, 128, 128, 1)).astype(np.float32)
    ours = grad_cam(nested, x, layer=layer, class_index=1)
    assert ours.shape == (3, 128, 128) and ours.std() > 0.01
    before = grad_cam(flat, x, layer=layer, class_index=1)
    np.testing.assert_allclose(ours, before, atol=1e-4)
