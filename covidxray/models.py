"""Model builders: the seed's CNN and pretrained backbones with their heads.

Every model takes images in [0, 1] with 1 or 3 channels and does its own
preprocessing inside (channel repeat, the backbone's normalisation), with
serialisable layers. A saved model therefore predicts on raw pixels by itself.
"""

from __future__ import annotations

import logging
import os
import urllib.error
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
from keras import layers, ops

from .errors import WeightsUnavailableError

logger = logging.getLogger("covidxray")

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackbonePreprocess",
    "ChannelRepeat",
    "build_cnn",
    "build_pretrained",
    "find_backbone",
    "get_backbone",
    "keras_cache_dir",
    "list_backbones",
    "split_at_backbone",
    "unfreeze_backbone",
]

PREPROCESS_MODES = ("caffe", "tf", "torch", "raw255", "none")


@keras.saving.register_keras_serializable(package="covidxray")
class ChannelRepeat(layers.Layer):
    """Repeat a 1-channel image to `channels` channels (identity otherwise).

    Examples:
        >>> import numpy as np
        >>> tuple(ChannelRepeat()(np.zeros((2, 4, 4, 1), "float32")).shape)
        (2, 4, 4, 3)
    """

    def __init__(self, channels: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channels = channels

    def call(self, inputs: Any) -> Any:
        if inputs.shape[-1] == 1 and self.channels != 1:
            return ops.repeat(inputs, self.channels, axis=-1)
        return inputs

    def compute_output_shape(
        self, input_shape: Sequence[int | None]
    ) -> tuple[int | None, ...]:
        return (*input_shape[:-1], self.channels)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "channels": self.channels}


