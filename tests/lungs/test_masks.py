"""The lung masks in their own layout: 255 and 127 are lung, patients whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidxray import DataError
from covidxray.lungs.masks import read_mask, read_mask_pairs, split_by_patient


def layout(tmp_path: Path) -> tuple[Path, Path]:
    masks, images = tmp_path / "m", tmp_path / "i"
    (masks / "masks").mkdir(parents=True)
    (images / "images").mkdir(parents=True)
    rows = ["patientid,filename"]
    for k in range(10):
        Image.new("L", (8, 6)).save(images / "images" / f"x{k}.jpg")
        m = np.zeros((6, 8), np.uint8)
        m[1:3, 1:3], m[4, 6] = 255, 127
        Image.fromarray(m).save(masks / "masks" / f"x{k}.png")
        rows.append(f"p{k // 2},x{k}.jpg")
    (images / "metadata.csv").write_text("\n".join(rows) + "\n")
    return masks, images


def test_a_device_over_the_lung_counts_as_lung(tmp_path: Path) -> None:
    masks, _ = layout(tmp_path)
    m = read_mask(masks / "masks" / "x0.png")
    assert m.dtype == bool and int(m.sum()) == 5 and m[4, 6]


def test_pairs_know_their_patient_and_splits_keep_patients_whole(
    tmp_path: Path,
) -> None:
    masks, images = layout(tmp_path)
    pairs = read_mask_pairs(masks, images)
    assert [p.patient for p in pairs[:3]] == ["p0", "p0", "p1"]
    assert pairs[0].image.name == "x0.jpg"
    parts = split_by_patient(pairs, seed=3)
    seen = [{p.patient for p in parts[k]} for k in ("train", "val", "test")]
    assert sum(len(v) for v in parts.values()) == 10
    assert (
        not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    )
    assert split_by_patient(pairs, seed=3) == parts  # the same seed, the same split


def test_a_mask_without_its_image_is_an_error_naming_it(tmp_path: Path) -> None:
    masks, images = layout(tmp_path)
    (images / "images" / "x3.jpg").unlink()
    with pytest.raises(DataError, match="x3.png"):
        read_mask_pairs(masks, images)
    with pytest.raises(DataError, match="does not exist"):
        read_mask_pairs(tmp_path / "nothing", images)
