"""Model builders: the paper's CNN, and pretrained backbones with their heads.

Every model takes images in [0, 1] with 1 or 3 channels and does its own
preprocessing inside (channel repeat, the backbone's normalisation), with
serialisable layers. A saved model therefore predicts on raw pixels by itself.

`build_pretrained` builds three named sub-models in a row: `"stem"` (channel
repeat and the backbone's preprocessing), the backbone (named after its
registry entry) and `"head"`, so that `split_at_backbone` takes the parts by
name (see `docs/architecture.md`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras
from keras import layers

from .._deprecation import deprecated
from .backbones import construct, get_backbone
from .layers import BackbonePreprocess, ChannelRepeat
from .split import HEAD, STEM

__all__ = ["HEADS", "build_cnn", "build_pretrained"]

#: The heads `build_pretrained` builds: the paper's, and global pooling.
HEADS = ("paper", "gap")
#: Old names of heads, still accepted with a DeprecationWarning.
_RENAMED_HEADS = {"seed": "paper"}


def build_cnn(
    input_shape: Sequence[int] = (256, 256, 3),
    *,
    num_classes: int = 2,
    dropout: float = 0.25,
    name: str = "paper_cnn",
) -> keras.Model:
    """The paper's custom CNN, exactly.

    Conv2D(64, 3, strides=3, relu) -> MaxPool(2) -> Dropout -> Conv2D(32, 3,
    strides=3, relu) -> MaxPool(2) -> Dropout -> Flatten -> Dense(256, relu) ->
    Dense(1, sigmoid), or Dense(num_classes, softmax) for more than 2 classes.
    The Keras 2 call `Convolution2D(64, 3, 3)` meant strides 3, which is why the
    first feature map is 85 x 85 at 256 x 256. Inputs are images in [0, 1].

    Args:
        input_shape: `(height, width, channels)`; 1 or 3 channels.
        num_classes: 2 gives one sigmoid output (P(class 1)); more gives softmax.
        dropout: Rate of both dropout layers (the paper recorded none; 0.25).
        name: Model name.

    Returns:
        An uncompiled `keras.Model`.

    Examples:
        >>> from covidxray import build_cnn
        >>> build_cnn((256, 256, 3)).count_params()
        422177
        >>> build_cnn((64, 64, 1), num_classes=3).output_shape
        (None, 3)
    """
    _check_classes(num_classes)
    side = min(int(input_shape[0]), int(input_shape[1]))
    conv1 = (side - 3) // 3 + 1
    if side < 3 or (conv1 // 2 - 3) // 3 + 1 < 2:
        raise ValueError(
            "The `input_shape` argument of build_cnn must be at least 36 x 36: the "
            "paper's CNN has two stride-3 convolutions and two 2x2 poolings. "
            f"Received: {tuple(input_shape)!r}."
        )
    inputs = keras.Input(tuple(input_shape), name="image")
    x = layers.Conv2D(64, 3, strides=3, activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Dropout(dropout, name="dropout1")(x)
    x = layers.Conv2D(32, 3, strides=3, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Dropout(dropout, name="dropout2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(256, activation="relu", name="dense")(x)
    outputs = _output_layer(num_classes)(x)
    return keras.Model(inputs, outputs, name=name)


def _check_classes(num_classes: int) -> None:
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            "The `num_classes` argument must be an integer of at least 2. "
            f"Received: {num_classes!r}."
        )


def _output_layer(num_classes: int) -> layers.Layer:
    if num_classes == 2:
        return layers.Dense(1, activation="sigmoid", name="output")
    return layers.Dense(num_classes, activation="softmax", name="output")


def _check_head(head: str) -> str:
    """The head's current name; an old name warns and is translated."""
    if head in _RENAMED_HEADS:
        new = _RENAMED_HEADS[head]
        deprecated(f"build_pretrained(head={head!r})", f"head={new!r}", stacklevel=4)
        return new
    if head not in HEADS:
        raise ValueError(
            "The `head` argument of build_pretrained must be one of "
            f"{', '.join(repr(h) for h in HEADS)}. Received: {head!r}."
        )
    return head


def _stem(input_shape: tuple[int, int, int], preprocessing: str) -> keras.Model:
    """The layers before the backbone: 1 channel to 3, then its normalisation."""
    inputs = keras.Input(input_shape, name="image")
    x = ChannelRepeat(3, name="channel_repeat")(inputs)
    x = BackbonePreprocess(preprocessing, name="preprocess")(x)
    return keras.Model(inputs, x, name=STEM)


