"""The quick comparison on the demo set teaches the library's lesson."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from covidxray import run_comparison
from covidxray.comparison import _demo_set
from covidxray.datasets import make_synthetic


@pytest.mark.slow
def test_the_quick_demo_shows_the_copies_the_shortcut_and_the_clean_control(
    tmp_path: Path,
) -> None:
    result = run_comparison(quick=True, models=["cnn"], out_dir=tmp_path, plots=False)
    assert result.meta["synthetic"] and result.meta["epochs"] == 6
    assert result.audit["cross_split_duplicates"] == 3  # the planted copies
    assert result.audit["shortcut_auc"] > 0.9  # the planted source cue
    by_split = {r["split"]: r for r in result.rows}
    assert by_split["seed (leaky)"]["n_seen_in_test"] == 3
    assert by_split["audited"]["roc_auc"] > 0.9  # the CNN learns (the cue)
    # On the same kind of images without the cue, the cue-taught CNN does worse.
    assert by_split["external"]["roc_auc"] < by_split["audited"]["roc_auc"] - 0.1
    report = (tmp_path / "results.md").read_text()
    assert report.startswith("**SYNTHETIC DEMO DATA.**")
    assert "clean-control" in report
    # Each model's lung test, on the audited split.
    lungs = result.lungs["cnn"]
    assert "error" not in lungs, lungs
    assert 0.0 <= lungs["lungs_removed"]["roc_auc"] <= 1.0
    assert lungs["as_is"]["n"] > 0 and lungs["reading"].startswith("With the lungs")
    assert "## The lung test (audited split, seed 0)" in report
    assert "| cnn |" in report.split("## The lung test")[1]


def test_the_source_cue_is_in_the_pixels_and_in_the_files(tmp_path: Path) -> None:
    root = make_synthetic(
        tmp_path,
        n_per_class=2,
        test_per_class=2,
        leaked=1,
        image_size=(64, 64),
        source_cue=True,
    )
    covid = sorted((root / "train" / "covid").iterdir())
    normal = sorted((root / "train" / "normal").iterdir())
    assert {p.suffix for p in covid} == {".jpg"} and {p.suffix for p in normal} == {
        ".png"
    }
    from PIL import Image

    with Image.open(covid[0]) as img:
        assert img.mode == "RGB" and img.size == (80, 80)  # a quarter larger
        frame = np.asarray(img.convert("L"))[:3, :].mean()
    with Image.open(normal[0]) as img:
        assert img.mode == "L" and img.size == (64, 64)
        plain = np.asarray(img)[:3, :].mean()
    assert frame > 200 > plain  # the bright frame
    leaked = root / "test" / "covid" / covid[0].name
    assert leaked.read_bytes() == covid[0].read_bytes()


@pytest.mark.slow
def test_a_backbone_runs_once_per_image_over_splits_seeds_and_sets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from covidxray import load_dataset

    caplog.set_level(logging.INFO, logger="covidxray")
    result = run_comparison(
        quick=True,
        models=["mobilenetv2"],
        seeds=[0, 1],
        out_dir=tmp_path,
        plots=False,
        lung_test=False,  # its blanked images are new images to the cache
    )
    assert all(r["feature_cache"] for r in result.rows if r["split"] != "external")
    final = [m for m in caplog.messages if m.startswith("Frozen-backbone features:")]
    computed, reused = (
        int(final[-1].split(f"{word} ")[1].split(",")[0].rstrip(")."))
        for word in ("computed", "reused")
    )
    # Each distinct image of the demo set and of the clean control, once. The
    # run removed its demo folders: the same seed makes the same images again.
    assert not Path(result.meta["data"].split("(", 1)[1].rstrip(")")).exists()
    demo, external = _demo_set(tmp_path / "again", True, 64, 0, None)
    distinct = set()
    for folder in (demo, external):
        data = load_dataset(
            folder, image_size=(64, 64), deduplicate=False, min_classes=1
        )
        distinct |= {r.pixel_hash for r in data.records}
    assert computed == len(distinct)
    assert reused > computed  # the audited split, the second seed, the evaluations
    report = (tmp_path / "results.md").read_text()
    assert "drawn once, with the first seed" in report
