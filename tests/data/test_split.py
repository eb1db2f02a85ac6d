"""Splits and deduplication: grouped by patient, seeded, copies removed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from covidxray import load_dataset
from covidxray.data.records import Record
from covidxray.data.split import (
    assign_splits,
    check_fractions,
    cross_source_copies,
    deduplicate,
)
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


# ------------------------------------------------ the functions, on records only


def rec(i: int, **kw: object) -> Record:
    """A record with its own content hashes (no file needed)."""
    fields = {
        "path": f"{i}.png",
        "label": "covid" if i % 2 else "normal",
        "split": "train",
        "patient_id": None,
        "source": "a",
        "finding": "",
        "sha256": f"{i:064x}",
        "pixel_hash": f"{i:040x}",
        "phash": f"{i:064x}",
        "width": 1,
        "height": 1,
        "mode": "L",
        "format": "PNG",
        "n_bytes": 1,
    }
    fields.update(kw)
    return Record(**fields)  # type: ignore[arg-type]


def test_assign_splits_is_stratified_seeded_and_keeps_patients_whole() -> None:
    # 40 patients of two images each, one label per patient.
    recs = [
        rec(i, patient_id=f"p{i // 2}", label=("covid", "normal")[i // 2 % 2])
        for i in range(80)
    ]
    out = assign_splits(recs, validation_split=0.2, test_split=0.25, seed=3)
    again = assign_splits(recs, validation_split=0.2, test_split=0.25, seed=3)
    assert [r.split for r in out] == [r.split for r in again]
    other = assign_splits(recs, validation_split=0.2, test_split=0.25, seed=4)
    assert [r.split for r in out] != [r.split for r in other]
    splits_of: dict[str, set[str]] = {}
    for r in out:
        splits_of.setdefault(str(r.patient_id), set()).add(r.split)
    assert all(len(s) == 1 for s in splits_of.values())
    for split in ("val", "test"):
        labels = Counter(r.label for r in out if r.split == split)
        assert labels["covid"] == labels["normal"] > 0  # stratified by class
    assert Counter(r.split for r in out) == {"train": 48, "val": 12, "test": 20}


def test_assign_splits_keeps_the_sources_own_test_split() -> None:
    recs = [rec(i, split="test" if i < 10 else "train") for i in range(40)]
    out = assign_splits(recs, validation_split=0.25, test_split=None, seed=0)
    assert [r.split for r in out[:10]] == ["test"] * 10
    assert Counter(r.split for r in out[10:]) == {"train": 22, "val": 8}


def test_fractions_are_checked_with_the_argument_named() -> None:
    with pytest.raises(ValueError, match="`validation_split` argument"):
        check_fractions(1.0, None)
    with pytest.raises(ValueError, match="`test_split` argument"):
        check_fractions(0.1, -0.1)
    with pytest.raises(ValueError, match="add up to less than 1"):
        check_fractions(0.5, 0.5)


def test_deduplicate_prefers_a_fixed_split_then_the_earliest() -> None:
    a = rec(1, split="test", source="own")
    b = rec(3, split="train", source="other", sha256=a.sha256)  # same bytes
    c = rec(5, split="val", pixel_hash=a.pixel_hash)  # same pixels
    kept, removed = deduplicate([a, b, c], fixed={a.path})
    assert kept == [a] and {x.path for x, _ in removed} == {b.path, c.path}
    kept, removed = deduplicate([a, b, c])
    assert kept == [b]  # nothing fixed: train comes first


def test_cross_source_copies_only_across_sources() -> None:
    near = f"{1:064x}"
    a = rec(2, source="a", phash=f"{0:064x}")
    b = rec(4, source="b", phash=near)  # one bit away, another source
    c = rec(6, source="a", phash=near)  # one bit away, the same source
    assert cross_source_copies([a, b, c], 1) == [(0, 1, 1), (1, 2, 0)]
    assert cross_source_copies([a, c], 1) == []
    kept, removed = deduplicate([a, b], cross_source_bits=1)
    assert kept == [a] and removed == [(b, a)]
