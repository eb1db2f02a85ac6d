"""Model surgery: find a model's backbone, split a model there, unfreeze it.

A model from `build_pretrained` is three named sub-models in a row (`"stem"`,
the backbone, `"head"`): it is split by name. A Sequential model is split by
its layers. Any other functional model (among them the flat graphs that
`build_pretrained` made before its parts were named, in saved files) is read
by `covidxray._keras_compat.functional_chain`, the one place that reads a
Keras layer graph (see `docs/architecture.md`).
"""

from __future__ import annotations

from typing import Any

import keras

from .. import _keras_compat
from .backbones import BACKBONES, list_backbones

__all__ = [
    "HEAD",
    "STEM",
    "find_backbone",
    "named_parts",
    "split_at_backbone",
    "unfreeze_backbone",
]

#: Names of the sub-models before and after the backbone.
STEM, HEAD = "stem", "head"

Chain = list[tuple[keras.layers.Layer, dict[str, Any]]]


def find_backbone(model: keras.Model) -> keras.Model | None:
    """The registered backbone nested in `model` (a sub-model named after a
    `list_backbones()` entry, as `build_pretrained` makes), or None.

    Examples:
        >>> from covidxray import build_cnn
        >>> find_backbone(build_cnn((64, 64, 1))) is None
        True
    """
    for layer in model.layers:
        if isinstance(layer, keras.Model) and layer.name in BACKBONES:
            return layer
    return None


def named_parts(
    model: keras.Model,
) -> tuple[keras.Model, keras.Model, keras.Model] | None:
    """`(stem, backbone, head)` of a model built as `build_pretrained` builds
    it, taken by name; None for any other model.

    The model qualifies when its layers are exactly an input and three
    sub-models of one input and one output each, named `"stem"`, a registered
    backbone and `"head"`, in that order, each one's output shape the next
    one's input shape. Each layer of a functional model lies on the way from
    its one input to its one output, so three one-input parts in this order
    are a chain.

    Examples:
        >>> from covidxray import build_cnn, build_pretrained
        >>> model = build_pretrained(
        ...     "mobilenetv2", input_shape=(32, 32, 1), weights=None)
        >>> [part.name for part in named_parts(model)]
        ['stem', 'mobilenetv2', 'head']
        >>> named_parts(build_cnn((64, 64, 1))) is None
        True
    """
    if isinstance(model, keras.Sequential) or not isinstance(model, keras.Model):
        return None
    inner = [la for la in model.layers if not isinstance(la, keras.layers.InputLayer)]
    if len(inner) != 3 or len(model.inputs) != 1 or len(model.outputs) != 1:
        return None
    stem, backbone, head = inner
    if not (
        all(isinstance(part, keras.Model) for part in inner)
        and stem.name == STEM
        and backbone.name in BACKBONES
        and head.name == HEAD
        and all(len(p.inputs) == 1 and len(p.outputs) == 1 for p in inner)
    ):
        return None
    shapes = [
        (model.input_shape, stem.input_shape),
        (stem.output_shape, backbone.input_shape),
        (backbone.output_shape, head.input_shape),
        (head.output_shape, model.output_shape),
    ]
    if any(tuple(a) != tuple(b) for a, b in shapes):
        return None
    return stem, backbone, head


def _chain(model: keras.Model) -> Chain:
    """The layers of a straight-chain model in order, with their call arguments.

    Raises:
        ValueError: The model is not a straight chain (one input, and each layer
            feeds only the next).
    """
    if isinstance(model, keras.Sequential):
        return [(layer, {}) for layer in model.layers]
    parts = named_parts(model)
    if parts is not None:
        stem, backbone, head = parts
        return [(stem, {}), (backbone, {"training": False}), (head, {})]
    return _keras_compat.functional_chain(model)


def _as_model(part: keras.layers.Layer, kwargs: dict[str, Any]) -> bool:
    """Whether a part of a chain is a one-input model used as it is."""
    return isinstance(part, keras.Model) and not kwargs and len(part.inputs) == 1


