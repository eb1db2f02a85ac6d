"""Hostile input, faults and reproducibility."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from covidxray import Augmenter, Classifier, DataError, build_cnn, load_dataset
from covidxray.data.decode import decode_file
from covidxray.data.preprocessing import image_to_array
from covidxray.datasets import make_synthetic
from helpers import write_image


def _sample(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(buf, fmt)
    return buf.getvalue()


JPEG, PNG = _sample("JPEG"), _sample("PNG")


def decodes_or_data_error(data: bytes, name: str) -> None:
    try:
        img, info = decode_file(name, data=data)
    except DataError:
        return
    arr = image_to_array(img, (8, 8))
    assert arr.shape == (8, 8, 1) and arr.dtype == np.uint8
    assert info.width >= 1 and info.height >= 1


FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes(data: bytes) -> None:
    decodes_or_data_error(data, "random.png")


@FUZZ
@given(st.sampled_from([("a.jpg", JPEG), ("a.png", PNG)]), st.integers(0, 10_000))
def test_fuzz_truncated_files(sample: tuple[str, bytes], cut: int) -> None:
    name, data = sample
    decodes_or_data_error(data[: cut % len(data)], name)


@FUZZ
@given(
    st.sampled_from([("a.jpg", JPEG), ("a.png", PNG)]),
    st.lists(
        st.tuples(st.integers(0, 63), st.integers(0, 255)), min_size=1, max_size=6
    ),
)
def test_fuzz_flipped_header_bytes(
    sample: tuple[str, bytes], flips: list[tuple[int, int]]
) -> None:
    name, data = sample
    corrupted = bytearray(data)
    for position, value in flips:
        corrupted[position] ^= value or 1
    decodes_or_data_error(bytes(corrupted), name)


def test_awkward_files_corpus(tmp_path: Path) -> None:
    covid = tmp_path / "covid"
    normal = tmp_path / "normal"
    covid.mkdir()
    normal.mkdir()
    Image.new("L", (1, 1), 200).save(covid / "one pixel.png")
    Image.new("L", (2000, 20), 100).save(covid / "very wide.png")
    palette = Image.new("P", (20, 20), 1)
    palette.putpalette([0, 0, 0, 255, 255, 255] * 128)
    palette.info["transparency"] = 0
    palette.save(covid / "palette.gif", transparency=0)
    Image.new("RGBA", (20, 20), (255, 255, 255, 0)).save(covid / "transparent.png")
    write_image(normal / "ünïcødé ñame.png", seed=1)
    write_image(normal / "with space.png", seed=2)
    os.symlink(normal / "with space.png", normal / "link.png")
    os.symlink(normal / "loop_a.png", normal / "loop_b.png")
    os.symlink(normal / "loop_b.png", normal / "loop_a.png")
    with pytest.raises(DataError, match="loop_a.png"):
        load_dataset(tmp_path, image_size=(16, 16))
    with pytest.warns(UserWarning, match="Skipped 2 of 9"):
        ds = load_dataset(
            tmp_path,
            image_size=(16, 16),
            on_error="skip",
            deduplicate=False,
            validation_split=0.0,
        )
    names = {Path(r.path).name for r in ds.records}
    assert {
        "one pixel.png",
        "very wide.png",
        "palette.gif",
        "transparent.png",
        "ünïcødé ñame.png",
        "with space.png",
        "link.png",
    } <= names
    transparent = next(r for r in ds.records if r.path.endswith("transparent.png"))
    index = [r.path for r in ds.split_records("train")].index(transparent.path)
    assert ds.images("train")[index].max() == 0  # composited on black


def test_same_seed_same_trained_weights(tmp_path: Path) -> None:
    root = make_synthetic(tmp_path, n_per_class=12, image_size=(48, 48))

    def train() -> list[np.ndarray]:
        keras.utils.set_random_seed(3)  # before the weights are initialised
        data = load_dataset(root, image_size=(48, 48), batch_size=8, seed=3)
        clf = Classifier(build_cnn((48, 48, 1)), class_names=data.class_names, seed=3)
        clf.fit(data, epochs=2, verbose=0, augmenter=Augmenter.paper_training(seed=3))
        return clf.model_.get_weights()

    first, second = train(), train()
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


KILL_SCRIPT = """
import sys, time, keras
from covidxray import Classifier, build_cnn, load_dataset
class Slow(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        print("EPOCH", epoch + 1, flush=True)
        time.sleep(0.5)
data = load_dataset(sys.argv[1], image_size=(48, 48), batch_size=8)
clf = Classifier(build_cnn((48, 48, 1)), class_names=data.class_names)
clf.fit(data, epochs=40, checkpoint=sys.argv[2], callbacks=[Slow()], verbose=0)
print("FINISHED", flush=True)
"""


@pytest.mark.slow
def test_sigkill_midway_then_resume(tmp_path: Path) -> None:
    root = make_synthetic(tmp_path / "data", n_per_class=12, image_size=(48, 48))
    ckpt = tmp_path / "run.keras"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(root), str(ckpt)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    epochs_seen = 0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("EPOCH"):
            epochs_seen = int(line.split()[1])
            if epochs_seen >= 3:
                break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert epochs_seen >= 3 and proc.returncode == -signal.SIGKILL
    assert ckpt.is_file() and Path(f"{ckpt}.backup").is_dir()
    data = load_dataset(root, image_size=(48, 48), batch_size=8)
    resumed = Classifier(build_cnn((48, 48, 1)), class_names=data.class_names)
    resumed.fit(data, epochs=40, checkpoint=ckpt, verbose=0)
    done_before = 40 - len(resumed.history_["loss"])
    assert (
        epochs_seen - 1 <= done_before <= epochs_seen
    )  # resumed after the last backup
    assert not Path(f"{ckpt}.backup").exists()
    final = resumed.save(tmp_path / "final.keras")
    assert Classifier.load(final).predict(data.images("val")).shape == (
        len(data.split_records("val")),
    )


@pytest.fixture
def tiny_filesystem(tmp_path: Path):
    """A 1 MiB tmpfs, for real disk-full and read-only failures (needs root)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def test_save_on_a_full_or_read_only_disk_keeps_the_old_file(
    tiny_filesystem: Path,
) -> None:
    clf = Classifier(build_cnn((48, 48, 1)), class_names=["a", "b"])
    clf.fit(
        (np.zeros((2, 48, 48, 1), np.float32), np.array([0, 1])), epochs=1, verbose=0
    )
    path = clf.save(tiny_filesystem / "model.keras")
    before = path.read_bytes()
    free = os.statvfs(tiny_filesystem).f_bavail * os.statvfs(tiny_filesystem).f_frsize
    (tiny_filesystem / "filler").write_bytes(b"\0" * max(free - 4096, 0))  # disk full
    with pytest.raises(OSError) as info:
        clf.save(path)
    assert info.value.errno == 28  # ENOSPC: No space left on device
    assert path.read_bytes() == before
    assert sorted(p.name for p in tiny_filesystem.iterdir()) == [
        "filler",
        "model.keras",
    ]

    (tiny_filesystem / "filler").unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_filesystem)], check=True)
    with pytest.raises(
        ValueError, match=r"Cannot write '.*model.keras' .* not writable"
    ):
        clf.save(path)  # checked before writing: a read-only folder
    assert path.read_bytes() == before
    assert Classifier.load(path).class_names == ["a", "b"]


