"""Tests of the in-model preprocessing layers."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from covidxray.models import BACKBONES, BackbonePreprocess, ChannelRepeat


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
    np.testing.assert_array_equal(BackbonePreprocess("none")(x), x)
    with pytest.raises(ValueError, match="`mode` argument of BackbonePreprocess"):
        BackbonePreprocess("imagenet")


def test_one_channel_is_repeated() -> None:
    x = np.arange(8, dtype="float32").reshape(1, 2, 2, 2)[..., :1]
    out = np.asarray(ChannelRepeat()(x))
    assert out.shape == (1, 2, 2, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    three = np.ones((1, 2, 2, 3), "float32")
    np.testing.assert_array_equal(ChannelRepeat()(three), three)  # left as is


def test_the_layers_keep_their_registered_names() -> None:
    # Model files store these names: moving the classes must not change them.
    for cls in (ChannelRepeat, BackbonePreprocess):
        name = keras.saving.get_registered_name(cls)
        assert name == f"covidxray>{cls.__name__}"
        assert keras.saving.get_registered_object(name) is cls
    layer = BackbonePreprocess("caffe", name="preprocess")
    again = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(again, BackbonePreprocess) and again.mode == "caffe"