def _head(
    feature_shape: tuple[int, ...], head: str, num_classes: int, dropout: float
) -> keras.Model:
    """The layers after the backbone, as one model named `"head"`."""
    inputs = keras.Input(feature_shape, name="features")
    if head == "paper":
        pool = max(1, min(2, int(feature_shape[0] or 1), int(feature_shape[1] or 1)))
        x = layers.AveragePooling2D(pool, name="head_pool")(inputs)
        x = layers.Flatten(name="head_flatten")(x)
        x = layers.Dense(64, activation="relu", name="head_dense")(x)
        x = layers.Dropout(dropout, name="head_dropout")(x)
    else:
        x = layers.GlobalAveragePooling2D(name="head_pool")(inputs)
        x = layers.Dropout(dropout, name="head_dropout")(x)
    return keras.Model(inputs, _output_layer(num_classes)(x), name=HEAD)


def build_pretrained(
    backbone: str,
    *,
    input_shape: Sequence[int] = (224, 224, 3),
    weights: str | os.PathLike[str] | None = "imagenet",
    trainable: bool = False,
    num_classes: int = 2,
    head: str = "paper",
    dropout: float = 0.5,
) -> keras.Model:
    """A `keras.applications` backbone with a classification head.

    The model takes images in [0, 1] with 1 or 3 channels. One channel is
    repeated to three, and the backbone's own preprocessing is applied inside
    the model, so nothing needs to be done to the images outside it.

    The model is three named sub-models in a row: `"stem"` (the channel
    repeat and the preprocessing), the backbone (named after it) and
    `"head"`. Reach a layer through its part:
    `model.get_layer("head").get_layer("output")`.

    Args:
        backbone: A name from `list_backbones()`.
        input_shape: `(height, width, channels)`, 1 or 3 channels, at least 32.
        weights: `"imagenet"` (downloaded and cached by Keras), None (random),
            or a path to a weights file or to a folder holding the Keras file.
        trainable: Whether the backbone is trainable (False freezes it, as the
            paper did).
        num_classes: 2 gives one sigmoid output; more gives softmax.
        head: `"paper"` is the paper's AveragePooling2D(2) -> Flatten ->
            Dense(64, relu) -> Dropout -> output; `"gap"` is global average
            pooling -> Dropout -> output. `"seed"`, the old name of
            `"paper"`, is deprecated.
        dropout: Dropout rate of the head.

    Returns:
        An uncompiled `keras.Model` named `f"{backbone}_{head}"`.

    Raises:
        ValueError: Unknown backbone or head (the message lists valid names).
        WeightsUnavailableError: The ImageNet weights could not be downloaded
            or the given file does not exist.

    Examples:
        >>> from covidxray import build_pretrained
        >>> model = build_pretrained(
        ...     "mobilenetv2", input_shape=(64, 64, 1), weights=None)
        >>> [layer.name for layer in model.layers]
        ['image', 'stem', 'mobilenetv2', 'head']
        >>> model.output_shape, model.get_layer("mobilenetv2").trainable
        ((None, 1), False)
    """
    spec = get_backbone(backbone)
    head = _check_head(head)
    _check_classes(num_classes)
    height, width, channels = (int(v) for v in input_shape)
    if channels not in (1, 3):
        raise ValueError(
            "The `input_shape` argument of build_pretrained must have 1 or 3 channels. "
            f"Received: {tuple(input_shape)!r}."
        )
    base = construct(spec, weights, (height, width))
    base.trainable = trainable

    inputs = keras.Input((height, width, channels), name="image")
    x = _stem((height, width, channels), spec.preprocessing)(inputs)
    x = base(x, training=False)
    outputs = _head(tuple(x.shape[1:]), head, num_classes, dropout)(x)
    return keras.Model(inputs, outputs, name=f"{backbone}_{head}")


def copy_model(model: keras.Model) -> keras.Model:
    """A new Keras model with the architecture and the current weights of
    `model` (trainable flags kept, as their layers' configs hold them).

    Raises:
        TypeError: `keras.models.clone_model` cannot rebuild the model.
    """
    try:
        clone = keras.models.clone_model(model)
    except Exception as exc:  # Keras raises several types for this
        raise TypeError(
            f"Cannot clone the `model` parameter of Classifier ({model.name!r}): "
            f"keras.models.clone_model failed with {type(exc).__name__}: {exc}"
        ) from exc
    clone.set_weights(model.get_weights())
    return clone
