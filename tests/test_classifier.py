"""Tests of Classifier: fit, predict on every input type, evaluate, save, load."""

from __future__ import annotations

import inspect
import random
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from sklearn.exceptions import NotFittedError as SkNotFittedError

from covidxray import (
    Augmenter,
    Classifier,
    NotFittedError,
    Preprocessing,
    build_cnn,
    build_pretrained,
    load_dataset,
)
from covidxray.datasets import make_synthetic
from covidxray.features import FeatureCache

SIZE = 96


@pytest.fixture(scope="module")
def split_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(
        tmp_path_factory.mktemp("clf"),
        n_per_class=60,
        test_per_class=30,
        image_size=(SIZE, SIZE),
    )


@pytest.fixture(scope="module")
def data(split_root: Path):
    return load_dataset(split_root, image_size=(SIZE, SIZE), batch_size=16)


@pytest.fixture(scope="module")
def fitted(data) -> Classifier:
    clf = Classifier(
        build_cnn((SIZE, SIZE, 1)), class_names=data.class_names, learning_rate=2e-3
    )
    return clf.fit(data, epochs=10, verbose=0)


def test_fit_then_evaluate_learns_the_synthetic_pattern(
    fitted: Classifier, data
) -> None:
    ev = fitted.evaluate(data)
    assert ev.metrics["roc_auc"] > 0.9
    assert (
        ev.meta["split"] == "test" and ev.meta["data_fingerprint"] == data.fingerprint()
    )
    assert (
        ev.meta["covidxray_version"] and ev.meta["tensorflow_version"] == tf.__version__
    )
    assert sum(ev.support.values()) == 60
    assert set(fitted.history_) >= {"loss", "val_loss", "accuracy", "val_auc"}
    assert len(fitted.history_["loss"]) == 10
    assert fitted.preprocessing_ == Preprocessing((SIZE, SIZE), "grayscale", "stretch")


def test_predict_before_fit_raises_not_fitted() -> None:
    clf = Classifier(build_cnn((48, 48, 1)), class_names=["non", "covid"])
    with pytest.raises(NotFittedError, match="not fitted yet"):
        clf.predict(np.zeros((48, 48)))
    assert isinstance(NotFittedError("x"), ValueError)


def test_init_only_stores() -> None:
    model = build_cnn((48, 48, 1))
    clf = Classifier(model, class_names=["non", "covid"], threshold=0.3)
    assert clf.model is model and clf.threshold == 0.3
    assert not any(k.endswith("_") and not k.startswith("_") for k in vars(clf))


def test_predict_accepts_every_input_type(
    fitted: Classifier, split_root: Path, data
) -> None:
    folder = split_root / "test" / "covid"
    files = sorted(folder.iterdir())[:3]
    ref = fitted.predict_proba([str(f) for f in files])
    assert ref.shape == (3, 2)
    np.testing.assert_allclose(ref.sum(axis=1), 1.0, rtol=1e-6)
    pil = [Image.open(f) for f in files]
    u8 = np.stack([np.asarray(p) for p in pil])  # (N, H, W) uint8
    np.testing.assert_allclose(fitted.predict_proba(files[0]), ref[:1], rtol=1e-5)
    np.testing.assert_allclose(fitted.predict_proba(pil), ref, rtol=1e-5)
    np.testing.assert_allclose(fitted.predict_proba(pil[0]), ref[:1], rtol=1e-5)
    np.testing.assert_allclose(fitted.predict_proba(u8[0]), ref[:1], rtol=1e-5)
    np.testing.assert_allclose(
        fitted.predict_proba(u8[0][:, :, None]), ref[:1], rtol=1e-5
    )
    np.testing.assert_allclose(fitted.predict_proba(u8[..., None]), ref, rtol=1e-5)
    np.testing.assert_allclose(fitted.predict_proba(u8), ref, rtol=1e-5)  # (N, H, W)
    ds8 = tf.data.Dataset.from_tensor_slices(u8[..., None]).batch(2)  # uint8 batches
    np.testing.assert_allclose(fitted.predict_proba(ds8), ref, rtol=1e-5)
    np.testing.assert_allclose(
        fitted.predict_proba(u8[..., None] / 255.0), ref, rtol=1e-5
    )
    rgb = np.repeat(u8[..., None], 3, axis=-1)
    np.testing.assert_allclose(fitted.predict_proba(rgb), ref, rtol=1e-5)
    ds = tf.data.Dataset.from_tensor_slices(
        u8[..., None].astype("float32") / 255.0
    ).batch(2)
    np.testing.assert_allclose(fitted.predict_proba(ds), ref, rtol=1e-5)
    assert len(fitted.predict(folder)) == len(list(folder.iterdir()))
    big = np.asarray(Image.open(files[0]).resize((200, 150)))  # other size: resized
    assert fitted.predict_proba(big).shape == (1, 2)
    labels = fitted.predict(str(folder))
    assert set(labels) <= {"normal", "covid"}