def split_at_backbone(
    model: keras.Model, backbone: keras.Model | None = None
) -> tuple[keras.Model, keras.Model]:
    """Split a model at its registered backbone: `features, head`.

    `features` runs the layers up to and including the backbone: its layers
    are the input, the layers before the backbone as one nested model (when
    there are any; the `"stem"` of a `build_pretrained` model), and the
    backbone. `head` runs the layers after it, one by one. Both share their
    layers (and so their weights) with `model`, and `head(features(x))`
    equals `model(x)`. Feature caching (run the frozen `features` once, train
    only `head`) and Grad-CAM both use it.

    Args:
        model: A model from `build_pretrained`, or another straight chain of
            layers with one nested registered backbone.
        backbone: Split at this nested model instead (one of `model.layers`),
            registered or not.

    Returns:
        `(features, head)`, two `keras.Model`s.

    Raises:
        ValueError: The model has no registered backbone, or it is not a
            straight chain (a skip connection or a second input around the
            backbone would be silently mis-wired by splitting).

    Examples:
        >>> import numpy as np
        >>> from covidxray import build_pretrained
        >>> model = build_pretrained(
        ...     "mobilenetv2", input_shape=(64, 64, 1), weights=None, head="gap")
        >>> features, head = split_at_backbone(model)
        >>> features.output_shape, head.output_shape
        ((None, 2, 2, 1280), (None, 1))
        >>> x = np.random.default_rng(0).random((2, 64, 64, 1)).astype("float32")
        >>> bool(np.allclose(head(features(x)), model(x), atol=1e-5))
        True
    """
    chain = _chain(model)
    target = backbone if backbone is not None else find_backbone(model)
    index = next((i for i, (layer, _) in enumerate(chain) if layer is target), None)
    if index is None and backbone is not None:
        raise ValueError(
            f"The `backbone` argument of split_at_backbone must be one of the "
            f"layers of '{model.name}'. Received: {backbone.name!r}."
        )
    if index is None:
        raise ValueError(
            f"The model '{model.name}' has no registered backbone to split at: "
            "expected a nested model named one of "
            f"{', '.join(list_backbones())}, as build_pretrained makes."
        )
    shape = tuple(model.input_shape[1:])
    stem = None
    if index == 1 and _as_model(*chain[0]):  # a named stem: used as it is
        stem = chain[0][0]
    elif index > 0:  # the layers before the backbone, as one nested model
        stem_input = keras.Input(shape, name="image")
        x = stem_input
        for layer, kwargs in chain[:index]:
            x = layer(x, **kwargs)
        stem = keras.Model(stem_input, x, name=f"{model.name}_stem")
    inputs = keras.Input(shape, name="image")
    backbone, backbone_kwargs = chain[index]
    x = backbone(stem(inputs) if stem is not None else inputs, **backbone_kwargs)
    features = keras.Model(inputs, x, name=f"{model.name}_features")
    after = chain[index + 1 :]
    if len(after) == 1 and _as_model(*after[0]):  # a named head: its layers
        part = after[0][0]
        outputs = part.outputs[0] if len(part.outputs) == 1 else part.outputs
        return features, keras.Model(part.inputs[0], outputs, name=f"{model.name}_head")
    head_input = keras.Input(tuple(x.shape[1:]), name="features")
    y = head_input
    for layer, kwargs in after:
        y = layer(y, **kwargs)
    head = keras.Model(head_input, y, name=f"{model.name}_head")
    return features, head


def unfreeze_backbone(model: keras.Model, n_layers: int | str = "all") -> keras.Model:
    """Make the registered backbone of `model` trainable, for fine-tuning.

    BatchNormalization layers stay frozen (their statistics, learnt on
    ImageNet, are not re-estimated from small batches of X-rays).

    Args:
        model: A model with a registered backbone, as `build_pretrained` makes.
        n_layers: `"all"`, or the number of the backbone's last layers to
            unfreeze.

    Returns:
        `model`, changed in place.

    Raises:
        ValueError: No registered backbone, or a bad `n_layers`.

    Examples:
        >>> from covidxray import build_pretrained
        >>> model = build_pretrained(
        ...     "mobilenetv2", input_shape=(64, 64, 1), weights=None)
        >>> backbone = unfreeze_backbone(model, 3).get_layer("mobilenetv2")
        >>> names = [layer.name for layer in backbone.layers if layer.trainable]
        >>> names == ["Conv_1", "out_relu"]  # Conv_1_bn, a BatchNorm, stays frozen
        True
    """
    backbone = find_backbone(model)
    if backbone is None:
        raise ValueError(
            f"The model '{model.name}' has no registered backbone to unfreeze."
        )
    if n_layers != "all" and (
        isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1
    ):
        raise ValueError(
            "The `n_layers` argument of unfreeze must be 'all' or a positive "
            f"integer. Received: {n_layers!r}."
        )
    backbone.trainable = True
    if n_layers != "all":
        for layer in backbone.layers[: -int(n_layers)]:
            layer.trainable = False
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return model
