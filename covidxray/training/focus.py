"""Right for the right reasons: a penalty on the model's input gradients
outside the lungs (`Classifier(lung_focus=...)`).

After Ross, Hughes and Doshi-Velez (IJCAI 2017): the loss gains `strength`
times the sum, over the pixels outside the lungs, of the squared gradient of
the model's output with respect to the input, averaged over a batch. The
output is the logit for one sigmoid unit, else the sum of the
log-probabilities (as in Ross et al.). A model that ranks images by what lies
outside the lungs has large gradients there, and pays for them.

The penalty is taken on clean training images with their lung masks, drawn
in their own shuffled stream beside the (augmented) training batches: an
augmentation that moves the image would have to move the mask too, and the
penalty's expectation over the training set is the same either way. See
`docs/guides/lungs.md`.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

__all__ = [
    "LungFocusTrainer",
    "focus_batches",
    "input_gradient_outside",
    "with_focus",
]


def input_gradient_outside(
    model: keras.Model, images: tf.Tensor, outside: tf.Tensor, *, training: bool
) -> tf.Tensor:
    """Per image, the sum of squared input gradients of the model's output
    over the pixels where `outside` is 1.

    Args:
        model: A Keras model of images in [0, 1].
        images: float32 `(N, H, W, C)`.
        outside: float32 `(N, H, W)`: 1 outside the lungs, 0 inside.
        training: Run the model in training mode.

    Returns:
        float32 `(N,)`.

    Examples:
        >>> import numpy as np, keras
        >>> inputs = keras.Input((2, 2, 1))
        >>> model = keras.Model(inputs, keras.layers.Flatten()(inputs)[:, :1])
        >>> x = np.full((1, 2, 2, 1), 0.5, np.float32)  # the output: 0.5
        >>> outside = np.zeros((1, 2, 2), np.float32); outside[0, 0, 0] = 1
        >>> # d logit / dp = 1 / (p (1 - p)) = 4 at p = 0.5, squared: 16
        >>> round(float(input_gradient_outside(model, x, outside, training=False)[0]))
        16
    """
    images = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(images)
        p = tf.convert_to_tensor(model(images, training=training))
        # No clipping: a clipped probability has no gradient, and the
        # penalty would vanish on the confident images a shortcut makes.
        eps = keras.config.epsilon()
        if p.shape[-1] == 1:  # a sigmoid unit: its logit
            score = tf.math.log(p + eps) - tf.math.log1p(eps - p)
        else:  # a softmax: the sum of the log-probabilities
            score = tf.math.log(p + eps)
        total = tf.reduce_sum(score)
    grads = tape.gradient(total, images)
    squared = tf.reduce_sum(tf.square(grads), axis=-1)  # over channels
    return tf.reduce_sum(squared * tf.cast(outside, tf.float32), axis=[1, 2])


def focus_batches(
    images: np.ndarray, masks: np.ndarray, batch_size: int, seed: int | None
) -> tf.data.Dataset:
    """An endless, reshuffled stream of `(images in [0, 1], outside-the-lungs
    maps)` batches of clean training images, for the penalty.

    Args:
        images: uint8 `(N, H, W, C)`.
        masks: bool `(N, H, W)`: True is lung.
        batch_size: Images per batch.
        seed: Seed of the shuffle.

    Raises:
        ValueError: The arrays do not match, or no mask holds any lung.
    """
    images, masks = np.asarray(images), np.asarray(masks, bool)
    if images.ndim != 4 or masks.shape != images.shape[:3]:
        raise ValueError(
            "lung_focus needs one lung mask (H, W) per training image "
            f"(`lung_masks`): the images have shape {images.shape}, the masks "
            f"{masks.shape}."
        )
    if not masks.any():
        raise ValueError(
            "lung_focus needs lung masks, and none of the "
            f"{len(masks)} training images has any lung in its mask."
        )
    outside = ~masks
    shape = images.shape[1:]

    def gather(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return images[idx], outside[idx]

    def load(idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x, m = tf.numpy_function(gather, [idx], (tf.uint8, tf.bool), stateful=False)
        x = tf.ensure_shape(x, (None, *shape))
        m = tf.ensure_shape(m, (None, *shape[:2]))
        return tf.cast(x, tf.float32) / 255.0, tf.cast(m, tf.float32)

    # Indices are shuffled, rows gathered: the images are not copied again.
    order = tf.data.Dataset.range(len(images)).shuffle(
        len(images), seed=seed, reshuffle_each_iteration=True
    )
    return order.repeat().batch(batch_size).map(load, num_parallel_calls=2)


class LungFocusTrainer(keras.Model):
    """Trains `model` (sharing its weights) with the lung-focus penalty.

    Its training batches are `((images, clean_images, outside), labels)`,
    as `with_focus` makes them; anything else it is given (validation
    batches, prediction) goes straight to `model`. The training `loss` it
    reports is the loss trained, with the penalty; the penalty's running
    mean is also reported alone, as `lung_focus_penalty` (validation
    losses have no penalty). It is never saved: `model` is.

    Args:
        model: The Keras model being fitted.
        strength: The penalty's weight (`Classifier.lung_focus`).
    """

    def __init__(self, model: keras.Model, strength: float, **kwargs: Any) -> None:
        super().__init__(name=f"{model.name}_lung_focus", **kwargs)
        self.inner = model
        self.strength = float(strength)
        self.penalty_tracker = keras.metrics.Mean(name="lung_focus_penalty")

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if isinstance(inputs, (tuple, list)):
            inputs = inputs[0]
        return self.inner(inputs, training=training)

    def train_step(self, data: Any) -> dict[str, Any]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        images, clean, outside = x
        with tf.GradientTape() as tape:
            y_pred = self.inner(images, training=True)
            loss = self.compute_loss(
                x=images, y=y, y_pred=y_pred, sample_weight=sample_weight
            )
            penalty = tf.reduce_mean(
                input_gradient_outside(self.inner, clean, outside, training=False)
            )
            total = loss + self.strength * penalty
        variables = self.inner.trainable_variables
        grads = tape.gradient(total, variables)
        self.optimizer.apply(grads, variables)
        size = tf.shape(images)[0]
        self.penalty_tracker.update_state(penalty, sample_weight=size)
        for metric in self.metrics:
            if metric is self.penalty_tracker:
                continue
            if metric.name == "loss":  # the loss trained: with the penalty
                metric.update_state(total, sample_weight=size)
            else:
                metric.update_state(y, y_pred, sample_weight=sample_weight)
        return self.get_metrics_result()


def with_focus(train_ds: tf.data.Dataset, focus: tf.data.Dataset) -> tf.data.Dataset:
    """Training batches `(images, labels)` joined with the penalty's stream:
    `((images, clean_images, outside), labels)`."""
    joined = tf.data.Dataset.zip((train_ds, focus))
    return joined.map(
        lambda batch, clean: ((batch[0], clean[0], clean[1]), batch[1]),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
