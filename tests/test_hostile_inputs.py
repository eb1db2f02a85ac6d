"""Hostile and careless inputs (issue 24): each is refused by name, or
reported, never handled silently. One test per finding; see
`docs/reliability.md`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from covidxray import (
    Classifier,
    CovidXrayWarning,
    DataError,
    Preprocessing,
    audit,
    build_cnn,
    load_dataset,
)
from covidxray._persist import ModelMetadata
from covidxray.cli import EXIT_DATA, EXIT_OK, main
from covidxray.data.decode import decode_file
from covidxray.data.tables import read_csv
from helpers import write_image

SIZE = 40


def _folder(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """Class folders of distinct random images."""
    for k, (name, n) in enumerate(counts.items()):
        for i in range(n):
            write_image(
                root / name / f"{name}{i}.png", (20, 20), seed=seed + 100 * k + i
            )
    return root


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small untrained binary classifier ('non', 'covid') saved to a file."""
    config = ModelMetadata(
        class_names=("non", "covid"),
        positive_class="covid",
        threshold=0.5,
        preprocessing=Preprocessing((SIZE, SIZE)),
    )
    clf = Classifier.from_config(config, build_cnn((SIZE, SIZE, 1)))
    return clf.save(tmp_path_factory.mktemp("model") / "m.keras")


# ------------------------------------------------------------ dataset assembly


def test_class_emptied_by_copies_is_an_error(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"non": 14})
    (root / "covid").mkdir()
    for i in range(12):  # byte copies of 12 non images, labelled covid
        shutil.copy(root / "non" / f"non{i}.png", root / "covid" / f"c{i}.png")
    with pytest.raises(DataError, match="class 'covid'") as info:
        load_dataset(root, image_size=(SIZE, SIZE))
    assert "all 12 covid images were copies of non images and were dropped" in str(
        info.value
    )


def test_class_folder_linked_to_its_parent_is_refused(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"non": 4})
    (root / "covid").symlink_to(root, target_is_directory=True)
    with pytest.raises(DataError, match="links to"):
        load_dataset(root, image_size=(SIZE, SIZE))


def test_conflicting_copies_named_in_summary_and_audit(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"non": 6, "covid": 6})
    shutil.copy(root / "non" / "non0.png", root / "covid" / "copy.png")
    data = load_dataset(root, image_size=(SIZE, SIZE))
    summary = data.summary()
    assert "copies with conflicting labels dropped: 2" in summary
    assert "copy.png' (covid)" in summary and "non0.png' (non)" in summary
    report = audit(root, shortcut_probe=False, image_size=(SIZE, SIZE))
    named = [w for w in report.warnings if "different labels" in w]
    assert named and "copy.png" in named[0] and "non0.png" in named[0]


def test_class_map_renames_folders(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"cats": 4, "dogs": 4})
    with pytest.raises(DataError):
        load_dataset(root, image_size=(SIZE, SIZE))
    data = load_dataset(
        root, image_size=(SIZE, SIZE), class_map={"cats": "non", "dogs": "covid"}
    )
    assert data.class_names == ("non", "covid")
    labels = {Path(r.path).parent.name: r.label for r in data.records}
    assert labels == {"cats": "non", "dogs": "covid"}
    with pytest.raises(ValueError, match="birds"):
        load_dataset(root, image_size=(SIZE, SIZE), class_map={"birds": "non"})


def test_case_only_different_class_names_are_reported(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"normal": 4, "covid": 3, "COVID": 3})
    with pytest.warns(CovidXrayWarning, match="differ only in case"):
        load_dataset(root, image_size=(SIZE, SIZE))


def test_evaluate_refuses_folders_of_no_class(
    tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _folder(tmp_path, {"cats": 3, "dogs": 3})
    assert main(["evaluate", str(model_file), str(root), "--bootstrap", "0"]) == (
        EXIT_DATA
    )
    err = capsys.readouterr().err
    assert "['cats', 'dogs']" in err and "match neither class" in err
    assert "--class-map" in err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CovidXrayWarning)  # no training record
        code = main(
            [
                "evaluate",
                str(model_file),
                str(root),
                "--bootstrap",
                "0",
                "--class-map",
                "cats=non,dogs=covid",
                "--json",
            ]
        )
    assert code == EXIT_OK
    assert json.loads(capsys.readouterr().out)["n"] == 6


