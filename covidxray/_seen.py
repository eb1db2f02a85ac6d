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

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data import identity
from .data.dataset import XrayDataset
from .data.records import Record

__all__ = [
    "NEAR_BITS",
    "RECORD_BYTES",
    "SeenCheck",
    "TrainingRecord",
    "record_after_fit",
]

RECORD_BYTES = 16
#: Bits of perceptual hash kept per image (every 4th of 256).
KEPT_BITS = 64
#: Perceptual hashes within this many of their 64 bits are the same picture
#: (resized, recompressed): `identity.SAME_PICTURE.near_bits(64)`, which the
#: check reads (this name is kept for those who imported it).
NEAR_BITS = identity.SAME_PICTURE.near_bits(KEPT_BITS)


def signature(record: Record) -> bytes:
    """The 16 bytes kept for one image."""
    phash = np.unpackbits(np.frombuffer(bytes.fromhex(record.phash), np.uint8))
    return (
        bytes.fromhex(record.sha256[:8])
        + bytes.fromhex(record.pixel_hash[:8])
        + np.packbits(phash[::4]).tobytes()
    )


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

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities of the images it holds (`("X-ray",)` for a record
        saved before covidxray kept them, when it read X-rays only)."""
        return tuple(self.info.get("modalities") or ("X-ray",))

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

    def check(self, records: Sequence[Record]) -> SeenCheck:
        """The indices of `records` whose content the model saw.

        Args:
            records: The images to check.

        Returns:
            A `SeenCheck`: exact copies (same bytes or same decoded pixels) and
            near-duplicates (perceptual hashes within
            `identity.SAME_PICTURE.near_bits(64)` bits, 6 by default).
        """
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
        ours = np.ascontiguousarray(mine[:, 8:16])
        theirs = np.ascontiguousarray(self.signatures[:, 8:16])
        close = np.zeros(len(mine), bool)
        bits = identity.SAME_PICTURE.near_bits(KEPT_BITS)
        close[identity.near_pairs(ours, bits, theirs)[0]] = True
        done = set(exact)
        near = [int(i) for i in np.nonzero(close)[0] if int(i) not in done]
        return SeenCheck(exact=exact, near=near)


def record_after_fit(
    previous: TrainingRecord | None, data: Any, *, fitted_before: bool
) -> TrainingRecord | None:
    """The record of a model after a `fit` on `data`.

    Args:
        previous: The record before this fit, if any.
        data: What this fit trained on.
        fitted_before: Whether the model had been trained before this fit
            (on anything: a fit on arrays leaves no record).

    Returns:
        The previous record plus the training and validation images of an
        `XrayDataset`, one entry per dataset in `info["datasets"]` (its
        `sources` as a list of `{"name", "path"}`; `path` is None for a
        sub-source kept by `subset`). A model
        that also saw arrays or `tf.data` gets `info["complete"] = False`.
    """
    earlier_complete = (
        previous.info.get("complete", True) if previous else not fitted_before
    )
    if not isinstance(data, XrayDataset):
        if previous is None:
            return None
        return TrainingRecord(previous.signatures, {**previous.info, "complete": False})
    seen = data.split_records("train") + data.split_records("val")
    modalities = dict(Counter(r.modality for r in seen))
    entry = {
        "data_fingerprint": data.fingerprint(),
        "source": data.source,  # display text; older files have only this
        "sources": [
            {"name": name, "path": data.sources.get(name)} for name in data.source_names
        ],
        "layout": data.layout,
        "seed": data.seed,
        "counts": data.counts(),
        "images": len(seen),
        "modalities": modalities,
    }
    record = TrainingRecord.from_records(seen)
    if previous is not None:
        record = previous.merged(record)
    datasets = [*(previous.info.get("datasets", []) if previous else []), entry]
    record.info = {
        "datasets": datasets,
        "data_fingerprint": entry["data_fingerprint"],
        "images": len(record),
        "bytes_per_image": RECORD_BYTES,
        "near_bits": identity.SAME_PICTURE.near_bits(KEPT_BITS),
        "complete": earlier_complete,
        # What the model learnt from; a record without it learnt from X-rays.
        "modalities": sorted({*(previous.modalities if previous else ()), *modalities}),
    }
    return record
