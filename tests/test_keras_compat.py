"""Pins every private Keras behaviour that covidxray relies on.

Each of these fails with a message naming the Keras version when an upgrade
changes the behaviour, before model splitting, feature caching, Grad-CAM,
seeding or resuming break in less obvious ways. The last test keeps private
Keras access inside `covidxray/_keras_compat.py`.
"""

from __future__ import annotations

import ast
import os
import re
import urllib.error
from pathlib import Path

import keras
import numpy as np
import pytest

from covidxray import _keras_compat
from covidxray._keras_compat import KERAS_VERSION

PACKAGE = Path(__file__).resolve().parents[1] / "covidxray"


def pinned(what: str) -> str:
    return (
        f"Keras {KERAS_VERSION} changed a private behaviour covidxray relies on "
        f"({what}); update covidxray/_keras_compat.py."
    )


def test_keras_home_is_the_folder_keras_reads(tmp_path: Path) -> None:
    home = _keras_compat.keras_home()
    assert isinstance(home, str) and home, pinned("keras.src.backend.config")
    from keras.src.backend import config

    assert home == str(config.keras_home()), pinned("keras_home()")
    expected = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    assert os.path.expanduser(home) == os.path.expanduser(expected), pinned(
        "keras_home() follows KERAS_HOME"
    )


def _get_file_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    offline: bool = False,
    **kwargs: object,
) -> BaseException:
    from keras.src.utils import file_utils

    def fake(url: str, filename: str, reporthook: object = None) -> None:
        if offline:
            raise urllib.error.URLError("[Errno -3] Temporary failure")
        Path(filename).write_bytes(b"not the weights")

    monkeypatch.setattr(file_utils, "urlretrieve", fake)
    with pytest.raises(Exception) as info:  # noqa: B017 - Keras raises bare Exception
        keras.utils.get_file(
            "w.h5", "https://example.invalid/w.h5", cache_dir=str(tmp_path), **kwargs
        )
    return info.value


def test_download_failures_are_told_by_their_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offline = _get_file_error(tmp_path, monkeypatch, offline=True)
    assert type(offline) is Exception, pinned("get_file raises a bare Exception")
    assert "URL fetch failure" in str(offline), pinned("get_file's network error")
    assert _keras_compat.is_download_failure(offline)
    corrupted = _get_file_error(tmp_path, monkeypatch, file_hash="0" * 64)
    assert isinstance(corrupted, ValueError), pinned("get_file's hash check")
    assert "corrupted file" in str(corrupted), pinned("get_file's hash message")
    assert _keras_compat.is_download_failure(corrupted)
    assert not _keras_compat.is_download_failure(ValueError("bad input_shape"))
    assert _keras_compat.is_download_failure(urllib.error.URLError("down"))


def test_the_layer_graph_walk_reads_a_flat_chain() -> None:
    inputs = keras.Input((8, 8, 1))
    conv = keras.layers.Conv2D(2, 3, name="conv")
    pool = keras.layers.GlobalAveragePooling2D(name="pool")
    dense = keras.layers.Dense(1, name="dense")
    model = keras.Model(inputs, dense(pool(conv(inputs, training=False))))
    assert hasattr(model, "_nodes_by_depth"), pinned("Functional._nodes_by_depth")
    chain = _keras_compat.functional_chain(model)
    assert [layer for layer, _ in chain] == [conv, pool, dense], pinned(
        "_nodes_by_depth / _keras_history order"
    )
    assert chain[0][1] == {"training": False}, pinned("node.arguments.kwargs")
    assert chain[1][1] == {}
    skip = keras.layers.Add()([conv(inputs), keras.layers.Conv2D(2, 3)(inputs)])
    with pytest.raises(ValueError, match="is not a straight chain"):
        _keras_compat.functional_chain(keras.Model(inputs, skip, name="skip"))

    class Subclassed(keras.Model):
        def call(self, x: object) -> object:
            return x

    with pytest.raises(ValueError, match="Cannot read the layer graph"):
        _keras_compat.functional_chain(Subclassed())


def test_backup_and_restore_sets_the_epoch_to_resume_from(tmp_path: Path) -> None:
    def tiny() -> keras.Model:
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        return model

    x, y = np.zeros((4, 2), "float32"), np.zeros((4, 1), "float32")
    backup = str(tmp_path / "backup")

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: object = None) -> None:
            if epoch == 1:
                raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        tiny().fit(
            x,
            y,
            epochs=4,
            verbose=0,
            callbacks=[keras.callbacks.BackupAndRestore(backup), Stop()],
        )
    model = tiny()
    _keras_compat.reset_initial_epoch(model)
    assert _keras_compat.initial_epoch(model) == 0
    hooks = keras.callbacks.CallbackList(
        [keras.callbacks.BackupAndRestore(backup)], model=model, epochs=4
    )
    hooks.on_train_begin()
    assert _keras_compat.initial_epoch(model) == 2, pinned(
        "BackupAndRestore sets model._initial_epoch"
    )


def test_seed_generators_of_layers_and_nested_models_are_found() -> None:
    inner_in = keras.Input((4,))
    inner = keras.Model(
        inner_in, keras.layers.GaussianNoise(0.1, name="noise")(inner_in), name="inner"
    )
    inputs = keras.Input((4,))
    drop = keras.layers.Dropout(0.5, name="drop")
    model = keras.Model(inputs, drop(inner(inputs)))
    found = _keras_compat.seed_generators(model)
    assert all(isinstance(g, keras.random.SeedGenerator) for g in found)
    noise = inner.get_layer("noise")
    owners = {
        name
        for name, layer in (("drop", drop), ("noise", noise))
        for g in found
        if any(v is g for v in vars(layer).values())
    }
    assert owners == {"drop", "noise"}, pinned("a layer holds its SeedGenerator")
    assert len(found) == 2
    assert _keras_compat.seed_generators(model) == found  # a stable order


PRIVATE = re.compile(
    r"keras\.src|\b(_nodes_by_depth|_keras_history|_initial_epoch|_inbound_nodes"
    r"|_outbound_nodes|_seed_generators|_tracker|_covidxray_mark)\b"
)


def test_private_keras_is_read_only_in_keras_compat() -> None:
    """No module but _keras_compat names `keras.src` or a private Keras
    attribute (nor the attribute once stamped on users' layers)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "_keras_compat.py":
            continue
        text = path.read_text()
        for number, line in enumerate(text.splitlines(), 1):
            if PRIVATE.search(line):
                found.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
        for node in ast.walk(ast.parse(text)):
            # `keras.<x>._private` or `tf.<x>._private` reads Keras' insides.
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                root = node.value
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id in ("keras", "tf"):
                    found.append(
                        f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.attr}"
                    )
    assert not found, "\n".join(found)
