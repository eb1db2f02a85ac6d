"""Scoring CT slices: the modality warning, patients beside slices, and
patient-level scoring (`evaluate(by="patient")`, `--by patient`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from covidxray import Classifier, CovidXrayWarning, Preprocessing, build_cnn
from covidxray._persist import ModelMetadata
from covidxray._scoring import load_for_evaluation
from covidxray._seen import record_after_fit
from covidxray.cli import EXIT_OK, main
from helpers import COVIDX_CT_BOX, write_covidx_ct

SIZE = 36  # the smallest input build_cnn takes
PREP = Preprocessing((SIZE, SIZE))
CONFIG = ModelMetadata(
    class_names=("non-covid", "covid"),
    positive_class="covid",
    threshold=0.5,
    preprocessing=PREP,
)


@pytest.fixture(scope="module")
def ct_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_covidx_ct(tmp_path_factory.mktemp("ct-eval") / "covidx-ct")


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_cnn((SIZE, SIZE, 1))


def ct_classifier(ct_root: Path, model: keras.Model) -> Classifier:
    """A classifier whose training record says it learnt from these CT slices."""
    data = load_for_evaluation(
        ct_root, preprocessing=PREP, class_names=CONFIG.class_names
    )
    record = record_after_fit(None, data, fitted_before=False)
    assert record is not None
    config = dataclasses.replace(CONFIG, training=record.info)
    return Classifier.from_config(config, model, record)


def test_an_xray_model_warns_on_ct(ct_root: Path, model: keras.Model) -> None:
    xray = Classifier.from_config(CONFIG, model)  # no record: it read X-rays
    with (
        pytest.warns(CovidXrayWarning, match="trained on X-ray images, and evaluate "),
        pytest.warns(CovidXrayWarning, match="no record of its training images"),
    ):
        ev = xray.evaluate(ct_root, n_bootstrap=0)
    assert ev.meta["modalities"] == {"CT": 8}
    assert ev.meta["training_modalities"] == ["X-ray"]
    assert "**The model was trained on X-ray images and scored CT" in ev.to_markdown()


def test_the_training_modality_is_kept_and_old_files_read_as_xray(
    ct_root: Path, model: keras.Model, tmp_path: Path
) -> None:
    clf = ct_classifier(ct_root, model)
    assert clf.training_record_ is not None
    assert clf.training_record_.modalities == ("CT",)
    path = clf.save(tmp_path / "ct.keras")
    assert Classifier.load(path).metadata_.modalities == ("CT",)
    old = {k: v for k, v in CONFIG.to_dict().items() if k != "training"}
    assert ModelMetadata.from_dict(old, path).modalities == ("X-ray",)
    ev = clf.evaluate(ct_root, n_bootstrap=0)  # no warning: it learnt from CT
    assert ev.meta["training_modalities"] == ["CT"]


def test_patients_beside_slices_and_scoring_by_patient(
    ct_root: Path, model: keras.Model
) -> None:
    clf = ct_classifier(ct_root, model)
    by_image = clf.evaluate(ct_root, n_bootstrap=20)
    assert (by_image.meta["n"], by_image.meta["n_patients"]) == (8, 3)
    assert "8 images of 3 patients" in by_image.to_markdown()
    by_patient = clf.evaluate(ct_root, n_bootstrap=20, by="patient")
    assert len(by_patient.y_true) == 3 and by_patient.meta["by"] == "patient"
    assert by_patient.meta["n_images"] == 8
    assert by_patient.support == {"non-covid": 2, "covid": 1}
    # each patient's probability is the mean over its slices
    data = clf.read_dataset(ct_root)
    test = data.split_records("test")
    proba = clf.predict_proba(data.images_of(test))[:, 1]
    first = [i for i, r in enumerate(test) if r.patient_id == test[0].patient_id]
    assert np.isclose(by_patient.y_score[0, 1], proba[first].mean())
    assert "Scored by patient: 3 patients" in by_patient.to_markdown()
    with pytest.raises(ValueError, match="by='patient' in evaluate needs a dataset"):
        clf.evaluate((np.zeros((2, SIZE, SIZE, 1)), np.array([0, 1])), by="patient")
    with pytest.raises(ValueError, match="`by` argument of evaluate"):
        clf.evaluate(ct_root, by="slice")


def test_predict_reads_a_slice_inside_its_body_box(
    ct_root: Path, model: keras.Model
) -> None:
    clf = ct_classifier(ct_root, model)
    path = sorted((ct_root / "3A_images").iterdir())[0]
    inside = Image.open(path).crop(COVIDX_CT_BOX)
    assert np.allclose(clf.predict_proba(str(path)), clf.predict_proba(inside))
    assert not np.allclose(clf.preprocess(str(path)), clf.preprocess(Image.open(path)))


def test_the_command_scores_by_patient(
    ct_root: Path,
    model: keras.Model,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    saved = ct_classifier(ct_root, model).save(tmp_path / "ct.keras")
    args = ["evaluate", str(saved), str(ct_root), "--bootstrap", "0", "--json"]
    assert main([*args, "--by", "patient"]) == EXIT_OK
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 3 and result["meta"]["n_images"] == 8
    out = tmp_path / "cams"
    image = str(sorted((ct_root / "3A_images").iterdir())[0])
    assert main(["predict", str(saved), image, "--gradcam", str(out)]) == EXIT_OK
    [cam] = out.iterdir()
    assert Image.open(cam).size == Image.open(image).size
