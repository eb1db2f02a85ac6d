"""What makes two files one picture: the hashes, the near-duplicate search (exact like
comparing all pairs, but far fewer), and the one policy deduplication, the audit and
the seen-check share."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidxray import audit, load_dataset
from covidxray.data import identity
from covidxray.data.decode import decode_file
from covidxray.data.identity import all_pairs, near_pairs
from covidxray.data.preprocessing import Preprocessing
from covidxray.data.records import Record
from covidxray.data.split import cross_source_copies
from covidxray.datasets import synthetic_xray
from helpers import two_sources


def planted(
    n: int, n_bytes: int, distances: list[int], seed: int = 0
) -> tuple[np.ndarray, dict[tuple[int, int], int]]:
    """Random hashes, plus copies of the first ones at the given distances."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 256, (n, n_bytes), dtype=np.uint8)
    bits = np.unpackbits(hashes, axis=1)
    copies, truth = [], {}
    for k, d in enumerate(distances):
        flipped = bits[k].copy()
        flipped[rng.choice(n_bytes * 8, d, replace=False)] ^= 1
        copies.append(np.packbits(flipped))
        truth[(k, n + k)] = d
    return np.concatenate([hashes, np.stack(copies)]), truth


def same(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> bool:
    return all(x.shape == y.shape and (x == y).all() for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(("n_bytes", "threshold"), [(32, 24), (32, 10), (8, 6), (8, 0)])
def test_the_same_pairs_as_comparing_all_of_them(n_bytes: int, threshold: int) -> None:
    distances = list(range(threshold + 4))
    hashes, truth = planted(600, n_bytes, distances)
    found = near_pairs(hashes, threshold)
    assert same(found, all_pairs(hashes, threshold))
    keys = zip(found[0].tolist(), found[1].tolist(), strict=True)
    pairs = dict(zip(keys, found[2].tolist(), strict=True))
    for pair, d in truth.items():
        assert (pairs.get(pair) == d) == (d <= threshold)


def test_queries_against_another_set() -> None:
    hashes, truth = planted(400, 32, [0, 5, 24, 25, 40])
    queries, base = hashes[400:], hashes[:400]
    found = near_pairs(queries, 24, base)
    assert same(found, all_pairs(queries, 24, base))
    assert found[0].tolist() == [0, 1, 2] and found[1].tolist() == [0, 1, 2]
    assert found[2].tolist() == [0, 5, 24]


def test_far_fewer_pairs_are_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    hashes, _ = planted(3000, 32, [3, 12, 20])
    compared = []
    real = identity._distance
    monkeypatch.setattr(
        identity, "_distance", lambda a, b: compared.append(len(a)) or real(a, b)
    )
    found = near_pairs(hashes, 24)
    all_of_them = len(hashes) * (len(hashes) - 1) // 2
    assert len(found[0]) == 3
    # 25 chunks of about 10 bits: about 25 / 2**10 of all pairs share a bucket.
    assert sum(compared) < all_of_them / 20


def test_wide_thresholds_fall_back_to_all_pairs_and_bad_input_is_named() -> None:
    hashes, _ = planted(100, 4, [1, 20])  # 32 bits, threshold 20: 1-bit chunks
    assert same(near_pairs(hashes, 20), all_pairs(hashes, 20))
    with pytest.raises(ValueError, match="`hashes` as a .* uint8"):
        near_pairs(hashes.astype(np.int64), 3)
    with pytest.raises(ValueError, match="same number of bytes"):
        near_pairs(hashes, 3, hashes[:, :2])
    assert [len(a) for a in near_pairs(hashes[:0], 3)] == [0, 0, 0]


def test_a_jpeg_and_its_png_copy_are_one_image(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    for split in ("train", "test"):
        for cls in ("covid", "normal"):
            (tmp_path / split / cls).mkdir(parents=True)
            for k in range(4):
                picture = synthetic_xray(rng, (300, 260), opacities=cls == "covid")
                Image.fromarray(picture).save(
                    tmp_path / split / cls / f"{k}.jpg", quality=92
                )
    # The same radiograph as JPEG in train and as PNG (its decoded pixels) in test,
    # and a re-encoded JPEG (other quality, other bytes and pixels) in test too.
    original = tmp_path / "train" / "covid" / "0.jpg"
    Image.open(original).save(tmp_path / "test" / "covid" / "copy.png")
    Image.open(original).save(tmp_path / "test" / "covid" / "again.jpg", quality=60)

    report = audit(tmp_path)
    [group] = report.exact_duplicates
    assert sorted(Path(p).name for p in group["paths"]) == ["0.jpg", "copy.png"]
    assert group["cross_split"] and not group["same_bytes"]
    near = {
        frozenset(Path(p).name for p in pair["paths"])
        for pair in report.near_duplicates
    }
    assert frozenset({"0.jpg", "again.jpg"}) in near

    data = load_dataset(tmp_path, image_size=(32, 32), validation_split=0.0)
    removed = [(a.path, b.path) for a, b in data.duplicates_removed]
    assert removed == [(str(tmp_path / "test" / "covid" / "copy.png"), str(original))]
    assert not any(r.path.endswith("copy.png") for r in data.records)


def test_a_gray_picture_saved_as_rgb_is_the_same_pixels(tmp_path: Path) -> None:
    gray = synthetic_xray(np.random.default_rng(0), (40, 50), opacities=False)
    Image.fromarray(gray).save(tmp_path / "g.png")
    Image.fromarray(gray).convert("RGB").save(tmp_path / "rgb.png")
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, "TIFF")
    (tmp_path / "g.tif").write_bytes(buf.getvalue())
    hashes = {
        decode_file(tmp_path / n)[1].pixel_hash for n in ("g.png", "rgb.png", "g.tif")
    }
    assert len(hashes) == 1


def test_pixel_hashes_do_not_depend_on_image_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for cls in ("covid", "normal"):
        (tmp_path / cls).mkdir()
        for k in range(3):
            coarse = Image.fromarray(rng.integers(0, 256, (20, 25), dtype=np.uint8))
            coarse.resize((1000, 800)).save(tmp_path / cls / f"{k}.jpg", quality=90)
    cached = load_dataset(tmp_path, image_size=(64, 64), validation_split=0.0)
    uncached = load_dataset(
        tmp_path, image_size=(64, 64), validation_split=0.0, cache=False
    )
    small = load_dataset(tmp_path, image_size=(16, 16), validation_split=0.0)
    assert {(r.width, r.height) for r in cached.records} == {
        (1000, 800)
    }  # the file's size
    np.testing.assert_array_equal(cached.images("train"), uncached.images("train"))
    hashes = {r.path: (r.pixel_hash, r.phash) for r in cached.records}
    assert hashes == {r.path: (r.pixel_hash, r.phash) for r in small.records}
    assert len({h for h, _ in hashes.values()}) == 6  # six different pictures


# ------------------------------------------------------------- the hashes


def test_hashes_are_the_ones_the_records_always_had(tmp_path: Path) -> None:
    """Moving the hashes out of decode changed no value: pinned on one file."""
    pixels = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    Image.fromarray(pixels).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    _, info = decode_file(tmp_path / "a.png")
    assert info.sha256 == identity.file_hash(data) == hashlib.sha256(data).hexdigest()
    salted = hashlib.blake2b(b"L(8, 6)", digest_size=20)
    salted.update(pixels.tobytes())
    assert info.pixel_hash == identity.pixel_hash(pixels) == salted.hexdigest()
    assert info.phash == identity.perceptual_hash(Image.fromarray(pixels))
    assert len(info.phash) == 64


def test_stack_and_hamming_agree() -> None:
    hashes = ["00" * 31 + "07", "ff" * 32]
    stacked = identity.stack_hashes(hashes)
    assert stacked.shape == (2, 32) and stacked.dtype == np.uint8
    assert identity.hamming(hashes[0], "00" * 32) == 3
    assert identity.hamming(hashes[0], hashes[1]) == 253


# -------------------------------------------------------------- the policy


def test_one_policy_gives_every_threshold_used_before() -> None:
    policy = identity.SAME_PICTURE
    assert policy.copy_bits(256) == 12  # split.COPY_BITS
    assert policy.near_bits(256) == 24  # audit's near_threshold
    assert policy.near_bits(64) == 6  # _seen.NEAR_BITS
    assert policy.copy_bits(64) == 3
    assert identity.SamePicture(copy=0.0, near=1.0).near_bits(64) == 64


def spaced(distance: int) -> str:
    """A 256-bit hash `distance` bits from zero, on bits the seen-check keeps
    (every 4th), so the distance is the same in its 64 bits."""
    bits = np.zeros(256, np.uint8)
    bits[: 4 * distance : 4] = 1
    return np.packbits(bits).tobytes().hex()


def record(i: int, phash: str, source: str, split: str) -> Record:
    return Record(
        f"{i}.png", ("normal", "covid")[i % 2], split, None, source, "",
        f"{i:02x}" * 32, f"{i + 100:02x}" * 20, phash, 8, 8, "L", "PNG", 10,
    )  # fmt: skip


def test_dedupe_audit_and_seen_check_all_follow_the_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from covidxray import XrayDataset, audit
    from covidxray._seen import TrainingRecord

    # Two pictures 5 bits apart, from two sources, with one label.
    a = record(1, spaced(0), "a", "train")
    b = record(3, spaced(5), "b", "test")

    def outcomes() -> tuple[bool, bool, bool]:
        data = XrayDataset(
            [a, b], class_names=("normal", "covid"), positive_class="covid",
            preprocessing=Preprocessing((8, 8)), batch_size=2, seed=0,
            pixels=None, rows={},
        )  # fmt: skip
        report = audit(data, shortcut_probe=False, source_probe=False)
        seen = TrainingRecord.from_records([a]).check([b])
        return (
            bool(cross_source_copies([a, b])),  # what deduplication removes
            bool(report.near_duplicates),
            seen.near == [0],
        )

    assert outcomes() == (True, True, True)  # 5 <= 12 and 5 <= 24 of 256, 5 <= 6 of 64
    monkeypatch.setattr(
        identity, "SAME_PICTURE", identity.SamePicture(4 / 256, 4 / 256)
    )
    assert outcomes() == (False, False, False)  # 5 > 4 of 256, 5 > 1 of 64


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return two_sources(tmp_path_factory)


def test_load_dataset_deduplicates_by_the_policy(
    two: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def across() -> int:
        data = load_dataset(two, image_size=(16, 16), cache=False)
        return sum(a.source != b.source for a, b in data.duplicates_removed)

    assert across() == 1  # b's republished copy of an image of a
    monkeypatch.setattr(identity, "SAME_PICTURE", identity.SamePicture(0.0, 0.0))
    assert across() == 0
