"""Tests of build_cnn, the backbone registry and build_pretrained."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import keras
import numpy as np
import pytest

from covidxray import (
    WeightsUnavailableError,
    build_cnn,
    build_pretrained,
    list_backbones,
    split_at_backbone,
)
from covidxray.models import (
    BACKBONES,
    BackbonePreprocess,
    ChannelRepeat,
    get_backbone,
    keras_cache_dir,
    unfreeze_backbone,
)


def test_seed_cnn_has_422177_parameters_and_85x85_first_map() -> None:
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


def test_registry_contents_and_unknown_name() -> None:
    required = {
        "mobilenet",
        "mobilenetv2",
        "resnet50",
        "resnet101v2",
        "densenet121",
        "densenet201",
        "vgg16",
        "efficientnetb0",
    }
    assert required <= set(list_backbones())
    assert list_backbones() == sorted(list_backbones())
    with pytest.raises(
        ValueError, match="Unknown backbone 'resnet9000'. Valid names: densenet121"
    ):
        build_pretrained("resnet9000", weights=None)
    with pytest.raises(ValueError, match="`head` argument"):
        build_pretrained("vgg16", weights=None, head="mlp", input_shape=(32, 32, 3))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_and_trains_one_step(name: str) -> None:
    rng = np.random.default_rng(0)
    for channels, head in ((1, "seed"), (3, "gap")):
        model = build_pretrained(
            name, input_shape=(32, 32, channels), weights=None, head=head
        )
        assert not model.get_layer(name).trainable
        assert model.output_shape == (None, 1)
        assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
        x = rng.random((4, 32, 32, channels)).astype("float32")
        if channels == 3:  # the 3-channel path: the split must reproduce the model
            features, head = split_at_backbone(model)
            np.testing.assert_allclose(
                np.asarray(head(features(x))), np.asarray(model(x)), atol=1e-5
            )
            continue
        model.compile(optimizer="adam", loss="binary_crossentropy")
        y = np.array(
            [0, 1, 1, 1], dtype="float32"
        )  # unbalanced: non-zero bias gradient
        before = [w.copy() for w in model.get_layer("output").get_weights()]
        loss = model.train_on_batch(x, y)
        after = model.get_layer("output").get_weights()
        assert np.isfinite(loss)
        assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_preprocessing_matches_keras_preprocess_input() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((2, 8, 8, 3)).astype("float32")
    apps = keras.applications
    expected = {
        "caffe": apps.resnet50.preprocess_input(x * 255.0),
        "tf": apps.mobilenet_v2.preprocess_input(x * 255.0),
        "torch": apps.densenet.preprocess_input(x * 255.0),
        "raw255": apps.efficientnet.preprocess_input(x * 255.0),
    }
    for mode, want in expected.items():
        got = np.asarray(BackbonePreprocess(mode)(x))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    for name, spec in BACKBONES.items():  # each registered mode matches its module
        assert spec.preprocessing in expected, name


def test_one_channel_is_repeated() -> None:
    x = np.arange(8, dtype="float32").reshape(1, 2, 2, 2)[..., :1]
    out = np.asarray(ChannelRepeat()(x))
    assert out.shape == (1, 2, 2, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_saved_pretrained_model_reloads_in_safe_mode(tmp_path: Path) -> None:
    model = build_pretrained(
        "mobilenet", input_shape=(32, 32, 1), weights=None, head="gap"
    )
    x = np.random.default_rng(1).random((2, 32, 32, 1)).astype("float32")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_array_equal(model.predict_on_batch(x), loaded.predict_on_batch(x))


@pytest.mark.parametrize(
    "name", ["resnet50", "mobilenetv2", "densenet121", "efficientnetb0"]
)
def test_failed_download_raises_clear_error(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keras.src.utils import file_utils

    requested: list[str] = []

    def offline(url: str, filename: str, reporthook=None) -> None:
        requested.append(Path(filename).name)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        build_pretrained(name, input_shape=(224, 224, 3), weights="imagenet")
    message = str(info.value)
    expected_file = BACKBONES[name].weights_file_for(224)
    assert requested == [expected_file]  # the registry names the file Keras wants
    assert f"backbone '{name}'" in message
    assert expected_file in message
    # Keras reads KERAS_HOME once, at import: the message names the folder
    # Keras will really look in (tests/test_weights.py checks it follows
    # KERAS_HOME in a fresh process).
    assert str(keras_cache_dir()) in message
    assert "weights=None" in message and "weights='/path/to/" in message
    assert "http" not in message.split(":", 1)[0]


def test_weights_from_file_and_missing_file(tmp_path: Path) -> None:
    base = keras.applications.MobileNet(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    rng = np.random.default_rng(0)
    base.set_weights(
        [rng.normal(size=w.shape).astype("float32") for w in base.get_weights()]
    )
    name = BACKBONES["mobilenet"].weights_file_for(32)
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(tmp_path / name, "w") as f:  # the legacy layout of Keras' files
        legacy_h5_format.save_weights_to_hdf5_group(f, base)
    model = build_pretrained("mobilenet", input_shape=(32, 32, 3), weights=tmp_path)
    got = model.get_layer("mobilenet").get_weights()
    assert all(
        np.array_equal(a, b) for a, b in zip(got, base.get_weights(), strict=True)
    )
    with pytest.raises(WeightsUnavailableError, match="no weights file at"):
        build_pretrained(
            "mobilenet", input_shape=(32, 32, 3), weights=tmp_path / "nope.h5"
        )


@pytest.mark.parametrize("head_kind", ["seed", "gap"])
def test_split_at_backbone_shares_layers_and_reproduces_the_model(
    head_kind: str,
) -> None:
    model = build_pretrained(
        "mobilenetv2", input_shape=(48, 48, 1), weights=None, head=head_kind
    )
    features, head = split_at_backbone(model)
    x = np.random.default_rng(2).random((3, 48, 48, 1)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(head(features(x))), np.asarray(model(x)), atol=1e-5
    )
    assert features.layers[-1] is model.get_layer("mobilenetv2")
    assert head.get_layer("output") is model.get_layer("output")
    # Changing the model's head changes the split's head: one set of weights.
    dense = model.get_layer("output")
    dense.set_weights([w + 1.0 for w in dense.get_weights()])
    np.testing.assert_allclose(
        np.asarray(head(features(x))), np.asarray(model(x)), atol=1e-5
    )


def test_split_at_backbone_refuses_what_it_would_mis_wire() -> None:
    with pytest.raises(ValueError, match="'seed_cnn' has no registered backbone"):
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


def test_get_backbone_and_unfreeze_backbone() -> None:
    assert get_backbone("mobilenetv2").sizes == (96, 128, 160, 192, 224)
    with pytest.raises(ValueError, match="Unknown backbone 'resnet9'. Valid names"):
        get_backbone("resnet9")
    model = build_pretrained("mobilenetv2", input_shape=(48, 48, 1), weights=None)
    backbone = unfreeze_backbone(model, "all").get_layer("mobilenetv2")
    trainable = [layer for layer in backbone.layers if layer.trainable]
    assert backbone.trainable and trainable
    assert not any(
        isinstance(layer, keras.layers.BatchNormalization) for layer in trainable
    )
    with pytest.raises(ValueError, match="`n_layers` argument"):
        unfreeze_backbone(model, 0)
    with pytest.raises(ValueError, match="no registered backbone to unfreeze"):
        unfreeze_backbone(build_cnn((48, 48, 1)))
