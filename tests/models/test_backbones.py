"""The backbone registry and its weights: ImageNet weights proven without a network.

For each registered backbone, a test writes a weights file in Keras' legacy
HDF5 layout (the layout of the published ImageNet files), taken from a
randomly initialised model of the same architecture, under the exact file name
Keras asks for, into a temporary KERAS_HOME. `build_pretrained(name,
weights="imagenet")` must then load exactly those weights through Keras' own
`get_file` and `load_weights`, with no download. Keras checks the published
files' hashes (ResNet, DenseNet, VGG, EfficientNet); a file made here cannot
match them, so the check is made to accept exactly the files written here, and
any download attempt fails the test.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.error
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from covidxray import WeightsUnavailableError, build_pretrained, list_backbones
from covidxray.models import BACKBONES, get_backbone, keras_cache_dir

SIZE = 64


def write_legacy_h5(model: keras.Model, path: Path) -> None:
    """Weights in the Keras 2 HDF5 layout: `layer_names`, then one group per
    layer with its `weight_names` and one dataset per weight."""
    with h5py.File(path, "w") as f:
        layers = [layer for layer in model.layers if layer.weights]
        f.attrs["layer_names"] = [layer.name.encode() for layer in layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.15.0"
        for layer in layers:
            group = f.create_group(layer.name)
            names = [f"{layer.name}/{w.name}:{i}" for i, w in enumerate(layer.weights)]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for name, weight in zip(names, layer.weights, strict=True):
                group.create_dataset(name, data=np.asarray(weight))


def reference_file(name: str, folder: Path) -> tuple[Path, list[np.ndarray]]:
    """A random model of `name`'s architecture, written under Keras' file name."""
    spec = get_backbone(name)
    keras.utils.set_random_seed(7)
    reference = spec.constructor(
        include_top=False, weights=None, input_shape=(SIZE, SIZE, 3)
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / spec.weights_file_for(SIZE)
    write_legacy_h5(reference, path)
    return path, [np.asarray(w) for w in reference.weights]


def assert_loaded(model: keras.Model, name: str, expected: list[np.ndarray]) -> None:
    got = model.get_layer(name).weights
    assert len(got) == len(expected)
    for w, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(np.asarray(w), e)


# Keras reads KERAS_HOME when it is imported: a fresh process gets the folder.
SCRIPT = """
import hashlib, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from keras.src.utils import file_utils
from covidxray import build_pretrained
from covidxray.models import keras_cache_dir
from test_backbones import SIZE, assert_loaded, reference_file
import keras

ours = set()
def accept_only_ours(fpath, file_hash, algorithm="auto", chunk_size=65535):
    return hashlib.sha256(Path(fpath).read_bytes()).hexdigest() in ours
def no_network(url, *args, **kwargs):
    raise AssertionError(f"a download was attempted: {url}")
file_utils.validate_file = accept_only_ours
file_utils.urlretrieve = no_network
assert keras_cache_dir() == Path(sys.argv[2]) / "models", keras_cache_dir()
for name in sys.argv[3:]:
    path, expected = reference_file(name, keras_cache_dir())
    ours.add(hashlib.sha256(path.read_bytes()).hexdigest())
    keras.utils.set_random_seed(99)  # other random weights, if nothing loaded
    model = build_pretrained(name, input_shape=(SIZE, SIZE, 1), weights="imagenet")
    assert_loaded(model, name, expected)
    print("LOADED", name, flush=True)
"""


@pytest.mark.slow
def test_imagenet_weights_load_from_the_keras_cache(tmp_path: Path) -> None:
    names = sorted(BACKBONES)  # all nine, the two biggest included (about 10 s)
    home = tmp_path / "keras"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(Path(__file__).parent), str(home), *names],
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "KERAS_HOME": str(home)},
    )
    loaded = [
        line.split()[1] for line in result.stdout.splitlines() if "LOADED" in line
    ]
    assert loaded == names, result.stderr[-3000:]


@pytest.mark.parametrize("name", ["mobilenetv2", "resnet50", "densenet121"])
def test_weights_from_a_file_or_a_folder(name: str, tmp_path: Path) -> None:
    path, expected = reference_file(name, tmp_path / "weights")
    for weights in (path, path.parent):
        keras.utils.set_random_seed(99)
        model = build_pretrained(name, input_shape=(SIZE, SIZE, 1), weights=weights)
        assert_loaded(model, name, expected)


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
    assert get_backbone("mobilenetv2").sizes == (96, 128, 160, 192, 224)
    with pytest.raises(ValueError, match="Unknown backbone 'resnet9'. Valid names"):
        get_backbone("resnet9")


def test_weight_file_names_follow_the_input_size() -> None:
    mobilenet = get_backbone("mobilenet")
    assert mobilenet.weights_file_for(160) == "mobilenet_1_0_160_tf_no_top.h5"
    assert mobilenet.weights_file_for(100) == "mobilenet_1_0_224_tf_no_top.h5"
    assert mobilenet.weights_file_for() == "mobilenet_1_0_224_tf_no_top.h5"
    resnet = get_backbone("resnet50")
    assert resnet.weights_file_for(64) == resnet.weights_file  # one file for all


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
    # Keras will really look in (test_imagenet_weights_load_from_the_keras_cache
    # checks it follows KERAS_HOME in a fresh process).
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
