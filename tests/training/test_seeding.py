"""Tests of seed_streams and global_random_state_kept."""

from __future__ import annotations

import random

import keras
import numpy as np
import pytest

from covidxray.training import global_random_state_kept, seed_streams


def _dropout_model() -> keras.Model:
    inner_in = keras.Input((64,))
    inner = keras.Model(inner_in, keras.layers.Dropout(0.5)(inner_in), name="inner")
    inputs = keras.Input((64,))
    return keras.Model(inputs, keras.layers.Dropout(0.5)(inner(inputs)))


def test_one_seed_gives_the_same_dropout_masks() -> None:
    x = np.ones((4, 64), "float32")

    def masks(seed: int | None, model: keras.Model | None = None) -> np.ndarray:
        model = model or _dropout_model()
        seed_streams(model, seed)
        return np.stack([np.asarray(model(x, training=True)) for _ in range(2)])

    first, again, other = masks(1), masks(1), masks(2)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first[0], first[1])  # the stream moves on
    model = _dropout_model()
    seed_streams(model, 1)
    states = [np.asarray(v) for v in model.non_trainable_variables]
    seed_streams(model, None)  # None leaves the states as they are
    after = [np.asarray(v) for v in model.non_trainable_variables]
    for a, b in zip(states, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_global_random_state_is_put_back_even_on_error() -> None:
    random.seed(3)
    np.random.seed(3)
    expected = (random.random(), np.random.random())
    random.seed(3)
    np.random.seed(3)
    with pytest.raises(RuntimeError), global_random_state_kept():
        random.random()
        np.random.random(10)
        keras.models.clone_model(_dropout_model())  # draws layer seeds
        raise RuntimeError("in the middle")
    assert (random.random(), np.random.random()) == expected


def _states_by_layer(model: keras.Model) -> dict[str, list[int]]:
    """The seed state of each dropout layer, nested ones included, by name."""
    from covidxray._keras_compat import seed_generators

    generators = {id(g): g for g in seed_generators(model)}
    found: dict[str, list[int]] = {}

    def visit(layer: keras.layers.Layer) -> None:
        for inner in getattr(layer, "layers", ()):
            visit(inner)
        for value in vars(layer).values():
            if id(value) in generators:
                found[layer.name] = np.asarray(value.state).tolist()

    visit(model)
    return found


def test_named_parts_get_the_seed_states_the_flat_graph_got() -> None:
    # EfficientNet has dropout inside its blocks as well as in the head: each
    # layer gets the same stream from one seed as in the flat graph of before.
    from covidxray import build_pretrained
    from legacy_models import build_flat_pretrained

    flat = build_flat_pretrained("efficientnetb0", input_shape=(32, 32, 1))
    nested = build_pretrained("efficientnetb0", input_shape=(32, 32, 1), weights=None)
    seed_streams(flat, 7)
    seed_streams(nested, 7)
    states = _states_by_layer(nested)
    assert len(states) > 2 and "head_dropout" in states
    assert states == _states_by_layer(flat)
