"""Tests of load_dataset: layouts, labels, splits, decoding and bad input."""

from __future__ import annotations

import functools
import io
import struct
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from covidxray import CovidXrayWarning, DataError, load_dataset
from covidxray.data.decode import decode_file
from covidxray.data.preprocessing import image_to_array
from helpers import write_dicom as write_dicom_file
from helpers import write_image


def make_folder_set(
    root: Path, classes=("covid", "normal"), n: int = 6, split: str | None = None
) -> Path:
    offset = {None: 0, "train": 100, "test": 200}[split]  # no image in two splits
    for c, cls in enumerate(classes):
        for k in range(n):
            base = root / split if split else root
            write_image(base / cls / f"{cls}_{k}.png", seed=1000 * c + k + offset)
    return root


# ---------------------------------------------------------------- folder layout


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


def test_tf_batches_are_float_in_unit_range_and_labels_match(
    synthetic_root: Path,
) -> None:
    ds = load_dataset(
        synthetic_root, image_size=(32, 32), batch_size=5, color_mode="rgb"
    )
    xs, ys = [], []
    for x, y in ds.val:
        xs.append(x.numpy())
        ys.append(y.numpy())
    x = np.concatenate(xs)
    assert x.dtype == np.float32 and x.shape[1:] == (32, 32, 3)
    np.testing.assert_array_equal(np.concatenate(ys), ds.labels("val"))
    np.testing.assert_allclose(x, ds.images("val") / 255.0, atol=1e-6)


def test_train_is_reshuffled_each_epoch_but_same_content(synthetic_root: Path) -> None:
    ds = load_dataset(synthetic_root, image_size=(16, 16), batch_size=64)
    first = next(iter(ds.train))[1].numpy()
    second = next(iter(ds.train))[1].numpy()
    train = ds.train
    epoch1 = np.concatenate([y.numpy() for _, y in train])
    epoch2 = np.concatenate([y.numpy() for _, y in train])
    assert sorted(epoch1) == sorted(epoch2)
    assert not np.array_equal(epoch1, epoch2) or not np.array_equal(first, second)


def test_uncached_pipeline_gives_the_same_pixels(synthetic_root: Path) -> None:
    cached = load_dataset(synthetic_root, image_size=(16, 16))
    uncached = load_dataset(synthetic_root, image_size=(16, 16), cache=False)
    a = np.concatenate([x.numpy() for x, _ in cached.val])
    b = np.concatenate([x.numpy() for x, _ in uncached.val])
    np.testing.assert_array_equal(a, b)


def test_file_cache_over_memory_limit(synthetic_root: Path) -> None:
    ds = load_dataset(synthetic_root, image_size=(16, 16), cache_memory_limit=100)
    assert isinstance(ds._pixels, np.memmap)
    ref = load_dataset(synthetic_root, image_size=(16, 16))
    np.testing.assert_array_equal(ds.images("train"), ref.images("train"))


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


def test_class_weights_are_balanced(tmp_path: Path) -> None:
    for k in range(4):
        write_image(tmp_path / "covid" / f"c{k}.png", seed=k)
    for k in range(12):
        write_image(tmp_path / "non" / f"n{k}.png", seed=100 + k)
    ds = load_dataset(tmp_path, image_size=(8, 8), validation_split=0.0)
    assert ds.class_weights() == {0: 16 / 24, 1: 16 / 8}


# ---------------------------------------------------------------- metadata layouts

IEEE_NEW = (
    "patientid,offset,sex,age,finding,RT_PCR_positive,survival,intubated,intubation_present,"
    "went_icu,in_icu,needed_supplemental_O2,extubated,temperature,pO2_saturation,"
    "leukocyte_count,neutrophil_count,lymphocyte_count,view,modality,date,location,folder,"
    "filename,doi,url,license,clinical_notes,other_notes,\n"
)


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


# ---------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    ("mode", "fmt", "ext"),
    [
        ("L", "PNG", ".png"),
        ("RGB", "JPEG", ".jpg"),
        ("RGBA", "PNG", ".png"),
        ("P", "GIF", ".gif"),
        ("CMYK", "JPEG", ".jpg"),
        ("RGB", "BMP", ".bmp"),
        ("RGB", "WEBP", ".webp"),
        ("L", "TIFF", ".tiff"),
        ("I;16", "PNG", ".png"),
    ],
)
def test_decode_formats_and_modes(
    tmp_path: Path, mode: str, fmt: str, ext: str
) -> None:
    path = tmp_path / f"img{ext}"
    if mode == "I;16":
        arr = np.full((10, 12), 65535, dtype=np.uint16)
        arr[:, :6] = 0
        Image.fromarray(arr).save(path)
    else:
        Image.new(
            mode,
            (12, 10),
            200 if mode in ("L", "P") else (200, 100, 50, 255)[: len(mode)],
        ).save(path, format=fmt)
    img, info = decode_file(path)
    assert img.mode in ("L", "RGB") and img.size == (12, 10)
    assert info.format == fmt
    for color_mode, channels in (("grayscale", 1), ("rgb", 3)):
        arr = image_to_array(img, (5, 6), color_mode=color_mode)
        assert arr.shape == (5, 6, channels) and arr.dtype == np.uint8
    if mode == "I;16":
        gray = image_to_array(img, (10, 12), color_mode="grayscale")[:, :, 0]
        assert (
            gray[:, 0].max() == 0 and gray[:, -1].min() == 255
        )  # full 16-bit range kept


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("L", (30, 10), 0)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    decoded, info = decode_file(tmp_path / "rot.jpg")
    assert decoded.size == (10, 30) and (info.width, info.height) == (10, 30)


