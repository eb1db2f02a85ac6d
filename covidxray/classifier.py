"""`Classifier`: fit, predict, evaluate, save and load, as a scikit-learn estimator.

It is the one object that ties data, model and metrics together, and it owns
its state: every fitted attribute is set here, by `fit` or by `from_config`
(which `load` calls). The helpers beside it take arrays, records, datasets and
Keras models, never the `Classifier`: input coercion (`_inputs`), training
(`_training`), what an evaluation scores (`_scoring`) and the file format
(`_persist`). See `docs/architecture.md`.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from . import _inputs, _persist, _scoring, export
from . import training as _training
from ._deprecation import renamed_argument
from ._inputs import ImageInput
from ._params import Params
from ._persist import ModelMetadata
from ._scoring import FittedModel
from ._seen import TrainingRecord, record_after_fit
from ._validation import check_model_classes, check_positive_int
from .data.dataset import XrayDataset
from .data.preprocessing import Preprocessing
from .errors import NotFittedError
from .features import FeatureCache, use_feature_cache
from .metrics import Evaluation, choose_threshold
from .models import copy_model, unfreeze_backbone

if TYPE_CHECKING:
    from .lungs import LungSegmenter
    from .lungs.ablation import LungTest

__all__ = ["Classifier"]


class Classifier(Params):
    """A Keras model with its class names, threshold and image preprocessing.

    `__init__` only stores its arguments. `fit` (or `load`) sets the learned
    attributes, whose names end in `_`: `model_`, `history_`, `classes_`,
    `threshold_` and `preprocessing_` (a `Preprocessing`).

    A second `fit` continues from the fitted weights (`model_`) with a fresh
    optimizer, with or without a `strategy`: fit, `unfreeze`, lower the
    learning rate, fit again. To start again, build a new model.

    It keeps scikit-learn's estimator contract, checked with scikit-learn:

    - `get_params(deep=True)` and `set_params` (also `name__sub=...` for a
      parameter with parameters of its own). A new `model` by `set_params`
      makes the classifier unfitted: the next `fit` trains that model.
    - `sklearn.base.clone(clf)` gives an unfitted `Classifier` with equal
      parameters: its `model` is rebuilt (`keras.models.clone_model`, a
      TypeError where that fails) with the weights `model` has now, trained
      ones if `fit` trained it in place, so fitting the clone never changes
      the original. An optimizer instance is copied from its config; the
      `feature_cache` is shared.
    - `sklearn.utils.validation.check_is_fitted(clf)` works, and using an
      unfitted classifier raises `NotFittedError`, a `ValueError` and an
      `AttributeError` like scikit-learn's.
    - `get_config()` and `from_config(config, model, record)` are the one
      pair through which `save`, `load` and checkpoints store and restore it.

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
        spectral_decoupling: Strength of an L2 penalty on the logits added to
            the loss (Pohjonen et al., iScience 2022); 0 turns it off. It keeps
            a model from growing confident on the first features that separate
            the classes, such as a source's look.
        lung_focus: Strength of a penalty on the input gradients outside the
            lungs ("right for the right reasons", Ross et al. 2017); 0 turns
            it off. Needs lung masks: an `XrayDataset`'s, or `fit(lung_masks=)`.
        seed: Seed of `fit`'s own random streams: dropout, the shuffles of
            arrays and cached features, and the augmenter's per-batch seeds
            (when the augmenter has no seed of its own). An `XrayDataset`
            shuffles with the seed it was loaded with. The caller's global
            Python, NumPy and TensorFlow random state is left as it was. The
            weights are initialised when the model is built: call
            `keras.utils.set_random_seed` before building for identical runs.
        feature_cache: A `FeatureCache` shared by every `fit`, prediction and
            evaluation (and by clones with these parameters): a frozen
            backbone runs once per image, whatever asks for it again.

    Examples:
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

    model_: keras.Model
    classes_: np.ndarray
    threshold_: float
    preprocessing_: Preprocessing
    history_: dict[str, list[float]]
    metadata_: ModelMetadata
    training_record_: TrainingRecord | None
    fit_seconds_: float
    feature_cache_used_: bool
    segmenter_: dict[str, str] | None

    #: The attributes `fit` and `from_config` set (those annotated above); a
    #: new `model` drops them.
    _FITTED = tuple(name for name in __annotations__ if name.endswith("_"))

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
        spectral_decoupling: float = 0.0,
        lung_focus: float = 0.0,
        seed: int | None = 0,
        feature_cache: FeatureCache | None = None,
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
        self.spectral_decoupling = spectral_decoupling
        self.lung_focus = lung_focus
        self.seed = seed
        self.feature_cache = feature_cache

    @property
    def _binary(self) -> bool:
        return len(self.class_names) == 2

    @property
    def positive_index(self) -> int:
        """The index in `class_names` of the positive class of a binary task:
        `positive_class`, or 1 by default. A ValueError if it is not a class."""
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
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                "This Classifier is not fitted yet. Call `fit` or `Classifier.load` "
                "before using it to predict, evaluate, explain or save."
            )

    def __sklearn_is_fitted__(self) -> bool:
        """Whether `fit` or `load` has run (scikit-learn's `check_is_fitted`)."""
        return "model_" in self.__dict__

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's tags: a classifier that must be fitted, on images."""
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(
            estimator_type="classifier",
            target_tags=TargetTags(required=True),
            classifier_tags=ClassifierTags(),
            input_tags=InputTags(two_d_array=False, three_d_array=True),
            requires_fit=True,
            non_deterministic=True,
        )

    def __sklearn_clone__(self) -> Classifier:
        """An unfitted copy with equal parameters, for `sklearn.base.clone`:
        the `model` is rebuilt with its current weights, the optimizer (an
        instance) from its config, the `feature_cache` shared."""
        params = self.get_params(deep=False)
        shared = ("model", "optimizer", "feature_cache")
        plain = {k: copy.deepcopy(v) for k, v in params.items() if k not in shared}
        optimizer = self.optimizer
        if isinstance(optimizer, keras.optimizers.Optimizer):
            optimizer = keras.optimizers.deserialize(
                keras.optimizers.serialize(optimizer)
            )
        return type(self)(
            copy_model(self.model),
            optimizer=optimizer,
            feature_cache=self.feature_cache,
            **plain,
        )

    def _parameter_changed(self, name: str, old: Any, new: Any) -> None:
        if name == "model" and new is not old:  # a new model: unfitted
            for attribute in self._FITTED:
                self.__dict__.pop(attribute, None)

    def _compile(self, model: keras.Model) -> None:
        _training.compile_for(
            model, self.optimizer, self.learning_rate, self.spectral_decoupling
        )

    @renamed_argument("train", "data", "Classifier.fit")
    def fit(
        self,
        data: XrayDataset | tf.data.Dataset | tuple[np.ndarray, np.ndarray],
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
        cache_features: str | bool = "auto",
        lung_masks: np.ndarray | None = None,
    ) -> Classifier:
        """Train the model; a second call continues from the fitted weights.

        Args:
            data: An `XrayDataset` (its train split, with its val split as
                validation data and its balanced class weights), a `tf.data`
                dataset of `(images, labels)` batches, or `(x, y)` arrays.
                (`train=` is a deprecated alias.)
            validation_data: Validation batches or arrays (Keras' name).
            epochs: Number of epochs.
            class_weight: `"balanced"`, None, or a dict from class index to weight.
            augmenter: A callable applied to training image batches. An
                `Augmenter` runs with seeded per-batch seeds (on an
                `XrayDataset`, on its uint8 cache through the dataset's public
                `transform` hook); any other callable is mapped over batches.
            early_stopping: Patience in epochs (on validation loss, or training
                loss without validation data); the best weights are restored.
            checkpoint: A `.keras` path. The best epoch is saved there as a full
                classifier file, and the training state is backed up in
                `<checkpoint>.backup/` every epoch. Calling `fit` again with the
                same checkpoint after an interruption resumes from the last
                completed epoch.
            callbacks: More Keras callbacks. They always see the full model,
                also while only the head trains on cached features (then in
                calls of 32 steps: batch-level hooks run every 32 batches).
            strategy: A `tf.distribute.Strategy`; the model is cloned into its
                scope, from the fitted weights on a second call. Under
                `MultiWorkerMirroredStrategy` each worker reads its share of
                an `XrayDataset`'s batches and only the chief writes files.
            verbose: Keras verbosity; `"auto"` shows progress bars on a terminal
                only.
            batch_size: Batch size for arrays (default 32), or to override an
                `XrayDataset`'s own.
            cache_features: `"auto"` runs a frozen registered backbone once over
                the images (those `feature_cache` lacks) and trains only the
                head on their features (in `feature_cache`, if given), when
                the model splits cleanly at the backbone and neither an
                augmenter nor a strategy is used; otherwise it trains the whole
                model. True insists (a ValueError says why it cannot); False
                never caches. `model_` is the full model either way.
            lung_masks: With `lung_focus`, boolean `(N, H, W)` lung masks of
                the training images (default: an `XrayDataset`'s own).

        Returns:
            self.
        """
        check_model_classes(self.model, self.class_names)
        _ = self.positive_index  # a positive_class that is no class: an error
        check_positive_int("epochs", epochs, "fit")
        if checkpoint is not None:  # before any work, not after it
            _persist.check_model_path(checkpoint, "fit(checkpoint=...)")
        preprocessing = _inputs.resolve_preprocessing(
            data, self.model.input_shape, self.image_size, self.color_mode, self.resize
        )
        train_ds, val_ds, labels = _inputs.training_batches(
            data,
            validation_data,
            batch_size=batch_size,
            augmenter=augmenter,
            seed=self.seed,
            strategy=strategy,
        )
        weights = _inputs.class_weights(class_weight, labels, len(self.class_names))
        focus = _inputs.focus_stream(
            self.lung_focus, data, lung_masks, batch_size, self.seed
        )
        fitted_before = hasattr(self, "model_")
        model = getattr(self, "model_", self.model)
        use_cache = use_feature_cache(
            cache_features,
            model,
            augmenter=augmenter,
            strategy=strategy,
            sampled=getattr(data, "sampling", None) is not None,
            lung_focus=focus is not None,
        )
        with _training.global_random_state_kept():
            self.model_ = _training.prepare(model, strategy, self._compile)
            _training.seed_streams(self.model_, self.seed)
            self.classes_ = np.array(list(self.class_names))
            self.threshold_, self.preprocessing_ = float(self.threshold), preprocessing
            self.segmenter_ = _inputs.segmenter_used(
                data, preprocessing, lung_masks, self.lung_focus
            )
            self.training_record_ = record_after_fit(
                getattr(self, "training_record_", None),
                data,
                fitted_before=fitted_before,
            )
            result = _training.train(
                self.model_,
                train_ds=train_ds,
                val_ds=val_ds,
                epochs=epochs,
                class_weight=weights,
                save=self._save_checkpoint,
                checkpoint=checkpoint,
                early_stopping=early_stopping,
                user_callbacks=callbacks,
                cache_features=use_cache,
                verbose=verbose,
                seed=self.seed,
                feature_cache=self.feature_cache,
                lung_focus=focus,
            )
        self.fit_seconds_ = result.seconds
        self.history_ = result.history
        self.feature_cache_used_ = result.feature_cache_used
        return self

    def _save_checkpoint(self, path: Path, epoch: int, key: str, value: float) -> None:
        meta = self.get_config().with_checkpoint(epoch, key, value)
        _persist.save_atomic(self.model_, path, meta, self.training_record_)

    def unfreeze(self, n_layers: int | str = "all") -> Classifier:
        """Make the backbone of the fitted model trainable (BatchNorm stays frozen).

        Acts on `model_` once fitted (on `model` before), so the next `fit`
        fine-tunes the model that was just trained.

        Args:
            n_layers: `"all"`, or the number of the backbone's last layers to
                unfreeze.

        Returns self. Lower the learning rate with `set_params` before fitting again.
        """
        unfreeze_backbone(getattr(self, "model_", self.model), n_layers)
        return self

    def preprocess(self, x: ImageInput) -> np.ndarray:
        """Inputs as the model takes them: float32 (N, H, W, C) in [0, 1].

        Args:
            x: Anything `predict_proba` accepts.
        """
        self._check_fitted()
        batches = list(_inputs.image_batches(x, self.preprocessing_))
        if not batches:
            return np.zeros((0, *self.preprocessing_.input_shape), np.float32)
        return np.concatenate(batches)

    def predict_proba(self, x: ImageInput) -> np.ndarray:
        """Class probabilities, shape (N, n_classes), columns in `classes_` order.

        Args:
            x: A file path, a folder, a list of paths, a PIL image, a numpy array
                (H, W), (H, W, C), (N, H, W) or (N, H, W, C) (uint8, or float in
                [0, 1]), or a `tf.data` dataset of images or `(images, labels)`
                at the training size. Inputs are decoded, converted and resized
                with `preprocessing_`, as at training time.

        Returns:
            Probabilities of shape (N, n_classes).
        """
        self._check_fitted()
        batches = _inputs.image_batches(x, self.preprocessing_)
        return _inputs.probabilities(
            self.model_, batches, len(self.class_names), self.feature_cache
        )

    def predict(self, x: ImageInput) -> np.ndarray:
        """Predicted class names, shape (N,). Binary tasks use `threshold_`."""
        return self.labels_from_proba(self.predict_proba(x))

    def labels_from_proba(self, proba: np.ndarray) -> np.ndarray:
        """Class names from `predict_proba`'s output, as `predict` decides them."""
        self._check_fitted()
        if self._binary:
            pos = self.positive_index
            index = np.where(proba[:, pos] >= self.threshold_, pos, 1 - pos)
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

    def evaluate(
        self,
        data: Any,
        *,
        split: str | None = None,
        include_seen: bool = False,
        n_bootstrap: int = 1000,
        seed: int = 0,
        by: str = "image",
    ) -> Evaluation:
        """Metrics with 95% confidence intervals, on images the model never saw.

        Args:
            data: An `XrayDataset`; a dataset folder or file, read with the
                model's own preprocessing and classes (an external set, one
                class is enough); `tf.data` of `(images, labels)`; or `(x, y)`.
            split: For a dataset: `"test"`, `"val"`, `"train"` or `"all"`; by
                default its test split, or all its images when it has none.
            include_seen: Images whose content the model saw in training or
                validation (the same bytes or decoded pixels) are left out and
                counted in `meta`; True keeps them, and the report says so in
                bold. Perceptual near-duplicates are flagged in `meta`, kept.
            n_bootstrap: Bootstrap resamples for the AUC intervals.
            seed: Seed of the bootstrap.
            by: `"image"`, or `"patient"` (a dataset): each patient scored by
                the mean probability of its images, intervals by patient.

        Returns:
            An `Evaluation`, with provenance in `meta`.
        """
        self._check_fitted()
        fitted, where = self._fitted_model(), "evaluate"
        y, proba, meta, rows = _scoring.scores(
            fitted, data, split=split, where=where, include_seen=include_seen, by=by
        )
        return _scoring.evaluation(
            fitted, y, proba, meta, n_bootstrap=n_bootstrap, seed=seed, records=rows
        )

    def read_dataset(
        self, source: str | os.PathLike[str], class_map: Mapping[str, str] | None = None
    ) -> XrayDataset:
        """A dataset folder or file read as `evaluate` reads it (the model's
        `Preprocessing` and classes, no new split, no deduplication; `class_map`
        as in `load_dataset`), to pass to `evaluate` and `lung_test` alike."""
        self._check_fitted()
        return _scoring.read_for(self._fitted_model(), source, class_map)

    def lung_test(
        self,
        data: Any,
        *,
        split: str | None = None,
        include_seen: bool = False,
        segmenter: LungSegmenter | None = None,
        saliency: bool = True,
        n_bootstrap: int = 1000,
        seed: int = 0,
    ) -> LungTest:
        """Does the model need the lungs? The same images scored four ways.

        The images `evaluate` would score are segmented as the model sees
        them and scored as they are (`as_is`), with everything outside the
        lungs filled (`lungs_only`), with the lungs filled (`lungs_removed`),
        and with the same area filled just outside the lungs (`control`: a
        blanked image is out of distribution for any model). Saliency is the
        median share of Grad-CAM mass in the lungs. Images with an implausible
        lung mask are left out and named. See `docs/guides/lungs.md`.

        Args:
            data: An `XrayDataset`, or a dataset folder or file (read with the
                model's own preprocessing, as `evaluate` reads it).
            split: As in `evaluate`.
            include_seen: As in `evaluate`.
            segmenter: A `LungSegmenter` (default: the shipped one).
            saliency: Measure the Grad-CAM share inside the lungs.
            n_bootstrap: Bootstrap resamples for each AUC interval.
            seed: Seed of the bootstrap.

        Returns:
            A `LungTest`: an `Evaluation` per variant, saliency and a reading.

        Raises:
            ValueError: The classifier is not binary.
            DataError: No image has a plausible lung mask.
        """
        from .lungs import LungSegmenter
        from .lungs.ablation import run_lung_test

        self._check_fitted()
        if not self._binary:
            raise ValueError("lung_test applies to binary classifiers only.")
        if not isinstance(data, (XrayDataset, str, os.PathLike)):
            raise TypeError(f"lung_test takes a dataset, not {type(data).__name__}.")
        fitted = self._fitted_model()
        data, records, labels, meta = _scoring.select(
            fitted, data, split=split, where="lung_test", include_seen=include_seen
        )
        return run_lung_test(
            _inputs.record_chunks(data, records, self.preprocessing_),
            labels,
            predict_proba=self.predict_proba,
            evaluate=lambda y, p, m: _scoring.evaluation(
                fitted, y, p, m, n_bootstrap=n_bootstrap, seed=seed
            ),
            segmenter=segmenter if segmenter is not None else LungSegmenter(),
            explain=self.explain if saliency else None,
            meta=meta,
        )

    @renamed_argument("validation_data", "data", "Classifier.tune_threshold")
    def tune_threshold(
        self, data: Any, target: str | Mapping[str, float] = "youden"
    ) -> float:
        """Choose the decision threshold on validation data and set `threshold_`.

        Args:
            data: An `XrayDataset` or a dataset folder (its validation split,
                never its test split; a ValueError if it has none), or
                validation batches or `(x, y)` arrays. (`validation_data=` is
                a deprecated alias.)
            target: `"youden"` maximises sensitivity + specificity - 1;
                `{"sensitivity": 0.95}` (or `{"specificity": ...}`) gives the
                highest (lowest) threshold that reaches that value.

        Returns the new threshold.
        """
        self._check_fitted()
        if not self._binary:
            raise ValueError("tune_threshold applies to binary classifiers only.")
        dataset = isinstance(data, (XrayDataset, str, os.PathLike))
        split = "val" if dataset else None
        y, proba, *_ = _scoring.scores(
            self._fitted_model(),
            data,
            split=split,
            where="tune_threshold",
            check_seen=False,
        )
        pos = self.positive_index
        self.threshold_ = choose_threshold(y == pos, proba[:, pos], target)
        return self.threshold_

    def _fitted_model(self) -> FittedModel:
        """The fitted model and what scoring needs, as plain values."""
        return FittedModel(
            model=self.model_,
            preprocessing=self.preprocessing_,
            class_names=tuple(self.class_names),
            positive_index=self.positive_index,
            record=self.training_record_,
            feature_cache=self.feature_cache,
            threshold=self.threshold_,
            seed=self.seed,
        )

    def get_config(self) -> ModelMetadata:
        """What a classifier file stores about this fitted classifier.

        `save` and every checkpoint write it; `from_config` reads it back.

        Returns:
            A `ModelMetadata`: class names, positive class, threshold,
            `Preprocessing`, learning rate, seed, spectral decoupling and a
            summary of the training data.

        Raises:
            NotFittedError: Before `fit` or `load`.
        """
        self._check_fitted()
        return ModelMetadata(
            class_names=tuple(self.class_names),
            positive_class=self.positive_class,
            threshold=self.threshold_,
            preprocessing=self.preprocessing_,
            learning_rate=self.learning_rate,
            seed=self.seed,
            spectral_decoupling=self.spectral_decoupling,
            lung_focus=self.lung_focus,
            segmenter=self.segmenter_,
            training=self.training_record_.info if self.training_record_ else None,
        )

    @classmethod
    def from_config(
        cls,
        config: ModelMetadata,
        model: keras.Model,
        record: TrainingRecord | None = None,
    ) -> Classifier:
        """A fitted classifier from its stored config and its Keras model.

        Its parameters come from `config` (the model's preprocessing gives
        `image_size`, `color_mode` and `resize`), and so do its fitted
        attributes; `metadata_` is `config` itself.

        Args:
            config: What `get_config` returned (or a file stored).
            model: The Keras model, fitted.
            record: The content record of its training images, if any: what
                `evaluate` leaves out as seen.

        Returns:
            A fitted `Classifier`.

        Examples:
            >>> from covidxray import Classifier, Preprocessing, build_cnn
            >>> from covidxray._persist import ModelMetadata
            >>> config = ModelMetadata(
            ...     class_names=("normal", "covid"), positive_class=None,
            ...     threshold=0.3, preprocessing=Preprocessing((48, 48)))
            >>> clf = Classifier.from_config(config, build_cnn((48, 48, 1)))
            >>> clf.threshold_, clf.get_config().threshold
            (0.3, 0.3)
        """
        prep = config.preprocessing
        clf = cls(
            model,
            class_names=list(config.class_names),
            positive_class=config.positive_class,
            threshold=config.threshold,
            learning_rate=config.learning_rate,
            image_size=prep.image_size,
            color_mode=prep.color_mode,
            resize=prep.resize,
            spectral_decoupling=config.spectral_decoupling,
            lung_focus=config.lung_focus,
            seed=config.seed,
        )
        clf.model_ = model
        clf.classes_ = np.array(config.class_names)
        clf.threshold_ = config.threshold
        clf.preprocessing_ = prep
        clf.segmenter_ = dict(config.segmenter) if config.segmenter else None
        clf.metadata_ = config
        clf.training_record_ = record
        return clf

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write everything needed to predict into one `.keras` file.

        The file is written beside the target under a temporary name and then
        renamed over it, so a failed save leaves an earlier file intact.

        Returns the path written.
        """
        self._check_fitted()
        return _persist.save_atomic(
            self.model_, Path(path), self.get_config(), self.training_record_
        )

    def export(
        self,
        path: str | os.PathLike[str],
        format: str = "savedmodel",
        *,
        overwrite: bool = False,
    ) -> Path:
        """A copy of the model, its preprocessing in the graph, that runs
        without covidxray. See `docs/guides/export.md`.

        Args:
            path: The folder to write (atomically: a failure leaves nothing
                half-written, and an earlier export stays until the new one
                is in place).
            format: `"savedmodel"`: a TensorFlow SavedModel whose
                `serving_default` signature takes encoded PNG or JPEG files and
                `pixels` takes uint8 pixels; or `"tflite"`: `model.tflite` of the
                pixels path. Both hold `covidxray.json` (classes, threshold,
                preprocessing).
            overwrite: Replace a non-empty folder.

        Returns:
            The folder written.

        Raises:
            ValueError: A preprocessing step the graph cannot do (trim,
                equalisation, the lungs, a CT body box), named; a path that
                cannot be written; a non-empty folder without `overwrite`.
                All before any work.
        """
        self._check_fitted()
        return export.export_model(
            self.get_config(), self.model_, path, format, overwrite=overwrite
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Classifier:
        """Load a classifier saved by `save`, in Keras safe mode (no code runs).

        The file's metadata is in `metadata_`, a `ModelMetadata`.

        Raises:
            DataError: The file is missing, not a `.keras` archive, corrupted, or
                a plain Keras model without covidxray metadata.
        """
        model, config, record = _persist.read_classifier(Path(path))
        return cls.from_config(config, model, record)
