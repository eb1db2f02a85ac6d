"""XrayDataset: records, views (subset, balanced), reports, and sources as values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from covidxray import XrayDataset, load_dataset
from covidxray.data.catalog import NO_CLASS
from covidxray.data.preprocessing import Preprocessing
from covidxray.data.records import Record
from covidxray.datasets import make_synthetic
from helpers import write_image


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> XrayDataset:
    a = make_synthetic(tmp_path_factory.mktemp("a"), n_per_class=4, image_size=(16, 16))
    b = make_synthetic(
        tmp_path_factory.mktemp("b"), n_per_class=3, image_size=(16, 16), seed=1
    )
    return load_dataset({"a": a, "b": b}, image_size=(8, 8), validation_split=0.0)


def test_sources_are_values_and_source_is_their_display(pair: XrayDataset) -> None:
    assert list(pair.sources) == ["a", "b"] and pair.source_names == ("a", "b")
    assert all(isinstance(p, str) and Path(p).is_dir() for p in pair.sources.values())
    assert pair.source == f"a={pair.sources['a']}, b={pair.sources['b']}"
    with pytest.raises(AttributeError):
        pair.source = "elsewhere"  # type: ignore[misc]


def test_a_single_source_shows_its_path(synthetic_root: Path) -> None:
    data = load_dataset(synthetic_root, image_size=(8, 8))
    assert data.source == str(synthetic_root)
    assert data.source_names == (synthetic_root.name,)


def test_subset_is_a_view_of_some_sources(pair: XrayDataset) -> None:
    view = pair.subset(["b"])
    assert view.source == "b" and view.source_names == ("b",)
    assert view.sources == {"b": pair.sources["b"]}
    assert {r.source for r in view.records} == {"b"} and len(view.records) == 6
    assert view.images("train").shape[0] == len(view.split_records("train"))
    assert pair.source_names == ("a", "b")  # the dataset itself is unchanged
    with pytest.raises(ValueError, match=r"names \['c'\], which hold no image"):
        pair.subset(["c"])


def test_balanced_views_draw_classes_evenly(pair: XrayDataset) -> None:
    assert pair.sampling is None
    assert np.allclose(pair.draw_weights("train"), 1 / len(pair.split_records("train")))
    view = pair.balanced("class")
    recs = view.split_records("train")
    w = view.draw_weights("train")
    per_class = {c: w[[r.label == c for r in recs]].sum() for c in view.class_names}
    assert np.isclose(sum(per_class.values()), 1.0)
    assert all(np.isclose(v, 0.5) for v in per_class.values())
    by_source = pair.balanced("source").draw_weights("train")
    share_a = by_source[[r.source == "a" for r in recs]].sum()
    assert np.isclose(share_a, 8 / 14)  # a keeps its share of the draws
    with pytest.raises(ValueError, match="by"):
        pair.balanced("patient")


def test_reports_count_and_fingerprint(pair: XrayDataset) -> None:
    assert pair.counts() == {"train": {"normal": 7, "covid": 7}}
    assert pair.source_table() == {
        "a": {"normal": 4, "covid": 4},
        "b": {"normal": 3, "covid": 3},
    }
    text = pair.summary()
    assert "images per source and class:" in text and "findings -> classes:" in text
    moved = XrayDataset(
        [Record(**{**r.to_dict(), "split": "test"}) for r in pair.records],
        class_names=pair.class_names,
        positive_class=pair.positive_class,
        preprocessing=pair.preprocessing,
        batch_size=2,
        seed=0,
        pixels=None,
        rows={},
    )
    assert len(pair.fingerprint()) == 64 and moved.fingerprint() != pair.fingerprint()
    assert "XrayDataset(n=14" in repr(pair)


def test_findings_without_a_class_are_data_not_key_prefixes(tmp_path: Path) -> None:
    for c, cls in enumerate(("covid", "normal", "fracture")):
        for k in range(3):
            write_image(tmp_path / cls / f"{k}.png", seed=100 * c + k)
    data = load_dataset(
        tmp_path, image_size=(8, 8), classes=["covid", "normal"], validation_split=0.0
    )
    assert data.unmatched_findings == {"fracture": 3}
    assert data.dropped == {f"{NO_CLASS}fracture": 3}  # the display, as before
    assert "images dropped (no class): 3" in data.summary()


def test_a_dataset_made_by_hand_needs_no_sources() -> None:
    data = XrayDataset(
        [],
        class_names=("non", "covid"),
        positive_class="covid",
        preprocessing=Preprocessing((8, 8)),
        batch_size=2,
        seed=0,
        pixels=None,
        rows={},
        source="given",
    )
    assert data.source == "given" and data.sources == {} and data.source_names == ()
    assert data.train is None and data.images("train").shape == (0, 8, 8, 1)
