"""Tests of the classifier file (`covidxray._persist`): the save/load round trip,
the atomic save, the metadata schema and its versions, safe loading.

The classifiers here are built by `Classifier.from_config` around an untrained
model: the file format does not care whether the weights were trained, and no
test here trains.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from covidxray import (
    Classifier,
    CovidXrayWarning,
    DataError,
    Preprocessing,
    build_cnn,
    load_dataset,
)
from covidxray._persist import (
    FORMAT_VERSION,
    ModelMetadata,
    read_classifier,
    read_metadata,
    save_atomic,
)
from covidxray._seen import record_after_fit

SIZE = 48


def metadata(**changes) -> ModelMetadata:
    values = {
        "class_names": ("normal", "covid"),
        "positive_class": None,
        "threshold": 0.4,
        "preprocessing": Preprocessing((SIZE, SIZE)),
        "learning_rate": 0.002,
        "seed": 3,
        "spectral_decoupling": 0.1,
    }
    return ModelMetadata(**{**values, **changes})


@pytest.fixture(scope="module")
def data(synthetic_root: Path):
    return load_dataset(synthetic_root, image_size=(SIZE, SIZE), batch_size=8)


@pytest.fixture(scope="module")
def clf(data) -> Classifier:
    """A classifier with a training record, as `fit` on `data` leaves one."""
    keras.utils.set_random_seed(0)
    record = record_after_fit(None, data, fitted_before=False)
    assert record is not None
    return Classifier.from_config(
        metadata(training=record.info), build_cnn((SIZE, SIZE, 1)), record
    )


def test_from_config_sets_parameters_and_fitted_state_from_the_config(clf) -> None:
    assert clf.class_names == ["normal", "covid"] and clf.threshold == 0.4
    assert (clf.learning_rate, clf.seed, clf.spectral_decoupling) == (0.002, 3, 0.1)
    assert (clf.image_size, clf.color_mode, clf.resize) == (
        (SIZE, SIZE),
        "grayscale",
        "stretch",
    )
    assert clf.model_ is clf.model and list(clf.classes_) == ["normal", "covid"]
    assert clf.threshold_ == 0.4 and clf.preprocessing_ == Preprocessing((SIZE, SIZE))
    assert clf.get_config().training == clf.training_record_.info


def test_save_and_load_round_trip_keeps_config_record_and_outputs(
    clf: Classifier, data, tmp_path: Path
) -> None:
    path = clf.save(tmp_path / "model.keras")
    model, config, record = read_classifier(path)
    assert config.to_dict() == clf.get_config().to_dict()
    assert record is not None and record.info == clf.training_record_.info
    np.testing.assert_array_equal(record.signatures, clf.training_record_.signatures)
    loaded = Classifier.load(path)
    assert loaded.metadata_ == config and loaded.get_config() == clf.get_config()
    assert loaded.get_params(deep=False).keys() == clf.get_params(deep=False).keys()
    x = data.images("val")
    np.testing.assert_array_equal(loaded.predict_proba(x), clf.predict_proba(x))
    with zipfile.ZipFile(path) as archive:
        meta = json.loads(archive.read("covidxray.json"))
        assert "covidxray_seen.bin" in archive.namelist()
    assert meta["format"] == "covidxray.Classifier"
    assert meta["format_version"] == FORMAT_VERSION == 2
    assert meta["threshold"] == 0.4 and meta["training"]["images"] == len(record)
    assert meta["provenance"]["keras_version"] == keras.__version__


def test_a_checkpoint_config_and_a_file_without_a_record(tmp_path: Path) -> None:
    model = build_cnn((SIZE, SIZE, 1))
    marked = metadata().with_checkpoint(4, "val_loss", 0.25)
    path = save_atomic(model, tmp_path / "best.keras", marked)
    assert read_metadata(path).checkpoint == {
        "epoch": 4,
        "monitor": "val_loss",
        "value": 0.25,
    }
    loaded = Classifier.load(path)
    assert loaded.training_record_ is None and loaded.metadata_.checkpoint
    with pytest.warns(DeprecationWarning, match="use its attributes"):
        assert loaded.metadata_["threshold"] == 0.4


def test_save_and_load_in_a_fresh_process_is_bit_identical(
    clf: Classifier, data, tmp_path: Path
) -> None:
    path = clf.save(tmp_path / "model.keras")
    x = data.images("test")[:8]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "p.npy", clf.predict_proba(x))
    code = (
        "import numpy as np, sys; from covidxray import Classifier;"
        f"c = Classifier.load(r'{path}');"
        f"p = c.predict_proba(np.load(r'{tmp_path / 'x.npy'}'));"
        f"ref = np.load(r'{tmp_path / 'p.npy'}');"
        "sys.exit(0 if np.array_equal(p, ref) and list(c.classes_) == ['normal', 'covid'] else 3)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_failed_save_keeps_the_old_file(
    clf: Classifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = clf.save(tmp_path / "model.keras")
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", disk_full)
    with pytest.raises(OSError, match="No space left"):
        clf.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model.keras"
    ]  # no temp file left


def test_load_rejects_broken_and_foreign_files(clf: Classifier, tmp_path: Path) -> None:
    good = clf.save(tmp_path / "good.keras")
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(DataError, match="not a .keras archive"):
        Classifier.load(truncated)
    plain = tmp_path / "plain.keras"
    build_cnn((48, 48, 1)).save(plain)
    with pytest.raises(DataError, match="without covidxray metadata"):
        Classifier.load(plain)
    with pytest.raises(DataError, match="No model file"):
        Classifier.load(tmp_path / "missing.keras")
    with pytest.raises(ValueError, match="must end in '.keras'"):
        clf.save(tmp_path / "model.h5")


def rewrite_metadata(path: Path, target: Path, change) -> Path:
    """Copy a classifier file with its covidxray.json changed by `change`."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(target, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "covidxray.json":
                data = json.dumps(change(json.loads(data))).encode()
            dst.writestr(item, data)
    return target


