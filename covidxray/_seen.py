"""What a model saw in training: a compact content record, and the check against it.

`fit` on an `XrayDataset` keeps 16 bytes per training and validation image:

- bytes 0-3: the first 4 bytes of the SHA-256 of the file's bytes;
- bytes 4-7: the first 4 bytes of the hash of its decoded pixels;
- bytes 8-15: 64 bits of its 256-bit perceptual hash (every 4th bit).

A million training images add 16 MB to the model file. Hashes cannot be
turned back into images: the record says only whether an image the model is
evaluated on has the same content as one it was trained on. A 32-bit hash
prefix matches an unrelated image with probability 1 in 4.3 billion per
training image, so with a million training images about 1 evaluation image in
2,000 is wrongly left out; it is never wrongly kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data.loader import XrayDataset
from .data.records import Record

__all__ = [
    "NEAR_BITS",
    "RECORD_BYTES",
    "SeenCheck",
    "TrainingRecord",
    "record_after_fit",
]

RECORD_BYTES = 16
#: Perceptual hashes within this many of their 64 bits are the same picture
#: (resized, recompressed). On seed-xray, its 6 known re-published copies differ
#: by at most 5 bits, and no two different images by 7 or fewer.
NEAR_BITS = 6


def signature(record: Record) -> bytes:
    """The 16 bytes kept for one image."""
    phash = np.unpackbits(np.frombuffer(bytes.fromhex(record.phash), np.uint8))
    return (
        bytes.fromhex(record.sha256[:8])
        + bytes.fromhex(record.pixel_hash[:8])
        + np.packbits(phash[::4]).tobytes()
    )


def _popcount(values: np.ndarray) -> np.ndarray:
    as_bytes = values.view(np.uint8).reshape(*values.shape, 8)
    return np.unpackbits(as_bytes, axis=-1).sum(axis=-1)


@dataclass(frozen=True)
class SeenCheck:
    """Which evaluation images a model saw in training, by content: `exact`
    copies (left out of an evaluation) and perceptual `near` duplicates
    (flagged: on synthetic data and on very similar images they can be
    different pictures)."""

    exact: list[int] = field(default_factory=list)
    near: list[int] = field(default_factory=list)


class TrainingRecord:
    """The content signatures of the images a model was trained and validated on.

    Examples:
        >>> from covidxray.data.records import Record
        >>> rec = Record("a.png", "covid", "train", None, None, "covid",
        ...              "ab" * 32, "cd" * 20, "0f" * 32, 8, 8, "L", "PNG", 10)
        >>> record = TrainingRecord.from_records([rec])
        >>> len(record), len(record.to_bytes())
        (1, 16)
        >>> record.check([rec]).exact
        [0]
    """

    def __init__(self, signatures: np.ndarray, info: Mapping[str, Any] | None = None):
        self.signatures = np.asarray(signatures, dtype=np.uint8).reshape(
            -1, RECORD_BYTES
        )
        self.info = dict(info or {})

    @classmethod
    def from_records(
        cls, records: Sequence[Record], info: Mapping[str, Any] | None = None
    ) -> TrainingRecord:
        rows = b"".join(signature(r) for r in records)
        return cls(np.frombuffer(rows, np.uint8), info)

    def __len__(self) -> int:
        return len(self.signatures)

    def merged(self, other: TrainingRecord) -> TrainingRecord:
        """The union of two records (a model trained on both)."""
        both = np.unique(np.concatenate([self.signatures, other.signatures]), axis=0)
        return TrainingRecord(both, {**self.info, **other.info})

    def to_bytes(self) -> bytes:
        return self.signatures.tobytes()

    @classmethod
    def from_bytes(
        cls, data: bytes, info: Mapping[str, Any] | None = None
    ) -> TrainingRecord:
        if len(data) % RECORD_BYTES:
            raise ValueError(
                f"A training record holds {RECORD_BYTES} bytes per image; "
                f"{len(data)} bytes is not a whole number of images."
            )
        return cls(np.frombuffer(data, np.uint8), info)

    def check(self, records: Sequence[Record], chunk: int = 512) -> SeenCheck:
        """The indices of `records` whose content the model saw: exact copies
        (same bytes or same decoded pixels) and near-duplicates (perceptual hash
        within `NEAR_BITS` bits)."""
        if not records or not len(self):
            return SeenCheck()
        mine = TrainingRecord.from_records(records).signatures
        files = {bytes(r) for r in self.signatures[:, 0:4]}
        pixels = {bytes(r) for r in self.signatures[:, 4:8]}
        exact = [
            i
            for i, row in enumerate(mine)
            if bytes(row[0:4]) in files or bytes(row[4:8]) in pixels
        ]
        known = np.ascontiguousarray(self.signatures[:, 8:16]).view(np.uint64)[:, 0]
        theirs = np.ascontiguousarray(mine[:, 8:16]).view(np.uint64)[:, 0]
        near: list[int] = []
        done = set(exact)
        for start in range(0, len(theirs), chunk):
            block = theirs[start : start + chunk, None] ^ known[None, :]
            close = (_popcount(block) <= NEAR_BITS).any(axis=1)
            near.extend(
                start + i for i in np.nonzero(close)[0] if start + i not in done
            )
        return SeenCheck(exact=exact, near=near)


def record_after_fit(
    previous: TrainingRecord | None, data: Any
) -> TrainingRecord | None:
    """The record of a model after a `fit` on `data`: the previous record plus
    the training and validation images of an `XrayDataset`. A fit on arrays or
    `tf.data` cannot be recorded; the record then says it is incomplete."""
    if not isinstance(data, XrayDataset):
        if previous is None:
            return None
        return TrainingRecord(previous.signatures, {**previous.info, "complete": False})
    seen = data.split_records("train") + data.split_records("val")
    info = {
        "data_fingerprint": data.fingerprint(),
        "source": data.source,
        "layout": data.layout,
        "seed": data.seed,
        "counts": data.counts(),
        "images": len(seen),
        "bytes_per_image": RECORD_BYTES,
        "near_bits": NEAR_BITS,
        "complete": True if previous is None else previous.info.get("complete", True),
    }
    record = TrainingRecord.from_records(seen, info)
    return record if previous is None else previous.merged(record)
