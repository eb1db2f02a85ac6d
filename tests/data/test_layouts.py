"""The layout readers: each dataset format read into entries, filters, paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from covidxray import CovidXrayWarning, DataError, load_dataset
from helpers import make_folder_set, write_image
from helpers import write_dicom as write_dicom_file

IEEE_NEW = (
    "patientid,offset,sex,age,finding,RT_PCR_positive,survival,intubated,intubation_present,"
    "went_icu,in_icu,needed_supplemental_O2,extubated,temperature,pO2_saturation,"
    "leukocyte_count,neutrophil_count,lymphocyte_count,view,modality,date,location,folder,"
    "filename,doi,url,license,clinical_notes,other_notes,\n"
)


def test_folder_flat_layout_splits_val_from_all(tmp_path: Path) -> None:
    make_folder_set(tmp_path, n=10)
    ds = load_dataset(tmp_path, image_size=(16, 16), validation_split=0.2, seed=0)
    assert ds.layout == "folder"
    assert ds.class_names == ("normal", "covid")
    assert ds.counts() == {
        "train": {"normal": 8, "covid": 8},
        "val": {"normal": 2, "covid": 2},
    }
    assert ds.test is None


def test_folder_train_test_layout_keeps_test(tmp_path: Path) -> None:
    make_folder_set(tmp_path, n=10, split="train")
    make_folder_set(tmp_path, n=4, split="test")
    ds = load_dataset(tmp_path, image_size=(16, 16), validation_split=0.2)
    counts = ds.counts()
    assert counts["test"] == {"normal": 4, "covid": 4}
    assert counts["val"] == {"normal": 2, "covid": 2}
    assert all("/test/" in r.path for r in ds.split_records("test"))
    assert not any("/test/" in r.path for r in ds.split_records("val"))


def ieee_row(pid: str, finding: str, view: str, modality: str, filename: str) -> str:
    cells = (
        [pid, "0", "M", "50", finding]
        + [""] * 13
        + [
            view,
            modality,
            "2020",
            '"Wuhan, China"',
            "images",
            filename,
            "",
            "",
            "",
            '"notes, with comma"',
            "",
        ]
    )
    return ",".join(cells) + ",\n"


def make_ieee(root: Path) -> Path:
    rows = [
        ("p1", "Pneumonia/Viral/COVID-19", "PA", "X-ray", "a.png"),
        ("p1", "Pneumonia/Viral/COVID-19", "AP", "X-ray", "b.png"),
        ("p2", "Pneumonia/Viral/COVID-19", "PA", "X-ray", "c.png"),
        ("p3", "Pneumonia/Viral/COVID-19", "AP Supine", "X-ray", "d.png"),
        ("p4", "No Finding", "PA", "X-ray", "e.png"),
        ("p5", "Pneumonia/Bacterial/Streptococcus", "PA", "X-ray", "f.png"),
        ("p6", "Pneumonia/Viral/SARS", "PA", "X-ray", "g.png"),
        ("p7", "No Finding", "PA", "X-ray", "h.png"),
        ("p8", "todo", "PA", "X-ray", "i.png"),
        ("p9", "Unknown", "PA", "X-ray", "j.png"),
        ("p10", "Pneumonia/Viral/COVID-19", "Axial", "CT", "k.png"),
        ("p11", "No Finding", "L", "X-ray", "l.png"),
    ]
    text = IEEE_NEW + "".join(ieee_row(*r) for r in rows)
    (root / "metadata.csv").write_text(text)
    for i, r in enumerate(rows):
        write_image(root / "images" / r[4], seed=i)
    return root


def test_ieee8023_new_header_findings_and_filters(tmp_path: Path) -> None:
    ds = load_dataset(make_ieee(tmp_path), image_size=(8, 8), validation_split=0.0)
    assert ds.layout == "ieee8023"
    assert ds.class_names == ("non-covid", "covid")
    labels = {Path(r.path).name: r.label for r in ds.records}
    assert labels["a.png"] == "covid" and labels["f.png"] == "non-covid"
    assert "i.png" not in labels and "j.png" not in labels and "k.png" not in labels
    assert ds.dropped == {"finding todo": 1, "finding Unknown": 1, "modality CT": 1}
    assert {
        r.patient_id for r in ds.records if Path(r.path).name in ("a.png", "b.png")
    } == {"p1"}

    frontal = load_dataset(
        tmp_path, image_size=(8, 8), views=["PA", "AP"], validation_split=0.0
    )
    assert {Path(r.path).name for r in frontal.records} == {
        "a.png",
        "b.png",
        "c.png",
        "e.png",
        "f.png",
        "g.png",
        "h.png",
    }


def test_ieee8023_multiclass_by_hierarchy(tmp_path: Path) -> None:
    ds = load_dataset(
        make_ieee(tmp_path),
        image_size=(8, 8),
        validation_split=0.0,
        classes=["normal", "pneumonia", "COVID-19"],
    )
    labels = {Path(r.path).name: r.label for r in ds.records}
    assert labels["a.png"] == "COVID-19"
    assert labels["e.png"] == "normal"
    assert labels["f.png"] == "pneumonia" and labels["g.png"] == "pneumonia"
    assert ds.class_names == ("normal", "pneumonia", "COVID-19")


def test_ieee8023_old_header_without_folder(tmp_path: Path) -> None:
    text = "Patientid,offset,sex,age,finding,survival,view,modality,date,location,filename,doi,url,license,clinical notes,other notes,Unnamed: 16\n"
    for i, (finding, name) in enumerate(
        [
            ("COVID-19", "a.jpg"),
            ("COVID-19", "b.jpg"),
            ("SARS", "c.jpg"),
            ("ARDS", "d.jpg"),
        ]
    ):
        text += f"{i},0,F,40,{finding},Y,PA,X-ray,2020,here,{name},,,,,,\n"
        write_image(tmp_path / "images" / name, fmt="JPEG", seed=i)
    (tmp_path / "metadata.csv").write_text(text)
    ds = load_dataset(tmp_path, image_size=(8, 8), validation_split=0.0)
    assert ds.layout == "ieee8023"
    assert sorted(r.label for r in ds.records) == [
        "covid",
        "covid",
        "non-covid",
        "non-covid",
    ]


def test_figure1_and_actualmed_latin1(tmp_path: Path) -> None:
    fig = tmp_path / "fig"
    header = "patientid,offset,sex,age,finding,survival,temperature,pO2 saturation,view,modality,artifacts/distortion,notes\n"
    rows = [
        ("COVID-00001", "COVID-19", ".jpg"),
        ("COVID-00002", "No finding", ".png"),
        ("COVID-00003", "", ".jpg"),
        ("COVID-00004", "Pneumonia", ".jpg"),
    ]
    body = "".join(f"{pid},,M,60,{f},,38.5\xb0C,,PA,X-ray,,\n" for pid, f, _ in rows)
    fig.mkdir()
    (fig / "metadata.csv").write_bytes((header + body).encode("latin-1"))
    for i, (pid, _, ext) in enumerate(rows):
        write_image(fig / "images" / (pid + ext), seed=i)
    ds = load_dataset(fig, image_size=(8, 8), validation_split=0.0)
    assert ds.layout == "figure1"
    assert len(ds.records) == 3 and ds.dropped == {"finding blank": 1}
    assert {Path(r.path).suffix for r in ds.records} == {".jpg", ".png"}

    act = tmp_path / "act"
    act.mkdir()
    header = "patientid,offset,sex,age,finding,survival,temperature,pO2 saturation,view,modality,imagename,artifacts/distortion,notes\n"
    body = "A1,,M,60,COVID-19,,,,PA,X-ray,x1.png,,\nA2,,F,50,No finding,,,,PA,X-ray,x2.png,,\n"
    (act / "metadata.csv").write_text(header + body)
    write_image(act / "images" / "x1.png", seed=1)
    write_image(act / "images" / "x2.png", seed=2)
    ds = load_dataset(act, image_size=(8, 8), validation_split=0.0)
    assert ds.layout == "actualmed"
    assert sorted(r.label for r in ds.records) == ["covid", "non-covid"]


def test_coronahack(tmp_path: Path) -> None:
    csv = ",X_ray_image_name,Label,Dataset_type,Label_2_Virus_category,Label_1_Virus_category\n"
    rows = [
        (0, "IM-0128-0001.jpeg", "Normal", "TRAIN", "", ""),
        (1, "IM-0129-0001.jpeg", "Normal", "TRAIN", "", ""),
        (2, "bact.jpeg", "Pnemonia", "TRAIN", "", "bacteria"),
        (5221, "kjr-21-e25-g001-l-a.jpg", "Pnemonia", "TRAIN", "COVID-19", "Virus"),
        (5222, "covid2.jpg", "Pnemonia", "TRAIN", "COVID-19", "Virus"),
        (5300, "test1.jpeg", "Normal", "TEST", "", ""),
        (5301, "test2.jpeg", "Pnemonia", "TEST", "COVID-19", "Virus"),
    ]
    for i, (idx, name, label, split, l2, l1) in enumerate(rows):
        csv += f"{idx},{name},{label},{split},{l2},{l1}\n"
        write_image(
            tmp_path / "Coronahack-Chest-XRay-Dataset" / split.lower() / name,
            fmt="JPEG",
            seed=i,
        )
    (tmp_path / "Chest_xray_Corona_Metadata.csv").write_text(csv)
    ds = load_dataset(tmp_path, image_size=(8, 8), validation_split=0.0)
    assert ds.layout == "coronahack"
    labels = {Path(r.path).name: (r.label, r.split) for r in ds.records}
    assert labels["kjr-21-e25-g001-l-a.jpg"] == ("covid", "train")
    assert labels["bact.jpeg"] == ("non-covid", "train")
    assert labels["test2.jpeg"] == ("covid", "test")
    three = load_dataset(
        tmp_path,
        image_size=(8, 8),
        validation_split=0.0,
        classes=["normal", "pneumonia", "covid"],
    )
    assert {Path(r.path).name: r.label for r in three.records}[
        "bact.jpeg"
    ] == "pneumonia"


def test_covidx_three_and_four_fields_with_spaces(tmp_path: Path) -> None:
    train = "COVID 70 COVID(70).png positive sirm\n101 n1.png negative rsna\n102 n2.png negative rsna\n\n"
    test = "7 c7.png COVID-19\n8 n8.png normal\n"
    (tmp_path / "train_COVIDx9A.txt").write_text(train)
    (tmp_path / "test_COVIDx9A.txt").write_text(test)
    for i, name in enumerate(["COVID(70).png", "n1.png", "n2.png"]):
        write_image(tmp_path / "train" / name, seed=i)
    for i, name in enumerate(["c7.png", "n8.png"]):
        write_image(tmp_path / "test" / name, seed=10 + i)
    ds = load_dataset(tmp_path, image_size=(8, 8), validation_split=0.0)
    assert ds.layout == "covidx"
    rec = next(r for r in ds.records if r.path.endswith("COVID(70).png"))
    assert (rec.patient_id, rec.label, rec.source, rec.split) == (
        "COVID 70",
        "covid",
        "sirm",
        "train",
    )
    assert {Path(r.path).name for r in ds.split_records("test")} == {"c7.png", "n8.png"}


def test_manifest_with_split_bom_quotes_and_duplicate_rows(tmp_path: Path) -> None:
    write_image(tmp_path / "a, b.png", seed=1)
    write_image(tmp_path / "c.png", seed=2)
    write_image(tmp_path / "d.png", seed=3)
    text = '\ufeffpath,label,patient_id,split\n"a, b.png",covid,1,train\n\nc.png,normal,2,train\nc.png,normal,2,train\nd.png,normal,3,test\n'
    (tmp_path / "manifest.csv").write_text(text, encoding="utf-8")
    ds = load_dataset(
        tmp_path / "manifest.csv", image_size=(8, 8), validation_split=0.0
    )
    assert ds.layout == "manifest"
    assert sorted(Path(r.path).name for r in ds.records) == [
        "a, b.png",
        "c.png",
        "d.png",
    ]
    assert [Path(r.path).name for r in ds.split_records("test")] == ["d.png"]


def test_manifest_paths_outside_the_folder_are_refused(tmp_path: Path) -> None:
    inner = tmp_path / "data"
    write_image(tmp_path / "outside.png", seed=1)
    write_image(inner / "in1.png", seed=2)
    write_image(inner / "in2.png", seed=3)
    write_image(inner / "in3.png", seed=4)
    (inner / "manifest.csv").write_text(
        "path,label\n../outside.png,covid\nin1.png,covid\nin2.png,normal\nin3.png,normal\n"
    )
    with pytest.raises(DataError, match="leaves the dataset folder"):
        load_dataset(inner, image_size=(8, 8))
    with pytest.warns(CovidXrayWarning, match="Skipped 1"):
        ds = load_dataset(
            inner, image_size=(8, 8), on_error="skip", validation_split=0.0
        )
    assert len(ds.records) == 3 and "outside.png" in ds.skipped[0][0]


def test_rows_naming_missing_files(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", seed=1)
    write_image(tmp_path / "b.png", seed=2)
    (tmp_path / "manifest.csv").write_text(
        "path,label\na.png,covid\nb.png,normal\nmissing.png,normal\n"
    )
    with pytest.raises(DataError, match="File not found: '.*missing.png'"):
        load_dataset(tmp_path, image_size=(8, 8))


def write_dicom(
    path: Path, pixels: np.ndarray, photometric: str, bits_stored: int
) -> Path:
    return write_dicom_file(path, pixels, bits=bits_stored, photometric=photometric)


def test_dicom_in_a_folder_layout(tmp_path: Path) -> None:
    pytest.importorskip("pydicom")
    rng = np.random.default_rng(0)
    for k in range(3):
        write_dicom(
            tmp_path / "covid" / f"c{k}.dcm",
            rng.integers(0, 4096, (12, 12)),
            "MONOCHROME2",
            12,
        )
        write_dicom(
            tmp_path / "normal" / f"n{k}.dcm",
            rng.integers(0, 4096, (12, 12)),
            "MONOCHROME2",
            12,
        )
    ds = load_dataset(tmp_path, image_size=(8, 8), validation_split=0.0)
    assert len(ds.records) == 6 and {r.format for r in ds.records} == {"DICOM"}