SAVE_MODES = {
    "PNG": ("L", "RGB", "RGBA", "LA", "P", "I;16", "1"),
    "BMP": ("L", "RGB", "P", "1"),
    "TIFF": ("L", "RGB", "RGBA", "I;16", "1"),
    "GIF": ("L", "P"),
    "WEBP": ("RGB", "RGBA"),
}


def valid_image(
    rng: np.random.Generator, mode: str, size: tuple[int, int]
) -> tuple[Image.Image, np.ndarray]:
    """A random image of `mode` and the RGB pixels it must decode to."""
    w, h = size
    if mode == "I;16":
        raw = rng.integers(0, 65536, (h, w)).astype(np.uint16)
        # The data must span 16 bits: a 16-bit file whose values all fit in
        # fewer bits is read at that depth (14 bits for values below 16,384).
        raw.flat[0] = 65535
        gray = np.round(raw / 65535.0 * 255.0).astype(np.uint8)  # full 16-bit range
        return Image.fromarray(raw), np.repeat(gray[..., None], 3, axis=-1)
    if mode == "1":
        bits = rng.integers(0, 2, (h, w)).astype(bool)
        gray = np.where(bits, 255, 0).astype(np.uint8)
        return Image.fromarray(bits), np.repeat(gray[..., None], 3, axis=-1)
    if mode == "P":
        index = rng.integers(0, 256, (h, w), dtype=np.uint8)
        palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
        img = Image.fromarray(index, mode="P")
        img.putpalette(palette.flatten().tolist())
        return img, palette[index]
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    raw = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    img = Image.fromarray(raw[..., 0] if channels == 1 else raw, mode=mode)
    colour = raw[..., :3] if channels >= 3 else np.repeat(raw[..., :1], 3, axis=-1)
    if channels in (2, 4):  # alpha: composited on black
        alpha = raw[..., -1:].astype(np.float64) / 255.0
        colour = np.round(colour * alpha).astype(np.uint8)
    return img, colour


@FUZZ
@given(
    st.sampled_from(
        [(fmt, mode) for fmt, modes in SAVE_MODES.items() for mode in modes]
    ),
    st.integers(1, 40),
    st.integers(1, 40),
    st.integers(0, 2**32 - 1),
)
def test_fuzz_valid_images_decode_to_their_own_pixels(
    fmt_mode: tuple[str, str], width: int, height: int, seed: int
) -> None:
    fmt, mode = fmt_mode
    img, expected = valid_image(np.random.default_rng(seed), mode, (width, height))
    buf = io.BytesIO()
    img.save(buf, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    decoded, info = decode_file(f"valid.{fmt.lower()}", data=buf.getvalue())
    assert decoded.mode in ("L", "RGB") and decoded.size == (width, height)
    assert (info.width, info.height, info.format) == (width, height, fmt)
    got = np.asarray(decoded.convert("RGB")).astype(int)
    tolerance = 1 if mode in ("RGBA", "LA") else 0  # Pillow's compositing rounds
    assert np.abs(got - expected.astype(int)).max() <= tolerance