def test_file_format_1_still_loads_and_a_newer_one_is_refused(
    clf: Classifier, tmp_path: Path
) -> None:
    path = clf.save(tmp_path / "v2.keras")

    def as_version_1(meta: dict) -> dict:  # the flat layout of format 1
        versions = meta.pop("provenance")
        return {**meta, **versions, "format_version": 1}

    old = Classifier.load(rewrite_metadata(path, tmp_path / "v1.keras", as_version_1))
    assert old.preprocessing_ == clf.preprocessing_
    assert old.metadata_.provenance["covidxray_version"]
    x = np.zeros((2, SIZE, SIZE, 1), np.uint8)
    np.testing.assert_array_equal(old.predict_proba(x), clf.predict_proba(x))

    def from_the_future(meta: dict) -> dict:
        return {**meta, "format_version": 99}

    newer = rewrite_metadata(path, tmp_path / "v99.keras", from_the_future)
    with pytest.raises(DataError, match="file format 99.*Upgrade covidxray"):
        Classifier.load(newer)

    def broken(meta: dict) -> dict:
        return {**meta, "preprocessing": {"image_size": [SIZE, SIZE]}}

    with pytest.raises(DataError, match="v0.keras' is invalid.*Missing: color_mode"):
        Classifier.load(rewrite_metadata(path, tmp_path / "v0.keras", broken))


def test_load_never_runs_code_from_the_file(tmp_path: Path) -> None:
    inputs = keras.Input((48, 48, 1))
    hidden = keras.layers.Lambda(lambda t: t * 1.0)(inputs)  # code stored in the file
    outputs = keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.Flatten()(hidden)
    )
    clf = Classifier.from_config(metadata(), keras.Model(inputs, outputs))
    path = clf.save(tmp_path / "lambda.keras")
    with pytest.raises(DataError, match="Could not load the Keras model.*safe_mode"):
        Classifier.load(path)  # Keras safe mode refuses to deserialise the lambda


def test_a_model_that_needs_the_lungs_records_the_segmenter_and_checks_it(
    tmp_path: Path,
) -> None:
    from covidxray.lungs.unet import default_lung_model

    installed = default_lung_model().info()
    lungs = Classifier.from_config(
        metadata(
            preprocessing=Preprocessing((SIZE, SIZE), lungs="crop"),
            segmenter=installed,
        ),
        build_cnn((SIZE, SIZE, 1)),
    )
    path = lungs.save(tmp_path / "lungs.keras")
    assert read_metadata(path).segmenter == installed
    with warnings.catch_warnings():
        warnings.simplefilter("error", CovidXrayWarning)
        loaded = Classifier.load(path)  # the same segmenter: no word
    assert loaded.preprocessing_.lungs == "crop"
    other = rewrite_metadata(
        path,
        tmp_path / "other.keras",
        lambda meta: {
            **meta,
            "segmenter": {"version": "0", "weights_sha256": "ab" * 32},
        },
    )
    with pytest.warns(CovidXrayWarning, match=r"lung segmenter version '0'.*'1'"):
        Classifier.load(other)
    # A lung_focus model reads files without lungs: another segmenter than
    # its training's changes nothing at prediction time, and is not warned of.
    focus = Classifier.from_config(
        metadata(lung_focus=1.0, segmenter={"version": "0", "weights_sha256": "ab"}),
        build_cnn((SIZE, SIZE, 1)),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", CovidXrayWarning)
        assert Classifier.load(focus.save(tmp_path / "focus.keras")).lung_focus == 1.0
    plain = Classifier.from_config(metadata(), build_cnn((SIZE, SIZE, 1)))
    assert read_metadata(plain.save(tmp_path / "plain.keras")).segmenter is None
