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