def brightness_scorer() -> keras.Model:
    """A fixed model: P(positive) = sigmoid(20 * (mean brightness - 0.5))."""
    inputs = keras.Input((8, 8, 1))
    mean = keras.layers.GlobalAveragePooling2D()(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="output")(mean)
    model = keras.Model(inputs, outputs)
    model.get_layer("output").set_weights([np.array([[20.0]]), np.array([-10.0])])
    return model


def brightness_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positives are brighter on average; the classes overlap."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(np.int32)
    level = rng.normal(0.45 + 0.1 * y, 0.06)
    x = np.clip(level[:, None, None, None] + np.zeros((n, 8, 8, 1)), 0, 1)
    return x.astype(np.float32), y


def test_tune_threshold_holds_on_data_it_did_not_see() -> None:
    clf = Classifier(brightness_scorer(), class_names=["neg", "pos"])
    clf.fit(brightness_data(4, 0), epochs=1, verbose=0, class_weight=None)
    clf.model_.get_layer("output").set_weights(
        [np.array([[20.0]]), np.array([-10.0])]
    )  # undo the one training step: the scores are fixed
    val, test = brightness_data(2000, seed=1), brightness_data(4000, seed=2)
    chosen = clf.tune_threshold(val, target={"sensitivity": 0.9})
    assert clf.threshold_ == chosen
    sensitivity = clf.evaluate(test, n_bootstrap=0).metrics["sensitivity"]
    assert 0.86 <= sensitivity <= 0.94, sensitivity  # the target, out of sample
    clf.tune_threshold(val, target={"specificity": 0.8})
    specificity = clf.evaluate(test, n_bootstrap=0).metrics["specificity"]
    assert 0.76 <= specificity <= 0.84, specificity
    clf.tune_threshold(val)  # Youden: near the Bayes threshold, mean level 0.5
    balanced = clf.evaluate(test, n_bootstrap=0).metrics["balanced_accuracy"]
    assert balanced >= 0.75, balanced  # the best possible here is about 0.80
    with pytest.raises(ValueError, match="`target` argument"):
        clf.tune_threshold(val, target={"ppv": 0.9})


def test_tune_threshold_uses_the_validation_split_never_the_test_split(
    fitted: Classifier, data, split_root: Path
) -> None:
    clf = Classifier.load(fitted.save(Path(data.source).parent / "tune.keras"))
    from_dataset = clf.tune_threshold(data, target={"sensitivity": 0.99})
    from_val = clf.tune_threshold(
        data.as_tf_dataset("val"), target={"sensitivity": 0.99}
    )
    from_test = clf.tune_threshold(
        data.as_tf_dataset("test"), target={"sensitivity": 0.99}
    )
    assert from_dataset == from_val and from_val != from_test
    no_val = load_dataset(split_root, image_size=(SIZE, SIZE), validation_split=0.0)
    with pytest.raises(ValueError, match="val split .* is empty.*never used"):
        clf.tune_threshold(no_val)


