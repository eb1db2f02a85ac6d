"""The training loops: Keras' `fit`, or a loop of our own under a
multi-worker strategy, on the images or on a frozen backbone's cached
features.

Everything here is a function with explicit arguments; nothing imports
`covidxray.classifier`, which calls into this package (see
`docs/architecture.md`).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from .. import _keras_compat
from ..features import FeatureCache, cached_batches
from .callbacks import ShowFullModel, own_callbacks
from .focus import LungFocusTrainer, with_focus
from .losses import compile_for, loss_and_metrics

__all__ = [
    "HEAD_STEPS_PER_EXECUTION",
    "FitResult",
    "multi_worker_fit",
    "prepare",
    "train",
    "worker_shard",
]

#: Steps per call into TensorFlow while a head trains on cached features: a
#: small head's step is so quick that Python between steps would dominate.
HEAD_STEPS_PER_EXECUTION = 32


def prepare(
    model: keras.Model,
    strategy: tf.distribute.Strategy | None,
    compile_model: Callable[[keras.Model], None],
) -> keras.Model:
    """The model to train, compiled: `model` itself when it lives in the
    strategy's scope (the default strategy when `strategy` is None), else its
    clone in that scope with the same weights."""
    target = strategy or tf.distribute.get_strategy()
    if getattr(model, "distribute_strategy", target) is target:
        compile_model(model)
        return model
    with target.scope():
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        compile_model(clone)
    return clone


def worker_shard(strategy: Any) -> tuple[int, int] | None:
    """`(this worker's index, workers)` under a multi-worker strategy whose
    cluster has two or more tasks (`TF_CONFIG`); else None. The chief, when
    the cluster names one, is index 0."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return None
    spec = resolver.cluster_spec().as_dict()
    chiefs, workers = len(spec.get("chief", [])), len(spec.get("worker", []))
    if chiefs + workers < 2 or resolver.task_type not in ("chief", "worker"):
        return None
    offset = chiefs if resolver.task_type == "worker" else 0
    return (int(resolver.task_id or 0) + offset, chiefs + workers)


def _per_sample_loss(model: keras.Model) -> Callable[[Any, Any], Any]:
    """The compiled loss of `model`, one value per sample."""
    loss = model.loss
    binary = model.output_shape[-1] == 1

    def per_sample(y: Any, p: Any) -> Any:
        if binary:
            y = tf.reshape(tf.cast(y, p.dtype), (-1, 1))
        return tf.reshape(loss.call(y, p), (-1,))

    return per_sample


def multi_worker_fit(
    model: keras.Model,
    *,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset | None,
    epochs: int,
    class_weight: dict[int, float] | None,
    callbacks: Sequence[keras.callbacks.Callback],
) -> dict[str, list[float]]:
    """A training loop for `MultiWorkerMirroredStrategy`, which Keras 3's
    `model.fit` does not run (keras-team/keras#20585).

    Each worker's batches (already sharded) are split over its replicas; each
    step averages the loss over the global batch and the strategy all-reduces
    the gradients, so every worker applies the same update. Keras callbacks
    get `loss` and `val_loss` at each epoch's end, as from `fit`, and a
    `BackupAndRestore` backup sets the epoch to resume from.

    Returns:
        The history: `loss`, and `val_loss` with validation data.
    """
    strategy = model.distribute_strategy
    per_sample = _per_sample_loss(model)
    n_classes = max(2, int(model.output_shape[-1]))
    weights = (
        tf.constant([float(class_weight.get(i, 1.0)) for i in range(n_classes)])
        if class_weight
        else None
    )
    optimizer = model.optimizer

    def replica_step(x: Any, y: Any, train: bool) -> tuple[Any, Any]:
        context = tf.distribute.get_replica_context()
        count = tf.cast(tf.shape(y)[0], tf.float32)
        total = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
        with tf.GradientTape() as tape:
            values = per_sample(y, model(x, training=train))
            if weights is not None and train:
                values = values * tf.gather(
                    weights, tf.cast(tf.reshape(y, (-1,)), tf.int32)
                )
            loss = tf.reduce_sum(values) / tf.maximum(total, 1.0)
        if train:
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(
                zip(grads, model.trainable_variables, strict=True)
            )
        return tf.reduce_sum(values), count

    @tf.function
    def step(x: Any, y: Any, train: bool) -> tuple[Any, Any]:
        value, count = strategy.run(replica_step, args=(x, y, train))
        return (
            strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None),
            strategy.reduce(tf.distribute.ReduceOp.SUM, count, axis=None),
        )

    def mean_loss(ds: tf.data.Dataset, train: bool) -> float:
        total = count = 0.0
        for x, y in strategy.experimental_distribute_dataset(ds):
            value, n = step(x, y, train)
            total, count = total + float(value), count + float(n)
        return total / max(count, 1.0)

    history: dict[str, list[float]] = {"loss": []}
    if val_ds is not None:
        history["val_loss"] = []
    hooks = keras.callbacks.CallbackList(list(callbacks), model=model, epochs=epochs)
    model.stop_training = False
    _keras_compat.reset_initial_epoch(model)
    with strategy.scope():  # a backup restores the optimizer: its variables too
        hooks.on_train_begin()
    for epoch in range(_keras_compat.initial_epoch(model), epochs):
        hooks.on_epoch_begin(epoch)
        logs = {"loss": mean_loss(train_ds, True)}
        if val_ds is not None:
            logs["val_loss"] = mean_loss(val_ds, False)
        for key, value in logs.items():
            history[key].append(value)
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    hooks.on_train_end()
    return history


