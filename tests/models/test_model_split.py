"""Tests of find_backbone, split_at_backbone and unfreeze_backbone: by name for
today's models, by the layer graph for flat models saved before."""

from __future__ import annotations

import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

from covidxray import build_cnn, build_pretrained, split_at_backbone
from covidxray.models import find_backbone, unfreeze_backbone
from covidxray.models.split import named_parts
from legacy_models import build_flat_pretrained


@pytest.mark.parametrize("head_kind", ["paper", "gap"])
def test_split_at_backbone_shares_layers_and_reproduces_the_model(
    head_kind: str,
) -> None:
    model = build_pretrained(
        "mobilenetv2", input_shape=(48, 48, 1), weights=None, head=head_kind
    )
    features, head = split_at_backbone(model)
    x = np.random.default_rng(2).random((3, 48, 48, 1)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Keras' "structure of `inputs`" among them
        split = np.asarray(head(features(x)))
    np.testing.assert_allclose(split, np.asarray(model(x)), atol=1e-5)
    assert features.layers[-1] is model.get_layer("mobilenetv2")
    assert features.layers[1] is model.get_layer("stem")
    output = model.get_layer("head").get_layer("output")
    assert head.get_layer("output") is output
    assert head.layers[1].name == "head_pool"  # the head's own layers, one by one
    # Changing the model's head changes the split's head: one set of weights.
    output.set_weights([w + 1.0 for w in output.get_weights()])
    np.testing.assert_allclose(
        np.asarray(head(features(x))), np.asarray(model(x)), atol=1e-5
    )


def test_named_parts_are_taken_by_name_without_reading_the_graph(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from covidxray import _keras_compat

    def no_walk(model: keras.Model) -> None:
        raise AssertionError("the layer graph was walked")

    monkeypatch.setattr(_keras_compat, "functional_chain", no_walk)
    model = build_pretrained("mobilenetv2", input_shape=(32, 32, 1), weights=None)
    stem, backbone, head = named_parts(model)
    assert (stem.name, backbone.name, head.name) == ("stem", "mobilenetv2", "head")
    features, head_model = split_at_backbone(model)
    assert features.layers[-1] is backbone
    with pytest.raises(AssertionError, match="walked"):  # a flat model is walked
        split_at_backbone(build_flat_pretrained("mobilenetv2", input_shape=(32, 32, 1)))


def test_a_model_that_only_looks_named_is_not_taken_by_name() -> None:
    # A user's layer called "stem" that is no model, or parts in another order.
    backbone = build_pretrained(
        "mobilenetv2", input_shape=(32, 32, 3), weights=None
    ).get_layer("mobilenetv2")
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Conv2D(3, 1, name="stem")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="head")(backbone(x))
    model = keras.Model(inputs, x)
    assert named_parts(model) is None
    features, head = split_at_backbone(model)  # split by the graph, as before
    assert features.layers[-1] is backbone and len(features.layers) == 3
    assert named_parts(build_cnn((48, 48, 1))) is None
    assert (
        named_parts(keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]))
        is None
    )


def test_a_flat_model_saved_before_still_loads_and_splits(tmp_path: Path) -> None:
    keras.utils.set_random_seed(5)
    flat = build_flat_pretrained("mobilenetv2", input_shape=(48, 48, 1), head="paper")
    flat.save(tmp_path / "old.keras")
    loaded = keras.saving.load_model(tmp_path / "old.keras", safe_mode=True)
    assert named_parts(loaded) is None and find_backbone(loaded) is not None
    x = np.random.default_rng(4).random((2, 48, 48, 1)).astype("float32")
    features, head = split_at_backbone(loaded)
    assert features.layers[-1] is loaded.get_layer("mobilenetv2")
    assert head.get_layer("output") is loaded.get_layer("output")
    np.testing.assert_allclose(head(features(x)), flat(x), atol=1e-5)
    # The same weights in today's parts: the same split, the same numbers.
    nested = build_pretrained(
        "mobilenetv2", input_shape=(48, 48, 1), weights=None, head="paper"
    )
    nested.set_weights(loaded.get_weights())
    new_features, new_head = split_at_backbone(nested)
    np.testing.assert_allclose(new_features(x), features(x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        new_head(new_features(x)), head(features(x)), rtol=1e-6, atol=1e-7
    )


def test_split_at_backbone_refuses_what_it_would_mis_wire() -> None:
    with pytest.raises(ValueError, match="'paper_cnn' has no registered backbone"):
        split_at_backbone(build_cnn((64, 64, 1)))
    base = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(48, 48, 3)
    )
    base.name = "mobilenetv2"
    inputs = keras.Input((48, 48, 3))
    maps = base(inputs)
    pooled = keras.layers.Concatenate()(
        [
            keras.layers.GlobalAveragePooling2D()(maps),
            keras.layers.GlobalMaxPooling2D()(maps),  # a second branch
        ]
    )
    branched = keras.Model(inputs, keras.layers.Dense(1)(pooled), name="branched")
    with pytest.raises(ValueError, match="'branched' is not a straight chain"):
        split_at_backbone(branched)
    seq = keras.Sequential(
        [keras.Input((48, 48, 3)), base, keras.layers.GlobalAveragePooling2D()]
    )
    features, head = split_at_backbone(seq)
    x = np.zeros((1, 48, 48, 3), "float32")
    np.testing.assert_allclose(head(features(x)), seq(x), atol=1e-5)
    other = build_pretrained("mobilenetv2", input_shape=(48, 48, 3), weights=None)
    with pytest.raises(ValueError, match="`backbone` argument of split_at_backbone"):
        split_at_backbone(other, base)


def test_split_at_another_part_of_a_named_model() -> None:
    # Grad-CAM splits at whichever nested model holds the layer it explains.
    model = build_pretrained("mobilenetv2", input_shape=(32, 32, 1), weights=None)
    x = np.random.default_rng(0).random((2, 32, 32, 1)).astype("float32")
    for part in ("stem", "head"):
        features, head = split_at_backbone(model, model.get_layer(part))
        assert features.layers[-1] is model.get_layer(part)
        np.testing.assert_allclose(head(features(x)), model(x), atol=1e-5)


def test_unfreeze_backbone_leaves_batch_norm_frozen() -> None:
    model = build_pretrained("mobilenetv2", input_shape=(48, 48, 1), weights=None)
    backbone = unfreeze_backbone(model, "all").get_layer("mobilenetv2")
    trainable = [layer for layer in backbone.layers if layer.trainable]
    assert backbone.trainable and trainable
    assert not any(
        isinstance(layer, keras.layers.BatchNormalization) for layer in trainable
    )
    assert not model.get_layer("stem").trainable_weights  # nothing to train there
    with pytest.raises(ValueError, match="`n_layers` argument"):
        unfreeze_backbone(model, 0)
    with pytest.raises(ValueError, match="no registered backbone to unfreeze"):
        unfreeze_backbone(build_cnn((48, 48, 1)))
