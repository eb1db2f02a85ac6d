"""Models as `build_pretrained` built them before its parts were named: one flat
graph (input, channel repeat, preprocessing, backbone, head layers). Model
files saved then hold such graphs; tests check that they still load, split,
cache features and explain, with the same numbers as today's models."""

from __future__ import annotations

import keras
from keras import layers

from covidxray.models import BackbonePreprocess, ChannelRepeat, get_backbone


def build_flat_pretrained(
    backbone: str,
    *,
    input_shape: tuple[int, int, int],
    head: str = "paper",
    num_classes: int = 2,
    dropout: float = 0.5,
) -> keras.Model:
    """The flat graph of the old `build_pretrained(..., weights=None)`."""
    spec = get_backbone(backbone)
    height, width, channels = input_shape
    base = spec.constructor(
        include_top=False, weights=None, input_shape=(height, width, 3)
    )
    base.name = backbone
    base.trainable = False
    inputs = keras.Input((height, width, channels), name="image")
    x = ChannelRepeat(3, name="channel_repeat")(inputs)
    x = BackbonePreprocess(spec.preprocessing, name="preprocess")(x)
    x = base(x, training=False)
    if head == "paper":
        pool = max(1, min(2, int(x.shape[1] or 1), int(x.shape[2] or 1)))
        x = layers.AveragePooling2D(pool, name="head_pool")(x)
        x = layers.Flatten(name="head_flatten")(x)
        x = layers.Dense(64, activation="relu", name="head_dense")(x)
        x = layers.Dropout(dropout, name="head_dropout")(x)
    else:
        x = layers.GlobalAveragePooling2D(name="head_pool")(x)
        x = layers.Dropout(dropout, name="head_dropout")(x)
    if num_classes == 2:
        outputs = layers.Dense(1, activation="sigmoid", name="output")(x)
    else:
        outputs = layers.Dense(num_classes, activation="softmax", name="output")(x)
    return keras.Model(inputs, outputs, name=f"{backbone}_{head}")
