"""Tests on the real seed-xray data (COVIDXRAY_SEED_DATA). Marked `realdata`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from covidxray import audit, load_dataset

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def seed_dataset(seed_data: Path):
    return load_dataset(seed_data, image_size=(64, 64), deduplicate=False)


def test_seed_counts(seed_data: Path, seed_dataset) -> None:
    files = [p for p in seed_data.rglob("*") if p.is_file()]
    assert len(files) == 2683
    by_folder = {}
    for r in seed_dataset.records:
        folder = Path(r.path).parent
        key = f"{folder.parent.name}/{folder.name}"
        by_folder[key] = by_folder.get(key, 0) + 1
    assert by_folder == {
        "train/covid": 119,
        "train/non": 994,
        "test/covid": 97,
        "test/non": 1473,
    }
    assert seed_dataset.class_names == ("non", "covid")


def test_audit_finds_the_37_leaked_files(seed_data: Path, seed_dataset) -> None:
    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    train = {digest(p) for p in (seed_data / "train" / "covid").iterdir()}
    leaked = {
        p.name for p in (seed_data / "test" / "covid").iterdir() if digest(p) in train
    }
    assert len(leaked) == 37  # computed independently of the library
    report = audit(seed_dataset)
    found = {
        Path(p).name
        for g in report.cross_split_duplicates
        for p, s in zip(g["paths"], g["splits"], strict=True)
        if s == "test"
    }
    assert found == leaked
    assert any(w.startswith("Shortcut:") for w in report.warnings)
    assert report.shortcut_auc is not None and report.shortcut_auc > 0.9


def test_deduplicate_leaves_no_leak(seed_data: Path) -> None:
    ds = load_dataset(seed_data, image_size=(32, 32))
    assert len(ds.duplicates_removed) == 37
    test = {r.sha256 for r in ds.split_records("test")}
    rest = {r.sha256 for r in ds.records if r.split != "test"}
    assert not test & rest
    assert ds.counts()["test"] == {"non": 1473, "covid": 60}


@pytest.fixture(scope="module")
def quick_model(seed_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The paper's CNN trained briefly on seed-xray (64 px), saved with its record."""
    import keras

    from covidxray import Classifier, build_cnn

    keras.utils.set_random_seed(0)
    data = load_dataset(seed_data, image_size=(64, 64), batch_size=64)
    clf = Classifier(build_cnn((64, 64, 1)), class_names=data.class_names)
    clf.fit(data, epochs=1, verbose=0)
    return clf.save(tmp_path_factory.mktemp("real") / "seed_cnn.keras")


def test_external_positives_only_set_is_scored_whole(
    quick_model: Path, external_data: Path
) -> None:
    from covidxray import Classifier

    ev = Classifier.load(quick_model).evaluate(external_data, n_bootstrap=0)
    assert len(ev.y_true) == 243 and set(ev.y_true.tolist()) == {1}
    assert ev.meta["scope"].startswith("external set: all 243 images")
    assert ev.meta["n_seen"] == 0  # another hospital: nothing seen in training
    low, high = ev.ci["sensitivity"]
    assert low <= ev.metrics["sensitivity"] <= high and high - low < 0.15
    assert ev.to_dict()["metrics"]["specificity"] is None
    assert ev.unavailable["specificity"] == "no non images in the data"


def test_evaluating_on_the_training_folder_is_refused(
    quick_model: Path, seed_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from covidxray.cli import EXIT_DATA, main

    assert main(["evaluate", str(quick_model), str(seed_data / "train")]) == EXIT_DATA
    message = capsys.readouterr().err
    assert "All 1113 images to score" in message and "seen in training" in message
    # The test split as given holds 37 copies of training images: left out.
    assert main(["evaluate", str(quick_model), str(seed_data), "--json"]) == 0
    import json

    result = json.loads(capsys.readouterr().out)
    assert result["meta"]["n_total"] == 1570 and result["meta"]["n_seen"] == 37
    assert result["n"] == 1533


def test_ieee8023_both_classes_from_one_source(
    quick_model: Path, ieee8023_data: Path
) -> None:
    from covidxray import Classifier

    ev = Classifier.load(quick_model).evaluate(ieee8023_data, n_bootstrap=0)
    found = ev.meta["classes_found"]
    assert found["COVID-19"] == "covid" and found["COVID-19, ARDS"] == "covid"
    assert found["No Finding"] == "non" and found["SARS"] == "non"
    # Some seed-xray training images are in this collection, byte for byte or
    # resized: exact copies are left out, resized ones flagged.
    assert ev.meta["n_total"] == len(ev.y_true) + ev.meta["n_seen"]
    assert ev.meta["n_seen"] >= 1 and ev.meta["n_near_seen"] >= 50
    assert ev.support["covid"] == 426 - ev.meta["n_seen"]
    assert ev.support["non"] == ev.meta["n_total"] - 426