def test_fit_with_augmenter_and_arrays(data) -> None:
    x, y = data.images("train"), data.labels("train")
    clf = Classifier(build_cnn((SIZE, SIZE, 1)), class_names=data.class_names)
    clf.fit(
        (x, y), epochs=1, augmenter=Augmenter.xray(seed=0), verbose=0, early_stopping=2
    )
    assert len(clf.history_["loss"]) == 1 and np.isfinite(clf.history_["loss"][0])


class StopAfter(keras.callbacks.Callback):
    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.stop_at = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.stop_at:
            raise KeyboardInterrupt("simulated interruption")


def test_interrupted_fit_resumes_from_checkpoint(data, tmp_path: Path) -> None:
    ckpt = tmp_path / "run.keras"
    clf = Classifier(build_cnn((SIZE, SIZE, 1)), class_names=data.class_names)
    with pytest.raises(KeyboardInterrupt):
        clf.fit(data, epochs=5, checkpoint=ckpt, callbacks=[StopAfter(2)], verbose=0)
    assert ckpt.is_file() and Path(f"{ckpt}.backup").is_dir()
    assert Classifier.load(ckpt).metadata_.checkpoint["epoch"] <= 2
    resumed = Classifier(build_cnn((SIZE, SIZE, 1)), class_names=data.class_names)
    resumed.fit(data, epochs=5, checkpoint=ckpt, verbose=0)
    assert len(resumed.history_["loss"]) == 3  # epochs 3, 4 and 5 only
    assert not Path(f"{ckpt}.backup").exists()
    assert Classifier.load(ckpt).predict_proba(data.images("test")[:2]).shape == (2, 2)


