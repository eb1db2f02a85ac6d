"""Tests of build_cnn and build_pretrained: shapes, parts, heads, saving."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from covidxray import build_cnn, build_pretrained, split_at_backbone
from covidxray.models import BACKBONES, HEADS
from legacy_models import build_flat_pretrained


def test_paper_cnn_has_422177_parameters_and_85x85_first_map() -> None:
    model = build_cnn((256, 256, 3))
    assert model.count_params() == 422_177
    assert model.get_layer("conv1").output.shape == (None, 85, 85, 64)
    assert model.output_shape == (None, 1)
    assert model.layers[-1].activation.__name__ == "sigmoid"
    multi = build_cnn((256, 256, 3), num_classes=3)
    assert (
        multi.output_shape == (None, 3)
        and multi.layers[-1].activation.__name__ == "softmax"
    )


def test_unknown_head_and_too_small_cnn_are_refused() -> None:
    with pytest.raises(
        ValueError,
        match="`head` argument of build_pretrained must be one of "
        "'paper', 'gap'. Received: 'mlp'",
    ):
        build_pretrained("vgg16", weights=None, head="mlp", input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="at least 36 x 36"):
        build_cnn((30, 30, 1))
    with pytest.raises(ValueError, match="`num_classes` argument"):
        build_pretrained("vgg16", weights=None, num_classes=1, input_shape=(32, 32, 3))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_and_trains_one_step(name: str) -> None:
    rng = np.random.default_rng(0)
    for channels, head in ((1, "paper"), (3, "gap")):
        model = build_pretrained(
            name, input_shape=(32, 32, channels), weights=None, head=head
        )
        assert not model.get_layer(name).trainable
        assert model.output_shape == (None, 1)
        assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
        x = rng.random((4, 32, 32, channels)).astype("float32")
        if channels == 3:  # the 3-channel path: the split must reproduce the model
            features, head_model = split_at_backbone(model)
            np.testing.assert_allclose(
                np.asarray(head_model(features(x))), np.asarray(model(x)), atol=1e-5
            )
            continue
        model.compile(optimizer="adam", loss="binary_crossentropy")
        y = np.array(
            [0, 1, 1, 1], dtype="float32"
        )  # unbalanced: non-zero bias gradient
        output = model.get_layer("head").get_layer("output")
        before = [w.copy() for w in output.get_weights()]
        loss = model.train_on_batch(x, y)
        after = output.get_weights()
        assert np.isfinite(loss)
        assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("head", HEADS)
def test_stem_backbone_and_head_are_named_sub_models(head: str) -> None:
    model = build_pretrained(
        "mobilenetv2", input_shape=(48, 48, 1), weights=None, head=head, num_classes=3
    )
    assert model.name == f"mobilenetv2_{head}"
    assert [layer.name for layer in model.layers] == [
        "image",
        "stem",
        "mobilenetv2",
        "head",
    ]
    stem, backbone, head_model = model.layers[1:]
    assert all(isinstance(part, keras.Model) for part in (stem, backbone, head_model))
    assert [layer.name for layer in stem.layers[1:]] == ["channel_repeat", "preprocess"]
    assert stem.get_layer("preprocess").mode == "tf"  # MobileNetV2's own
    assert stem.output_shape == (None, 48, 48, 3)
    assert head_model.input_shape == backbone.output_shape
    assert head_model.get_layer("output").activation.__name__ == "softmax"
    assert not stem.weights and not backbone.trainable
    pool = head_model.get_layer("head_pool")
    expected = "AveragePooling2D" if head == "paper" else "GlobalAveragePooling2D"
    assert type(pool).__name__ == expected


def test_the_old_head_name_seed_still_builds_the_paper_head() -> None:
    with pytest.warns(DeprecationWarning, match="head='paper'"):
        old = build_pretrained(
            "mobilenetv2", input_shape=(32, 32, 1), weights=None, head="seed"
        )
    new = build_pretrained("mobilenetv2", input_shape=(32, 32, 1), weights=None)
    assert old.name == new.name == "mobilenetv2_paper"
    assert [la.name for la in old.get_layer("head").layers] == [
        la.name for la in new.get_layer("head").layers
    ]
    assert old.count_params() == new.count_params()


@pytest.mark.parametrize("head", HEADS)
def test_named_parts_compute_what_the_old_flat_graph_computed(head: str) -> None:
    # The same weights in the flat graph of before and the parts of today:
    # the same layers, the same order of weights, the same outputs.
    keras.utils.set_random_seed(3)
    flat = build_flat_pretrained("mobilenetv2", input_shape=(48, 48, 1), head=head)
    keras.utils.set_random_seed(3)
    nested = build_pretrained(
        "mobilenetv2", input_shape=(48, 48, 1), weights=None, head=head
    )
    assert [w.shape for w in flat.weights] == [w.shape for w in nested.weights]
    for a, b in zip(flat.weights, nested.weights, strict=True):  # one seed: one init
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert flat.count_params() == nested.count_params()
    x = np.random.default_rng(0).random((3, 48, 48, 1)).astype("float32")
    np.testing.assert_allclose(nested(x), flat(x), rtol=1e-6, atol=1e-7)


def test_saved_pretrained_model_reloads_in_safe_mode(tmp_path: Path) -> None:
    model = build_pretrained(
        "mobilenet", input_shape=(32, 32, 1), weights=None, head="gap"
    )
    x = np.random.default_rng(1).random((2, 32, 32, 1)).astype("float32")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_array_equal(model.predict_on_batch(x), loaded.predict_on_batch(x))
    assert [layer.name for layer in loaded.layers] == [
        "image",
        "stem",
        "mobilenet",
        "head",
    ]
    features, head = split_at_backbone(loaded)  # split by name after loading
    np.testing.assert_allclose(head(features(x)), model(x), atol=1e-5)
