"""`Classifier`: fit, predict, evaluate, save and load, in the scikit-learn manner.

It is the one object that ties data, model and metrics together. Everything it
needs to predict again later (class names, threshold, image size, colour mode,
resize policy) is stored inside the `.keras` file it saves.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from ._version import __version__
from .augment import Augmenter
from .data.decode import (
    COLOR_MODES,
    RESIZE_MODES,
    array_to_image,
    check_choice,
    decode_file,
    find_images,
    image_to_array,
)
from .data.loader import XrayDataset, balanced_class_weights
from .errors import DataError, NotFittedError
from .metrics import Evaluation
from .models import BACKBONES

logger = logging.getLogger("covidxray")

__all__ = ["Classifier"]

METADATA_NAME = "covidxray.json"
_PREDICT_BATCH = 64

ImageInput = Any  # path(s), directory, PIL image(s), numpy array(s) or tf.data


def _find_backbone(model: keras.Model) -> tuple[int, keras.Model] | None:
    """The index and nested model of a registered backbone inside `model`."""
    for i, layer in enumerate(model.layers):
        if isinstance(layer, keras.Model) and layer.name in BACKBONES:
            return i, layer
    return None


class _BestCheckpoint(keras.callbacks.Callback):
    """Save the classifier (atomically) whenever the monitored value improves."""

    def __init__(
        self, owner: Classifier, path: Path, monitor: str, best: float
    ) -> None:
        super().__init__()
        self.owner, self.path, self.monitor, self.best = owner, path, monitor, best

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(value) or value >= self.best:
            return
        self.best = float(value)
        self.owner._save(
            self.path,
            extra={
                "checkpoint": {
                    "epoch": epoch + 1,
                    "monitor": self.monitor,
                    "value": value,
                }
            },
        )
        logger.info(
            "Epoch %d: %s improved to %.4f; saved '%s'.",
            epoch + 1,
            self.monitor,
            value,
            self.path,
        )


class _LogEpochs(keras.callbacks.Callback):
    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items())
        logger.info("Epoch %d: %s", epoch + 1, shown)


class Classifier:
    """A Keras model with its class names, threshold and image preprocessing.

    `__init__` only stores its arguments. `fit` (or `load`) sets the learned
    attributes, whose names end in `_`: `model_`, `history_`, `classes_`,
    `threshold_`, `preprocessing_`.

    Args:
        model: A Keras model taking images in [0, 1], e.g. from `build_cnn` or
            `build_pretrained`. One sigmoid output means P(class_names[1]).
        class_names: Class names in label-index order.
        positive_class: The positive class of a binary task (default
            `class_names[1]`).
        threshold: Decision threshold on P(positive).
        learning_rate: Learning rate of the optimizer.
        optimizer: `"adam"`, `"sgd"`, `"rmsprop"`, `"adamw"`, or a Keras optimizer.
        image_size: `(height, width)` to resize inputs to; default: the
            training data's, else the model's input size.
        color_mode: `"grayscale"` or `"rgb"`; default from the data or model.
        resize: `"stretch"`, `"pad"` or `"crop"`; default from the data.
        seed: Seed for Keras' random state at `fit` (dropout, shuffles). The
            weights are initialised when the model is built: call
            `keras.utils.set_random_seed` before building for identical runs.

    Example:
        >>> import tempfile
        >>> from covidxray import Classifier, build_cnn, load_dataset
        >>> from covidxray.datasets import make_synthetic
        >>> root = make_synthetic(
        ...     tempfile.mkdtemp(), n_per_class=8, image_size=(48, 48))
        >>> data = load_dataset(root, image_size=(48, 48), batch_size=8)
        >>> clf = Classifier(build_cnn((48, 48, 1)), class_names=data.class_names)
        >>> clf.fit(data, epochs=1, verbose=0).predict(data.images("val")).shape
        (2,)
    """

    def __init__(
        self,
        model: keras.Model,
        *,
        class_names: Sequence[str],
        positive_class: str | None = None,
        threshold: float = 0.5,
        learning_rate: float = 1e-3,
        optimizer: str | keras.optimizers.Optimizer = "adam",
        image_size: Sequence[int] | None = None,
        color_mode: str | None = None,
        resize: str | None = None,
        seed: int | None = 0,
    ) -> None:
        self.model = model
        self.class_names = class_names
        self.positive_class = positive_class
        self.threshold = threshold
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.image_size = image_size
        self.color_mode = color_mode
        self.resize = resize
        self.seed = seed

    # ------------------------------------------------------------------ params

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, as scikit-learn's `get_params`."""
        keys = (
            "model",
            "class_names",
            "positive_class",
            "threshold",
            "learning_rate",
            "optimizer",
            "image_size",
            "color_mode",
            "resize",
            "seed",
        )
        return {k: getattr(self, k) for k in keys}

    def set_params(self, **params: Any) -> Classifier:
        """Set constructor arguments (e.g. a lower `learning_rate` to fine-tune)."""
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"Unknown parameter {key!r} for Classifier. "
                    f"Valid: {', '.join(valid)}."
                )
            setattr(self, key, value)
        return self

    # ------------------------------------------------------------------ helpers

    @property
    def _binary(self) -> bool:
        return len(self.class_names) == 2

    def _positive_index(self) -> int:
        names = list(self.class_names)
        if self.positive_class is None:
            return 1
        if self.positive_class not in names:
            raise ValueError(
                f"The `positive_class` argument of Classifier must be one of {names}. "
                f"Received: {self.positive_class!r}."
            )
        return names.index(self.positive_class)

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(
                "This Classifier is not fitted yet. Call `fit` or `Classifier.load` "
                "before using it to predict, evaluate, explain or save."
            )

    def _check_model(self) -> None:
        names = list(self.class_names)
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(
                "The `class_names` argument of Classifier needs at least two distinct "
                f"names. Received: {names!r}."
            )
        units = self.model.output_shape[-1]
        expected = 1 if len(names) == 2 else len(names)
        if units not in (expected, 2 if len(names) == 2 else expected):
            raise ValueError(
                f"The model has {units} output units, but {len(names)} class names "
                f"were given ({names}); expected {expected} units."
            )

    def _make_optimizer(self) -> keras.optimizers.Optimizer:
        if isinstance(self.optimizer, keras.optimizers.Optimizer):
            return self.optimizer
        choices = {
            "adam": keras.optimizers.Adam,
            "adamw": keras.optimizers.AdamW,
            "sgd": keras.optimizers.SGD,
            "rmsprop": keras.optimizers.RMSprop,
        }
        check_choice("optimizer", self.optimizer, tuple(choices), "Classifier")
        return choices[str(self.optimizer)](learning_rate=self.learning_rate)

    def _compile(self, model: keras.Model) -> None:
        units = model.output_shape[-1]
        if units == 1:
            loss: Any = keras.losses.BinaryCrossentropy()
            metrics: list[Any] = [
                keras.metrics.BinaryAccuracy(name="accuracy"),
                keras.metrics.AUC(name="auc"),
            ]
        else:
            loss = keras.losses.SparseCategoricalCrossentropy()
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        model.compile(optimizer=self._make_optimizer(), loss=loss, metrics=metrics)

    def _resolve_preprocessing(self, data: Any) -> dict[str, Any]:
        shape = self.model.input_shape
        size = self.image_size
        color = self.color_mode
        resize = self.resize
        if isinstance(data, XrayDataset):
            channels = 1 if data.color_mode == "grayscale" else 3
            served = (*data.image_size, channels)
            wanted = tuple(shape[1:])
            if any(
                w is not None and w != s for w, s in zip(wanted, served, strict=True)
            ):
                raise ValueError(
                    f"The model takes images of shape {wanted}, but the dataset serves "
                    f"{served} (image_size={data.image_size}, color_mode="
                    f"{data.color_mode!r}). Build the model for the data, or load the "
                    "data with the model's size and colour mode."
                )
            size = size or data.image_size
            color = color or data.color_mode
            resize = resize or data.resize
        size = tuple(int(v) for v in (size or shape[1:3]))
        color = color or ("grayscale" if shape[-1] == 1 else "rgb")
        resize = resize or "stretch"
        check_choice("color_mode", color, COLOR_MODES, "Classifier")
        check_choice("resize", resize, RESIZE_MODES, "Classifier")
        return {"image_size": list(size), "color_mode": color, "resize": resize}

    # ------------------------------------------------------------------ fit

    def fit(
        self,
        train: XrayDataset | tf.data.Dataset | tuple[np.ndarray, np.ndarray],
        *,
        validation_data: tf.data.Dataset | tuple[np.ndarray, np.ndarray] | None = None,
        epochs: int = 10,
        class_weight: str | Mapping[int, float] | None = "balanced",
        augmenter: Callable[[Any], Any] | None = None,
        early_stopping: int | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        callbacks: Sequence[keras.callbacks.Callback] = (),
        strategy: tf.distribute.Strategy | None = None,
        verbose: str | int = "auto",
        batch_size: int | None = None,
    ) -> Classifier:
        """Train the model.

        A frozen registered backbone with no augmenter is run once over the data
        to cache its features; only the head then trains, epoch after epoch, and
        the full model (backbone included) is what `model_` holds.

        Args:
            train: An `XrayDataset` (its train split, with its val split as
                validation data and its balanced class weights), a `tf.data`
                dataset of `(images, labels)` batches, or `(x, y)` arrays.
            validation_data: Validation batches or arrays.
            epochs: Number of epochs.
            class_weight: `"balanced"`, None, or a dict from class index to weight.
            augmenter: A callable applied to training image batches, such as an
                `Augmenter`.
            early_stopping: Patience in epochs (on validation loss, or training
                loss without validation data); the best weights are restored.
            checkpoint: A `.keras` path. The best epoch is saved there as a full
                classifier file, and the training state is backed up in
                `<checkpoint>.backup/` every epoch. Calling `fit` again with the
                same checkpoint after an interruption resumes from the last
                completed epoch.
            callbacks: More Keras callbacks.
            strategy: A `tf.distribute.Strategy`; the model is cloned into its
                scope.
            verbose: Keras verbosity; `"auto"` shows progress bars on a terminal
                only.
            batch_size: Batch size for arrays (default 32), or to override an
                `XrayDataset`'s own.

        Returns:
            self.
        """
        self._check_model()
        self._positive_index()
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(
                "The `epochs` argument of fit must be a positive integer. "
                f"Received: {epochs!r}."
            )
        if self.seed is not None:
            keras.utils.set_random_seed(int(self.seed))
        preprocessing = self._resolve_preprocessing(train)
        # An Augmenter on an XrayDataset works on the uint8 cache on its way to
        # float32 (the fast path); any other augmenter is mapped over the batches.
        fast = (
            augmenter
            if isinstance(train, XrayDataset) and isinstance(augmenter, Augmenter)
            else None
        )
        train_ds, val_ds, weights = self._training_data(
            train, validation_data, class_weight, batch_size, fast
        )
        if augmenter is not None and fast is None:
            train_ds = train_ds.map(
                lambda x, y: (augmenter(x), y), num_parallel_calls=tf.data.AUTOTUNE
            ).prefetch(tf.data.AUTOTUNE)

        model = self.model
        if strategy is not None:
            with strategy.scope():
                model = keras.models.clone_model(self.model)
                model.set_weights(self.model.get_weights())
                self._compile(model)
        else:
            self._compile(model)
        self.model_ = model
        self.classes_ = np.array(list(self.class_names))
        self.threshold_ = float(self.threshold)
        self.preprocessing_ = preprocessing

        monitor = "val_loss" if val_ds is not None else "loss"
        # Our own callbacks run first, so that an exception raised by a user
        # callback at the end of an epoch comes after that epoch's backup.
        all_callbacks: list[keras.callbacks.Callback] = [_LogEpochs()]
        if checkpoint is not None:
            path = Path(checkpoint)
            best = self._previous_best(path, monitor)
            all_callbacks.append(_BestCheckpoint(self, path, monitor, best))
            all_callbacks.append(
                keras.callbacks.BackupAndRestore(
                    str(path) + ".backup", delete_checkpoint=True
                )
            )
        if early_stopping:
            all_callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor=monitor,
                    patience=int(early_stopping),
                    restore_best_weights=True,
                )
            )
        all_callbacks.extend(callbacks)
        if verbose == "auto":
            verbose = 1 if sys.stdout.isatty() else 0

        frozen = _find_backbone(model)
        use_cache = (
            augmenter is None
            and strategy is None
            and frozen is not None
            and not frozen[1].trainable
        )
        start = time.perf_counter()
        if use_cache:
            assert frozen is not None
            head, train_ds, val_ds = self._feature_head(
                model, frozen[0], train_ds, val_ds
            )
            self._compile(head)
            trainee = head  # shares its layers with the full model
        else:
            trainee = model
        history = trainee.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            class_weight=weights,
            callbacks=all_callbacks,
            verbose=verbose,
            shuffle=False,
        )
        self.fit_seconds_ = time.perf_counter() - start
        self.history_ = {k: [float(v) for v in vs] for k, vs in history.history.items()}
        self.feature_cache_used_ = use_cache
        return self

    def _previous_best(self, path: Path, monitor: str) -> float:
        backup = Path(str(path) + ".backup")
        if path.is_file() and backup.is_dir():
            try:
                info = _read_metadata(path).get("checkpoint", {})
                if info.get("monitor") == monitor:
                    logger.info(
                        "Resuming; best %s so far is %.4f.", monitor, info["value"]
                    )
                    return float(info["value"])
            except (DataError, KeyError, ValueError):
                pass
        return math.inf

    def _training_data(
        self,
        train: Any,
        validation_data: Any,
        class_weight: Any,
        batch_size: int | None,
        augmenter: Augmenter | None = None,
    ) -> tuple[tf.data.Dataset, tf.data.Dataset | None, dict[int, float] | None]:
        if isinstance(train, XrayDataset):
            train_ds = train.as_tf_dataset(
                "train", shuffle=True, batch_size=batch_size, augmenter=augmenter
            )
            if train_ds is None:
                raise DataError(f"The training split of '{train.source}' is empty.")
            val_ds = (
                validation_data
                if validation_data is not None
                else train.as_tf_dataset("val", batch_size=batch_size)
            )
            labels = train.labels("train")
        else:
            train_ds = _as_dataset(
                train, batch_size or 32, shuffle=True, seed=self.seed
            )
            val_ds = validation_data
            labels = None
        if isinstance(val_ds, tuple):
            val_ds = _as_dataset(val_ds, batch_size or 32, shuffle=False)
        if class_weight is None:
            return train_ds, val_ds, None
        if isinstance(class_weight, Mapping):
            return train_ds, val_ds, {int(k): float(v) for k, v in class_weight.items()}
        check_choice("class_weight", class_weight, ("balanced",), "fit")
        if labels is None:
            labels = np.concatenate([np.asarray(y).reshape(-1) for _, y in train_ds])
        weights = balanced_class_weights(labels, len(self.class_names))
        return train_ds, val_ds, weights

    def _feature_head(
        self,
        model: keras.Model,
        index: int,
        train_ds: tf.data.Dataset,
        val_ds: tf.data.Dataset | None,
    ) -> tuple[keras.Model, tf.data.Dataset, tf.data.Dataset | None]:
        """Compute the frozen backbone's features once; return a head model that
        shares the full model's head layers, and datasets of features."""
        # Re-chain the layers up to the backbone (the model is a linear chain).
        inputs = keras.Input(model.input_shape[1:], name="image")
        x = inputs
        for layer in model.layers[1 : index + 1]:
            x = layer(x)
        features_model = keras.Model(inputs, x)
        spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
        extract = tf.function(
            lambda x: features_model(x, training=False), input_signature=[spec]
        )

        def features_of(ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
            feats, labels = [], []
            for x, y in ds:
                feats.append(extract(x).numpy())
                labels.append(np.asarray(y))
            return np.concatenate(feats), np.concatenate(labels)

        x_train, y_train = features_of(train_ds)
        batch = int(next(iter(train_ds))[0].shape[0])
        head_input = keras.Input(x_train.shape[1:], name="features")
        x = head_input
        for layer in model.layers[index + 1 :]:
            x = layer(x)
        head = keras.Model(head_input, x, name="feature_head")
        train_feats = (
            tf.data.Dataset.from_tensor_slices((x_train, y_train))
            .shuffle(len(x_train), seed=self.seed, reshuffle_each_iteration=True)
            .batch(batch)
        )
        val_feats = None
        if val_ds is not None:
            x_val, y_val = features_of(val_ds)
            val_feats = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(batch)
        logger.info(
            "Cached frozen-backbone features of %d training images.", len(x_train)
        )
        return head, train_feats, val_feats

    def unfreeze(self, n_layers: int | str = "all") -> Classifier:
        """Make the backbone trainable for fine-tuning (BatchNorm stays frozen).

        Args:
            n_layers: `"all"`, or the number of the backbone's last layers to
                unfreeze.

        Returns:
            self. Lower the learning rate with `set_params` before fitting again.
        """
        model = getattr(self, "model_", self.model)
        found = _find_backbone(model)
        if found is None:
            raise ValueError("The model has no registered backbone to unfreeze.")
        backbone = found[1]
        backbone.trainable = True
        if n_layers != "all":
            if not isinstance(n_layers, int) or n_layers < 1:
                raise ValueError(
                    "The `n_layers` argument of unfreeze must be 'all' or a positive "
                    f"integer. Received: {n_layers!r}."
                )
            for layer in backbone.layers[:-n_layers]:
                layer.trainable = False
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
        self.model = model
        return self

    # ------------------------------------------------------------------ predict

    def _batches(self, x: ImageInput) -> Iterable[np.ndarray]:
        """Turn any supported input into float32 batches in [0, 1]."""
        prep = self.preprocessing_
        size, color, resize = prep["image_size"], prep["color_mode"], prep["resize"]
        channels = 1 if color == "grayscale" else 3

        def from_image(img: Image.Image) -> np.ndarray:
            return image_to_array(img, size, color_mode=color, resize=resize)

        if isinstance(x, tf.data.Dataset):
            for item in x:
                images = np.asarray(item[0] if isinstance(item, tuple) else item)
                scale = 255.0 if images.dtype == np.uint8 else 1.0
                yield images.astype(np.float32) / scale
            return
        if isinstance(x, np.ndarray) and x.ndim == 3 and x.shape[-1] not in (1, 3, 4):
            x = x[..., None]  # (N, H, W): a batch of grayscale images
        if isinstance(x, np.ndarray) and x.ndim == 4:
            arr = x
            if arr.shape[1:] == (*size, channels):
                scale = 255.0 if arr.dtype == np.uint8 else 1.0
                for start in range(0, len(arr), _PREDICT_BATCH):
                    yield arr[start : start + _PREDICT_BATCH].astype(np.float32) / scale
                return
            items: list[Any] = list(arr)
        elif isinstance(x, (str, os.PathLike, Image.Image, np.ndarray)):
            items = [x]
        else:
            items = list(x)
        files: list[Any] = []
        for item in items:
            if isinstance(item, (str, os.PathLike)) and Path(item).is_dir():
                found = find_images(item)
                if not found:
                    raise DataError(f"Found no images under '{item}'.")
                files.extend(found)
            else:
                files.append(item)
        for start in range(0, len(files), _PREDICT_BATCH):
            chunk = []
            for item in files[start : start + _PREDICT_BATCH]:
                if isinstance(item, (str, os.PathLike)):
                    img, _ = decode_file(item, draft_to=size)
                elif isinstance(item, Image.Image):
                    img = item
                else:
                    img = array_to_image(item)
                chunk.append(from_image(img))
            yield np.stack(chunk).astype(np.float32) / 255.0

    def _model_output(self, batch: np.ndarray) -> np.ndarray:
        # A direct eager call: no per-call start-up of model.predict, and no
        # tracing, so one image costs one forward pass.
        return np.asarray(self.model_(tf.convert_to_tensor(batch), training=False))

    def predict_proba(self, x: ImageInput) -> np.ndarray:
        """Class probabilities, shape (N, n_classes), columns in `classes_` order.

        Args:
            x: A file path, a folder, a list of paths, a PIL image, a numpy array
                (H, W), (H, W, C), (N, H, W) or (N, H, W, C) (uint8, or float in
                [0, 1]), or a `tf.data` dataset of images or `(images, labels)`
                at the training size. Inputs are decoded, converted and resized
                as at training time.

        Returns:
            Probabilities of shape (N, n_classes).
        """
        self._check_fitted()
        outputs = [self._model_output(b) for b in self._batches(x)]
        if not outputs:
            return np.zeros((0, len(self.class_names)), np.float32)
        out = np.concatenate(outputs).astype(np.float64)
        if out.shape[-1] == 1:
            p = out[:, 0]
            return np.stack([1 - p, p], axis=1)
        return out

    def predict(self, x: ImageInput) -> np.ndarray:
        """Predicted class names, shape (N,). Binary tasks use `threshold_`."""
        proba = self.predict_proba(x)
        if self._binary:
            pos = self._positive_index()
            is_pos = proba[:, pos] >= self.threshold_
            index = np.where(is_pos, pos, 1 - pos)
        else:
            index = np.argmax(proba, axis=1)
        return self.classes_[index]

    def explain(
        self, x: ImageInput, *, layer: str | None = None, class_index: int | None = None
    ) -> np.ndarray:
        """Grad-CAM heatmaps (N, H, W) in [0, 1] for inputs, preprocessed as in
        `predict`. See `covidxray.grad_cam`."""
        from .explain import grad_cam

        return grad_cam(self, x, layer=layer, class_index=class_index)

    # ------------------------------------------------------------------ evaluate

    def _labelled(self, data: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        meta: dict[str, Any] = {}
        if isinstance(data, XrayDataset):
            split = "test" if data.split_records("test") else "val"
            ds = data.as_tf_dataset(split)
            meta = {
                "data_fingerprint": data.fingerprint(),
                "split": split,
                "data_seed": data.seed,
            }
        elif isinstance(data, tuple):
            ds = _as_dataset(data, _PREDICT_BATCH, shuffle=False)
        else:
            ds = data
        if ds is None:
            raise DataError("No labelled images to evaluate on (the split is empty).")
        probs, labels = [], []
        for x, y in ds:
            probs.append(self.predict_proba(np.asarray(x)))
            labels.append(np.asarray(y).reshape(-1))
        if not probs:
            raise DataError("No labelled images to evaluate on.")
        return np.concatenate(labels).astype(int), np.concatenate(probs), meta

    def evaluate(
        self, data: Any, *, n_bootstrap: int = 1000, seed: int = 0
    ) -> Evaluation:
        """Metrics with 95% confidence intervals on labelled data.

        Args:
            data: An `XrayDataset` (its test split, or val when there is none),
                `tf.data` of `(images, labels)`, or `(x, y)` arrays.
            n_bootstrap: Bootstrap resamples for the AUC intervals.
            seed: Seed of the bootstrap.

        Returns:
            An `Evaluation`, with provenance in `meta`.
        """
        self._check_fitted()
        y, proba, meta = self._labelled(data)
        meta.update(_provenance(self.seed))
        return Evaluation.from_predictions(
            y,
            proba,
            class_names=list(self.class_names),
            positive_class=self.class_names[self._positive_index()]
            if self._binary
            else None,
            threshold=self.threshold_,
            n_bootstrap=n_bootstrap,
            seed=seed,
            meta=meta,
        )

    def tune_threshold(
        self, validation_data: Any, target: str | Mapping[str, float] = "youden"
    ) -> float:
        """Choose the decision threshold on validation data and set `threshold_`.

        Args:
            validation_data: As for `evaluate`. Never the test set.
            target: `"youden"` maximises sensitivity + specificity - 1;
                `{"sensitivity": 0.95}` (or `{"specificity": ...}`) gives the
                highest (lowest) threshold that reaches that value.

        Returns:
            The new threshold.
        """
        from sklearn.metrics import roc_curve

        self._check_fitted()
        if not self._binary:
            raise ValueError("tune_threshold applies to binary classifiers only.")
        y, proba, _ = self._labelled(validation_data)
        pos = self._positive_index()
        fpr, tpr, thresholds = roc_curve(y == pos, proba[:, pos])
        thresholds = np.clip(thresholds, 0.0, 1.0)
        if target == "youden":
            best = int(np.argmax(tpr - fpr))
        elif isinstance(target, Mapping) and len(target) == 1:
            ((key, value),) = target.items()
            if key == "sensitivity":
                ok = np.nonzero(tpr >= value)[0]
                best = int(ok[0]) if len(ok) else len(tpr) - 1
            elif key == "specificity":
                ok = np.nonzero(1 - fpr >= value)[0]
                best = int(ok[-1]) if len(ok) else 0
            else:
                raise ValueError(
                    "The `target` argument of tune_threshold must be 'youden', "
                    "{'sensitivity': x} or {'specificity': x}. "
                    f"Received: {target!r}."
                )
        else:
            raise ValueError(
                "The `target` argument of tune_threshold must be 'youden', "
                "{'sensitivity': x} or {'specificity': x}. "
                f"Received: {target!r}."
            )
        self.threshold_ = float(thresholds[best])
        return self.threshold_

    # ------------------------------------------------------------------ save/load

    def _metadata(self) -> dict[str, Any]:
        return {
            "format": "covidxray.Classifier",
            "format_version": 1,
            "class_names": list(self.class_names),
            "positive_class": self.positive_class,
            "threshold": self.threshold_,
            "learning_rate": self.learning_rate,
            "seed": self.seed,
            "preprocessing": self.preprocessing_,
            **_provenance(self.seed),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write everything needed to predict into one `.keras` file.

        The file is written beside the target under a temporary name and then
        renamed over it, so a failed save leaves an earlier file intact.

        Returns:
            The path written.
        """
        self._check_fitted()
        return self._save(Path(path))

    def _save(self, path: Path, extra: Mapping[str, Any] | None = None) -> Path:
        if path.suffix != ".keras":
            raise ValueError(
                f"The `path` argument of save must end in '.keras'. Received: '{path}'."
            )
        folder = path.parent if str(path.parent) else Path(".")
        handle, tmp_name = tempfile.mkstemp(
            prefix=f".{path.stem}-", suffix=".keras", dir=folder
        )
        os.close(handle)
        try:
            self.model_.save(tmp_name)
            with zipfile.ZipFile(tmp_name, "a") as archive:
                archive.writestr(
                    METADATA_NAME,
                    json.dumps({**self._metadata(), **(extra or {})}, indent=2),
                )
            os.replace(tmp_name, path)
        except BaseException:
            try:
                os.remove(tmp_name)
            except OSError:
                pass
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Classifier:
        """Load a classifier saved by `save`, in Keras safe mode (no code runs).

        Raises:
            DataError: The file is missing, not a `.keras` archive, corrupted, or
                a plain Keras model without covidxray metadata.
        """
        path = Path(path)
        meta = _read_metadata(path)
        try:
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:
            raise DataError(
                f"Could not load the Keras model in '{path}': {exc}"
            ) from exc
        clf = cls(
            model,
            class_names=meta["class_names"],
            positive_class=meta.get("positive_class"),
            threshold=float(meta["threshold"]),
            learning_rate=float(meta.get("learning_rate", 1e-3)),
            image_size=meta["preprocessing"]["image_size"],
            color_mode=meta["preprocessing"]["color_mode"],
            resize=meta["preprocessing"]["resize"],
            seed=meta.get("seed"),
        )
        clf.model_ = model
        clf.classes_ = np.array(meta["class_names"])
        clf.threshold_ = float(meta["threshold"])
        clf.preprocessing_ = dict(meta["preprocessing"])
        clf.metadata_ = meta  # type: ignore[attr-defined]
        return clf


def _read_metadata(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"No model file at '{path}'.")
    if not zipfile.is_zipfile(path):
        raise DataError(
            f"'{path}' is not a .keras archive (not a zip file); it may be truncated "
            "or corrupted."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            if METADATA_NAME not in archive.namelist():
                raise DataError(
                    f"'{path}' is a Keras model without covidxray metadata. Load it "
                    "with keras.saving.load_model and wrap it: Classifier(model, "
                    "class_names=[...]), then fit it, or save it from a Classifier."
                )
            meta = json.loads(archive.read(METADATA_NAME))
    except DataError:
        raise
    except (zipfile.BadZipFile, json.JSONDecodeError, OSError, KeyError) as exc:
        raise DataError(f"'{path}' is corrupted: {exc}") from exc
    required = ("class_names", "threshold", "preprocessing")
    if not all(k in meta for k in required):
        raise DataError(f"The covidxray metadata in '{path}' lacks one of {required}.")
    return dict(meta)


def _provenance(seed: int | None) -> dict[str, Any]:
    return {
        "covidxray_version": __version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "seed": seed,
    }


def _as_dataset(
    data: Any, batch_size: int, *, shuffle: bool, seed: int | None = 0
) -> tf.data.Dataset:
    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, tuple) and len(data) == 2:
        x = np.asarray(data[0])
        y = np.asarray(data[1]).astype(np.int32).reshape(-1)
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / 255.0
        if x.ndim == 3:
            x = x[..., None]
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} images but y has {len(y)} labels.")
        ds = tf.data.Dataset.from_tensor_slices((x.astype(np.float32), y))
        if shuffle:
            ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    raise TypeError(
        "Expected an XrayDataset, a tf.data.Dataset of (images, labels), or a tuple "
        f"(x, y) of arrays. Received: {type(data).__name__}."
    )
