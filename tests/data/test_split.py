"""Splits and deduplication: grouped by patient, seeded, copies removed."""

from __future__ import annotations

from pathlib import Path

from covidxray import load_dataset
from helpers import make_folder_set, write_image


def test_patients_never_span_splits(tmp_path: Path) -> None:
    lines = ["path,label,patient_id"]
    for p in range(30):
        for k in range(3):
            name = f"img/p{p}_{k}.png"
            write_image(tmp_path / name, seed=p * 10 + k)
            lines.append(f"{name},{'covid' if p % 2 else 'normal'},P{p}")
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    ds = load_dataset(
        tmp_path, image_size=(8, 8), validation_split=0.2, test_split=0.2, seed=5
    )
    splits_of: dict[str, set[str]] = {}
    for r in ds.records:
        splits_of.setdefault(r.patient_id, set()).add(r.split)
    assert all(len(s) == 1 for s in splits_of.values())
    counts = ds.counts()
    assert set(counts) == {"train", "val", "test"}
    for split in ("val", "test"):  # stratified: both classes in every split
        assert min(counts[split].values()) >= 3


def test_same_seed_same_split_other_seed_other_split(synthetic_root: Path) -> None:
    def val_paths(seed: int) -> list[str]:
        return [
            r.path
            for r in load_dataset(
                synthetic_root, image_size=(8, 8), seed=seed
            ).split_records("val")
        ]

    assert val_paths(3) == val_paths(3)
    assert val_paths(3) != val_paths(4)


def test_deduplicate_removes_leaks_and_keeps_train_copy(leaky_root: Path) -> None:
    ds = load_dataset(leaky_root, image_size=(16, 16))
    assert len(ds.duplicates_removed) == 3
    assert all(
        removed.split == "test" and kept.split == "train"
        for removed, kept in ds.duplicates_removed
    )
    by_split: dict[str, set[str]] = {}
    for r in ds.records:
        by_split.setdefault(r.split, set()).add(r.sha256)
    assert not (by_split["train"] | by_split["val"]) & by_split["test"]
    raw = load_dataset(leaky_root, image_size=(16, 16), deduplicate=False)
    assert len(raw.records) == len(ds.records) + 3


def test_conflicting_labels_are_dropped(tmp_path: Path) -> None:
    make_folder_set(tmp_path, n=4)
    (tmp_path / "normal" / "copy.png").write_bytes(
        (tmp_path / "covid" / "covid_0.png").read_bytes()
    )
    ds = load_dataset(tmp_path, image_size=(8, 8))
    names = {Path(r.path).name for r in ds.records}
    assert "copy.png" not in names and "covid_0.png" not in names
    assert len(ds.records) == 7
