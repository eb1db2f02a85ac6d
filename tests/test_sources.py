"""Several sources in one dataset: names, copies across sources, splits, audit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidxray import DataError, audit, load_dataset
from covidxray.datasets import make_synthetic


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    # 128 px: a perceptual hash of a much smaller picture is not stable.
    a = make_synthetic(
        tmp_path_factory.mktemp("a"), n_per_class=12, image_size=(128, 128), seed=1
    )
    b = tmp_path_factory.mktemp("b")
    # Source b writes its classes its own way, and republishes one image of a
    # (another size, another format): not the same bytes, nor the same pixels.
    other = make_synthetic(b / "raw", n_per_class=10, image_size=(128, 128), seed=2)
    for folder, name in (("covid", "COVID-19"), ("normal", "non")):
        (b / name).mkdir()
        for path in sorted((other / folder).iterdir()):
            Image.open(path).save(b / name / path.name)
    copy = sorted((a / "covid").iterdir())[0]
    Image.open(copy).resize((60, 60)).save(
        b / "COVID-19" / "republished.jpg", quality=90
    )
    import shutil

    shutil.rmtree(b / "raw")
    return {"a": a, "b": b}


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


def test_within_source_and_leave_one_source_out(
    two: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from covidxray import (
        Classifier,
        build_cnn,
        evaluate_by_source,
        leave_one_source_out,
    )
    from covidxray.cli import main

    hosp = tmp_path / "hosp"
    (hosp / "covid").mkdir(parents=True)
    for path in sorted((two["a"] / "covid").iterdir())[6:10]:
        Image.open(path).rotate(90).save(hosp / "covid" / path.name)
    sources = {**two, "hosp": hosp}
    data = load_dataset(sources, image_size=(48, 48), test_split={"a": 0.3, "b": 0.3})
    clf = Classifier(build_cnn((48, 48, 1)), class_names=data.class_names)
    clf.fit(data.subset(["a"]), epochs=1, verbose=0)
    within = evaluate_by_source(clf, data, n_bootstrap=0)
    assert sorted(within.evaluations) == ["a", "b"]  # hosp has no test split
    assert "hosp" in within.skipped
    assert within.counts["b"]["covid"] + within.counts["b"]["non-covid"] == len(
        data.subset(["b"]).split_records("test")
    )
    loso = leave_one_source_out(data, build_cnn, epochs=1, n_bootstrap=0)
    assert loso.trained_on == {
        "a": ["b", "hosp"],
        "b": ["a", "hosp"],
        "hosp": ["a", "b"],
    }
    hosp_ev = loso.evaluations["hosp"]
    assert (
        sum(loso.counts["hosp"].values()) == 4 and "specificity" in hosp_ev.unavailable
    )
    table = loso.to_markdown()
    assert "| hosp | non-covid 0, covid 4 | a, b |" in table and "—" in table
    with pytest.raises(ValueError, match="two or more sources"):
        leave_one_source_out(data.subset(["a"]), build_cnn)
    with pytest.raises(ValueError, match="`shard` argument of as_tf_dataset"):
        data.as_tf_dataset("train", shard=(2, 2))
    with pytest.raises(DataError, match="fewer than the 500 workers"):
        data.as_tf_dataset("train", shard=(0, 500))
    # The command line: several sources, named NAME=PATH or after their folder.
    args = ["crossval", "--by", "source", *(f"{k}={v}" for k, v in sources.items())]
    assert (
        main(
            [*args, "--epochs", "1", "--image-size", "48", "--bootstrap", "0", "--json"]
        )
        == 0
    )
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "leave-one-source-out" and set(report["sources"]) == {
        "a",
        "b",
        "hosp",
    }


def test_leave_one_source_out_runs_a_frozen_backbone_once_per_image(
    two: dict[str, Path],
) -> None:
    from covidxray import FeatureCache, build_pretrained, leave_one_source_out

    data = load_dataset(two, image_size=(32, 32), deduplicate=True)
    assert {r.split for r in data.records} <= {"train", "val"}
    cache = FeatureCache()
    result = leave_one_source_out(
        data,
        lambda shape: build_pretrained("mobilenetv2", input_shape=shape, weights=None),
        epochs=1,
        n_bootstrap=0,
        classifier_kwargs={"feature_cache": cache},
    )
    assert sorted(result.evaluations) == ["a", "b"]
    # Each image is computed once: trained on in one run, scored in the other.
    assert cache.computed == len(data.records) == cache.reused
