"""Tests of audit: duplicates, near-duplicates, patients and the shortcut probe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from covidxray import audit, load_dataset
from covidxray.datasets import make_synthetic, synthetic_xray
from helpers import write_image


def test_audit_finds_cross_split_copies_even_after_dedup(leaky_root: Path) -> None:
    ds = load_dataset(leaky_root, image_size=(16, 16))
    report = audit(ds, shortcut_probe=False)
    cross = report.cross_split_duplicates
    assert len(cross) == 3
    assert all(g["removed"] == 1 and g["same_bytes"] for g in cross)
    assert report.warnings[0] == "This is SYNTHETIC demo data, not X-rays."
    assert "all removed by deduplicate=True" in report.warnings[1]
    raw = audit(leaky_root, shortcut_probe=False)
    assert len(raw.cross_split_duplicates) == 3
    assert "inflated" in raw.warnings[1]


def test_near_duplicates_resized_copy(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for k in range(6):
        for cls in ("covid", "normal"):
            pixels = synthetic_xray(rng, (96, 96), opacities=cls == "covid")
            Image.fromarray(pixels).save(tmp_path / "train" / cls / f"{k}.png") if (
                tmp_path / "train" / cls
            ).is_dir() else (
                (tmp_path / "train" / cls).mkdir(parents=True),
                Image.fromarray(pixels).save(tmp_path / "train" / cls / f"{k}.png"),
            )
    (tmp_path / "test" / "covid").mkdir(parents=True)
    (tmp_path / "test" / "normal").mkdir(parents=True)
    original = Image.open(tmp_path / "train" / "covid" / "0.png")
    original.resize((80, 80)).save(
        tmp_path / "test" / "covid" / "resized.jpg", quality=85
    )
    for k in range(2):
        Image.fromarray(synthetic_xray(rng, (96, 96), opacities=False)).save(
            tmp_path / "test" / "normal" / f"t{k}.png"
        )
    Image.fromarray(synthetic_xray(rng, (96, 96), opacities=True)).save(
        tmp_path / "test" / "covid" / "t.png"
    )
    report = audit(tmp_path, shortcut_probe=False)
    assert report.exact_duplicates == []
    cross = [p for p in report.near_duplicates if p["cross_split"]]
    names = [sorted(Path(p).name for p in pair["paths"]) for pair in cross]
    assert ["0.png", "resized.jpg"] in names
    assert len(cross) == 1, cross


def test_patient_overlap_is_reported(tmp_path: Path) -> None:
    lines = ["path,label,patient_id,split"]
    for k, (label, patient, split) in enumerate(
        [
            ("covid", "A", "train"),
            ("covid", "A", "test"),
            ("normal", "B", "train"),
            ("normal", "C", "test"),
        ]
    ):
        write_image(tmp_path / f"{k}.png", seed=k)
        lines.append(f"{k}.png,{label},{patient},{split}")
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    # Read as given: the audit of the source must see patient A in two splits.
    ds = load_dataset(tmp_path, image_size=(8, 8), validation_split=0.0)
    assert {r.split for r in ds.records if r.patient_id == "A"} == {
        "test"
    }  # load moved it
    from covidxray.data.dataset import XrayDataset

    given = XrayDataset(
        [
            r.__class__(**{**r.to_dict(), "split": s})
            for r, s in zip(ds.records, ["train", "test", "train", "test"], strict=True)
        ],
        class_names=ds.class_names,
        positive_class=ds.positive_class,
        preprocessing=ds.preprocessing,
        batch_size=2,
        seed=0,
        pixels=None,
        rows={},
    )
    report = audit(given, shortcut_probe=False)
    assert report.patient_overlap == {"A": ["test", "train"]}
    assert any("1 patients" in w for w in report.warnings)


def test_shortcut_probe_warns_when_mode_gives_the_label_away(tmp_path: Path) -> None:
    for k in range(20):
        write_image(
            tmp_path / "covid" / f"c{k}.png", mode="RGB", size=(40 + k, 30), seed=k
        )
        write_image(
            tmp_path / "normal" / f"n{k}.jpg",
            mode="L",
            size=(30, 30 + k),
            fmt="JPEG",
            seed=100 + k,
        )
    report = audit(tmp_path)
    assert report.shortcut_auc is not None and report.shortcut_auc > 0.95
    assert report.shortcut_feature_auc["mode"] > 0.95
    assert any(w.startswith("Shortcut:") for w in report.warnings)
    table = report.class_table
    assert table["covid"]["modes"] == {"RGB": 20} and table["normal"]["formats"] == {
        "JPEG": 20
    }


def test_no_shortcut_warning_on_synthetic_set(synthetic_root: Path) -> None:
    report = audit(synthetic_root)
    assert report.shortcut_auc is not None and report.shortcut_auc < 0.8
    assert not any(w.startswith("Shortcut:") for w in report.warnings)


def test_report_serialises(leaky_root: Path) -> None:
    report = audit(leaky_root, shortcut_probe=False)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["n_images"] == 16 * 2 + 6 * 2 + 3
    markdown = report.to_markdown()
    assert markdown.startswith("# Dataset audit")
    assert "3 of them across splits" in markdown


def test_audit_warns_when_a_class_comes_only_from_its_own_source(
    tmp_path: Path,
) -> None:
    root = make_synthetic(tmp_path / "both", n_per_class=10, image_size=(48, 48))
    only_covid = tmp_path / "covid-only"
    (only_covid / "covid").mkdir(parents=True)
    for path in sorted((root / "covid").iterdir())[:5]:
        image = np.asarray(Image.open(path))
        Image.fromarray(255 - image).save(only_covid / "covid" / path.name)
    report = audit({"both": root, "hosp": only_covid}, shortcut_probe=False)
    assert report.source_table["hosp"] == {"normal": 0, "covid": 5}
    assert any("hosp holds only 'covid' (33% of" in w for w in report.warnings)
    probe = report.source_probe
    assert set(probe["label_auc_by_source"]) == {"both"}
    assert (
        probe["source_auc"] is not None
        and "Simple image statistics" in probe["reading"]
    )
    assert "## Sources" in report.to_markdown()
