"""What a model saw: the 16-byte signatures, the check, and the record a fit leaves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from covidxray import load_dataset
from covidxray._seen import (
    NEAR_BITS,
    RECORD_BYTES,
    TrainingRecord,
    record_after_fit,
    signature,
)
from covidxray.data.records import Record
from covidxray.datasets import make_synthetic


def rec(i: int, phash: str | None = None) -> Record:
    return Record(
        f"{i}.png", "covid", "train", None, None, "covid",
        f"{i:02x}" * 32, f"{i + 50:02x}" * 20, phash or f"{i:02x}" * 32,
        8, 8, "L", "PNG", 10,
    )  # fmt: skip


def test_a_signature_keeps_hash_prefixes_and_every_4th_phash_bit() -> None:
    r = rec(7, phash="f0" * 32)  # bits 11110000: every 4th bit is 1, 0, 1, 0...
    sig = signature(r)
    assert len(sig) == RECORD_BYTES == 16
    assert sig[:4] == bytes.fromhex("07" * 4) and sig[4:8] == bytes.fromhex("39" * 4)
    assert sig[8:] == bytes([0b10101010] * 8)


def test_exact_copies_and_near_duplicates_are_found() -> None:
    trained = TrainingRecord.from_records([rec(1), rec(2)])
    same_bytes = Record(**{**rec(9).to_dict(), "sha256": rec(1).sha256})
    same_pixels = Record(**{**rec(9).to_dict(), "pixel_hash": rec(2).pixel_hash})
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(rec(1).phash), np.uint8))
    bits[0 : 4 * NEAR_BITS : 4] ^= 1  # NEAR_BITS of the kept bits flipped
    close = Record(**{**rec(10).to_dict(), "phash": np.packbits(bits).tobytes().hex()})
    bits[4 * NEAR_BITS] ^= 1  # one more: no longer the same picture
    far = Record(**{**rec(11).to_dict(), "phash": np.packbits(bits).tobytes().hex()})
    found = trained.check([same_bytes, same_pixels, close, far, rec(12)])
    assert found.exact == [0, 1] and found.near == [2]


def test_bytes_round_trip_and_merge() -> None:
    record = TrainingRecord.from_records([rec(1), rec(2)], {"k": 1})
    again = TrainingRecord.from_bytes(record.to_bytes(), record.info)
    assert np.array_equal(again.signatures, record.signatures) and again.info == {
        "k": 1
    }
    assert len(record.merged(TrainingRecord.from_records([rec(2), rec(3)]))) == 3
    with pytest.raises(ValueError, match="16 bytes per image"):
        TrainingRecord.from_bytes(b"\0" * 17)


def test_the_record_of_a_fit_keeps_sources_as_values(tmp_path: Path) -> None:
    a = make_synthetic(tmp_path / "a,1", n_per_class=3, image_size=(16, 16))
    b = make_synthetic(tmp_path / "b=2", n_per_class=3, image_size=(16, 16), seed=1)
    data = load_dataset({"a": a, "b": b}, image_size=(8, 8))
    record = record_after_fit(None, data, fitted_before=False)
    assert record is not None
    [entry] = record.info["datasets"]
    assert entry["sources"] == [
        {"name": "a", "path": str(a)},
        {"name": "b", "path": str(b)},
    ]  # a comma or '=' in a path breaks nothing
    assert entry["source"] == data.source  # the display text, as older files had
    assert record.info["near_bits"] == NEAR_BITS == 6
    assert len(record) == len(data.split_records("train") + data.split_records("val"))
    view = record_after_fit(record, data.subset(["b"]), fitted_before=True)
    assert view is not None
    assert view.info["datasets"][1]["sources"] == [{"name": "b", "path": str(b)}]
    assert (
        record_after_fit(view, np.zeros((1, 8, 8, 1)), fitted_before=True).info[
            "complete"
        ]
        is False
    )