def test_frozen_backbone_uses_feature_cache_and_returns_full_model(data) -> None:
    model = build_pretrained(
        "mobilenetv2", input_shape=(SIZE, SIZE, 1), weights=None, head="gap"
    )
    backbone_before = [w.copy() for w in model.get_layer("mobilenetv2").get_weights()]
    head_before = [
        w.copy() for w in model.get_layer("head").get_layer("output").get_weights()
    ]
    clf = Classifier(model, class_names=data.class_names).fit(data, epochs=2, verbose=0)
    assert clf.feature_cache_used_
    assert clf.model_ is model
    after = model.get_layer("mobilenetv2").get_weights()
    assert all(
        np.array_equal(a, b) for a, b in zip(backbone_before, after, strict=True)
    )
    assert not np.array_equal(
        head_before[0], model.get_layer("head").get_layer("output").get_weights()[0]
    )
    assert clf.predict_proba(data.images("test")[:3]).shape == (3, 2)

    clf.unfreeze(5).set_params(learning_rate=1e-5)
    trainable = [
        layer.name
        for layer in model.get_layer("mobilenetv2").layers
        if layer.trainable and layer.weights
    ]
    assert trainable and all(
        not isinstance(
            model.get_layer("mobilenetv2").get_layer(n), keras.layers.BatchNormalization
        )
        for n in trainable
    )
    clf.fit(data, epochs=1, verbose=0)
    assert not clf.feature_cache_used_


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tmp_path: Path) -> None:
    code = f"""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from covidxray import Classifier, build_cnn, load_dataset
from covidxray.datasets import make_synthetic
root = make_synthetic(r"{tmp_path}", n_per_class=12, image_size=(48, 48))
data = load_dataset(root, image_size=(48, 48), batch_size=8)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
clf = Classifier(build_cnn((48, 48, 1)), class_names=data.class_names)
clf.fit(data, epochs=2, strategy=strategy, verbose=0)
assert len(clf.history_["loss"]) == 2
assert clf.predict_proba(data.images("val")).shape[1] == 2
print("MIRRORED-OK", strategy.num_replicas_in_sync)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MIRRORED-OK 2" in result.stdout


def test_fit_refuses_data_of_another_shape(data) -> None:
    clf = Classifier(build_cnn((64, 64, 3)), class_names=data.class_names)
    with pytest.raises(
        ValueError,
        match=r"takes images of shape \(64, 64, 3\), but the dataset serves \(96, 96, 1\)",
    ):
        clf.fit(data, epochs=1, verbose=0)


def tiny_data(n: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 48, 48, 1)).astype(np.float32), np.arange(n) % 2


def global_draws() -> tuple[float, float, float]:
    return (
        random.random(),
        float(np.random.random()),
        float(tf.random.uniform(())),
    )


def seed_globals(value: int, tf_value: int = 0) -> None:
    random.seed(value)
    np.random.seed(value)
    tf.random.set_seed(tf_value)


def test_fit_seeds_its_own_streams_and_leaves_global_state_alone() -> None:
    keras.utils.set_random_seed(0)
    model = build_cnn((48, 48, 1))  # has dropout: a random stream of its own
    start = [w.copy() for w in model.get_weights()]
    x, y = tiny_data()

    def fit_from(global_seed: int) -> tuple[list[np.ndarray], tuple]:
        model.set_weights(start)
        seed_globals(global_seed)
        clf = Classifier(model, class_names=["a", "b"], seed=5)
        clf.fit((x, y), epochs=2, verbose=0, augmenter=Augmenter.xray())
        return clf.model_.get_weights(), global_draws()

    seed_globals(1)
    untouched = global_draws()
    weights_1, after_1 = fit_from(1)
    weights_2, _ = fit_from(2)
    assert after_1 == untouched  # the caller's Python, NumPy and TF streams
    for a, b in zip(weights_1, weights_2, strict=True):
        # Same seed, whatever Python's and NumPy's global state. (TensorFlow
        # combines a caller's tf.random.set_seed with every op seed, shuffles
        # included, so that one stays part of the recipe.)
        np.testing.assert_array_equal(a, b)
    model.set_weights(start)
    other = Classifier(model, class_names=["a", "b"], seed=6)
    other.fit((x, y), epochs=2, verbose=0, augmenter=Augmenter.xray())
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(weights_1, other.model_.get_weights(), strict=True)
    )


@pytest.mark.parametrize("distributed", [False, True])
def test_a_second_fit_continues_from_the_fitted_weights(distributed: bool) -> None:
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0") if distributed else None
    x, y = tiny_data()
    clf = Classifier(build_cnn((48, 48, 1)), class_names=["a", "b"])
    initial = [w.copy() for w in clf.model.get_weights()]
    clf.fit((x, y), epochs=1, verbose=0, strategy=strategy)
    first = [w.copy() for w in clf.model_.get_weights()]
    assert any(not np.array_equal(a, b) for a, b in zip(initial, first, strict=True))
    # A zero learning rate: a continued fit keeps the fitted weights exactly,
    # a fresh start would go back to the initial ones.
    clf.set_params(optimizer="sgd", learning_rate=0.0)
    clf.fit((x, y), epochs=1, verbose=0, strategy=strategy)
    for a, b in zip(first, clf.model_.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_unfreeze_acts_on_the_fitted_model() -> None:
    x = np.random.default_rng(0).random((16, 48, 48, 1)).astype(np.float32)
    y = np.arange(16) % 2
    model = build_pretrained("mobilenetv2", input_shape=(48, 48, 1), weights=None)
    clf = Classifier(model, class_names=["a", "b"])
    clf.fit(
        (x, y), epochs=1, verbose=0, strategy=tf.distribute.OneDeviceStrategy("/cpu:0")
    )
    assert clf.model_ is not model  # cloned into the strategy's scope
    clf.unfreeze(3)  # Conv_1, Conv_1_bn (BatchNorm stays frozen) and out_relu
    fitted_backbone = clf.model_.get_layer("mobilenetv2")
    assert fitted_backbone.trainable and fitted_backbone.get_layer("Conv_1").trainable
    assert not model.get_layer("mobilenetv2").trainable
    before = [w.copy() for w in fitted_backbone.get_layer("Conv_1").get_weights()]
    frozen = [w.copy() for w in fitted_backbone.get_layer("Conv1").get_weights()]
    clf.fit((x, y), epochs=1, verbose=0)  # no strategy now: still continues
    backbone = clf.model_.get_layer("mobilenetv2")
    after = backbone.get_layer("Conv_1").get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    for a, b in zip(frozen, backbone.get_layer("Conv1").get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


class Watch(keras.callbacks.Callback):
    """Record the model a callback sees, and stop after `stop_after` epochs."""

    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__()
        self.stop_after = stop_after
        self.seen: list[tuple[str, int]] = []

    def on_train_begin(self, logs=None):
        self.seen.append((self.model.name, self.model.count_params()))

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append((self.model.name, self.model.count_params()))
        if self.stop_after is not None and epoch + 1 >= self.stop_after:
            self.model.stop_training = True


def test_cache_features_choice_and_callbacks_see_the_full_model(data) -> None:
    model = build_pretrained(
        "mobilenetv2", input_shape=(SIZE, SIZE, 1), weights=None, head="gap"
    )
    watch = Watch(stop_after=2)
    clf = Classifier(model, class_names=data.class_names)
    clf.fit(data, epochs=5, verbose=0, callbacks=[watch], cache_features=True)
    assert clf.feature_cache_used_
    assert len(clf.history_["loss"]) == 2  # the callback's stop reached the head
    assert set(watch.seen) == {(model.name, model.count_params())}
    clf.fit(data, epochs=1, verbose=0, cache_features=False)
    assert not clf.feature_cache_used_
    with pytest.raises(ValueError, match="cache_features=True.*an augmenter"):
        clf.fit(data, epochs=1, augmenter=Augmenter.xray(seed=0), cache_features=True)
    with pytest.raises(ValueError, match="`cache_features` argument of fit"):
        clf.fit(data, epochs=1, cache_features="always")
    cnn = Classifier(build_cnn((SIZE, SIZE, 1)), class_names=data.class_names)
    with pytest.raises(ValueError, match="no registered backbone"):
        cnn.fit(data, epochs=1, cache_features=True)


class FreezeLearning(keras.callbacks.Callback):
    """Set the optimizer's learning rate to 0, as a schedule callback would."""

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate.assign(0.0)


