"""Tests of the training loops: which worker am I, the model to train, Keras'
fit and the loop of our own that a multi-worker strategy runs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from covidxray.training import (
    FitResult,
    compile_for,
    multi_worker_fit,
    prepare,
    train,
    worker_shard,
)


def _strategy(spec: dict[str, list[str]], task_type: str, task_id: int) -> object:
    resolver = SimpleNamespace(
        cluster_spec=lambda: tf.train.ClusterSpec(spec),
        task_type=task_type,
        task_id=task_id,
    )
    return SimpleNamespace(cluster_resolver=resolver)


def test_worker_shard_numbers_the_chief_first() -> None:
    assert worker_shard(None) is None
    assert worker_shard(tf.distribute.get_strategy()) is None
    workers = {"worker": ["a:1", "b:1"]}
    assert worker_shard(_strategy(workers, "worker", 1)) == (1, 2)
    with_chief = {"chief": ["c:1"], "worker": ["a:1", "b:1"]}
    assert worker_shard(_strategy(with_chief, "chief", 0)) == (0, 3)
    assert worker_shard(_strategy(with_chief, "worker", 0)) == (1, 3)
    assert worker_shard(_strategy({"worker": ["a:1"]}, "worker", 0)) is None
    assert worker_shard(_strategy(with_chief, "evaluator", 0)) is None


def _tiny() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")]
    )


def test_prepare_compiles_the_model_or_its_clone_in_the_strategy() -> None:
    compiled: list[keras.Model] = []

    def compile_model(model: keras.Model) -> None:
        compiled.append(model)
        compile_for(model, "sgd", 0.1)

    model = _tiny()
    assert prepare(model, None, compile_model) is model and compiled == [model]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    clone = prepare(model, strategy, compile_model)
    assert clone is not model and compiled[-1] is clone
    assert clone.distribute_strategy is strategy
    for a, b in zip(clone.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def _data(n: int = 32) -> tuple[tf.data.Dataset, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(8), x, y


@pytest.mark.slow
def test_train_runs_keras_fit_and_reports_what_it_did() -> None:
    model = _tiny()
    compile_for(model, "sgd", 0.5)
    ds, _, _ = _data()
    result = train(
        model,
        train_ds=ds,
        val_ds=ds,
        epochs=3,
        class_weight=None,
        save=lambda *a: None,
        checkpoint=None,
        early_stopping=None,
        user_callbacks=[],
        cache_features=False,
        verbose=0,
        seed=0,
    )
    assert isinstance(result, FitResult) and not result.feature_cache_used
    assert len(result.history["loss"]) == 3 and len(result.history["val_loss"]) == 3
    assert all(isinstance(v, float) for v in result.history["loss"])
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert result.seconds > 0
    with pytest.raises(ValueError, match="no frozen backbone it splits at"):
        train(
            model,
            train_ds=ds,
            val_ds=None,
            epochs=1,
            class_weight=None,
            save=lambda *a: None,
            checkpoint=None,
            early_stopping=None,
            user_callbacks=[],
            cache_features=True,
            verbose=0,
            seed=0,
        )


@pytest.mark.slow
def test_our_own_loop_trains_like_fit_and_resumes_from_a_backup(tmp_path: Path) -> None:
    ds, x, y = _data()
    ours, theirs = _tiny(), _tiny()
    for model in (ours, theirs):
        compile_for(model, "sgd", 0.5)
    history = multi_worker_fit(
        ours, train_ds=ds, val_ds=ds, epochs=3, class_weight=None, callbacks=[]
    )
    fitted = theirs.fit(ds, epochs=3, verbose=0, shuffle=False).history
    np.testing.assert_allclose(history["loss"], fitted["loss"], rtol=1e-4)
    assert len(history["val_loss"]) == 3
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

    backup = str(tmp_path / "backup")

    class Die(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: object = None) -> None:
            if epoch == 1:
                raise RuntimeError("killed")

    first = _tiny()
    compile_for(first, "sgd", 0.5)
    with pytest.raises(RuntimeError, match="killed"):
        multi_worker_fit(
            first,
            train_ds=ds,
            val_ds=None,
            epochs=4,
            class_weight=None,
            callbacks=[keras.callbacks.BackupAndRestore(backup), Die()],
        )
    again = _tiny()
    compile_for(again, "sgd", 0.5)
    resumed = multi_worker_fit(
        again,
        train_ds=ds,
        val_ds=None,
        epochs=4,
        class_weight={0: 1.0, 1: 2.0},
        callbacks=[keras.callbacks.BackupAndRestore(backup)],
    )
    assert len(resumed["loss"]) == 2  # epochs 3 and 4 only