# ------------------------------------------------------------ numeric arguments


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["train", "nowhere", "--out", "m.keras", "--image-size", "0"], "--image-size"),
        (
            ["train", "nowhere", "--out", "m.keras", "--image-size", "100000"],
            "--image-size",
        ),
        (["train", "nowhere", "--out", "m.keras", "--epochs", "-1"], "--epochs"),
        (
            ["train", "nowhere", "--out", "m.keras", "--learning-rate", "-1"],
            "--learning-rate",
        ),
        (["train", "nowhere", "--out", "m.keras", "--batch-size", "0"], "--batch-size"),
        (["evaluate", "m.keras", "nowhere", "--bootstrap", "-5"], "--bootstrap"),
        (["compare", "nowhere", "--epochs", "0"], "--epochs"),
        (["crossval", "nowhere", "--epochs", "0"], "--epochs"),
    ],
)
def test_numeric_arguments_checked_before_any_work(
    argv: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert option in err and "must be" in err


def test_run_comparison_refuses_zero_epochs() -> None:
    from covidxray import run_comparison

    with pytest.raises(ValueError, match="epochs"):
        run_comparison("nowhere", epochs=0, models=["cnn"], plots=False)


def test_comparison_removes_its_synthetic_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import covidxray.comparison as comparison

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("COVIDXRAY_CACHE_DIR", str(tmp_path / "cache"))

    def stop(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(comparison, "audit", stop)
    with pytest.raises(KeyboardInterrupt):
        comparison.run_comparison(
            models=["cnn"], quick=True, image_size=16, out_dir=tmp_path / "out"
        )
    assert list((tmp_path / "tmp").iterdir()) == []
    assert list((tmp_path / "cache").iterdir()) == []


# ------------------------------------------------------------ predict


def test_predict_writes_good_files_and_names_bad_ones(
    tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _folder(tmp_path, {"imgs": 3})
    bad = folder / "imgs" / "broken.png"
    bad.write_bytes((folder / "imgs" / "imgs0.png").read_bytes()[:40])
    assert main(["predict", str(model_file), str(folder)]) == EXIT_DATA
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 4
    assert sum(line.startswith("error\t") for line in lines) == 1
    assert "broken.png" in err and "1 of 4 files" in err
    assert main(["predict", str(model_file), str(folder), "--skip-bad"]) == EXIT_OK
    assert "broken.png" in capsys.readouterr().err


def test_predict_tsv_escapes_tabs_and_newlines(
    tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = write_image(tmp_path / "a\tb\nc.png", (20, 20))
    assert main(["predict", str(model_file), str(name)]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.count("\t") == 2
    assert "a\\tb\\nc.png" in out


# ------------------------------------------------------------ model files


def _edit(source: Path, target: Path, member: str, text: str | bytes) -> Path:
    """A copy of a model file with one member replaced."""
    with (
        zipfile.ZipFile(source) as old,
        zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new,
    ):
        for info in old.infolist():
            if info.filename != member:
                new.writestr(info, old.read(info.filename))
        new.writestr(member, text)
    return target


def _with_metadata(source: Path, target: Path, **changes: object) -> Path:
    with zipfile.ZipFile(source) as archive:
        values = json.loads(archive.read("covidxray.json"))
    values.update(changes)
    return _edit(source, target, "covidxray.json", json.dumps(values))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"class_names": ["cat", "dog", "bird"], "positive_class": None},
            "does not fit its model",
        ),
        ({"class_names": ["non", "non"], "positive_class": None}, "more than once"),
        ({"class_names": [], "positive_class": None}, "at least two"),
        ({"threshold": float("nan")}, "finite number in \\[0, 1\\]"),
        ({"threshold": 7}, "finite number in \\[0, 1\\]"),
        (
            {
                "preprocessing": {
                    "image_size": [100000, 100000],
                    "color_mode": "grayscale",
                    "resize": "stretch",
                }
            },
            "from 1 to 4096",
        ),
        (
            {
                "preprocessing": {
                    "image_size": [48, 48],
                    "color_mode": "grayscale",
                    "resize": "stretch",
                }
            },
            "does not fit its model",
        ),
        (
            {
                "preprocessing": {
                    "image_size": [SIZE, SIZE],
                    "color_mode": "rgb",
                    "resize": "stretch",
                }
            },
            "does not fit its model",
        ),
    ],
)
def test_edited_metadata_is_refused_at_load(
    model_file: Path, tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    edited = _with_metadata(model_file, tmp_path / "edited.keras", **changes)
    with pytest.raises(DataError, match=message) as info:
        Classifier.load(edited)
    assert "edited.keras" in str(info.value)


def test_softmax_of_ten_units_with_binary_metadata_is_refused(
    model_file: Path, tmp_path: Path
) -> None:
    names = tuple(f"c{i}" for i in range(10))
    config = ModelMetadata(
        class_names=names,
        positive_class=None,
        threshold=0.5,
        preprocessing=Preprocessing((SIZE, SIZE)),
    )
    ten = Classifier.from_config(config, build_cnn((SIZE, SIZE, 1), num_classes=10))
    saved = ten.save(tmp_path / "ten.keras")
    edited = _with_metadata(
        saved,
        tmp_path / "binary.keras",
        class_names=["non", "covid"],
        positive_class="covid",
    )
    with pytest.raises(DataError, match="10 output units"):
        Classifier.load(edited)


@pytest.mark.parametrize("member", ["covidxray.json", "config.json"])
def test_zip_member_over_its_limit_is_refused_before_reading(
    model_file: Path, tmp_path: Path, member: str
) -> None:
    from covidxray._filechecks import MEMBER_LIMITS

    bomb = b" " * (MEMBER_LIMITS[member] + 1)  # compresses to a few kB
    edited = _edit(model_file, tmp_path / "bomb.keras", member, bomb)
    assert edited.stat().st_size < 2 * 1024**2
    with pytest.raises(DataError, match=f"member '{member}' unpacks to"):
        Classifier.load(edited)


# ------------------------------------------------------------ image reads


@pytest.fixture
def interrupt_hang() -> Iterator[None]:
    """Turn a read that blocks for good into an error (a safety net for the
    code before the fix, which hung on a FIFO; nothing is timed)."""

    def stop(signum: int, frame: object) -> None:
        raise TimeoutError("the read blocked")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(30)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_fifo_is_refused_by_name(tmp_path: Path, interrupt_hang: None) -> None:
    root = _folder(tmp_path, {"non": 3, "covid": 3})
    os.mkfifo(root / "covid" / "pipe.png")
    with pytest.raises(DataError, match="pipe.png' is a FIFO"):
        decode_file(root / "covid" / "pipe.png")  # in this thread: see the fixture
    with pytest.raises(DataError, match="pipe.png' is a FIFO"):
        load_dataset(root, image_size=(SIZE, SIZE))


def test_link_to_a_device_is_refused_by_name(tmp_path: Path) -> None:
    # /dev/null, not /dev/zero: the same kind of file, refused the same way,
    # and reading it before the fix ends at once instead of filling memory.
    link = tmp_path / "null.png"
    link.symlink_to("/dev/null")
    with pytest.raises(DataError, match="a link to '/dev/null'.*character device"):
        decode_file(link)


def test_file_over_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    from covidxray.data.reading import MAX_FILE_BYTES

    sparse = tmp_path / "huge.png"
    with open(sparse, "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk used
    with pytest.raises(DataError, match="huge.png' is .* over the limit"):
        decode_file(sparse)


def test_csv_field_over_the_limit_names_file_and_line(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", (20, 20))
    table = tmp_path / "manifest.csv"
    table.write_text("path,label\na.png,covid\n" + "x" * 200_000 + ".png,non\n")
    with pytest.raises(DataError, match="manifest.csv', line 3: a field is longer"):
        read_csv(table)
    with pytest.raises(DataError, match="line 3"):
        load_dataset(table, image_size=(SIZE, SIZE), layout="manifest")


# ------------------------------------------------------------ the pixel cache


@pytest.fixture
def cached(tmp_path: Path) -> tuple[Path, Path]:
    """A dataset and the cache file its first load wrote."""
    root = _folder(tmp_path / "data", {"non": 4, "covid": 4})
    cache = tmp_path / "pixels.cache"
    load_dataset(root, image_size=(SIZE, SIZE), cache=cache)
    return root, cache


def _header(cache: Path) -> tuple[int, dict[str, object]]:
    raw = cache.read_bytes()
    offset, size = struct.unpack("<QQ", raw[16:32])
    return offset, json.loads(raw[offset : offset + size])


def test_zeroed_cache_pixels_are_found(cached: tuple[Path, Path]) -> None:
    root, cache = cached
    with open(cache, "r+b") as fh:
        fh.seek(64 + SIZE * SIZE + 10)  # inside the second image's row
        fh.write(bytes(500))
    with pytest.raises(DataError, match="pixels.cache' is damaged") as info:
        load_dataset(root, image_size=(SIZE, SIZE), cache=cache)
    assert "do not match their checksums" in str(info.value)


def test_edited_cache_header_is_a_data_error_naming_it(
    cached: tuple[Path, Path],
) -> None:
    root, cache = cached
    offset, header = _header(cache)
    header["shape"] = [1000, SIZE, SIZE, 1]  # more rows than the file holds
    body = json.dumps(header).encode()
    with open(cache, "r+b") as fh:
        fh.seek(offset)
        fh.write(body)
        fh.truncate()
        fh.seek(16)
        fh.write(struct.pack("<QQ", offset, len(body)))
    with pytest.raises(DataError, match="pixels.cache' is damaged.*shape"):
        load_dataset(root, image_size=(SIZE, SIZE), cache=cache)


def test_truncated_cache_is_a_data_error_naming_it(
    cached: tuple[Path, Path],
) -> None:
    root, cache = cached
    with open(cache, "r+b") as fh:
        fh.truncate(cache.stat().st_size - 7)
    with pytest.raises(DataError, match="pixels.cache' is damaged.*the file is"):
        load_dataset(root, image_size=(SIZE, SIZE), cache=cache)


# ------------------------------------------------------------ leftovers

_SLOW_SAVE = """
import sys, time
from pathlib import Path
from covidxray._persist import ModelMetadata, save_atomic
from covidxray import Preprocessing

class SlowModel:  # writes its temporary file, then is killed while saving
    def save(self, path):
        Path(path).write_bytes(b"partial")
        print("saving", flush=True)
        time.sleep(120)

meta = ModelMetadata(("non", "covid"), "covid", 0.5, Preprocessing((40, 40)))
save_atomic(SlowModel(), Path(sys.argv[1]), meta)
"""


def test_sigterm_during_a_save_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "m.keras"
    child = subprocess.Popen(
        [sys.executable, "-c", _SLOW_SAVE, str(target)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "saving\n"
        assert len(list(tmp_path.glob(".m-*.keras"))) == 1
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        child.kill()
    assert list(tmp_path.iterdir()) == []


def test_a_save_removes_stale_temporaries_and_honours_the_umask(
    tmp_path: Path, model_file: Path
) -> None:
    from covidxray.data.tempfiles import temp_prefix

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = temp_prefix("m").split("-", 1)[1].rsplit(".", 1)[0]
    killed = tmp_path / f".m-{host}.{dead.pid}-abc123.keras"
    old = tmp_path / ".m-k2x9q.keras"  # an old-style name, two hours old
    live = tmp_path / f"{temp_prefix('m')}live.keras"  # a save in progress
    for leftover in (killed, old, live):
        leftover.write_bytes(b"partial")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    clf = Classifier.load(model_file)
    mask = os.umask(0o022)
    try:
        saved = clf.save(tmp_path / "m.keras")
    finally:
        os.umask(mask)
    assert not killed.exists() and not old.exists() and live.exists()
    assert stat.S_IMODE(saved.stat().st_mode) == 0o644


def test_a_cache_file_honours_the_umask(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data", {"non": 2, "covid": 2})
    mask = os.umask(0o027)
    try:
        load_dataset(root, image_size=(SIZE, SIZE), cache=tmp_path / "c.cache")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "c.cache").stat().st_mode) == 0o640


# ------------------------------------------------------------ DICOM windows


def _bundled(name: str) -> Path:
    """One of pydicom's own test files, where the installed pydicom has it
    (nothing is downloaded)."""
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    try:
        found = get_testdata_file(name, download=False)
    except Exception:  # an older pydicom without `download=`
        found = None
    if not found:
        pytest.skip(f"pydicom's test file {name} is not installed")
    return Path(str(found))


@pytest.mark.parametrize("name", ["CT_small.dcm", "JPEG2000.dcm"])
def test_dicom_without_a_window_maps_its_own_range(name: str) -> None:
    import numpy as np
    import pydicom
    from pydicom.pixels import apply_modality_lut

    path = _bundled(name)
    ds = pydicom.dcmread(path)
    try:
        values = np.asarray(apply_modality_lut(ds.pixel_array, ds), np.float64)
    except Exception as exc:  # no decoder for JPEG 2000 here
        pytest.skip(f"pydicom cannot decode {name} here: {exc}")
    assert "WindowCenter" not in ds and "VOILUTSequence" not in ds
    low, high = values.min(), values.max()
    expected = np.round((values - low) / (high - low) * 255)
    img, info = decode_file(path)
    pixels = np.asarray(img).astype(np.float64)
    assert info.window == "range"
    assert pixels.min() == 0 and pixels.max() == 255
    assert np.abs(pixels - expected).max() <= 1


def test_dicom_with_a_window_says_so() -> None:
    _, info = decode_file(_bundled("MR_small.dcm"))
    assert info.window == "voi"


def test_negative_bootstrap_is_refused_by_the_library() -> None:
    import numpy as np

    from covidxray import Evaluation

    with pytest.raises(ValueError, match="n_bootstrap"):
        Evaluation.from_predictions(
            np.array([0, 1]),
            np.array([0.2, 0.8]),
            class_names=["non", "covid"],
            n_bootstrap=-5,
        )