@dataclass(frozen=True)
class FitResult:
    """What one `train` call did."""

    history: dict[str, list[float]]
    seconds: float
    feature_cache_used: bool


def train(
    model: keras.Model,
    *,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset | None,
    epochs: int,
    class_weight: dict[int, float] | None,
    save: Callable[[Path, int, str, float], Any],
    checkpoint: str | os.PathLike[str] | None,
    early_stopping: int | None,
    user_callbacks: Sequence[keras.callbacks.Callback],
    cache_features: bool,
    verbose: str | int,
    seed: int | None,
    feature_cache: FeatureCache | None = None,
    lung_focus: tuple[float, tf.data.Dataset] | None = None,
) -> FitResult:
    """Train `model` (already compiled), or only its head on cached features.

    With `cache_features`, the model is split at its frozen backbone, the
    backbone runs once over the images `feature_cache` (by default a new one)
    lacks, and only the head (which shares its layers with `model`) trains;
    `user_callbacks` still see the full model.
    With `lung_focus`, `(strength, focus_batches(...))`, a `LungFocusTrainer`
    trains `model` with the penalty on the input gradients outside the lungs
    (never with cached features or under a tf.distribute strategy).
    Our own callbacks (`own_callbacks`, with `save`, `checkpoint` and
    `early_stopping`) run first, so that an exception raised by a user
    callback at the end of an epoch comes after that epoch's backup.
    """
    # Features are never cached under a strategy: the head's is the model's.
    worker = worker_shard(getattr(model, "distribute_strategy", None))
    callbacks = own_callbacks(
        save,
        monitor="val_loss" if val_ds is not None else "loss",
        checkpoint=checkpoint,
        early_stopping=early_stopping,
        worker=worker,
    )
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 0
    start = time.perf_counter()
    trainee = model
    if cache_features:
        cache = feature_cache if feature_cache is not None else FeatureCache()
        parts = cache._parts(model)
        if parts is None:  # use_feature_cache said it could be: a bug if here
            raise ValueError(
                f"fit(cache_features=...) cannot cache the features of model "
                f"'{model.name}': it has no frozen backbone it splits at."
            )
        train_ds, val_ds = cached_batches(cache, parts, train_ds, val_ds, seed)
        # The head trains with the full model's optimizer, so a callback that
        # changes `model.optimizer` (a learning-rate schedule) changes training.
        head = parts.head
        compile_for(
            head,
            model.optimizer,
            0.0,
            getattr(model.loss, "strength", 0.0),
            steps_per_execution=HEAD_STEPS_PER_EXECUTION,
        )
        trainee = head
        user_callbacks = [ShowFullModel(c, model) for c in user_callbacks]
    if lung_focus is not None:
        strategy = getattr(model, "distribute_strategy", None)
        default = tf.distribute.get_strategy()
        if cache_features or (strategy is not None and strategy is not default):
            raise ValueError(
                "lung_focus trains the whole model on images, in the default "
                "strategy: it cannot train on cached features or under a "
                "tf.distribute strategy."
            )
        strength, focus = lung_focus
        trainee = LungFocusTrainer(model, strength)
        loss, metrics = loss_and_metrics(model.output_shape[-1])
        trainee.compile(
            optimizer=model.optimizer,
            loss=getattr(model, "loss", None) or loss,
            metrics=metrics,
        )
        train_ds = with_focus(train_ds, focus)
        user_callbacks = [ShowFullModel(c, model) for c in user_callbacks]
    if worker is not None:
        logs = multi_worker_fit(
            trainee,
            train_ds=train_ds,
            val_ds=val_ds,
            epochs=epochs,
            class_weight=class_weight,
            callbacks=[*callbacks, *user_callbacks],
        )
    else:
        logs = trainee.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            class_weight=class_weight,
            callbacks=[*callbacks, *user_callbacks],
            verbose=verbose,
            shuffle=False,
        ).history
    return FitResult(
        history={k: [float(v) for v in vs] for k, vs in logs.items()},
        seconds=time.perf_counter() - start,
        feature_cache_used=cache_features,
    )
