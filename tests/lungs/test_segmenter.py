"""The shipped lung segmenter: its weights load offline, its masks are at each
image's size, implausible masks are flagged, and on held-out patients' real
masks it scores what the docs say."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidxray import CovidXrayWarning, DataError, LungSegmenter
from covidxray.lungs import (
    SEGMENTER_VERSION,
    build_lung_unet,
    check_mask,
    clean_mask,
    load_weights,
    save_weights,
)
from covidxray.lungs.masks import read_mask, read_mask_pairs, split_by_patient

MASKS_ENV = "COVIDXRAY_LUNG_MASKS"
IEEE8023_ENV = "COVIDXRAY_IEEE8023_DATA"


def two_lungs(height: int = 60, width: int = 80) -> np.ndarray:
    m = np.zeros((height, width), bool)
    m[10:50, 10:32] = True
    m[10:50, 48:70] = True
    return m


def test_clean_mask_keeps_two_lungs_and_drops_a_marker_blob() -> None:
    p = two_lungs().astype(float)
    p[2:5, 74:78] = 0.9  # a burnt-in marker in a corner
    p[30, 20] = 0.0  # a hole in a lung
    m = clean_mask(p)
    assert not m[2:5, 74:78].any() and m[30, 20]
    assert int(m.sum()) == int(two_lungs().sum())


def test_check_mask_names_each_implausible_shape() -> None:
    assert check_mask(two_lungs()) == []
    assert check_mask(np.zeros((20, 20), bool)) == ["no lung found"]
    one = two_lungs()
    one[:, 40:] = False
    assert "one lung found, not two" in check_mask(one)
    full = np.ones((20, 20), bool)
    assert any("cover 100%" in p for p in check_mask(full))
    stacked = np.zeros((60, 80), bool)
    stacked[5:20, 30:50] = stacked[35:50, 30:50] = True  # one above the other
    assert "the two regions found are not side by side" in check_mask(stacked)


def test_the_shipped_weights_load_and_are_recorded() -> None:
    seg = LungSegmenter()
    assert seg.version == SEGMENTER_VERSION
    assert seg.weights_path.name == "lung_unet.npz" and seg.weights_path.is_file()
    assert seg.weights_path.stat().st_size < 4 * 1024**2  # a few MB at most
    assert len(seg.weights_sha256) == 64 and seg.info()["version"] == seg.version


def test_masks_come_back_at_each_images_size_and_blank_images_are_flagged(
    tmp_path: Path,
) -> None:
    seg = LungSegmenter()
    flat = tmp_path / "flat.png"
    Image.new("L", (130, 90), 0).save(flat)
    with pytest.warns(CovidXrayWarning) as caught:
        (a, b) = seg.predict([str(flat), np.full((70, 50, 3), 255, np.uint8)])
    assert any(str(flat) in str(w.message) for w in caught)
    assert a.mask.shape == (90, 130) and b.mask.shape == (70, 50)
    assert a.mask.dtype == bool and not a.plausible and a.name == str(flat)


def test_a_batch_with_no_lungs_anywhere_is_an_error() -> None:
    seg = LungSegmenter()
    with pytest.raises(DataError, match="No lungs were found in any of the 3"):
        seg.predict([np.zeros((64, 64), np.uint8)] * 3)


def test_missing_or_foreign_weights_are_errors_that_name_the_file(
    tmp_path: Path,
) -> None:
    with pytest.raises(DataError, match="nothere.npz"):
        LungSegmenter(tmp_path / "nothere.npz")
    other = save_weights(build_lung_unet(32), tmp_path / "small.npz")
    with pytest.raises(DataError, match="small.npz"):
        load_weights(_other(), other)


def _other():  # a model whose weights have other shapes
    import keras

    inputs = keras.Input((8, 8, 1))
    return keras.Model(inputs, keras.layers.Conv2D(3, 3)(inputs))


@pytest.mark.realdata
def test_held_out_patients_dice_on_real_masks() -> None:
    masks_root, images_root = os.environ.get(MASKS_ENV), os.environ.get(IEEE8023_ENV)
    if not masks_root or not images_root:
        pytest.skip(f"set {MASKS_ENV} and {IEEE8023_ENV} to run on the real masks")
    # The training script's held-out patients (seed 0): never trained on.
    test = split_by_patient(read_mask_pairs(masks_root, images_root))["test"]
    pairs = test[:: max(1, len(test) // 20)][:20]
    assert len(pairs) == 20
    results = LungSegmenter().predict([str(p.image) for p in pairs])
    dice = []
    for pair, result in zip(pairs, results, strict=True):
        truth = read_mask(pair.mask)  # 127 counts as lung
        assert result.mask.shape == truth.shape
        dice.append(2 * (truth & result.mask).sum() / (truth.sum() + result.mask.sum()))
    assert np.mean(dice) > 0.9, dice
