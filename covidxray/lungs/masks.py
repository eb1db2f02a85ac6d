"""The human-drawn lung masks the shipped segmenter was trained on, read in
their own layout, and the patient-grouped split that held patients out.

The masks (`masks/<image stem>.png`, 255 lung, 127 a device over the lung,
0 other) belong to images of the ieee8023 collection, whose `metadata.csv`
gives each image's patient. See `docs/guides/lungs.md`.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError

__all__ = ["MaskPair", "read_mask", "read_mask_pairs", "split_by_patient"]


@dataclass(frozen=True)
class MaskPair:
    """One image, its lung mask and its patient."""

    image: Path
    mask: Path
    patient: str


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """A mask file as a boolean array: 255 and 127 (a device over the lung)
    are lung, 0 is not."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("L")) > 0
    except OSError as exc:
        raise DataError(f"Could not read the lung mask '{path}': {exc}") from exc


def read_mask_pairs(
    masks_root: str | os.PathLike[str], images_root: str | os.PathLike[str]
) -> list[MaskPair]:
    """Every mask under `masks_root/masks/` with its image in
    `images_root/images/` (the same stem) and the patient `metadata.csv`
    gives it (the image's own stem when it has none), sorted by mask name.

    Raises:
        DataError: A folder is missing, or a mask has no image.
    """
    masks_dir, images_dir = Path(masks_root) / "masks", Path(images_root) / "images"
    for folder in (masks_dir, images_dir):
        if not folder.is_dir():
            raise DataError(f"Expected a folder '{folder}'; it does not exist.")
    by_stem = {p.stem: p for p in images_dir.iterdir()}
    patient_of: dict[str, str] = {}
    table = Path(images_root) / "metadata.csv"
    if table.is_file():
        with open(table, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                stem = Path(row.get("filename") or "").stem
                patient_of[stem] = row.get("patientid") or stem
    pairs = []
    for mask in sorted(masks_dir.glob("*.png")):
        image = by_stem.get(mask.stem)
        if image is None:
            raise DataError(f"The lung mask '{mask}' has no image in '{images_dir}'.")
        pairs.append(MaskPair(image, mask, patient_of.get(mask.stem, mask.stem)))
    return pairs


def split_by_patient(
    pairs: list[MaskPair], *, seed: int = 0, test: float = 0.2, val: float = 0.1
) -> dict[str, list[MaskPair]]:
    """`train`, `val` and `test` with every patient in one of them: the
    patients (sorted) are shuffled with `seed`, the first `test` share held
    out, the next `val` share for choosing the epoch.

    Examples:
        >>> pairs = [MaskPair(Path(f"{i}.png"), Path(f"{i}.png"), str(i // 2))
        ...          for i in range(20)]
        >>> parts = split_by_patient(pairs)
        >>> [len(parts[k]) for k in ("train", "val", "test")]
        [14, 2, 4]
        >>> {p.patient for p in parts["test"]} & {p.patient for p in parts["train"]}
        set()
    """
    patients = sorted({p.patient for p in pairs})
    order = np.random.default_rng(seed).permutation(len(patients))
    n_test, n_val = round(test * len(patients)), round(val * len(patients))
    role = {}
    for rank, i in enumerate(order):
        role[patients[i]] = (
            "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
        )
    return {
        r: [p for p in pairs if role[p.patient] == r] for r in ("train", "val", "test")
    }
