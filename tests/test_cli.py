"""Every subcommand of the `covidxray` command, on the synthetic set."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidxray import Classifier, CovidXrayWarning
from covidxray.cli import EXIT_DATA, EXIT_OK, EXIT_USAGE, EXIT_WEIGHTS, main
from covidxray.datasets import make_synthetic


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(
        tmp_path_factory.mktemp("cli"),
        n_per_class=20,
        test_per_class=8,
        leaked=2,
        image_size=(64, 64),
    )


@pytest.fixture(scope="module")
def model_file(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "model.keras"
    code = main(
        [
            "train",
            str(root),
            "--model",
            "cnn",
            "--out",
            str(out),
            "--epochs",
            "2",
            "--image-size",
            "48",
            "--augment",
            "paper",
        ]
    )
    assert code == 0 and out.is_file()
    return out


def test_audit_json(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(root), "--json", "--no-probe"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sum(g["cross_split"] for g in report["exact_duplicates"]) == 2


def test_audit_markdown(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(root), "--no-probe"]) == 0
    assert "2 of them across splits" in capsys.readouterr().out


def test_train_evaluate_predict(
    root: Path, model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["evaluate", str(model_file), str(root), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (
        result["meta"]["split"] == "test" and result["n"] == 16
    )  # 2 leaked copies removed
    assert set(result["metrics"]) >= {"roc_auc", "sensitivity", "specificity", "ece"}
    assert len(result["ci95"]["ece"]) == 2 and sum(result["reliability"]["count"]) == 16

    images = sorted((root / "test" / "covid").iterdir())[:2]
    gradcam = tmp_path / "cams"
    assert (
        main(
            [
                "predict",
                str(model_file),
                *map(str, images),
                str(root / "test" / "normal"),
                "--json",
                "--gradcam",
                str(gradcam),
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 + 8
    clf = Classifier.load(model_file)  # the command must agree with the API
    files = [r["file"] for r in rows]
    np.testing.assert_allclose(
        [r["probability"] for r in rows], clf.predict_proba(files)[:, 1], atol=1e-6
    )
    assert [r["label"] for r in rows] == list(clf.predict(files))
    assert {r["probability_of"] for r in rows} == {"covid"}
    written = sorted(gradcam.iterdir())
    assert len(written) == 10
    with Image.open(written[0]) as img:
        assert img.mode == "RGB" and img.size == (64, 64)

    assert main(["predict", str(model_file), str(images[0])]) == 0
    line = capsys.readouterr().out.strip().split("\t")
    assert line[0] in ("normal", "covid") and line[2] == str(images[0])


def test_errors_have_exit_codes(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", str(tmp_path / "missing")]) == EXIT_DATA
    assert "does not exist" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "missing.keras"), str(root)]) == EXIT_DATA
    assert "No model file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["train", str(root)])  # --out is required
    assert info.value.code == EXIT_USAGE
    assert (
        main(
            [
                "train",
                str(root),
                "--model",
                "resnet9000",
                "--out",
                str(tmp_path / "m.keras"),
            ]
        )
        == EXIT_DATA
    )
    assert "Valid names" in capsys.readouterr().err


def test_weights_unavailable_exit_code(
    root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import urllib.error

    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    code = main(
        [
            "compare",
            str(root),
            "--models",
            "cnn",
            "mobilenetv2",
            "--weights",
            "imagenet",
            "--image-size",
            "224",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == EXIT_WEIGHTS
    assert (
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "out" / "results.md").exists()  # stopped before training


@pytest.mark.slow
def test_compare_quick_writes_results(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    assert (
        main(
            [
                "compare",
                str(root),
                "--quick",
                "--models",
                "cnn",
                "--seeds",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    data = json.loads((out / "results.json").read_text())
    assert [(r["split"], r["model"], r["seed"]) for r in data["rows"]] == [
        ("seed (leaky)", "cnn", 0),
        ("audited", "cnn", 0),
        ("seed (leaky)", "cnn", 1),
        ("audited", "cnn", 1),
    ]
    audited = [r for r in data["rows"] if r["split"] == "audited"]
    summary = next(s for s in data["summary"] if s["split"] == "audited")
    aucs = [r["roc_auc"] for r in audited]
    assert summary["n_seeds"] == 2
    assert summary["roc_auc_mean"] == pytest.approx(np.mean(aucs))
    assert summary["roc_auc_sd"] == pytest.approx(np.std(aucs, ddof=1))
    # the leaky split scores the 2 leaked copies, as the seed did, and says so
    assert data["rows"][0]["n_seen_in_test"] == 2
    report = (out / "results.md").read_text()
    assert (
        "Mean ± sd over 2 seeds" in report
        and "**2 of them seen in training**" in report
    )
    first = data["rows"][0]  # the columns say what they hold (leaky, seed 0)
    line = next(x for x in report.splitlines() if x.startswith("| cnn | 0 |"))
    assert line.split(" | ")[2].startswith(f"{first['sensitivity']:.3f}")
    assert line.split(" | ")[4].startswith(f"{first['roc_auc']:.3f}")
    assert data["audit"]["cross_split_duplicates"] == 2
    meta = data["meta"]
    assert (
        meta["seed"] == 0 and meta["covidxray_version"] and meta["tensorflow_version"]
    )
    assert len(meta["data_fingerprints"]["audited"]) == 64
    assert (
        meta["data_fingerprints"]["audited"]
        != meta["data_fingerprints"]["seed (leaky)"]
    )
    assert meta["synthetic"]  # the folder holds make_synthetic's SYNTHETIC.txt
    assert "SYNTHETIC DEMO DATA" in (out / "results.md").read_text()
    assert data["rows"][0]["n_test"] == 18 and data["rows"][1]["n_test"] == 16
    assert (
        (out / "results.csv").read_text().startswith("split,model,seed,weights,params")
    )
    assert (out / "roc_audited.png").is_file() and (
        out / "history_cnn_seed_leaky.png"
    ).is_file()


def test_console_script_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "covidxray", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0
    for command in ("audit", "train", "evaluate", "predict", "compare"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("model.h5", "must end in '.keras'. Received: '{}'"),
        ("missing/model.keras", "Cannot write '{}' .* the folder '.*missing' does"),
    ],
)
def test_train_checks_its_output_before_any_work(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    out: str,
    message: str,
) -> None:
    import re

    target = str(tmp_path / out)
    # The data folder does not exist either: the output is checked first, so
    # the error is about the output, before any scanning or training.
    code = main(["train", str(tmp_path / "no-data"), "--out", target, "--epochs", "50"])
    assert code == EXIT_DATA
    assert re.search(message.format(re.escape(target)), capsys.readouterr().err)
    assert not any(tmp_path.rglob("*.keras"))


def test_train_logs_one_line_per_epoch_unless_quiet(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["train", str(root), "--epochs", "2", "--image-size", "48"]
    assert main([*common, "--out", str(tmp_path / "a.keras")]) == EXIT_OK
    err = capsys.readouterr().err  # a pipe, not a terminal: lines, not bars
    assert [
        line.split(":")[0] for line in err.splitlines() if line.startswith("Epoch")
    ] == [
        "Epoch 1",
        "Epoch 2",
    ]
    assert main(["--quiet", *common, "--out", str(tmp_path / "b.keras")]) == EXIT_OK
    assert "Epoch" not in capsys.readouterr().err


@pytest.mark.parametrize("resize", ["pad", "crop"])
def test_predict_places_each_overlay_on_the_original_image(
    model_file: Path,
    tmp_path: Path,
    resize: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from covidxray import Preprocessing

    clf = Classifier.load(model_file)
    clf.preprocessing_ = Preprocessing((48, 48), resize=resize)
    clf.save(tmp_path / f"{resize}.keras")
    # A wide image, black but for a bright box off the centre line.
    image = np.zeros((100, 160), np.uint8)
    image[20:50, 70:110] = 255
    (tmp_path / "in").mkdir()
    Image.fromarray(image).save(tmp_path / "in" / "wide.png")
    # The "Grad-CAM" is the model's input itself: heat where the box was seen.
    monkeypatch.setattr(
        Classifier, "explain", lambda self, x, **k: x[..., 0].astype(np.float32) / 255
    )
    args = ["predict", str(tmp_path / f"{resize}.keras"), str(tmp_path / "in")]
    assert main([*args, "--gradcam", str(tmp_path / "cams")]) == 0
    capsys.readouterr()
    [written] = list((tmp_path / "cams").iterdir())
    with Image.open(written) as img:
        assert img.size == (160, 100)  # on the original image, not the model's input
        rgb = np.asarray(img, dtype=np.int16)
    hot = rgb[:, :, 0] - rgb[:, :, 2] > 20  # jet: red where the heat is high
    box = image > 0
    assert (hot & box).sum() / (hot | box).sum() > 0.7


def test_augment_seed_is_a_deprecated_name_of_paper(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from covidxray import Augmenter
    from covidxray.cli import AUGMENTS, build_parser
    from covidxray.cli.train import _augmenter

    assert "seed" not in AUGMENTS and "paper" in AUGMENTS
    args = build_parser().parse_args(
        ["train", "d", "--out", "m.keras", "--augment", "seed"]
    )
    with caplog.at_level("WARNING", logger="covidxray"):
        augmenter = _augmenter(args.augment, 0)
    assert augmenter.get_config() == Augmenter.paper_training(seed=0).get_config()
    assert "--augment seed is deprecated; use --augment paper" in caplog.text
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "d", "--out", "m", "--augment", "flip"])


def test_cli_choices_are_the_librarys_own() -> None:
    from covidxray._choices import AUGMENT_PRESETS
    from covidxray.cli import build_parser
    from covidxray.data.dataset import BALANCE_BY
    from covidxray.data.preprocessing import COLOR_MODES, EQUALIZE_MODES, RESIZE_MODES
    from covidxray.data.split import EVALUATION_SPLITS

    parser = build_parser()
    train = next(
        a
        for a in parser._subparsers._group_actions
        if a.dest == "command"  # type: ignore[union-attr]
    ).choices["train"]
    choices = {a.dest: a.choices for a in train._actions if a.choices}
    assert tuple(choices["color_mode"]) == COLOR_MODES
    assert tuple(choices["resize"]) == RESIZE_MODES
    assert tuple(choices["equalize"]) == EQUALIZE_MODES
    assert set(AUGMENT_PRESETS) <= set(choices["augment"])
    assert tuple(choices["balance"]) == ("none", *BALANCE_BY)
    evaluate = next(
        a
        for a in parser._subparsers._group_actions
        if a.dest == "command"  # type: ignore[union-attr]
    ).choices["evaluate"]
    split = next(a for a in evaluate._actions if a.dest == "split")
    assert tuple(split.choices) == EVALUATION_SPLITS


def test_segment_writes_one_mask_per_image_at_its_size(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = sorted((root / "train" / "covid").iterdir())[:3]
    out = tmp_path / "masks"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CovidXrayWarning)
        assert main(["segment", *map(str, images), "--out", str(out)]) == 0
    for image in images:
        mask = Image.open(out / f"{image.stem}.png")
        assert mask.mode == "L" and mask.size == Image.open(image).size
        assert set(np.unique(np.asarray(mask)).tolist()) <= {0, 255}
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_segment_refuses_two_images_with_one_stem_before_writing(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = next((root / "train" / "covid").iterdir())
    other = tmp_path / "other"
    other.mkdir()
    (other / a.name).write_bytes(a.read_bytes())
    out = tmp_path / "masks"
    assert main(["segment", str(a), str(other / a.name), "--out", str(out)]) == 1
    assert "would both be written to" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_evaluate_lungs_json(
    root: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CovidXrayWarning)  # flagged masks
        code = main(
            ["evaluate", str(model_file), str(root), "--json", "--lungs"]
            + ["--bootstrap", "20"]
        )
    assert code == 0
    lungs = json.loads(capsys.readouterr().out)["lungs"]
    for key in ("as_is", "lungs_only", "lungs_removed", "control"):
        assert "roc_auc" in lungs[key] and lungs[key]["n"] > 0
    assert {"saliency_in_lungs", "lung_area", "reading"} <= set(lungs)
    assert lungs["reading"].startswith("With the lungs removed")


REAL_NON = [
    "pneumococcal-pneumonia-day0.jpg",
    "pneumococcal-pneumonia-day7.jpg",
    "right-upper-lobe-pneumonia-9-PA.jpg",
    "klebsiella-pneumonia-1.jpg",
]
REAL_COVID = [
    "auntminnie-a-2020_01_28_23_51_6665_2020_01_28_Vietnam_coronavirus.jpeg",
    "auntminnie-b-2020_01_28_23_51_6665_2020_01_28_Vietnam_coronavirus.jpeg",
    "nejmc2001573_f1a.jpeg",
    "nejmc2001573_f1b.jpeg",
]


@pytest.mark.realdata
@pytest.mark.slow
def test_train_with_lungs_crop_and_predict_through_the_crop(
    ieee8023_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Eight real X-rays of ieee8023 in class folders: a model trained with
    --lungs crop keeps it and the segmenter in its file, and predict's
    Grad-CAM overlays cover each whole image."""
    root = tmp_path / "real"
    for cls, names in (("normal", REAL_NON), ("covid", REAL_COVID)):
        (root / cls).mkdir(parents=True)
        for name in names:
            (root / cls / name).symlink_to((ieee8023_data / "images" / name).resolve())
    out = tmp_path / "m.keras"
    args = ["-q", "train", str(root), "--out", str(out), "--lungs", "crop"]
    args += ["--epochs", "1", "--image-size", "64", "--batch-size", "4"]
    assert main(args) == 0
    assert "lungs: crop" in capsys.readouterr().out
    from covidxray._persist import read_metadata
    from covidxray.lungs.unet import default_lung_model

    meta = read_metadata(out)
    assert meta.preprocessing.lungs == "crop"
    assert meta.segmenter == default_lung_model().info()
    cams = tmp_path / "cams"
    assert main(["predict", str(out), str(root / "covid"), "--gradcam", str(cams)]) == 0
    overlays = sorted(cams.iterdir())
    assert len(overlays) == 4
    sizes = sorted(Image.open(root / "covid" / n).size for n in REAL_COVID)
    assert sorted(Image.open(p).size for p in overlays) == sizes