def test_callbacks_change_the_optimizer_that_trains_the_cached_head(data) -> None:
    model = build_pretrained(
        "mobilenetv2", input_shape=(SIZE, SIZE, 1), weights=None, head="gap"
    )
    before = [
        w.copy() for w in model.get_layer("head").get_layer("output").get_weights()
    ]
    clf = Classifier(model, class_names=data.class_names, learning_rate=0.1)
    clf.fit(data, epochs=2, verbose=0, callbacks=[FreezeLearning()])
    assert clf.feature_cache_used_
    for a, b in zip(
        before, model.get_layer("head").get_layer("output").get_weights(), strict=True
    ):
        np.testing.assert_array_equal(a, b)  # the head did not move at rate 0


def test_auto_cache_leaves_a_trainable_stem_to_train() -> None:
    backbone = build_pretrained(
        "mobilenetv2", input_shape=(48, 48, 3), weights=None, head="gap"
    ).get_layer("mobilenetv2")
    inputs = keras.Input((48, 48, 1))
    stem = keras.layers.Conv2D(3, 1, name="stem")(inputs)  # learns a colour mix
    h = keras.layers.GlobalAveragePooling2D()(backbone(stem))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(h))
    clf = Classifier(model, class_names=["a", "b"])
    clf.fit(tiny_data(16), epochs=1, verbose=0)
    assert not clf.feature_cache_used_
    with pytest.raises(ValueError, match="layers before the backbone have trainable"):
        clf.fit(tiny_data(16), epochs=1, verbose=0, cache_features=True)


