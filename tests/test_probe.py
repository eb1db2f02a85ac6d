"""The probes: file metadata and image statistics that predict a label or a source."""

from __future__ import annotations

import numpy as np
import pytest

from covidxray._probe import (
    IMAGE_FEATURES,
    image_features,
    metadata_features,
    predicts,
    probe_auc,
)
from covidxray.data.records import Record


def rec(i: int, mode: str, fmt: str, width: int) -> Record:
    return Record(
        f"{i}.png", "covid", "train", None, None, "", "", "", "",
        width, 10, mode, fmt, 100 * (i + 1),
    )  # fmt: skip


def test_metadata_features_one_hot_mode_and_format() -> None:
    recs = [rec(0, "L", "PNG", 10), rec(1, "RGB", "JPEG", 20), rec(2, "L", "JPEG", 5)]
    x = metadata_features(recs, ["mode", "format", "width", "aspect", "bytes"])
    assert x.shape == (3, 2 + 2 + 3)
    assert x[:, 0].tolist() == [1, 0, 1] and x[:, 1].tolist() == [0, 1, 0]  # L, RGB
    assert x[:, 4].tolist() == [10, 20, 5] and x[:, 5].tolist() == [1.0, 2.0, 0.5]
    assert np.allclose(x[:, 6], np.log1p([100, 200, 300]))


def test_image_features_read_pixels_in_blocks_and_check_names() -> None:
    recs = [rec(i, "L", "PNG", 10) for i in range(5)]
    asked = []

    def pixels(part: list[Record]) -> np.ndarray:
        asked.append(len(part))
        return np.full((len(part), 8, 8, 1), 128, np.uint8)

    x = image_features(recs, pixels)
    assert x.shape[0] == 5 and asked == [5] and np.isfinite(x).all()
    assert image_features(recs, pixels, ["size", "bit_depth"]).shape == (5, 3)
    assert asked == [5]  # file statistics need no pixels
    with pytest.raises(ValueError, match="Unknown image feature groups"):
        image_features(recs, pixels, ["lungs"])
    assert "histogram" in IMAGE_FEATURES


def test_a_feature_that_gives_the_label_away_scores_near_one() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    telling = (y + rng.normal(0, 0.1, 40))[:, None]
    noise = rng.normal(size=(40, 1))
    assert probe_auc(telling, y, seed=0) > 0.95
    assert probe_auc(noise, y, seed=0) < 0.8
    assert probe_auc(np.ones((40, 1)), y, seed=0) == 0.5
    assert probe_auc(telling, np.array([0] * 39 + [1]), seed=0) is None
    assert predicts(telling, telling[:, 0] * 2, seed=0) > 0.9
