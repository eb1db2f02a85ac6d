"""`load_dataset(cache=PATH)`: a real cache file, reused, never clobbering."""

from __future__ import annotations

import gc
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidxray import CovidXrayWarning, DataError, load_dataset
from covidxray.data import cache as cache_module
from covidxray.data import preprocessing
from covidxray.data.cache import CacheFile
from helpers import write_image


def load(root: Path, cache: object, **kwargs: object):
    kwargs.setdefault("image_size", (16, 16))
    return load_dataset(root, cache=cache, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def root(synthetic_root: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(synthetic_root, copy)
    return copy


def test_a_matching_cache_is_reused_without_decoding(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "pixels.cache"
    first = load(root, path)
    assert path.read_bytes()[:8] == b"CXRCACHE"
    calls = []
    real = preprocessing.decode_file
    monkeypatch.setattr(
        preprocessing, "decode_file", lambda *a, **k: calls.append(a) or real(*a, **k)
    )
    again = load(root, path)
    assert calls == []  # nothing decoded
    assert [r.to_dict() for r in again.records] == [r.to_dict() for r in first.records]
    for split in ("train", "val"):
        np.testing.assert_array_equal(again.images(split), first.images(split))
    # The same files, with the in-memory cache, give the same pixels.
    np.testing.assert_array_equal(
        again.images("train"), load(root, True).images("train")
    )
    assert calls  # and that one did decode


def test_a_path_holding_another_file_is_left_byte_identical(
    root: Path, tmp_path: Path
) -> None:
    precious = tmp_path / "model.keras"
    precious.write_bytes(b"PK\x03\x04 someone's work" * 100)
    before = precious.read_bytes()
    with pytest.raises(DataError, match=r"model\.keras' exists and is not a covidxray"):
        load(root, precious)
    assert precious.read_bytes() == before


def test_a_cache_of_other_settings_or_other_files_is_refused(
    root: Path, tmp_path: Path
) -> None:
    path = tmp_path / "pixels.cache"
    load(root, path)
    before = path.read_bytes()
    with pytest.raises(DataError, match="other settings.*image_size"):
        load(root, path, image_size=(24, 24))
    with pytest.raises(DataError, match="other settings.*max_pixels"):
        load(root, path, max_pixels=10**6)
    extra = root / "covid" / "new.png"
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(extra)
    with pytest.raises(DataError, match="does not hold 1 of the"):
        load(root, path)
    assert path.read_bytes() == before
    extra.unlink()
    assert len(load(root, path).records) > 0  # the files are back as they were


def test_unreadable_files_are_remembered(root: Path, tmp_path: Path) -> None:
    bad = root / "covid" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    path = tmp_path / "pixels.cache"
    with pytest.warns(UserWarning, match="Skipped 1"):
        first = load(root, path, on_error="skip")
    with pytest.warns(UserWarning, match="Skipped 1"):
        again = load(root, path, on_error="skip")
    assert [p for p, _ in again.skipped] == [p for p, _ in first.skipped] == [str(bad)]
    with pytest.raises(DataError, match="broken.png"):
        load(root, path)  # on_error="raise" raises on the remembered file too


def test_writers_take_turns_and_never_mix_their_files(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "pixels.cache"
    results: list[object] = []
    calls = []
    real = preprocessing.decode_file
    monkeypatch.setattr(
        preprocessing, "decode_file", lambda *a, **k: calls.append(a) or real(*a, **k)
    )

    def run() -> None:
        try:
            results.append(load(root, path))
        except Exception as exc:  # noqa: BLE001 - reported below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(not isinstance(r, Exception) for r in results), results
    n_files = len(results[0].records)  # type: ignore[attr-defined]
    assert len(calls) == n_files  # one scanned; the others waited and reused it
    reference = load(root, False).images("train")
    for result in results:
        np.testing.assert_array_equal(result.images("train"), reference)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(load(root, path).images("train"), reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".pixels.cache.lock",
        "data",
        "pixels.cache",
    ]


def test_a_late_writer_keeps_its_own_pixels(tmp_path: Path) -> None:
    settings = {"preprocessing": {"image_size": [2, 2]}, "max_pixels": 1}
    early = CacheFile(tmp_path / "c", settings).create((1, 2, 2, 1))
    late = CacheFile(tmp_path / "c", settings).create((1, 2, 2, 1))
    early.store[:] = 1
    late.store[:] = 2
    early.publish(["a"], [None])
    pixels = late.publish(["a"], [None])
    assert int(pixels.max()) == 2  # the late writer's own rows
    reread = CacheFile(tmp_path / "c", settings).reuse([])
    assert reread is not None and int(reread[0].max()) == 1  # the file: the first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_the_overflow_cache_goes_to_the_folder_asked_for(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = tmp_path / "scratch"
    data = load(root, True, cache_memory_limit=100, cache_dir=chosen)
    assert isinstance(data._pixels, np.memmap)
    [name] = list(chosen.iterdir())
    assert name.name.startswith("covidxray-cache-")
    del data
    gc.collect()
    assert list(chosen.iterdir()) == []  # removed with the dataset
    monkeypatch.setenv("COVIDXRAY_CACHE_DIR", str(tmp_path / "env"))
    assert cache_module.default_cache_dir() == tmp_path / "env"
    kept = load(root, True, cache_memory_limit=100)
    assert len(list((tmp_path / "env").iterdir())) == 1
    assert kept.records


def test_a_missing_package_is_not_remembered(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from covidxray.data.decode import _needs_package

    path = tmp_path / "pixels.cache"
    victim = sorted((root / "covid").iterdir())[0]
    real = preprocessing.decode_file

    def without_a_decoder(name, *args, **kwargs):  # as if pydicom were missing
        if str(name) == str(victim):
            raise _needs_package(f"'{name}' needs a package that is not installed")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(preprocessing, "decode_file", without_a_decoder)
    with pytest.warns(UserWarning, match="Skipped 1"):
        first = load(root, path, on_error="skip")
    assert not path.exists()  # not saved: the next run must try that file again
    assert str(victim) not in {r.path for r in first.records}
    monkeypatch.setattr(preprocessing, "decode_file", real)
    again = load(root, path)
    assert path.exists() and str(victim) in {r.path for r in again.records}
    # The pixels of a cache just written cannot be changed by accident.
    with pytest.raises(ValueError, match="read-only"):
        again._pixels[0, 0, 0, 0] = 1  # type: ignore[index]


def test_a_disk_without_locks_scans_unlocked_and_other_errors_surface(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import fcntl

    def refuse(code: int):
        def flock(handle: object, operation: int) -> None:
            raise OSError(code, os.strerror(code))

        return flock

    monkeypatch.setattr(fcntl, "flock", refuse(errno.ENOLCK))
    data = load(root, tmp_path / "a.cache")  # no lock to be had: scanned all the same
    assert (tmp_path / "a.cache").exists() and data.records
    monkeypatch.setattr(fcntl, "flock", refuse(errno.EIO))
    with pytest.raises(OSError, match="Input/output error"):
        load(root, tmp_path / "b.cache")


def test_file_cache_over_memory_limit(synthetic_root: Path) -> None:
    ds = load_dataset(synthetic_root, image_size=(16, 16), cache_memory_limit=100)
    assert isinstance(ds._pixels, np.memmap)
    ref = load_dataset(synthetic_root, image_size=(16, 16))
    np.testing.assert_array_equal(ds.images("train"), ref.images("train"))


# ------------------------------------------------------------------ lungs


def test_lung_masks_are_found_once_and_kept_in_the_cache_file(
    root: Path, tmp_path: Path, fake_lungs
) -> None:
    path = tmp_path / "lungs.cache"
    first = load(root, path, lungs="crop")
    found = fake_lungs.calls
    assert found == len(first.records)  # one search per image
    masks = first.lung_masks_of(first.records)
    assert masks.shape == (len(first.records), 16, 16) and masks.any(axis=(1, 2)).all()
    assert first.lung_segmenter == fake_lungs().info()
    assert "lungs: crop" in first.summary()
    again = load(root, path, lungs="crop")
    assert fake_lungs.calls == found  # reused: no image searched again
    np.testing.assert_array_equal(again.lung_masks_of(again.records), masks)
    np.testing.assert_array_equal(again.images("train"), first.images("train"))
    # The lungs are part of the settings: a plain read of that file is refused.
    with pytest.raises(DataError, match="other settings.*lungs"):
        load(root, path)
    # An in-memory scan of the same files gives the same pixels and masks,
    # and so does reading them from disk every time (cache=False).
    memory = load(root, True, lungs="crop")
    np.testing.assert_array_equal(memory.images("train"), first.images("train"))
    np.testing.assert_array_equal(memory.lung_masks_of(memory.records), masks)
    disk = load(root, False, lungs="crop")
    np.testing.assert_array_equal(disk.images("train"), first.images("train"))
    np.testing.assert_array_equal(disk.lung_masks_of(disk.records), masks)


def test_lung_masks_alone_leave_the_pixels_as_they_are(
    root: Path, tmp_path: Path, fake_lungs
) -> None:
    with_masks = load(root, tmp_path / "m.cache", lung_masks=True)
    plain = load(root, True)
    np.testing.assert_array_equal(with_masks.images("train"), plain.images("train"))
    assert with_masks.lung_masks_of(with_masks.records).any()
    # Masks of a dataset read without them are found on first use, once.
    before = fake_lungs.calls
    first = plain.lung_masks_of(plain.records[:3])
    assert fake_lungs.calls == before + 3
    np.testing.assert_array_equal(plain.lung_masks_of(plain.records[:3]), first)
    assert fake_lungs.calls == before + 3


def test_images_without_lungs_are_named_and_a_set_without_any_is_refused(
    tmp_path: Path, fake_lungs
) -> None:
    for k in range(3):
        write_image(tmp_path / "some" / "covid" / f"c{k}.png", seed=k)
        write_image(tmp_path / "some" / "normal" / f"n{k}.png", seed=10 + k)
    write_image(tmp_path / "some" / "normal" / "nolung.png", seed=99)
    cache = tmp_path / "some.cache"
    with pytest.warns(CovidXrayWarning, match=r"1 of 7 images.*nolung\.png"):
        data = load(tmp_path / "some", cache, lungs="mask")
    assert list(data.lung_problems.values()) == [("no lung found",)]
    with pytest.warns(CovidXrayWarning, match=r"nolung\.png"):  # reused: again
        assert load(tmp_path / "some", cache, lungs="mask").lung_problems
    for k in range(2):
        write_image(tmp_path / "none" / "covid" / f"nolung{k}.png", seed=k)
        write_image(tmp_path / "none" / "normal" / f"nolung_n{k}.png", seed=5 + k)
    with pytest.raises(DataError, match="No lungs were found in any of the 4"):
        load(tmp_path / "none", True, lungs="crop")
