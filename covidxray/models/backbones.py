"""The backbone registry: each `keras.applications` backbone with its own
preprocessing, its input size and the Keras file of its ImageNet weights, and
where those weights come from (the Keras cache, a file or a folder).

A new backbone is one `Backbone` entry in `BACKBONES` (see
`docs/architecture.md`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras

from .. import _keras_compat
from ..errors import WeightsUnavailableError

__all__ = [
    "BACKBONES",
    "Backbone",
    "get_backbone",
    "keras_cache_dir",
    "list_backbones",
]


def _rows(size: int, allowed: tuple[int, ...]) -> int:
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

    Examples:
        >>> from covidxray.models import get_backbone
        >>> get_backbone("mobilenetv2").weights_file_for(160)
        'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5'
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
    the folder it settled on, and falls back to the environment.

    Examples:
        >>> keras_cache_dir().name
        'models'
    """
    return Path(os.path.expanduser(_keras_compat.keras_home())) / "models"


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


def construct(
    spec: Backbone,
    weights: str | os.PathLike[str] | None,
    input_shape: tuple[int, int],
) -> keras.Model:
    """The backbone `spec` without its top, for RGB inputs of `input_shape`
    (height, width), its weights resolved and loaded; named after its entry.

    Raises:
        WeightsUnavailableError: The weights could not be downloaded, or the
            given file does not exist.
    """
    height, width = input_shape
    resolved = _resolve_weights(spec, weights, height)
    try:
        base = spec.constructor(
            include_top=False, weights=resolved, input_shape=(height, width, 3)
        )
    except (ValueError, TypeError) as exc:
        if resolved is not None and _keras_compat.is_download_failure(exc):
            raise _weights_error(spec, height, str(exc)) from exc
        raise
    except Exception as exc:
        if (
            resolved is not None
            and _keras_compat.is_download_failure(exc)
            or isinstance(exc, OSError)
        ):
            raise _weights_error(spec, height, str(exc)) from exc
        raise
    base.name = spec.name
    return base
