"""`covidxray.export`: SavedModel and TFLite exports, checked in a fresh Python
process that imports only TensorFlow and numpy (never covidxray)."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from covidxray import Classifier, Preprocessing, build_cnn, export
from covidxray._persist import ModelMetadata
from covidxray.cli import EXIT_DATA, EXIT_OK, main
from covidxray.data.decode import find_images
from covidxray.data.tempfiles import temp_prefix
from covidxray.export import check_exportable, decode_in_graph

# Run by a fresh interpreter: loads every export, runs each signature on the
# files' bytes or the pixels, and writes the probabilities as JSON.
OUTSIDE = r"""
import json, sys, warnings
import numpy as np
import tensorflow as tf

job = json.load(open(sys.argv[1]))
out = {}
for name, item in job.items():
    pixels = np.load(item["pixels"])
    if item["kind"] == "savedmodel":
        loaded = tf.saved_model.load(item["path"])
        files = [open(f, "rb").read() for f in item["files"]]
        serve = loaded.signatures["serving_default"]
        by_pixels = loaded.signatures["pixels"](pixels=tf.constant(pixels))
        out[name] = {"pixels": by_pixels["probability"].numpy().tolist()}
        if files:
            by_files = serve(images=tf.constant(files, tf.string))
            out[name]["files"] = by_files["probability"].numpy().tolist()
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter: use LiteRT
            interpreter = tf.lite.Interpreter(model_path=item["path"])
        runner = interpreter.get_signature_runner("pixels")
        out[name] = {"pixels": runner(pixels=pixels)["probability"].tolist()}
