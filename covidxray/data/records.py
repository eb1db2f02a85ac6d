"""The record: one image of a dataset, before any pixels are loaded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Entry", "Record", "count_by_source"]


@dataclass(frozen=True)
class Entry:
    """What a layout reader knows about one image: where it is and its finding.

    Attributes:
        path: Path of the image file.
        finding: The label as the source writes it (folder name, `finding`
            column, ...). A `/` hierarchy is allowed.
        split: `"train"`, `"val"` or `"test"` when the source fixes it.
        patient_id: The patient, when the source knows it.
        source: Where the image comes from (the layout, or a source column).
        modality: `"X-ray"` or `"CT"`.
        box: `(left, top, right, bottom)`: the part of the image to read (a
            CT slice's body box), or None for all of it.
    """

    path: str
    finding: str
    split: str | None = None
    patient_id: str | None = None
    source: str | None = None
    modality: str = "X-ray"
    box: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class Record:
    """One image of an `XrayDataset`, with what the scan measured.

    Attributes:
        path: Path of the image file.
        label: Class name.
        split: `"train"`, `"val"` or `"test"`.
        patient_id: Patient identifier, or None when unknown.
        source: Layout or source the image came from.
        finding: The raw label from the source.
        sha256: SHA-256 of the file's bytes.
        pixel_hash: Hash of the decoded full-resolution pixels, before any
            resizing or windowing (finds the same pixels in another format).
        phash: 256-bit perceptual hash in hex (finds resized or recompressed
            copies).
        width: Width in pixels, after EXIF orientation.
        height: Height in pixels.
        mode: Pillow mode of the file (`L`, `RGB`, `RGBA`, `I;16`, ...).
        format: File format (`JPEG`, `PNG`, ...).
        n_bytes: File size in bytes.
        bit_depth: Significant bits per sample the file declares (PNG `sBIT`,
            DICOM `BitsStored`), else the bits per sample of its format (8 for
            JPEG, 16 for a 16-bit PNG or TIFF).
        modality: `"X-ray"` or `"CT"` (a CT slice).
        box: `(left, top, right, bottom)` of the file that is read, wherever
            it is read (a COVIDx CT slice's body box), or None for the whole
            image. `width` and `height` are the whole file's.
    """

    path: str
    label: str
    split: str
    patient_id: str | None
    source: str | None
    finding: str
    sha256: str
    pixel_hash: str
    phash: str
    width: int
    height: int
    mode: str
    format: str
    n_bytes: int
    bit_depth: int = 8
    modality: str = "X-ray"
    box: tuple[int, int, int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dict (JSON-friendly)."""
        return asdict(self)


def count_by_source(
    records: Sequence[Record], class_names: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Images per source and class, sources in the order they first appear."""
    table: dict[str, dict[str, int]] = {}
    for rec in records:
        row = table.setdefault(str(rec.source), dict.fromkeys(class_names, 0))
        row[rec.label] = row.get(rec.label, 0) + 1
    return table