@keras.saving.register_keras_serializable(package="covidxray")
class BackbonePreprocess(layers.Layer):
    """A backbone's input normalisation, applied to RGB images in [0, 1].

    Modes, as in `keras.applications.*.preprocess_input`:

    - `"caffe"`: scale to [0, 255], RGB to BGR, subtract the ImageNet mean (VGG,
      ResNet v1).
    - `"tf"`: scale to [-1, 1] (MobileNet, ResNet v2).
    - `"torch"`: subtract the ImageNet mean and divide by its std (DenseNet).
    - `"raw255"`: scale to [0, 255]; the backbone normalises itself (EfficientNet).
    - `"none"`: leave as is.

    Examples:
        >>> import numpy as np
        >>> x = np.full((1, 2, 2, 3), 0.5, "float32")
        >>> float(BackbonePreprocess("tf")(x)[0, 0, 0, 0])
        0.0
    """

    _MEAN = (0.485, 0.456, 0.406)
    _STD = (0.229, 0.224, 0.225)
    _CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

    def __init__(self, mode: str = "none", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in PREPROCESS_MODES:
            raise ValueError(
                f"The `mode` argument of BackbonePreprocess must be one of "
                f"{', '.join(repr(m) for m in PREPROCESS_MODES)}. Received: {mode!r}."
            )
        self.mode = mode

    def call(self, inputs: Any) -> Any:
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "tf":
            return x * 2.0 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(self._MEAN, dtype=x.dtype)
            std = ops.convert_to_tensor(self._STD, dtype=x.dtype)
            return (x - mean) / std
        if self.mode == "caffe":
            bgr = ops.flip(x * 255.0, axis=-1)
            return bgr - ops.convert_to_tensor(self._CAFFE_MEAN_BGR, dtype=x.dtype)
        if self.mode == "raw255":
            return x * 255.0
        return x

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


def _rows(size: int, allowed: Sequence[int]) -> int:
    return size if size in allowed else 224


@dataclass(frozen=True)
class Backbone:
    """A registered backbone.

    Attributes:
        name: Registry name (`"resnet50"`).
        constructor: The `keras.applications` function.
        preprocessing: `BackbonePreprocess` mode applied inside the model.
        default_size: The input size the ImageNet weights were trained at.
        weights_file: Keras' file name of the no-top ImageNet weights; `{rows}`
            stands for the input size where the file depends on it.
        sizes: Input sizes with their own weight files (MobileNets).
    """

    name: str
    constructor: Callable[..., keras.Model]
    preprocessing: str
    weights_file: str
    default_size: int = 224
    sizes: tuple[int, ...] = ()

    def weights_file_for(self, input_size: int | None = None) -> str:
        """The Keras weight file name for an input of `input_size` pixels."""
        rows = _rows(input_size or self.default_size, self.sizes) if self.sizes else 224
        return self.weights_file.format(rows=rows)


_apps = keras.applications
BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in [
        Backbone(
            name="densenet121",
            constructor=_apps.DenseNet121,
            preprocessing="torch",
            weights_file="densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        Backbone(
            name="densenet201",
            constructor=_apps.DenseNet201,
            preprocessing="torch",
            weights_file="densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        Backbone(
            name="efficientnetb0",
            constructor=_apps.EfficientNetB0,
            preprocessing="raw255",
            weights_file="efficientnetb0_notop.h5",
        ),
        Backbone(
            name="mobilenet",
            constructor=_apps.MobileNet,
            preprocessing="tf",
            weights_file="mobilenet_1_0_{rows}_tf_no_top.h5",
            sizes=(128, 160, 192, 224),
        ),
        Backbone(
            name="mobilenetv2",
            constructor=_apps.MobileNetV2,
            preprocessing="tf",
            weights_file=(
                "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"
            ),
            sizes=(96, 128, 160, 192, 224),
        ),
        Backbone(
            name="resnet101v2",
            constructor=_apps.ResNet101V2,
            preprocessing="tf",
            weights_file="resnet101v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        Backbone(
            name="resnet50",
            constructor=_apps.ResNet50,
            preprocessing="caffe",
            weights_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        Backbone(
            name="resnet50v2",
            constructor=_apps.ResNet50V2,
            preprocessing="tf",
            weights_file="resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        Backbone(
            name="vgg16",
            constructor=_apps.VGG16,
            preprocessing="caffe",
            weights_file="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
    ]
}


def get_backbone(name: str) -> Backbone:
    """The registered backbone called `name`.

    Raises:
        ValueError: Unknown name; the message lists the registered ones.

    Examples:
        >>> get_backbone("densenet201").preprocessing
        'torch'
    """
    if name not in BACKBONES:
        raise ValueError(
            f"Unknown backbone {name!r}. Valid names: {', '.join(list_backbones())}."
        )
    return BACKBONES[name]


def list_backbones() -> list[str]:
    """Names of the registered backbones, sorted.

    Examples:
        >>> from covidxray import list_backbones
        >>> "resnet50" in list_backbones() and "densenet201" in list_backbones()
        True
    """
    return sorted(BACKBONES)


def keras_cache_dir() -> Path:
    """The folder where Keras caches downloaded weights (`$KERAS_HOME/models`).

    Keras reads `KERAS_HOME` once, when it is imported; this asks Keras for
    the folder it settled on, and falls back to the environment."""
    try:
        from keras.src.backend import config as keras_config

        base = str(keras_config.keras_home())
    except (ImportError, AttributeError):  # pragma: no cover - other Keras layouts
        base = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return Path(os.path.expanduser(base)) / "models"


def build_cnn(
    input_shape: Sequence[int] = (256, 256, 3),
    *,
    num_classes: int = 2,
    dropout: float = 0.25,
    name: str = "seed_cnn",
) -> keras.Model:
    """The seed project's custom CNN, exactly.

    Conv2D(64, 3, strides=3, relu) -> MaxPool(2) -> Dropout -> Conv2D(32, 3,
    strides=3, relu) -> MaxPool(2) -> Dropout -> Flatten -> Dense(256, relu) ->
    Dense(1, sigmoid), or Dense(num_classes, softmax) for more than 2 classes.
    The Keras 2 call `Convolution2D(64, 3, 3)` meant strides 3, which is why the
    first feature map is 85 x 85 at 256 x 256. Inputs are images in [0, 1].

    Args:
        input_shape: `(height, width, channels)`; 1 or 3 channels.
        num_classes: 2 gives one sigmoid output (P(class 1)); more gives softmax.
        dropout: Rate of both dropout layers (the seed recorded none; 0.25).
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
            "seed CNN has two stride-3 convolutions and two 2x2 poolings. "
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


def _is_download_failure(exc: BaseException) -> bool:
    text = str(exc)
    return (
        isinstance(exc, urllib.error.URLError | ConnectionError | TimeoutError)
        or "URL fetch failure" in text
        or "corrupted file" in text
        or type(exc) is Exception  # keras.utils.get_file re-raises as bare Exception
    )


def _weights_error(
    backbone: Backbone, size: int, reason: str
) -> WeightsUnavailableError:
    file_name = backbone.weights_file_for(size)
    cache = keras_cache_dir()
    return WeightsUnavailableError(
        f"Could not get the ImageNet weights of backbone '{backbone.name}' "
        f"(Keras file '{file_name}'): {reason}. Without network access, download "
        f"that file on another machine and put it in '{cache}' (the Keras cache; "
        "set KERAS_HOME to move it), or pass weights='/path/to/"
        f"{file_name}' or weights='/folder/holding/it'. Use weights=None to start "
        "from random weights."
    )


def _resolve_weights(
    backbone: Backbone, weights: str | os.PathLike[str] | None, size: int
) -> str | None:
    if weights is None or weights == "imagenet":
        return weights
    path = Path(weights)
    if path.is_dir():
        path = path / backbone.weights_file_for(size)
    if not path.is_file():
        raise _weights_error(backbone, size, f"no weights file at '{path}'")
    return str(path)


def build_pretrained(
    backbone: str,
    *,
    input_shape: Sequence[int] = (224, 224, 3),
    weights: str | os.PathLike[str] | None = "imagenet",
    trainable: bool = False,
    num_classes: int = 2,
    head: str = "seed",
    dropout: float = 0.5,
) -> keras.Model:
    """A `keras.applications` backbone with a classification head.

    The model takes images in [0, 1] with 1 or 3 channels. One channel is
    repeated to three, and the backbone's own preprocessing is applied inside
    the model, so nothing needs to be done to the images outside it.

    Args:
        backbone: A name from `list_backbones()`.
        input_shape: `(height, width, channels)`, 1 or 3 channels, at least 32.
        weights: `"imagenet"` (downloaded and cached by Keras), None (random),
            or a path to a weights file or to a folder holding the Keras file.
        trainable: Whether the backbone is trainable (False freezes it, as the
            seed did).
        num_classes: 2 gives one sigmoid output; more gives softmax.
        head: `"seed"` is the seed's AveragePooling2D(2) -> Flatten ->
            Dense(64, relu) -> Dropout -> output; `"gap"` is global average
            pooling -> Dropout -> output.
        dropout: Dropout rate of the head.

    Returns:
        An uncompiled `keras.Model`; the backbone is the nested model named
        after it.

    Raises:
        ValueError: Unknown backbone or head (the message lists valid names).
        WeightsUnavailableError: The ImageNet weights could not be downloaded
            or the given file does not exist.

    Examples:
        >>> from covidxray import build_pretrained
        >>> model = build_pretrained(
        ...     "mobilenetv2", input_shape=(64, 64, 1), weights=None)
        >>> model.output_shape, model.get_layer("mobilenetv2").trainable
        ((None, 1), False)
    """
    spec = get_backbone(backbone)
    if head not in ("seed", "gap"):
        raise ValueError(
            f"The `head` argument of build_pretrained must be one of 'seed', 'gap'. "
            f"Received: {head!r}."
        )
    _check_classes(num_classes)
    height, width, channels = (int(v) for v in input_shape)
    if channels not in (1, 3):
        raise ValueError(
            "The `input_shape` argument of build_pretrained must have 1 or 3 channels. "
            f"Received: {tuple(input_shape)!r}."
        )
    resolved = _resolve_weights(spec, weights, height)
    try:
        base = spec.constructor(
            include_top=False, weights=resolved, input_shape=(height, width, 3)
        )
    except (ValueError, TypeError) as exc:
        if resolved is not None and _is_download_failure(exc):
            raise _weights_error(spec, height, str(exc)) from exc
        raise
    except Exception as exc:
        if (
            resolved is not None
            and _is_download_failure(exc)
            or isinstance(exc, OSError)
        ):
            raise _weights_error(spec, height, str(exc)) from exc
        raise
    base.name = backbone
    base.trainable = trainable

    inputs = keras.Input((height, width, channels), name="image")
    x = ChannelRepeat(3, name="channel_repeat")(inputs)
    x = BackbonePreprocess(spec.preprocessing, name="preprocess")(x)
    x = base(x, training=False)
    if head == "seed":
        pool = max(1, min(2, int(x.shape[1] or 1), int(x.shape[2] or 1)))
        x = layers.AveragePooling2D(pool, name="head_pool")(x)
        x = layers.Flatten(name="head_flatten")(x)
        x = layers.Dense(64, activation="relu", name="head_dense")(x)
        x = layers.Dropout(dropout, name="head_dropout")(x)
    else:
        x = layers.GlobalAveragePooling2D(name="head_pool")(x)
        x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = _output_layer(num_classes)(x)
    return keras.Model(inputs, outputs, name=f"{backbone}_{head}")


# --------------------------------------------------------------------------- surgery


def find_backbone(model: keras.Model) -> keras.Model | None:
    """The registered backbone nested in `model` (a sub-model named after a
    `list_backbones()` entry, as `build_pretrained` makes), or None.

    Examples:
        >>> find_backbone(build_cnn((64, 64, 1))) is None
        True
    """
    for layer in model.layers:
        if isinstance(layer, keras.Model) and layer.name in BACKBONES:
            return layer
    return None


def _chain(model: keras.Model) -> list[tuple[layers.Layer, dict[str, Any]]]:
    """The layers of a straight-chain model in order, with their call arguments.

    Raises:
        ValueError: The model is not a straight chain (one input, and each layer
            feeds only the next).
    """
    if isinstance(model, keras.Sequential):
        return [(layer, {}) for layer in model.layers]
    by_depth = getattr(model, "_nodes_by_depth", None)
    if by_depth is None:
        raise ValueError(
            f"Cannot read the layer graph of the model '{model.name}' "
            f"({type(model).__name__}); expected a functional or Sequential model."
        )
    chain: list[tuple[layers.Layer, dict[str, Any]]] = []
    previous = None
    for depth in sorted(by_depth, reverse=True):  # the input sits deepest
        nodes = by_depth[depth]
        node = nodes[0]
        sources = [t._keras_history.operation for t in node.input_tensors]
        straight = len(nodes) == 1 and (
            sources == [previous] if previous is not None else node.is_input
        )
        if not straight:
            names = ", ".join(n.operation.name for n in nodes)
            raise ValueError(
                f"The model '{model.name}' is not a straight chain of layers: at "
                f"depth {depth} it has {names}, fed by "
                f"{[s.name for s in sources] or 'nothing'}. Feature caching and "
                "Grad-CAM split a model at its backbone, which needs each layer "
                "to feed only the next. Pass cache_features=False to fit, or "
                "build the model as one chain."
            )
        if not node.is_input:
            kwargs = dict(node.arguments.kwargs) if node.arguments else {}
            kwargs = {k: v for k, v in kwargs.items() if v is not None}
            chain.append((node.operation, kwargs))
        previous = node.operation
    return chain


def split_at_backbone(
    model: keras.Model, backbone: keras.Model | None = None
) -> tuple[keras.Model, keras.Model]:
    """Split a model at its registered backbone: `features, head`.

    `features` runs the layers up to and including the backbone: its layers
    are the input, the layers before the backbone as one nested model (when
    there are any), and the backbone. `head` runs the layers after it. Both
    share their layers (and so their weights) with `model`, and
    `head(features(x))` equals `model(x)`. Feature caching (run the frozen
    `features` once, train only `head`) and Grad-CAM both use it.

    Args:
        model: A straight chain of layers with one nested registered backbone,
            as `build_pretrained` makes.
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
    if index > 0:  # the layers before the backbone, as one nested model
        stem_input = keras.Input(shape, name="image")
        x = stem_input
        for layer, kwargs in chain[:index]:
            x = layer(x, **kwargs)
        stem = keras.Model(stem_input, x, name=f"{model.name}_stem")
    inputs = keras.Input(shape, name="image")
    backbone, backbone_kwargs = chain[index]
    x = backbone(stem(inputs) if stem is not None else inputs, **backbone_kwargs)
    features = keras.Model(inputs, x, name=f"{model.name}_features")
    head_input = keras.Input(tuple(x.shape[1:]), name="features")
    y = head_input
    for layer, kwargs in chain[index + 1 :]:
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
