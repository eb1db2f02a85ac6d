"""load_dataset: one or several sources read, labelled, scanned and split; bad input named."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidxray import CovidXrayWarning, DataError, audit, load_dataset
from helpers import make_folder_set, two_sources, write_image


@pytest.mark.parametrize("kind", ["zero", "truncated", "text", "bomb"])
def test_bad_files_raise_or_skip(tmp_path: Path, kind: str) -> None:
    make_folder_set(tmp_path, n=4)
    bad = tmp_path / "covid" / "bad.png"
    if kind == "zero":
        bad.write_bytes(b"")
    elif kind == "truncated":
        buf = io.BytesIO()
        Image.fromarray(
            np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
        ).save(buf, "PNG")
        bad.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif kind == "text":
        bad.write_text("this is not an image")
    else:
        # A valid PNG header claiming 20000 x 20000 pixels.
        Image.new("L", (8, 8)).save(bad)
        data = bytearray(bad.read_bytes())
        data[16:24] = struct.pack(">II", 20000, 20000)
        bad.write_bytes(bytes(data))
    with pytest.raises(DataError, match="bad.png"):
        load_dataset(tmp_path, image_size=(8, 8), max_pixels=10_000_000)
    with pytest.warns(CovidXrayWarning, match="Skipped 1 of 9"):
        ds = load_dataset(
            tmp_path, image_size=(8, 8), on_error="skip", max_pixels=10_000_000
        )
    assert [Path(p).name for p, _ in ds.skipped] == ["bad.png"]
    assert len(ds.records) == 8


def test_empty_class_folder_and_single_class(tmp_path: Path) -> None:
    make_folder_set(tmp_path, n=3)
    (tmp_path / "pneumonia").mkdir()
    with pytest.raises(DataError, match=r"Found no images under '.*pneumonia'"):
        load_dataset(tmp_path, image_size=(8, 8))
    single = tmp_path / "single"
    for k in range(3):
        write_image(single / "covid" / f"{k}.png", seed=k)
    with pytest.raises(DataError, match="positive and a negative class"):
        load_dataset(single, image_size=(8, 8))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"color_mode": "rgba"},
            "`color_mode` argument of load_dataset must be one of 'grayscale', 'rgb'. Received: 'rgba'",
        ),
        ({"resize": "zoom"}, "`resize` argument"),
        ({"on_error": "ignore"}, "`on_error` argument"),
        ({"layout": "kaggle"}, "`layout` argument"),
        ({"image_size": (0, 3)}, "`image_size` argument"),
        ({"batch_size": 0}, "`batch_size` argument"),
        ({"validation_split": 1.5}, "`validation_split` argument"),
        ({"positive_class": "flu"}, "`positive_class` argument"),
    ],
)
def test_bad_arguments_name_the_argument(
    synthetic_root: Path, kwargs: dict, message: str
) -> None:
    with pytest.raises(
        ValueError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        load_dataset(synthetic_root, **kwargs)


def test_missing_source_and_unknown_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "notes.md").write_text("hello")
    with pytest.raises(DataError, match="Could not recognise the dataset layout"):
        load_dataset(tmp_path / "notes.md")
    (tmp_path / "split.txt").write_text("hello\n")  # a .txt is read as COVIDx
    with pytest.raises(DataError, match=r"split.txt:1': expected `patientid filename"):
        load_dataset(tmp_path / "split.txt")


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return two_sources(tmp_path_factory)


def test_records_know_their_source_and_classes_are_mapped(two: dict[str, Path]) -> None:
    data = load_dataset(two, image_size=(32, 32))
    assert data.sources == {k: str(v) for k, v in two.items()}
    assert {r.source for r in data.records} == {"a", "b"}
    assert data.class_names == ("non-covid", "covid")
    assert data.label_mapping == {
        "COVID-19": "covid",
        "covid": "covid",
        "non": "non-covid",
        "normal": "non-covid",
    }
    assert data.source_table() == {
        "a": {"non-covid": 12, "covid": 12},
        "b": {"non-covid": 10, "covid": 10},  # 11 minus the copy of a's image
    }
    text = data.summary()
    assert "images per source and class" in text
    assert "b: COVID-19 -> covid, non -> non-covid" in text
    assert "duplicates removed: 1 (1 copies across sources)" in text


def test_copies_across_sources_are_found_by_content(two: dict[str, Path]) -> None:
    data = load_dataset(two, image_size=(32, 32))
    [(removed, kept)] = data.duplicates_removed
    assert Path(removed.path).name == "republished.jpg" and removed.source == "b"
    assert kept.source == "a" and removed.sha256 != kept.sha256
    assert removed.pixel_hash != kept.pixel_hash  # only the perceptual hash finds it
    report = audit(two, source_probe=False, shortcut_probe=False)
    assert [Path(c["paths"][1]).name for c in report.cross_source_copies] == [
        "republished.jpg"
    ]


def test_splits_are_made_within_each_source(two: dict[str, Path]) -> None:
    data = load_dataset(two, image_size=(16, 16), test_split={"b": 0.3})
    tests = {r.source for r in data.split_records("test")}
    assert tests == {"b"}  # a has no test split of its own, b was given one
    assert 4 <= len(data.split_records("test")) <= 8
    with pytest.raises(ValueError, match=r"names sources \['c'\]"):
        load_dataset(two, image_size=(16, 16), test_split={"c": 0.2})


def test_bad_sources_are_named(two: dict[str, Path], tmp_path: Path) -> None:
    twin = tmp_path / "x" / two["a"].name
    twin.mkdir(parents=True)
    with pytest.raises(DataError, match=f"Two sources are named '{two['a'].name}'"):
        load_dataset([two["a"], twin], image_size=(16, 16))
    empty = tmp_path / "empty"
    (empty / "covid").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no images under .*empty"):
        load_dataset({"a": two["a"], "e": empty}, image_size=(16, 16))
    with pytest.raises(DataError, match="is in two sources, 'a' and 'again'"):
        load_dataset({"a": two["a"], "again": two["a"]}, image_size=(16, 16))
    with pytest.raises(ValueError, match="names no source"):
        load_dataset({}, image_size=(16, 16))
    with pytest.raises(DataError, match="does not exist"):
        load_dataset({"a": two["a"], "gone": tmp_path / "gone"}, image_size=(16, 16))


@pytest.mark.realdata
def test_three_real_sources(
    seed_data: Path, ieee8023_data: Path, external_data: Path
) -> None:
    sources = {"seed": seed_data, "ieee8023": ieee8023_data, "hannover": external_data}
    data = load_dataset(sources, image_size=(32, 32), cache=False)
    across = [(a, b) for a, b in data.duplicates_removed if a.source != b.source]
    # Measured: 178 ieee8023 images have a seed-xray copy within 6 bits, and 8
    # hannover-covid images are in ieee8023 too; none of them byte-identical.
    assert len(across) >= 178
    assert sum({a.source, b.source} == {"hannover", "ieee8023"} for a, b in across) == 8
    report = audit(sources)
    assert any(
        w.startswith("In seed, the label follows the source") for w in report.warnings
    )
    assert not any("In ieee8023" in w for w in report.warnings)
    by_source = report.source_probe["label_auc_by_source"]
    assert by_source["seed"] > 0.95 and by_source["ieee8023"] < 0.8