def test_resize_policies() -> None:
    img = Image.new("L", (100, 50), 255)
    stretch = image_to_array(img, (20, 20), resize="stretch")[:, :, 0]
    pad = image_to_array(img, (20, 20), resize="pad")[:, :, 0]
    crop = image_to_array(img, (20, 20), resize="crop")[:, :, 0]
    assert stretch.min() == 255 and crop.min() == 255
    assert pad[0].max() == 0 and pad[10].min() == 255  # black bars above and below
    with pytest.raises(ValueError, match="`resize` argument"):
        image_to_array(img, (20, 20), resize="squash")


# ---------------------------------------------------------------- bad input


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


def test_rows_naming_missing_files(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", seed=1)
    write_image(tmp_path / "b.png", seed=2)
    (tmp_path / "manifest.csv").write_text(
        "path,label\na.png,covid\nb.png,normal\nmissing.png,normal\n"
    )
    with pytest.raises(DataError, match="File not found: '.*missing.png'"):
        load_dataset(tmp_path, image_size=(8, 8))


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


# ---------------------------------------------------------------- deduplication


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


# ---------------------------------------------------------------- DICOM


def write_dicom(
    path: Path, pixels: np.ndarray, photometric: str, bits_stored: int
) -> Path:
    return write_dicom_file(path, pixels, bits=bits_stored, photometric=photometric)


def test_dicom_bits_stored_and_monochrome1(tmp_path: Path) -> None:
    pytest.importorskip("pydicom")
    pixels = np.zeros((8, 10), np.uint16)
    pixels[:, 5:] = 4095  # full scale for 12 bits stored
    pixels[:, 4] = 2048
    normal = write_dicom(tmp_path / "m2.dcm", pixels, "MONOCHROME2", 12)
    inverted = write_dicom(tmp_path / "m1.dcm", pixels, "MONOCHROME1", 12)
    img, info = decode_file(normal)
    arr = np.asarray(img)
    assert info.format == "DICOM" and info.mode == "MONOCHROME2"
    assert arr[0, 0] == 0 and arr[0, -1] == 255 and arr[0, 4] == 128  # 2048 / 4095
    arr = np.asarray(decode_file(inverted)[0])
    assert arr[0, 0] == 255 and arr[0, -1] == 0  # MONOCHROME1: low values are bright


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


def test_pixel_hashes_do_not_depend_on_image_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for cls in ("covid", "normal"):
        (tmp_path / cls).mkdir()
        for k in range(3):
            coarse = Image.fromarray(rng.integers(0, 256, (20, 25), dtype=np.uint8))
            coarse.resize((1000, 800)).save(tmp_path / cls / f"{k}.jpg", quality=90)
    cached = load_dataset(tmp_path, image_size=(64, 64), validation_split=0.0)
    uncached = load_dataset(
        tmp_path, image_size=(64, 64), validation_split=0.0, cache=False
    )
    small = load_dataset(tmp_path, image_size=(16, 16), validation_split=0.0)
    assert {(r.width, r.height) for r in cached.records} == {
        (1000, 800)
    }  # the file's size
    np.testing.assert_array_equal(cached.images("train"), uncached.images("train"))
    hashes = {r.path: (r.pixel_hash, r.phash) for r in cached.records}
    assert hashes == {r.path: (r.pixel_hash, r.phash) for r in small.records}
    assert len({h for h, _ in hashes.values()}) == 6  # six different pictures


def test_transform_hook_and_the_deprecated_augmenter_argument(
    synthetic_root: Path,
) -> None:
    data = load_dataset(synthetic_root, image_size=(32, 32), batch_size=8)
    seen = []

    def invert(images, seed):  # any callable on uint8 batches with a seed
        seen.append((images.dtype, tuple(seed.shape)))
        return 255 - images  # uint8 out: scaled to [0, 1] by the pipeline

    ds = data.as_tf_dataset("val", transform=invert, transform_seed=3)
    x = np.concatenate([b.numpy() for b, _ in ds])
    np.testing.assert_allclose(x, (255 - data.images("val")) / 255.0, atol=1e-6)
    assert x.dtype == np.float32 and seen[0] == (tf.uint8, (2,))
    with pytest.raises(ValueError, match="needs dtype='float32'"):
        data.as_tf_dataset("val", transform=invert, dtype="uint8")
    from covidxray import Augmenter

    with pytest.warns(DeprecationWarning, match="`augmenter` argument"):
        old = data.as_tf_dataset("val", augmenter=Augmenter.xray(seed=1))
    new = data.as_tf_dataset(
        "val",
        transform=functools.partial(
            Augmenter.xray(seed=1).augment, output_dtype="float32"
        ),
        transform_seed=1,
    )
    np.testing.assert_array_equal(
        np.concatenate([b.numpy() for b, _ in old]),
        np.concatenate([b.numpy() for b, _ in new]),
    )