def test_a_model_without_a_fixed_size_and_a_new_model_by_set_params() -> None:
    inputs = keras.Input((None, None, 1))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    flexible = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(h))
    with pytest.raises(ValueError, match="no fixed size: pass image_size="):
        Classifier(flexible, class_names=["a", "b"]).fit(tiny_data(8), verbose=0)
    clf = Classifier(flexible, class_names=["a", "b"], image_size=(48, 48))
    clf.fit(tiny_data(8), epochs=1, verbose=0)
    assert clf.preprocessing_ == Preprocessing((48, 48), "grayscale", "stretch")
    assert clf.predict(Image.new("L", (90, 60))).shape == (1,)
    clf.set_params(model=build_cnn((48, 48, 1)))
    with pytest.raises(NotFittedError):
        clf.predict(tiny_data(1)[0])
    clf.fit(tiny_data(8), epochs=1, verbose=0)
    assert clf.model_ is clf.model and clf.model_.name == "paper_cnn"


def test_fit_checks_the_checkpoint_path_before_training(tmp_path: Path) -> None:
    clf = Classifier(build_cnn((48, 48, 1)), class_names=["a", "b"])
    target = tmp_path / "missing" / "best.keras"
    with pytest.raises(ValueError, match=r"Cannot write '.*missing/best.keras' \(fit"):
        clf.fit(tiny_data(8), epochs=1, checkpoint=target)
    assert not hasattr(clf, "model_")  # nothing was trained


# The scikit-learn contract, checked with scikit-learn itself.


