"""The training losses and how a model is compiled for `fit`.

`SpectralDecoupling` keeps its registered Keras name
(`"covidxray>SpectralDecoupling"`), which model files store (see
`docs/architecture.md`).
"""

from __future__ import annotations

from typing import Any

import keras

from .._validation import check_choice

__all__ = ["OPTIMIZERS", "SpectralDecoupling", "compile_for", "loss_and_metrics"]

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}


@keras.saving.register_keras_serializable(package="covidxray")
class SpectralDecoupling(keras.losses.Loss):
    """Cross-entropy plus `strength / 2` times the mean squared logit
    (spectral decoupling, Pohjonen et al., iScience 2022).

    The logits are recovered from the model's probabilities: `log(p / (1 - p))`
    for one sigmoid unit, centred log-probabilities for a softmax.

    Examples:
        >>> import numpy as np
        >>> loss = SpectralDecoupling(0.1)
        >>> y, p = np.array([[1.0]]), np.array([[0.9]])
        >>> plain = float(keras.losses.binary_crossentropy(y, p)[0])
        >>> round(float(loss(y, p)) - plain, 4)  # 0.05 * log(9) ** 2
        0.2414
    """

    def __init__(
        self, strength: float = 0.01, name: str = "spectral_decoupling", **kwargs: Any
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.strength = float(strength)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        from keras import ops

        eps = keras.config.epsilon()
        p = ops.clip(y_pred, eps, 1.0 - eps)
        if y_pred.shape[-1] == 1:
            y_true = ops.reshape(ops.cast(y_true, y_pred.dtype), (-1, 1))
            base = keras.losses.binary_crossentropy(y_true, y_pred)
            logits = ops.log(p) - ops.log(1.0 - p)
        else:
            base = keras.losses.sparse_categorical_crossentropy(
                ops.reshape(y_true, (-1,)), y_pred
            )
            logs = ops.log(p)
            logits = logs - ops.mean(logs, axis=-1, keepdims=True)
        return base + self.strength / 2.0 * ops.mean(ops.square(logits), axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "strength": self.strength}


def loss_and_metrics(units: int) -> tuple[Any, list[Any]]:
    """The loss and fresh metrics for a model with `units` outputs: binary
    cross-entropy, accuracy and AUC for one sigmoid unit, else sparse
    categorical cross-entropy and accuracy."""
    if units == 1:
        return keras.losses.BinaryCrossentropy(), [
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.AUC(name="auc"),
        ]
    return keras.losses.SparseCategoricalCrossentropy(), [
        keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    ]


def compile_for(
    model: keras.Model,
    optimizer: str | keras.optimizers.Optimizer,
    learning_rate: float,
    spectral_decoupling: float = 0.0,
    steps_per_execution: int = 1,
) -> None:
    """Compile with a fresh optimizer, and the loss and metrics its output needs:
    binary cross-entropy, accuracy and AUC for one sigmoid unit, else sparse
    categorical cross-entropy and accuracy; with `spectral_decoupling`, the
    loss adds that L2 penalty on the logits. `steps_per_execution` runs that
    many training steps per call into TensorFlow (the same updates, less
    Python between them)."""
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        check_choice("optimizer", optimizer, tuple(OPTIMIZERS), "Classifier")
        optimizer = OPTIMIZERS[str(optimizer)](learning_rate=learning_rate)
    loss, metrics = loss_and_metrics(model.output_shape[-1])
    if spectral_decoupling < 0:
        raise ValueError(
            "The `spectral_decoupling` argument of Classifier must be >= 0. "
            f"Received: {spectral_decoupling!r}."
        )
    if spectral_decoupling:
        loss = SpectralDecoupling(spectral_decoupling)
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=metrics,
        steps_per_execution=steps_per_execution,
    )
