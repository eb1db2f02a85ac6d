"""Tests of SpectralDecoupling and compile_for."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from covidxray.training import OPTIMIZERS, SpectralDecoupling, compile_for


def test_spectral_decoupling_adds_half_the_strength_times_the_squared_logit() -> None:
    y = np.array([[1.0], [0.0], [1.0]])
    p = np.array([[0.9], [0.2], [0.5]])
    plain = np.asarray(keras.losses.binary_crossentropy(y, p))
    logits = np.log(p / (1 - p))[:, 0]
    got = np.asarray(SpectralDecoupling(0.4).call(y, p))
    np.testing.assert_allclose(got, plain + 0.2 * logits**2, rtol=1e-5)
    np.testing.assert_allclose(SpectralDecoupling(0.0).call(y, p), plain, rtol=1e-6)


def test_spectral_decoupling_of_a_softmax_uses_centred_log_probabilities() -> None:
    y = np.array([2, 0])
    p = np.array([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]])
    plain = np.asarray(keras.losses.sparse_categorical_crossentropy(y, p))
    logs = np.log(p)
    centred = logs - logs.mean(axis=1, keepdims=True)
    expected = plain + 0.05 * (centred**2).mean(axis=1)
    np.testing.assert_allclose(SpectralDecoupling(0.1).call(y, p), expected, rtol=1e-5)


def test_spectral_decoupling_keeps_its_name_in_model_files() -> None:
    loss = SpectralDecoupling(0.3)
    assert keras.saving.get_registered_name(SpectralDecoupling) == (
        "covidxray>SpectralDecoupling"
    )
    again = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(loss)
    )
    assert isinstance(again, SpectralDecoupling) and again.strength == 0.3
    # A file written before the move names the old module: the registered
    # name still finds the class.
    old = {
        "module": "covidxray._training",
        "class_name": "SpectralDecoupling",
        "config": {
            "name": "spectral_decoupling",
            "reduction": "sum_over_batch_size",
            "strength": 0.25,
        },
        "registered_name": "covidxray>SpectralDecoupling",
    }
    restored = keras.saving.deserialize_keras_object(old)
    assert isinstance(restored, SpectralDecoupling) and restored.strength == 0.25


def _model(units: int) -> keras.Model:
    activation = "sigmoid" if units == 1 else "softmax"
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(units, activation)])


def test_compile_for_picks_the_loss_and_metrics_of_the_output() -> None:
    binary = _model(1)
    compile_for(binary, "adam", 1e-3)
    assert isinstance(binary.loss, keras.losses.BinaryCrossentropy)
    assert isinstance(binary.optimizer, keras.optimizers.Adam)
    assert float(binary.optimizer.learning_rate) == pytest.approx(1e-3)
    metrics = binary.get_compile_config()["metrics"]
    assert [m["config"]["name"] for m in metrics] == ["accuracy", "auc"]
    multi = _model(3)
    compile_for(multi, "sgd", 0.1, steps_per_execution=4)
    assert isinstance(multi.loss, keras.losses.SparseCategoricalCrossentropy)
    assert isinstance(multi.optimizer, keras.optimizers.SGD)
    assert multi.steps_per_execution == 4
    spectral = _model(1)
    compile_for(spectral, "adamw", 1e-3, spectral_decoupling=0.2)
    assert isinstance(spectral.loss, SpectralDecoupling)
    assert spectral.loss.strength == 0.2
    mine = keras.optimizers.RMSprop(0.5)
    kept = _model(1)
    compile_for(kept, mine, 1e-3)
    assert kept.optimizer is mine  # an optimizer object is used as it is
    assert set(OPTIMIZERS) == {"adam", "adamw", "sgd", "rmsprop"}


def test_compile_for_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="`optimizer` argument of Classifier"):
        compile_for(_model(1), "adagrad", 1e-3)
    with pytest.raises(ValueError, match="`spectral_decoupling` argument"):
        compile_for(_model(1), "adam", 1e-3, -1.0)
