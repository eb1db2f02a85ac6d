"""The in-model preprocessing layers: channel repeat and a backbone's normalisation.

Both are serialisable Keras layers, so that a saved model does its own
preprocessing (see `docs/architecture.md`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import layers, ops

__all__ = ["PREPROCESS_MODES", "BackbonePreprocess", "ChannelRepeat"]

PREPROCESS_MODES = ("caffe", "tf", "torch", "raw255", "none")


# The registered names ("covidxray>ChannelRepeat") are what model files store:
# they stay as they are wherever the classes live.
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
