"""Grad-CAM heatmaps and overlays: where does a model look?

Grad-CAM knows models, not the `Classifier`: it takes a Keras model, or any
fitted object with a `model_` and a `preprocess(images)` method (a fitted
`Classifier`), and never imports the classifier module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from .data.decode import _canonical, array_to_image
from .models import find_backbone, split_at_backbone

__all__ = ["grad_cam", "overlay"]

_CONV_TYPES = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
)
_BATCH = 32  # images per forward and backward pass: memory stays bounded


class _Fitted(Protocol):
    """What Grad-CAM needs of a fitted classifier."""

    model_: keras.Model

    def preprocess(self, images: Any) -> np.ndarray: ...


def _spatial_layers(
    model: keras.Model,
) -> list[tuple[keras.Model | None, keras.layers.Layer]]:
    """(nested model or None, layer) for every layer with a 4-D output, in order."""
    found: list[tuple[keras.Model | None, keras.layers.Layer]] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(
                (layer, inner)
                for inner in layer.layers[1:]
                if len(inner.output.shape) == 4
            )
        elif (
            not isinstance(layer, keras.layers.InputLayer)
            and len(layer.output.shape) == 4
        ):
            found.append((None, layer))
    return found


def _pick_layer(
    model: keras.Model, layer: str | None
) -> tuple[keras.Model | None, keras.layers.Layer]:
    candidates = _spatial_layers(model)
    if layer is None:
        nested = [c for c in candidates if c[0] is not None]
        if nested:  # a backbone: its last feature map, as Keras' Grad-CAM example does
            backbone = find_backbone(model)
            registered = [c for c in nested if c[0] is backbone]
            return (registered or nested)[-1]
        convs = [c for c in candidates if isinstance(c[1], _CONV_TYPES)]
        if not convs:
            raise ValueError(
                f"The model '{model.name}' has no convolutional layer for Grad-CAM."
            )
        return convs[-1]
    for parent, candidate in candidates:
        if candidate.name == layer:
            return parent, candidate
    names = [c.name for _, c in candidates]
    raise ValueError(
        f"Unknown layer {layer!r} for Grad-CAM. Layers with a spatial output "
        f"({len(names)}), the last ones: {', '.join(names[-10:])}."
    )


Forward = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def _forward(
    model: keras.Model, parent: keras.Model | None, conv: keras.layers.Layer
) -> Forward:
    """A function x -> (activations of `conv`, model output)."""
    if parent is None:
        both = keras.Model(model.inputs, [conv.output, model.output])
        return lambda x: both(x, training=False)
    # A layer of a nested model (a backbone): split the model there (one place
    # checks that the model is a straight chain), then tap the nested inside.
    features, head = split_at_backbone(model, parent)
    backbone = features.layers[-1]
    stem = features.layers[1] if len(features.layers) == 3 else None
    tap = keras.Model(backbone.inputs, [conv.output, backbone.output])

    def run(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if stem is not None:
            x = stem(x, training=False)
        activations, maps = tap(x, training=False)
        return activations, head(maps, training=False)

    return run


def _cam(forward: Forward, x: np.ndarray, class_index: int | None) -> np.ndarray:
    tensor = tf.convert_to_tensor(x, tf.float32)
    with tf.GradientTape() as tape:
        activations, output = forward(tensor)
        tape.watch(activations)
        if output.shape[-1] == 1:
            p = output[:, 0]
            if class_index is None:
                chosen = tf.cast(p >= 0.5, tf.float32)
            else:
                chosen = tf.fill(tf.shape(p), float(class_index == 1))
            score = chosen * p + (1.0 - chosen) * (1.0 - p)
        else:
            idx = (
                tf.argmax(output, axis=-1)
                if class_index is None
                else tf.fill([tf.shape(output)[0]], int(class_index))
            )
            score = tf.gather(output, tf.cast(idx, tf.int32), axis=1, batch_dims=1)
    grads = tape.gradient(score, activations)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))[..., None]
    cam = tf.image.resize(cam, x.shape[1:3], method="bilinear")[..., 0].numpy()
    peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peak > 0, cam / np.where(peak > 0, peak, 1.0), 0.0).astype(
        np.float32
    )


def grad_cam(
    classifier_or_model: _Fitted | keras.Model,
    images: Any,
    *,
    layer: str | None = None,
    class_index: int | None = None,
) -> np.ndarray:
    """Grad-CAM heatmaps: which regions raised the score of a class.

    Args:
        classifier_or_model: A fitted `Classifier` (inputs are preprocessed as
            for `predict`) or a Keras model taking (N, H, W, C) images in [0, 1].
        images: For a model, an array (N, H, W, C) or (H, W, C). For a
            classifier, anything `predict` accepts.
        layer: Name of a layer with a spatial (4-D) output. By default the last
            feature map of a nested backbone, or else the last convolution.
        class_index: The class to explain; by default the predicted class of
            each image.

    Returns:
        Heatmaps of shape (N, H, W) in [0, 1], at the input size. Images go
        through the model in batches of 32, so memory does not grow with N.

    Raises:
        ValueError: Unknown layer (the message lists candidates), no
            convolutional layer, or a backbone layer in a model that is not a
            straight chain.

    Examples:
        >>> import numpy as np
        >>> from covidxray import build_cnn, grad_cam
        >>> model = build_cnn((64, 64, 1))
        >>> heat = grad_cam(model, np.random.default_rng(0).random((2, 64, 64, 1)))
        >>> heat.shape, heat.dtype.name
        ((2, 64, 64), 'float32')
    """
    if isinstance(classifier_or_model, keras.Model):
        model = classifier_or_model
        x = np.asarray(images, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
    else:
        x = classifier_or_model.preprocess(images)  # NotFittedError if unfitted
        model = classifier_or_model.model_
    parent, conv = _pick_layer(model, layer)
    forward = _forward(model, parent, conv)
    if len(x) == 0:
        return np.zeros((0, *x.shape[1:3]), np.float32)
    return np.concatenate(
        [
            _cam(forward, x[i : i + _BATCH], class_index)
            for i in range(0, len(x), _BATCH)
        ]
    )


def _colormap(values: np.ndarray, name: str) -> np.ndarray:
    v = np.clip(values, 0.0, 1.0)
    if name == "jet":
        r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
        g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
        b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    elif name == "hot":
        r = np.clip(3 * v, 0, 1)
        g = np.clip(3 * v - 1, 0, 1)
        b = np.clip(3 * v - 2, 0, 1)
    else:
        raise ValueError(
            "The `colormap` argument of overlay must be one of 'jet', 'hot'. "
            f"Received: {name!r}."
        )
    return np.stack([r, g, b], axis=-1)


def overlay(
    image: Any, heatmap: Any, *, alpha: float = 0.4, colormap: str = "jet"
) -> Image.Image:
    """Blend a heatmap over an image, without matplotlib.

    Args:
        image: (H, W) or (H, W, C) array (uint8, or float in [0, 1]) or a PIL image.
        heatmap: (h, w) values in [0, 1]; resized to the image if needed.
        alpha: Weight of the heatmap colours (0 shows only the image).
        colormap: `"jet"` or `"hot"`.

    Returns:
        An RGB PIL image of the image's size.

    Examples:
        >>> import numpy as np
        >>> from covidxray import overlay
        >>> out = overlay(np.zeros((32, 32)), np.ones((8, 8)), alpha=0.5)
        >>> out.size, out.mode, out.getpixel((0, 0))
        ((32, 32), 'RGB', (64, 0, 0))
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(
            f"The `alpha` argument of overlay must be in [0, 1]. Received: {alpha!r}."
        )
    base = image if isinstance(image, Image.Image) else array_to_image(image)
    base = _canonical(base).convert("RGB")
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(
            f"Expected a heatmap of shape (H, W). Received shape {heat.shape}."
        )
    if heat.shape != (base.height, base.width):
        resized = Image.fromarray(heat).resize(base.size, Image.Resampling.BILINEAR)
        heat = np.asarray(resized, dtype=np.float32)
    colours = _colormap(heat, colormap)
    pixels = np.asarray(base, dtype=np.float32) / 255.0
    blended = (1 - alpha) * pixels + alpha * colours
    return Image.fromarray(
        np.round(np.clip(blended, 0, 1) * 255).astype(np.uint8), mode="RGB"
    )
