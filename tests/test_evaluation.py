"""Evaluation that cannot leak: what was seen in training is left out, external
sets are scored whole, one class is enough, and thresholds come from
validation data only."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from covidxray import (
    AllSeenError,
    Classifier,
    CovidXrayWarning,
    DataError,
    build_cnn,
    load_dataset,
)
from covidxray.cli import EXIT_DATA, EXIT_OK, main
from covidxray.datasets import make_synthetic

SIZE = 48


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ and test/ folders; 3 training COVID images also in test/covid."""
    return make_synthetic(
        tmp_path_factory.mktemp("eval"),
        n_per_class=20,
        test_per_class=8,
        leaked=3,
        image_size=(SIZE, SIZE),
        seed=4,
    )


@pytest.fixture(scope="module")
def trained(root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    keras.utils.set_random_seed(0)
    data = load_dataset(root, image_size=(SIZE, SIZE), batch_size=8)
    clf = Classifier(build_cnn((SIZE, SIZE, 1)), class_names=data.class_names)
    clf.fit(data, epochs=2, verbose=0)
    path = clf.save(tmp_path_factory.mktemp("model") / "model.keras")
    return clf, data, path


def test_the_model_file_records_what_it_was_trained_on(trained) -> None:
    clf, data, path = trained
    n_seen = len(data.split_records("train")) + len(data.split_records("val"))
    with zipfile.ZipFile(path) as archive:
        record = archive.read("covidxray_seen.bin")
        meta = json.loads(archive.read("covidxray.json"))
    assert len(record) == 16 * n_seen  # 16 bytes per training or validation image
    assert meta["training"]["data_fingerprint"] == data.fingerprint()
    assert meta["training"]["images"] == n_seen
    loaded = Classifier.load(path)
    assert len(loaded.training_record_) == n_seen


def test_images_seen_in_training_are_left_out_or_kept_in_bold(
    trained, root: Path
) -> None:
    clf, _, path = trained
    loaded = Classifier.load(path)
    # The folder as given, not deduplicated: its test split holds 16 images
    # and 3 copies of training images. The model's record finds them by content.
    ev = loaded.evaluate(root, n_bootstrap=0)
    assert ev.meta["split"] == "test" and ev.meta["n_total"] == 19
    assert ev.meta["n_seen"] == 3 and len(ev.y_true) == 16
    assert "Left out 3 images seen in training" in ev.to_markdown()
    # The records scored, in the order of y_true, are none of the seen ones.
    assert len(ev.records) == len(ev.y_true)
    seen = {r.path for r in loaded.read_dataset(root).split_records("test")}
    assert len(seen - {r.path for r in ev.records}) == 3
    kept = loaded.evaluate(root, include_seen=True, n_bootstrap=0)
    assert len(kept.y_true) == 19
    assert "**Includes 3 images seen in training" in kept.to_markdown()
    with pytest.raises(AllSeenError, match="All 40 images to score .* were seen") as e:
        loaded.evaluate(root / "train", n_bootstrap=0)
    assert e.value.n_images == 40 and isinstance(e.value, DataError)


def test_an_external_set_is_scored_whole_even_with_one_class(
    trained, tmp_path: Path
) -> None:
    clf, _, _ = trained
    external = make_synthetic(
        tmp_path / "ext", n_per_class=9, image_size=(64, 64), seed=9
    )
    shutil.rmtree(external / "normal")  # positives only, another size
    ev = clf.evaluate(external, n_bootstrap=0)
    assert ev.meta["split"] == "all" and len(ev.y_true) == 9
    assert ev.meta["scope"].startswith("external set: all 9 images")
    assert (
        np.isnan(ev.metrics["specificity"])
        and "no normal images" in (ev.unavailable["specificity"])
    )
    assert 0.0 <= ev.ci["sensitivity"][0] <= ev.metrics["sensitivity"]
    report = ev.to_dict()
    assert report["metrics"]["roc_auc"] is None and report["n"] == 9
    assert report["unavailable"]["roc_auc"] == "no normal images in the data"
    assert "| specificity | n/a | no normal images in the data |" in ev.to_markdown()


def test_copies_across_formats_and_resized_copies_are_found(
    trained, root: Path, tmp_path: Path
) -> None:
    clf, data, _ = trained
    source = Path(data.split_records("train")[0].path)
    pixels = np.asarray(Image.open(source))
    folder = tmp_path / "copies" / "covid"
    folder.mkdir(parents=True)
    Image.fromarray(pixels).save(folder / "same_pixels.bmp")  # other bytes
    Image.fromarray(pixels).resize((90, 90)).save(folder / "resized.png")
    Image.fromarray(pixels[::-1]).save(folder / "flipped.png")  # a new picture
    ev = clf.evaluate(tmp_path / "copies", n_bootstrap=0)
    assert ev.meta["n_seen"] == 1 and len(ev.y_true) == 2  # the BMP left out
    assert [Path(p).name for p in ev.meta["near_seen_files"]] == ["resized.png"]


def test_cli_evaluate_scores_external_sets_and_refuses_training_data(
    trained, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, path = trained
    capsys.readouterr()
    assert main(["evaluate", str(path), str(root / "test"), "--json"]) == EXIT_OK
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 16 and result["meta"]["n_seen"] == 3
    assert result["meta"]["scope"].startswith("external set: all 19 images")
    assert main(["evaluate", str(path), str(root / "train")]) == EXIT_DATA
    assert "All 40 images to score" in capsys.readouterr().err
    code = main(["evaluate", str(path), str(root / "train"), "--include-seen"])
    assert code == EXIT_OK
    assert "**Includes 40 images seen in training" in capsys.readouterr().out


def test_a_model_without_a_record_warns_that_overlap_is_unchecked(
    trained, root: Path
) -> None:
    clf, data, _ = trained
    plain = Classifier(build_cnn((SIZE, SIZE, 1)), class_names=data.class_names)
    plain.fit((data.images("train"), data.labels("train")), epochs=1, verbose=0)
    assert plain.training_record_ is None
    with pytest.warns(CovidXrayWarning, match="cannot check whether the data overlap"):
        ev = plain.evaluate(root, n_bootstrap=0)
    assert ev.meta["seen_checked"] is False and len(ev.y_true) == 19


def test_classes_the_model_does_not_have_are_refused(tmp_path: Path) -> None:
    for name in ("cat", "dog", "covid"):
        for k in range(3):
            value = np.full((SIZE, SIZE), 40 * k + 10 * len(name), np.uint8)
            (tmp_path / "three" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(value).save(tmp_path / "three" / name / f"{k}.png")
    clf = Classifier(
        build_cnn((SIZE, SIZE, 1), num_classes=3), class_names=["cat", "covid", "owl"]
    )
    x = np.zeros((3, SIZE, SIZE, 1), np.float32)
    clf.fit((x, np.array([0, 1, 2])), epochs=1, verbose=0)
    with pytest.raises(
        DataError,
        match=r"\['dog'\] .* not among the model's classes \['cat', 'covid', 'owl'\]",
    ):
        clf.evaluate(tmp_path / "three", n_bootstrap=0)


def test_tune_threshold_never_reads_the_test_split(
    trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    clf, data, _ = trained
    read: list[str] = []
    original = type(data)._pixels_of

    def spy(self, path: str, **kwargs: object) -> np.ndarray:
        read.append(path)
        return original(self, path, **kwargs)

    monkeypatch.setattr(type(data), "_pixels_of", spy)
    clf.tune_threshold(data)
    test_paths = {r.path for r in data.split_records("test")}
    val_paths = {r.path for r in data.split_records("val")}
    assert read and set(read) == val_paths and not set(read) & test_paths


def test_the_seen_check_matches_comparing_every_pair(trained, root: Path) -> None:
    from covidxray._seen import NEAR_BITS, TrainingRecord
    from covidxray.data.identity import all_pairs

    clf, _, _ = trained
    data = load_dataset(root, image_size=(SIZE, SIZE), deduplicate=False)
    found = clf.training_record_.check(data.records)
    mine = TrainingRecord.from_records(data.records).signatures[:, 8:16]
    known = clf.training_record_.signatures[:, 8:16]
    close = all_pairs(
        np.ascontiguousarray(mine), NEAR_BITS, np.ascontiguousarray(known)
    )
    assert set(found.near) == set(close[0].tolist()) - set(found.exact)
    assert len(found.exact) == 43  # 40 train + 3 leaked


def test_negatives_only_and_covid_findings_by_the_training_rule(
    trained, tmp_path: Path
) -> None:
    clf, _, _ = trained
    external = make_synthetic(
        tmp_path / "neg", n_per_class=6, image_size=(64, 64), seed=3
    )
    shutil.rmtree(external / "covid")
    ev = clf.evaluate(external, n_bootstrap=0)
    assert len(ev.y_true) == 6 and set(ev.y_true.tolist()) == {0}
    assert np.isnan(ev.metrics["sensitivity"]) and not np.isnan(
        ev.metrics["specificity"]
    )
    assert ev.unavailable["sensitivity"] == "no covid images in the data"
    # A finding named like COVID with more words is positive, as in training.
    (external / "normal").rename(external / "COVID-19, ARDS")
    ev = clf.evaluate(external, n_bootstrap=0)
    assert set(ev.y_true.tolist()) == {1}
    assert ev.meta["classes_found"] == {"COVID-19, ARDS": "covid"}


def test_a_second_fit_keeps_a_record_of_both_datasets(trained, tmp_path: Path) -> None:
    _, data, _ = trained
    other = load_dataset(
        make_synthetic(
            tmp_path / "more", n_per_class=5, image_size=(SIZE, SIZE), seed=8
        ),
        image_size=(SIZE, SIZE),
    )
    clf = Classifier(build_cnn((SIZE, SIZE, 1)), class_names=data.class_names)
    clf.fit(data, epochs=1, verbose=0).fit(other, epochs=1, verbose=0)
    record = clf.training_record_
    assert len(record) == 40 + 10 and record.info["complete"]
    assert [d["images"] for d in record.info["datasets"]] == [40, 10]
    assert len(record.check(other.records).exact) == 10
    # arrays leave no record: the record says it is incomplete, and warns
    clf.fit((other.images("train"), other.labels("train")), epochs=1, verbose=0)
    assert clf.training_record_.info["complete"] is False
    with pytest.warns(CovidXrayWarning, match="also trained on arrays"):
        ev = clf.evaluate(other, split="all", include_seen=True, n_bootstrap=0)
    assert ev.meta["record_complete"] is False


def test_a_file_without_a_record_still_evaluates_with_a_warning(
    trained, root: Path, tmp_path: Path
) -> None:
    _, _, path = trained
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            if item.filename != "covidxray_seen.bin":  # as an older version saved
                dst.writestr(item, src.read(item.filename))
    loaded = Classifier.load(old)
    assert loaded.training_record_ is None
    with pytest.warns(CovidXrayWarning, match="no record of its training images"):
        ev = loaded.evaluate(root, n_bootstrap=0)
    assert len(ev.y_true) == 19 and "overlap unchecked" in ev.to_markdown()
