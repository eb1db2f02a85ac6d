"""The training loop's plumbing: checkpoints, callbacks, seeds, the training loops.

Everything here is a function or a callback with explicit arguments; nothing
imports `covidxray.classifier`, which calls into this module.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ._persist import read_metadata
from ._validation import check_choice
from .errors import DataError
from .features import FeatureCache, cached_batches

logger = logging.getLogger("covidxray")

__all__ = [
    "OPTIMIZERS",
    "BestCheckpoint",
    "FitResult",
    "LogEpochs",
    "ShowFullModel",
    "compile_for",
    "prepare",
    "global_random_state_kept",
    "own_callbacks",
    "previous_best",
    "seed_streams",
    "train",
]

#: Steps per call into TensorFlow while a head trains on cached features: a
#: small head's step is so quick that Python between steps would dominate.
HEAD_STEPS_PER_EXECUTION = 32
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
    if model.output_shape[-1] == 1:
        loss: Any = keras.losses.BinaryCrossentropy()
        metrics: list[Any] = [
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.AUC(name="auc"),
        ]
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
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


def own_callbacks(
    save: Callable[[Path, int, str, float], Any],
    *,
    monitor: str,
    checkpoint: str | os.PathLike[str] | None,
    early_stopping: int | None,
    worker: tuple[int, int] | None = None,
) -> list[keras.callbacks.Callback]:
    """`fit`'s own callbacks: epoch logging, best-epoch checkpoint with a
    backup to resume from, and early stopping with the best weights restored.
    `worker` is `(index, count)` under a multi-worker strategy."""
    own: list[keras.callbacks.Callback] = [LogEpochs()]
    if checkpoint is not None:
        path = Path(checkpoint)
        best = previous_best(path, monitor)
        own.append(BestCheckpoint(save, path, monitor, best))
        # Under a multi-worker strategy every worker restores its own backup
        # (the chief's is the plain name), so that none writes over another's.
        index = worker[0] if worker is not None else 0
        suffix = ".backup" if index == 0 else f".backup-worker{index}"
        own.append(
            keras.callbacks.BackupAndRestore(str(path) + suffix, delete_checkpoint=True)
        )
    if early_stopping:
        own.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, patience=int(early_stopping), restore_best_weights=True
            )
        )
    return own


class BestCheckpoint(keras.callbacks.Callback):
    """Call `save(path, epoch, monitor, value)` whenever the monitored value
    improves; `save` writes the whole classifier atomically."""

    def __init__(
        self,
        save: Callable[[Path, int, str, float], Any],
        path: Path,
        monitor: str,
        best: float,
    ) -> None:
        super().__init__()
        self.save, self.path, self.monitor, self.best = save, path, monitor, best

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(value) or value >= self.best:
            return
        self.best = float(value)
        self.save(self.path, epoch + 1, self.monitor, float(value))
        logger.info(
            "Epoch %d: %s improved to %.4f; saved '%s'.",
            epoch + 1,
            self.monitor,
            value,
            self.path,
        )


class LogEpochs(keras.callbacks.Callback):
    """Log each epoch's metrics to the `covidxray` logger."""

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items())
        logger.info("Epoch %d: %s", epoch + 1, shown)


class ShowFullModel(keras.callbacks.Callback):
    """Run a user's callback while only the head trains, showing it the full model.

    The wrapped callback's `model` is the full model; a `stop_training` it
    sets there is passed on to the head that Keras is training.
    """

    def __init__(self, inner: keras.callbacks.Callback, full: keras.Model) -> None:
        super().__init__()
        self.inner, self.full = inner, full

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        self.inner.set_model(self.full)

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        self.inner.set_params(params)

    def _forward(self, hook: str, *args: Any, **kwargs: Any) -> None:
        self.full.stop_training = False
        getattr(self.inner, hook)(*args, **kwargs)
        if self.full.stop_training:
            self.model.stop_training = True


def _forwarder(hook: str) -> Callable[..., None]:
    def method(self: ShowFullModel, *args: Any, **kwargs: Any) -> None:
        self._forward(hook, *args, **kwargs)

    method.__name__ = hook
    return method


for _hook in (
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_begin",
    "on_test_end",
    "on_test_batch_begin",
    "on_test_batch_end",
    "on_predict_begin",
    "on_predict_end",
    "on_predict_batch_begin",
    "on_predict_batch_end",
):
    setattr(ShowFullModel, _hook, _forwarder(_hook))


def previous_best(path: Path, monitor: str) -> float:
    """The best monitored value of an interrupted run to resume, or infinity."""
    backup = Path(str(path) + ".backup")
    if path.is_file() and backup.is_dir():
        try:
            info = read_metadata(path).checkpoint or {}
            if info.get("monitor") == monitor:
                logger.info("Resuming; best %s so far is %.4f.", monitor, info["value"])
                return float(info["value"])
        except (DataError, KeyError, ValueError):
            pass
    return math.inf


# --------------------------------------------------------------------- seeds


def _seed_generators(model: keras.Model) -> list[keras.random.SeedGenerator]:
    """Every `SeedGenerator` held by a layer of `model`, nested models included,
    in a stable order."""
    found: list[keras.random.SeedGenerator] = []
    seen: set[int] = set()

    def visit(item: Any) -> None:
        if id(item) in seen:
            return
        seen.add(id(item))
        if isinstance(item, keras.random.SeedGenerator):
            found.append(item)
        elif isinstance(item, (list, tuple)):
            for value in item:
                visit(value)
        elif isinstance(item, keras.layers.Layer):
            # Nested models, sublayers held as attributes or in lists
            # (custom blocks, attention), and their seed generators.
            for value in vars(item).values():
                if isinstance(value, (keras.layers.Layer, list, tuple)) or isinstance(
                    value, keras.random.SeedGenerator
                ):
                    visit(value)
            for inner in getattr(item, "layers", ()):
                visit(inner)

    visit(model)
    return found


def seed_streams(model: keras.Model, seed: int | None) -> None:
    """Give each layer's `SeedGenerator` (dropout and the like) a state derived
    from `seed`, so that the same seed gives the same training. None leaves
    the states as they are."""
    if seed is None:
        return
    generators = _seed_generators(model)
    states = np.random.SeedSequence(int(seed)).generate_state(max(1, len(generators)))
    for generator, state in zip(generators, states, strict=False):
        value = int(state) % (2**31 - 1) + 1
        generator.state.assign(tf.constant([value, 0], dtype=generator.state.dtype))


@contextlib.contextmanager
def global_random_state_kept() -> Iterator[None]:
    """Put Python's and NumPy's global generators back as they were on exit,
    whatever Keras drew from them (cloning a model draws new layer seeds).
    TensorFlow's global seed is never set."""
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


# --------------------------------------------------------------------- training


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
    model._initial_epoch = 0
    with strategy.scope():  # a backup restores the optimizer: its variables too
        hooks.on_train_begin()
    for epoch in range(int(getattr(model, "_initial_epoch", 0) or 0), epochs):
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
) -> FitResult:
    """Train `model` (already compiled), or only its head on cached features.

    With `cache_features`, the model is split at its frozen backbone, the
    backbone runs once over the images `feature_cache` (by default a new one)
    lacks, and only the head (which shares its layers with `model`) trains;
    `user_callbacks` still see the full model.
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