assert "covidxray" not in sys.modules, sorted(sys.modules)
json.dump(out, open(sys.argv[2], "w"))
"""


def run_outside(job: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Run `OUTSIDE` on `job` in a new interpreter, away from the checkout
    (in `folder`: file names are made absolute, as CI gives relative ones)."""
    job = {
        name: {**item, "files": [os.path.abspath(f) for f in item.get("files", [])]}
        for name, item in job.items()
    }
    job_file, out_file = folder / "job.json", folder / "out.json"
    job_file.write_text(json.dumps(job))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    done = subprocess.run(
        [sys.executable, "-c", OUTSIDE, str(job_file), str(out_file)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out_file.read_text())


def both_exports(clf: Classifier, item: dict[str, Any], folder: Path) -> dict:
    """A job for `run_outside`: `item` run through a SavedModel ("sm") and a
    TFLite export ("lite") of `clf`, both written in `folder`."""
    lite = clf.export(folder / "lite", "tflite") / "model.tflite"
    return {
        "sm": {**item, "kind": "savedmodel", "path": str(clf.export(folder / "sm"))},
        "lite": {**item, "kind": "tflite", "path": str(lite)},
    }


def _png_with_sbit(array: np.ndarray, bits: int) -> bytes:
    """A 16-bit grayscale PNG with an sBIT chunk declaring `bits`."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    data = buffer.getvalue()
    chunk = b"sBIT" + bytes([bits])
    sbit = struct.pack(">I", 1) + chunk + struct.pack(">I", zlib.crc32(chunk))
    end_of_header = 8 + 8 + 13 + 4  # signature, IHDR length/type, data, CRC
    return data[:end_of_header] + sbit + data[end_of_header:]


def smooth(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth picture (a gradient and a bright blob), as X-rays are:
    resampling differs little on it, unlike on noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.4)
    blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / r**2)
    level = rng.uniform(0.1, 0.9)
    return np.clip(level * 0.6 + 0.4 * blob + 0.2 * (x - y), 0.0, 1.0)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Images of many sizes and kinds: gray and RGB PNG, JPEG, RGBA, 16 bits
    with and without sBIT, larger and smaller than the models' inputs."""
    folder = tmp_path_factory.mktemp("export-files")
    sizes = [(300, 240), (97, 130), (64, 64), (40, 52), (512, 380), (150, 150)]
    paths = []
    for k, (w, h) in enumerate(sizes):
        gray = np.round(smooth(w, h, k) * 255).astype(np.uint8)
        path = folder / f"gray{k}.png"
        Image.fromarray(gray).save(path)
        paths.append(path)
    rgb = np.stack([smooth(200, 160, s) for s in (10, 11, 12)], -1)
    Image.fromarray(np.round(rgb * 255).astype(np.uint8)).save(folder / "rgb.png")
    Image.fromarray(np.round(rgb * 255).astype(np.uint8)).save(
        folder / "rgb.jpg", quality=95
    )
    gray = np.round(smooth(180, 220, 13) * 255).astype(np.uint8)
    Image.fromarray(gray).convert("RGB").save(folder / "gray_as_rgb.jpg", quality=95)
    alpha = np.round(smooth(120, 90, 14) * 255).astype(np.uint8)
    rgba = np.dstack([np.round(rgb[:90, :120] * 255).astype(np.uint8), alpha])
    Image.fromarray(rgba).save(folder / "rgba.png")
    deep = np.round(smooth(160, 200, 15) * 4095).astype(np.uint16)  # 12-bit data
    Image.fromarray(deep).save(folder / "deep12.png")
    (folder / "deep_sbit.png").write_bytes(_png_with_sbit(deep // 8, 12))
    paths += [
        folder / name
        for name in (
            "rgb.png",
            "rgb.jpg",
            "gray_as_rgb.jpg",
            "rgba.png",
            "deep12.png",
            "deep_sbit.png",
        )
    ]
    return [str(p) for p in paths]


def spread(model: keras.Model, pixels: np.ndarray, seed: int) -> keras.Model:
    """`model` with its last (dense) layer set so that its logits on `pixels`
    have mean 0 and standard deviation 3: its probabilities spread over
    (0, 1) instead of sitting at 0.5, so that comparing them means something."""
    last = model.layers[-1]
    features = keras.Model(model.input, last.input)(pixels.astype("float32") / 255)
    direction = np.random.default_rng(seed).normal(size=last.kernel.shape[0])
    score = np.asarray(features) @ direction
    scale = 3.0 / score.std()
    kernel = direction[:, None] * scale
    bias = np.array([-score.mean() * scale])
    if last.kernel.shape[1] == 2:  # softmax: half the logit difference each
        kernel, bias = np.hstack([-kernel, kernel]) / 2, np.hstack([-bias, bias]) / 2
    last.kernel.assign(kernel)
    last.bias.assign(bias)
    return model


def tiny_model(shape: tuple[int, int, int], seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(8, 5, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def classifier(
    model: keras.Model, prep: Preprocessing, positive: str | None = None
) -> Classifier:
    config = ModelMetadata(
        class_names=("normal", "covid"),
        positive_class=positive,
        threshold=0.5,
        preprocessing=prep,
    )
    return Classifier.from_config(config, model)


#: name: (model, preprocessing, positive class, also as TFLite)
def _cases() -> dict[str, tuple[Any, Preprocessing, str | None, bool]]:
    keras.utils.set_random_seed(0)
    return {
        # build_cnn: one sigmoid unit, P(covid)
        "gray-stretch": (
            build_cnn((64, 64, 1)),
            Preprocessing((64, 64)),
            None,
            True,
        ),
        # a softmax model whose positive class is class 0
        "rgb-pad": (
            tiny_model((48, 64, 3), 2),
            Preprocessing((48, 64), color_mode="rgb", resize="pad"),
            "normal",
            True,
        ),
        "gray-crop-percentile": (
            tiny_model((56, 40, 1), 3),
            Preprocessing((56, 40), resize="crop", window="percentile"),
            None,
            False,
        ),
        "rgb-stretch-fixed": (
            tiny_model((32, 32, 3), 4),
            Preprocessing((32, 32), color_mode="rgb", window=(20, 230)),
            None,
            False,
        ),
    }


@pytest.fixture(scope="module")
def exported(
    files: list[str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Every case exported, run outside covidxray, next to covidxray's own
    `predict_proba` on the same files."""
    folder = tmp_path_factory.mktemp("exports")
    job, expected = {}, {}
    for name, (model, prep, positive, lite) in _cases().items():
        pixels = prep.load_many(files)
        clf = classifier(spread(model, pixels, seed=len(job)), prep, positive)
        np.save(folder / f"{name}.npy", pixels)
        expected[name] = {
            "files": clf.predict_proba(files)[:, clf.positive_index],
            "pixels": clf.predict_proba(pixels)[:, clf.positive_index],
        }
        path = clf.export(folder / name)
        item = {"files": files, "pixels": str(folder / f"{name}.npy")}
        job[name] = {**item, "kind": "savedmodel", "path": str(path)}
        if lite:
            lite_path = clf.export(folder / f"{name}-tflite", "tflite")
            job[f"{name}-tflite"] = {
                **item,
                "kind": "tflite",
                "path": str(lite_path / "model.tflite"),
            }
    return {"got": run_outside(job, folder), "expected": expected, "job": job}


def test_files_signature_agrees_with_predict_proba(exported: dict[str, Any]) -> None:
    for name, want in exported["expected"].items():
        got = np.array(exported["got"][name]["files"])
        assert np.ptp(want["files"]) > 0.25, (name, want["files"])  # spread out
        print(name, "files: max difference", np.abs(got - want["files"]).max())
        assert np.abs(got - want["files"]).max() < 0.02, (name, got, want["files"])


def test_pixels_signature_and_tflite_agree(exported: dict[str, Any]) -> None:
    for name, want in exported["expected"].items():
        got = np.array(exported["got"][name]["pixels"])
        assert np.abs(got - want["pixels"]).max() < 1e-5, name
        print(name, "pixels: max difference", np.abs(got - want["pixels"]).max())
        if f"{name}-tflite" in exported["got"]:
            lite = np.array(exported["got"][f"{name}-tflite"]["pixels"])
            assert np.abs(lite - want["pixels"]).max() < 1e-4, name
            print(name, "tflite: max difference", np.abs(lite - want["pixels"]).max())
    assert len([n for n in exported["got"] if n.endswith("-tflite")]) == 2


def test_export_folder_holds_the_metadata(exported: dict[str, Any]) -> None:
    folder = Path(exported["job"]["rgb-pad"]["path"])
    info = json.loads((folder / "assets.extra" / "covidxray.json").read_text())
    assert info["positive_class"] == "normal" and info["positive_index"] == 0
    assert info["signatures"] == ["serving_default", "pixels"]
    assert Preprocessing.from_dict(info["preprocessing"]).resize == "pad"
    lite = Path(exported["job"]["rgb-pad-tflite"]["path"]).parent
    assert sorted(p.name for p in lite.iterdir()) == ["covidxray.json", "model.tflite"]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "prep",
    [
        Preprocessing((64, 64)),
        Preprocessing((48, 64), color_mode="rgb", resize="pad"),
        Preprocessing((56, 40), resize="crop", window="percentile"),
        Preprocessing((64, 64), color_mode="rgb", window=(30, 200)),
        Preprocessing((300, 200), resize="pad"),  # enlarging too
    ],
    ids=["gray", "rgb-pad", "crop-percentile", "fixed", "larger"],
)
def test_graph_reads_files_as_pillow_does(
    files: list[str], prep: Preprocessing
) -> None:
    """Decoding, alpha, 16 bits and sBIT, the window, the colour conversion
    and the resize (Pillow's box reduction and fixed-point filter) are
    Pillow's, pixel for pixel; JPEG within a level (decoder versions)."""
    for path in files:
        want = prep.load(path).astype(int)
        got = decode_in_graph(tf.constant(Path(path).read_bytes()), prep).numpy()
        diff = np.abs(got.astype(int) - want).max()
        assert diff <= (1 if path.endswith(".jpg") else 0), (path, diff)


@pytest.mark.parametrize(
    ("prep", "modalities", "named"),
    [
        (Preprocessing((32, 32), trim=0.05), ("X-ray",), "trim=0.05"),
        (Preprocessing((32, 32), equalize="clahe"), ("X-ray",), "equalize='clahe'"),
        (Preprocessing((32, 32), equalize="histogram"), (), "equalize='histogram'"),
        (Preprocessing((32, 32), lungs="crop"), (), "lungs='crop'"),
        (Preprocessing((32, 32)), ("CT", "X-ray"), "body box"),
    ],
)
def test_steps_the_graph_cannot_do_are_refused(
    prep: Preprocessing, modalities: tuple[str, ...], named: str
) -> None:
    with pytest.raises(ValueError, match="Cannot export this model") as caught:
        check_exportable(prep, modalities)
    assert named in str(caught.value)


@pytest.fixture()
def small(tmp_path: Path) -> Classifier:
    keras.utils.set_random_seed(0)
    return classifier(tiny_model((32, 32, 1), 5), Preprocessing((32, 32)))


def test_a_non_empty_folder_is_refused_unless_overwrite(
    small: Classifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "sm"
    target.mkdir()
    (target / "old.txt").write_text("not an export")
    with pytest.raises(ValueError, match="not empty.*overwrite"):
        small.export(target)
    # overwrite replaces an earlier export only: never a model's or data folder
    with pytest.raises(ValueError, match="not an earlier export.*old.txt"):
        small.export(target, overwrite=True)
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    (target / "old.txt").unlink()
    small.export(target)  # an empty folder is filled
    (target / "marker").write_text("earlier export")
    # a failure halfway through an overwrite keeps the earlier export
    monkeypatch.setattr(export, "_archive", _failing)
    with pytest.raises(OSError, match="disk full"):
        small.export(target, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm"]
    assert (target / "marker").read_text() == "earlier export"
    monkeypatch.undo()
    # a staging folder that a killed export left is swept by the next one
    killed = tmp_path / f"{temp_prefix('sm').rsplit('.', 1)[0]}.999999999-x1"
    killed.mkdir()
    (killed / "saved_model.pb").write_bytes(b"half")
    small.export(target, overwrite=True)
    assert not (target / "marker").exists()
    assert (target / "saved_model.pb").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm"]


def test_the_rename_refuses_a_folder_filled_meanwhile(
    small: Classifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two exports to one new folder at once, neither with overwrite: the
    later one must not replace the earlier one."""
    target = tmp_path / "sm"
    write = export._archive

    def other_run_first(*args: Any, **kwargs: Any) -> Any:
        target.mkdir()
        (target / "theirs").write_text("the other run's export")
        return write(*args, **kwargs)

    monkeypatch.setattr(export, "_archive", other_run_first)
    with pytest.raises(ValueError, match="filled while this export"):
        small.export(target)
    assert [p.name for p in target.iterdir()] == ["theirs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm"]


def test_the_current_folder_is_refused(
    small: Classifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for path in (".", "..", str(tmp_path)):
        with pytest.raises(ValueError, match="current folder"):
            small.export(path)


def test_a_model_of_three_classes_has_no_positive_class(tmp_path: Path) -> None:
    keras.utils.set_random_seed(3)
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Conv2D(4, 5, strides=2, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    config = ModelMetadata(
        class_names=("a", "b", "c"),
        positive_class=None,
        threshold=0.5,
        preprocessing=Preprocessing((32, 32)),
    )
    pixels = np.stack([smooth(32, 32, s) for s in range(6)])[..., None]
    pixels = np.round(pixels * 255).astype(np.uint8)
    # Logits with a spread of about 3 on these pixels, so the test means something.
    last = model.layers[-1]
    features = np.asarray(keras.Model(model.input, last.input)(pixels / 255))
    kernel = np.random.default_rng(0).normal(size=(4, 3))
    score = features @ kernel
    scale = 3.0 / score.std()
    last.kernel.assign(kernel * scale)
    last.bias.assign(-score.mean(axis=0) * scale)
    clf = Classifier.from_config(config, model)
    folder = clf.export(tmp_path / "sm")
    info = json.loads((folder / "assets.extra" / "covidxray.json").read_text())
    assert info["positive_class"] is None and info["threshold"] is None
    assert info["decision"] == "argmax probabilities"
    assert info["outputs"] == ["probabilities"]
    out = tf.saved_model.load(str(folder)).signatures["pixels"](
        pixels=tf.constant(pixels)
    )
    assert set(out) == {"probabilities"}
    want = clf.predict_proba(pixels.astype("float32") / 255)
    assert np.ptp(want[:, 0]) > 0.3  # not all alike
    np.testing.assert_allclose(out["probabilities"].numpy(), want, atol=1e-5)


class _Failing:
    """An archive that fails halfway through writing."""

    def write_out(self, path: str, **kwargs: Any) -> None:
        Path(path).mkdir(exist_ok=True)
        Path(path, "saved_model.pb").write_bytes(b"half")
        raise OSError("disk full")


def _failing(*args: Any, **kwargs: Any) -> _Failing:
    return _Failing()


def test_a_path_that_cannot_be_written_fails_before_any_work(
    small: Classifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "_archive", _failing)  # never reached
    with pytest.raises(ValueError, match="'.*missing/sm'.*does not exist"):
        small.export(tmp_path / "missing" / "sm")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="it is a file"):
        small.export(tmp_path / "file")
    with pytest.raises(ValueError, match="`format`.*'savedmodel', 'tflite'"):
        small.export(tmp_path / "sm", "onnx")
    locked = tmp_path / "locked"
    locked.mkdir()
    # a read-only folder (as root, permissions are not enforced: say so)
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode)
    )
    with pytest.raises(ValueError, match="'.*locked'.*not writable"):
        small.export(locked / "sm")
    assert not list(tmp_path.rglob("saved_model.pb"))


def test_command_line_export(small: Classifier, tmp_path: Path) -> None:
    model = small.save(tmp_path / "m.keras")
    out = tmp_path / "lite"
    assert (
        main(["-q", "export", str(model), "--out", str(out), "--format", "tflite"])
        == EXIT_OK
    )
    assert (out / "model.tflite").stat().st_size > 1000
    assert main(["-q", "export", str(model), "--out", str(out)]) == EXIT_DATA
    assert (
        main(["-q", "export", str(model), "--out", str(out), "--overwrite"]) == EXIT_OK
    )
    assert (out / "saved_model.pb").is_file() and not (out / "model.tflite").exists()
    # the path is checked before the model is read
    assert (
        main(["-q", "export", "no-such.keras", "--out", str(tmp_path / "x" / "y")])
        == EXIT_DATA
    )


@pytest.mark.realdata
def test_real_images_outside_covidxray(seed_data: Path, tmp_path: Path) -> None:
    """seed-xray's own files (JPEG gray and RGB, PNG RGB and RGBA, up to
    thousands of pixels a side): the files path agrees with `predict_proba`
    within 0.02, the pixels path within 1e-5, TFLite within 1e-4."""
    found = find_images(seed_data / "test")
    pngs = [f for f in found if f.endswith(".png")][:8]
    files = sorted(found[:: max(1, len(found) // 32)][:32] + pngs)
    prep = Preprocessing((64, 64))
    pixels = prep.load_many(files)
    np.save(tmp_path / "pixels.npy", pixels)
    keras.utils.set_random_seed(0)
    clf = classifier(spread(build_cnn((64, 64, 1)), pixels, seed=7), prep)
    want = clf.predict_proba(files)[:, 1]
    assert np.ptp(want) > 0.5  # spread out
    item = {"files": files, "pixels": str(tmp_path / "pixels.npy")}
    got = run_outside(both_exports(clf, item, tmp_path), tmp_path)
    files_diff = np.abs(np.array(got["sm"]["files"]) - want).max()
    print("seed-xray files: max difference", files_diff)
    assert files_diff < 0.02
    assert np.abs(np.array(got["sm"]["pixels"]) - want).max() < 1e-5
    assert np.abs(np.array(got["lite"]["pixels"]) - want).max() < 1e-4


@pytest.mark.slow
def test_a_pretrained_backbone_exports(tmp_path: Path) -> None:
    from covidxray import build_pretrained

    keras.utils.set_random_seed(0)
    prep = Preprocessing((32, 32), color_mode="rgb")
    rng = np.random.default_rng(0)
    pixels = np.stack(
        [np.round(smooth(32, 32, k) * 255).astype(np.uint8) for k in range(8)]
    )[..., None].repeat(3, -1)
    pixels = np.clip(pixels + rng.integers(0, 8, pixels.shape), 0, 255).astype(np.uint8)
    model = build_pretrained("mobilenetv2", input_shape=(32, 32, 3), weights=None)
    clf = classifier(model, prep)
    want = clf.predict_proba(pixels)[:, 1]
    np.save(tmp_path / "pixels.npy", pixels)
    item = {"files": [], "pixels": str(tmp_path / "pixels.npy")}
    got = run_outside(both_exports(clf, item, tmp_path), tmp_path)
    assert np.abs(np.array(got["sm"]["pixels"]) - want).max() < 1e-5
    assert np.abs(np.array(got["lite"]["pixels"]) - want).max() < 1e-4