def test_clone_gives_an_unfitted_classifier_with_equal_parameters() -> None:
    from sklearn.base import clone

    keras.utils.set_random_seed(0)
    model = build_pretrained(
        "mobilenetv2", input_shape=(32, 32, 1), weights=None, head="gap"
    )
    cache = FeatureCache()
    clf = Classifier(
        model,
        class_names=["a", "b"],
        threshold=0.3,
        optimizer=keras.optimizers.SGD(learning_rate=0.05),
        image_size=(32, 32),
        feature_cache=cache,
    )
    twin = clone(clf)
    assert type(twin) is Classifier and not hasattr(twin, "model_")
    mine, theirs = clf.get_params(deep=False), twin.get_params(deep=False)
    copied = ("model", "optimizer")
    assert {k: v for k, v in mine.items() if k not in copied} == {
        k: v for k, v in theirs.items() if k not in copied
    }
    assert twin.feature_cache is cache  # shared, as the docstring says
    assert twin.model is not model and twin.optimizer is not clf.optimizer
    assert twin.optimizer.get_config() == clf.optimizer.get_config()
    for a, b in zip(model.get_weights(), twin.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert layer_flags(twin.model) == layer_flags(model)  # BatchNorm frozen too


def layer_flags(model: keras.Model) -> list[tuple[str, str, bool]]:
    """Name, type and trainable flag of every layer, nested models included."""
    out = []
    for layer in model.layers:
        if not isinstance(layer, keras.layers.InputLayer):
            out.append((layer.name, type(layer).__name__, layer.trainable))
        if isinstance(layer, keras.Model):
            out += layer_flags(layer)
    return out


def test_fitting_a_clone_leaves_the_original_alone() -> None:
    from sklearn.base import clone
    from sklearn.utils.validation import check_is_fitted

    keras.utils.set_random_seed(0)
    clf = Classifier(build_cnn((48, 48, 1)), class_names=["a", "b"])
    clf.fit(tiny_data(8), epochs=1, verbose=0)
    check_is_fitted(clf)
    fitted_weights = [w.copy() for w in clf.model_.get_weights()]
    twin = clone(clf)
    with pytest.raises(SkNotFittedError):
        check_is_fitted(twin)
    with pytest.raises(NotFittedError):
        twin.predict(tiny_data(1)[0])
    for a, b in zip(fitted_weights, twin.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the clone starts from these weights
    twin.fit(tiny_data(16, seed=1), epochs=2, verbose=0)
    check_is_fitted(twin)
    assert twin.model_ is not clf.model_
    moved = [
        not np.array_equal(a, b)
        for a, b in zip(fitted_weights, twin.model_.get_weights(), strict=True)
    ]
    assert any(moved)  # the clone trained ...
    for a, b in zip(fitted_weights, clf.model_.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # ... and the original did not move


def test_get_params_deep_and_set_params_nested_in_a_scikit_learn_pipeline() -> None:
    from sklearn.pipeline import Pipeline

    model = build_cnn((48, 48, 1))
    clf = Classifier(model, class_names=["a", "b"])
    params = clf.get_params(deep=True)
    assert params == clf.get_params(deep=False)  # no parameter has parameters
    assert params["model"] is model and params["threshold"] == 0.5
    pipe = Pipeline([("clf", clf)])
    assert pipe.get_params()["clf__learning_rate"] == 1e-3
    pipe.set_params(clf__learning_rate=1e-4, clf__threshold=0.2)
    assert clf.learning_rate == 1e-4 and clf.threshold == 0.2
    with pytest.raises(ValueError, match="Unknown parameter 'speed' for Classifier"):
        clf.set_params(speed=1)
    with pytest.raises(ValueError, match="'threshold' of Classifier has no parameters"):
        clf.set_params(threshold__x=1)


def test_not_fitted_error_is_a_value_error_and_an_attribute_error() -> None:
    assert issubclass(NotFittedError, ValueError)
    assert issubclass(NotFittedError, AttributeError)
    clf = Classifier(build_cnn((48, 48, 1)), class_names=["a", "b"])
    with pytest.raises(AttributeError, match="not fitted yet"):
        clf.predict_proba(np.zeros((48, 48)))
    with pytest.raises(AttributeError, match="not fitted yet"):
        clf.get_config()


def test_a_new_model_drops_every_fitted_attribute() -> None:
    clf = Classifier(build_cnn((48, 48, 1)), class_names=["a", "b"])
    clf.fit(tiny_data(8), epochs=1, verbose=0)
    same = clf.model
    clf.set_params(model=same, threshold=0.4)  # the same model: still fitted
    assert clf.model_ is same and clf.threshold == 0.4
    clf.set_params(model=build_cnn((48, 48, 1)))
    assert not [k for k in vars(clf) if k.endswith("_") and not k.startswith("_")]


def test_data_is_the_one_data_argument_and_old_names_warn() -> None:
    clf = Classifier(brightness_scorer(), class_names=["neg", "pos"])
    with pytest.warns(
        DeprecationWarning,
        match=r"`train` argument of Classifier\.fit is deprecated; use `data`",
    ):
        clf.fit(train=brightness_data(8, 0), epochs=1, verbose=0, class_weight=None)
    assert clf.model_ is clf.model
    with pytest.raises(TypeError, match="both `data` and its deprecated alias `train`"):
        clf.fit(data=brightness_data(8, 0), train=brightness_data(8, 0))
    clf.model_.get_layer("output").set_weights([np.array([[20.0]]), np.array([-10.0])])
    val = brightness_data(400, 1)
    new = clf.tune_threshold(data=val)
    with pytest.warns(
        DeprecationWarning,
        match="`validation_data` argument of Classifier.tune_threshold is deprecated; use `data`",
    ):
        old = clf.tune_threshold(validation_data=val)
    assert old == new == clf.threshold_
    for method in (Classifier.fit, Classifier.tune_threshold, Classifier.evaluate):
        assert next(iter(list(inspect.signature(method).parameters)[1:])) == "data"
