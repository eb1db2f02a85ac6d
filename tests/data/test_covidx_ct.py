"""The COVIDx CT layout, on a small folder of the published shape."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidxray import CovidXrayWarning, Preprocessing, audit, load_dataset
from covidxray.cli import EXIT_OK, main
from covidxray.data.covidx_ct import body_box
from covidxray.data.layouts import detect_layout
from covidxray.errors import DataError
from helpers import (
    COVIDX_CT_BOX,
    COVIDX_CT_PATIENTS,
    make_folder_set,
    write_covidx_ct,
    write_image,
)

# The body box is 28 x 24: read at that size, a slice is its box unresized.
BOX_SIZE = (COVIDX_CT_BOX[3] - COVIDX_CT_BOX[1], COVIDX_CT_BOX[2] - COVIDX_CT_BOX[0])


@pytest.fixture(scope="module")
def ct_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_covidx_ct(tmp_path_factory.mktemp("ct") / "covidx-ct")


def test_splits_patients_boxes_and_modality(ct_root: Path) -> None:
    data = load_dataset(ct_root, image_size=(16, 16))
    assert data.layout == "covidx-ct"
    assert data.class_names == ("non-covid", "covid")  # COVID-19 against the rest
    assert data.counts() == {
        "train": {"non-covid": 6, "covid": 6},
        "val": {"non-covid": 2, "covid": 2},
        "test": {"non-covid": 5, "covid": 3},
    }
    for split, patients in COVIDX_CT_PATIENTS.items():
        assert {r.patient_id for r in data.split_records(split)} == {
            p for p, _, _ in patients
        }
    splits_of = {}
    for rec in data.records:
        splits_of.setdefault(rec.patient_id, set()).add(rec.split)
    assert all(len(s) == 1 for s in splits_of.values())
    assert {r.modality for r in data.records} == {"CT"}
    assert {r.box for r in data.records} == {COVIDX_CT_BOX}
    assert {r.finding for r in data.records} == {"Normal", "Pneumonia", "COVID-19"}
    text = data.summary()
    assert "modality: CT" in text
    assert "patients: train 4, val 2, test 3" in text
    assert "body boxes: 24 of 24 images" in text
    assert (
        "findings -> classes: COVID-19 11 -> covid, Normal 8 -> non-covid, "
        "Pneumonia 5 -> non-covid" in text
    )


def test_a_resplit_keeps_patients_whole(ct_root: Path) -> None:
    data = load_dataset(ct_root, image_size=(16, 16), test_split=0.3, seed=3)
    splits_of: dict[str | None, set[str]] = {}
    for rec in data.records:
        splits_of.setdefault(rec.patient_id, set()).add(rec.split)
    assert len(splits_of) == 9 and all(len(s) == 1 for s in splits_of.values())


def test_metadata_names_patients_and_sources(tmp_path: Path) -> None:
    data = load_dataset(write_covidx_ct(tmp_path, metadata=True), image_size=(8, 8))
    rec = next(r for r in data.records if Path(r.path).name == "NCP_1_10_0000.png")
    assert (rec.patient_id, rec.source) == ("NCP_1", "SRC0")
    assert len({r.patient_id for r in data.records}) == 9


def test_the_body_box_is_read_wherever_the_slice_is_read(ct_root: Path) -> None:
    cached = load_dataset(ct_root, image_size=BOX_SIZE, validation_split=0.0)
    uncached = load_dataset(ct_root, image_size=BOX_SIZE, cache=False)
    rec = cached.split_records("test")[0]
    left, top, right, bottom = COVIDX_CT_BOX
    inside = np.asarray(Image.open(rec.path))[top:bottom, left:right, None]
    assert inside.min() > 0  # the body; the black outside was cut off
    np.testing.assert_array_equal(cached.images_of([rec])[0], inside)
    np.testing.assert_array_equal(uncached.images_of([rec])[0], inside)
    first, _ = next(iter(uncached.as_tf_dataset("test", batch_size=1)))
    np.testing.assert_array_equal(np.asarray(first[0]) * 255, inside)
    # predict reads a path: the box comes from the split files beside it
    assert body_box(rec.path) == COVIDX_CT_BOX
    prep = Preprocessing(BOX_SIZE)
    np.testing.assert_array_equal(prep.load(rec.path, box=body_box(rec.path)), inside)


def test_the_overlay_maps_back_inside_the_box() -> None:
    img = Image.new("L", (40, 32), 9)
    prep = Preprocessing((8, 8))
    assert prep.seen_box(img) is None
    assert prep.seen_box(img, COVIDX_CT_BOX) == COVIDX_CT_BOX
    heat = prep.map_back(np.ones((8, 8), np.float32), img.size, COVIDX_CT_BOX)
    assert heat.shape == (32, 40) and heat[:4].max() == 0 and heat[:, :6].max() == 0
    assert heat[4:28, 6:34].min() == 1.0
    trimmed = Preprocessing((8, 8), trim=0.1).seen_box(img, COVIDX_CT_BOX)
    assert trimmed is not None and trimmed[0] >= 6 and trimmed[2] <= 34


def test_told_apart_from_the_chest_xray_covidx(tmp_path: Path, ct_root: Path) -> None:
    xray = tmp_path / "covidx"
    (xray / "train_COVIDx9A.txt").parent.mkdir()
    (xray / "train_COVIDx9A.txt").write_text("1 c.png positive sirm\n2 n.png normal\n")
    write_image(xray / "train" / "c.png", seed=1)
    write_image(xray / "train" / "n.png", seed=2)
    assert detect_layout(xray) == "covidx"
    assert detect_layout(ct_root) == "covidx-ct"
    assert detect_layout(ct_root / "test_COVIDx_CT-3A.txt") == "covidx-ct"
    assert load_dataset(xray, image_size=(8, 8)).records[0].modality == "X-ray"
    # the X-ray reader never reads CT split files
    with pytest.raises(DataError, match="Found no labelled images"):
        load_dataset(ct_root, image_size=(8, 8), layout="covidx")


def test_a_variant_is_chosen_or_named(tmp_path: Path) -> None:
    write_covidx_ct(tmp_path, "2A")
    write_covidx_ct(tmp_path, "3A")
    (tmp_path / "3A_images" / "NCP_1_10_0000.png").unlink()  # only in 2A now
    (tmp_path / "train_COVIDx_CT-3A.txt").write_text(
        "".join(
            line + "\n"
            for line in (tmp_path / "train_COVIDx_CT-3A.txt").read_text().splitlines()
            if not line.startswith("NCP_1_10_0000")
        )
    )
    newest = load_dataset(tmp_path, image_size=(8, 8))
    assert len(newest.records) == 23 and "/3A_images/" in newest.records[0].path
    named = load_dataset(tmp_path / "val_COVIDx_CT-2A.txt", image_size=(8, 8))
    assert len(named.records) == 24 and "/2A_images/" in named.records[0].path


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("Extra_1_1_0000.png 0 0 0 41 32", r"outside the 40 x 32 image"),
        ("Extra_1_1_0000.png 3 0 0 10 10", r"0 \(normal\), 1 \(pneumonia\) or 2"),
        (
            "Missing_1_1_0000.png 0 0 0 10 10",
            r"'.*Missing_1_1_0000.png' does not exist",
        ),
        ("Extra_1_1_0000.png 0 8 0 4 10", r"empty"),
        ("Extra_1_1_0000.png 0 0 0 10", r"expected `filename class xmin"),
        ("NCP_4_13_0000.png 2 6 4 34 28", r"'NCP_4_13_0000.png' is listed twice"),
    ],
)
def test_bad_lines_name_the_file_and_line(
    tmp_path: Path, line: str, reason: str
) -> None:
    root = write_covidx_ct(tmp_path, extra=line + "\n")
    write_image(root / "3A_images" / "Extra_1_1_0000.png", size=(40, 32))
    with pytest.raises(DataError, match=r"test_COVIDx_CT-3A\.txt:9'.*" + reason):
        load_dataset(root, image_size=(8, 8))
    with pytest.warns(CovidXrayWarning, match="Skipped 1 of"):
        skipped = load_dataset(root, image_size=(8, 8), on_error="skip")
    assert len(skipped.records) == 24 and skipped.skipped[0][0].endswith(":9")
    assert skipped.skipped[0][0].endswith("test_COVIDx_CT-3A.txt:9")


def test_ieee8023_says_it_left_out_its_ct_rows(tmp_path: Path) -> None:
    from test_layouts import make_ieee

    data = load_dataset(make_ieee(tmp_path), image_size=(8, 8), validation_split=0.0)
    assert "rows of another modality left out: CT 1" in data.summary()
    assert all(r.modality == "X-ray" for r in data.records)


def test_the_audit_reads_ct_and_warns_about_a_mix(
    tmp_path: Path, ct_root: Path
) -> None:
    report = audit(ct_root, shortcut_probe=False, source_probe=False)
    assert report.modalities == {"CT": 24}
    assert report.patients == {"train": 4, "val": 2, "test": 3}
    assert report.boxes == 24
    assert not any("modalit" in w for w in report.warnings)
    xray = make_folder_set(tmp_path / "xray", n=4)
    mixed = load_dataset({"xray": xray, "ct": ct_root}, image_size=(16, 16))
    assert "modality: MIXED (CT 24, X-ray 8)" in mixed.summary()
    report = audit(mixed, shortcut_probe=False, source_probe=False)
    assert report.modalities == {"CT": 24, "X-ray": 8}
    assert any("mix modalities (CT 24, X-ray 8)" in w for w in report.warnings)


def test_the_audit_command_reads_covidx_ct(
    ct_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = shutil.copytree(ct_root, tmp_path / "covidx-ct")
    assert main(["audit", str(copy), "--no-probe"]) == EXIT_OK
    text = capsys.readouterr().out
    assert "Modality: CT 24" in text and "Patients: train 4, val 2, test 3" in text
    assert main(["audit", str(copy), "--no-probe", "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["boxes"] == 24 and report["modalities"] == {"CT": 24}


def test_ieee8023_ct_rows_kept_on_request_are_ct(tmp_path: Path) -> None:
    from test_layouts import make_ieee

    data = load_dataset(
        make_ieee(tmp_path), image_size=(8, 8), validation_split=0.0, modality=None
    )
    modality = {Path(r.path).name: r.modality for r in data.records}
    assert modality["k.png"] == "CT" and modality["a.png"] == "X-ray"
    assert "modality: MIXED (CT 1, X-ray 9)" in data.summary()


def test_a_cache_file_keeps_each_slice_inside_its_box(
    ct_root: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "ct.cache"
    first = load_dataset(ct_root, image_size=BOX_SIZE, cache=cache)
    again = load_dataset(ct_root, image_size=BOX_SIZE, cache=cache)  # reused
    rec = first.records[0]
    left, top, right, bottom = COVIDX_CT_BOX
    inside = np.asarray(Image.open(rec.path))[top:bottom, left:right, None]
    np.testing.assert_array_equal(again.images_of([rec])[0], inside)
    assert again.fingerprint() == first.fingerprint()
