"""The lung test: each variant blanks what it says, the control is the lungs'
area outside them, and a model that reads only the corners is caught."""

from __future__ import annotations

import numpy as np
import pytest

from covidxray import DataError, Evaluation
from covidxray.lungs import LungMask
from covidxray.lungs.ablation import (
    VARIANTS,
    blank,
    control_region,
    reading,
    run_lung_test,
    saliency_in_lungs,
)

SIZE = 32


def lungs() -> np.ndarray:
    m = np.zeros((SIZE, SIZE), bool)
    m[6:26, 5:14] = m[6:26, 18:27] = True
    return m


class FixedSegmenter:
    """Every image gets the same two lungs, except those named 'bad'."""

    def predict(self, images, *, names):
        return [
            LungMask(np.zeros((SIZE, SIZE), bool), n, ("no lung found",))
            if "bad" in n
            else LungMask(lungs(), n)
            for n in names
        ]

    def info(self):
        return {"version": "test", "weights_sha256": "0" * 64}


def cases(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images whose label shows twice: a bright lung patch and a bright corner."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.uniform(0.3, 0.5, (n, SIZE, SIZE, 1)).astype(np.float32)
    x[y == 1, 10:20, 7:12, 0] = 0.95  # in the left lung
    x[y == 1, :4, :4, 0] = 0.99  # a corner marker
    return x, y


def evaluate(y, proba, meta):
    return Evaluation.from_predictions(
        y, proba, class_names=["non", "covid"], n_bootstrap=50, meta=meta
    )


def run(predict, names=None):
    x, y = cases()
    names = names or [f"img{i}.png" for i in range(len(y))]
    chunks = [(x[:24], names[:24]), (x[24:], names[24:])]
    return run_lung_test(
        chunks, y, predict_proba=predict, evaluate=evaluate, segmenter=FixedSegmenter()
    )


def proba(score: np.ndarray) -> np.ndarray:
    return np.stack([1 - score, score], axis=1)


def test_each_variant_fills_its_region_with_the_median_outside_the_lungs() -> None:
    x, _ = cases(2)
    m = lungs()
    fill = np.median(x[0][~m], axis=0)
    assert np.array_equal(blank(x, [m, m], "as_is"), x)
    removed = blank(x, [m, m], "lungs_removed")
    assert np.all(removed[0][m] == fill) and np.array_equal(removed[0][~m], x[0][~m])
    only = blank(x, [m, m], "lungs_only")
    assert np.all(only[0][~m] == fill) and np.array_equal(only[0][m], x[0][m])
    control = blank(x, [m, m], "control")
    changed = np.any(control[0] != x[0], axis=-1)
    assert not changed[m].any() and changed.sum() <= m.sum()
    with pytest.raises(ValueError, match="must be one of"):
        blank(x, [m, m], "everything")


def test_the_control_has_the_lungs_area_outside_and_next_to_them() -> None:
    m = lungs()
    c = control_region(m)
    assert c.sum() == m.sum() and not (c & m).any()
    # Nearest first: the columns between the lungs go before the far corners.
    assert c[15, 15] and not c[0, 0]


def test_saliency_share_and_the_reading_in_words() -> None:
    m = lungs()
    heat = np.zeros((2, SIZE, SIZE))
    heat[0][m] = 1.0
    heat[1, :4, :4] = 1.0
    assert saliency_in_lungs(heat, [m, m]).tolist() == [1.0, 0.0]
    cheat = reading(
        {"as_is": 0.99, "lungs_only": 0.6, "lungs_removed": 0.9, "control": 0.92},
        0.1,
        0.35,
    )
    assert cheat.startswith(
        "With the lungs removed the model still ranks COVID-19 at ROC AUC 0.90: it does not need the lungs."
    )
    honest = reading(
        {"as_is": 0.95, "lungs_only": 0.9, "lungs_removed": 0.52, "control": 0.93},
        0.8,
        0.35,
    )
    assert "falls to 0.52" in honest and "the model uses the lungs" in honest
    blunt = reading(
        {"as_is": 0.95, "lungs_only": 0.9, "lungs_removed": 0.55, "control": 0.56},
        0.8,
        0.35,
    )
    assert "from blanking a large region" in blunt
    both = reading(
        {"as_is": 0.99, "lungs_only": 0.98, "lungs_removed": 0.75, "control": 0.99},
        0.35,
        0.31,
    )
    assert "it does not need the lungs. They do carry part of what it uses" in both
    assert "They do carry" not in cheat
    rose = reading(
        {"as_is": 0.6, "lungs_removed": 0.65, "control": float("nan")}, 0.5, 0.3
    )
    assert "ROC AUC is 0.65 (as is: 0.60)." in rose and "control" not in rose


def test_a_model_that_reads_the_corner_keeps_its_auc_without_lungs() -> None:
    result = run(lambda x: proba(x[:, :4, :4, 0].mean(axis=(1, 2))))
    auc = {v: result.evaluations[v].metrics["roc_auc"] for v in VARIANTS}
    assert auc["as_is"] == 1.0 and auc["lungs_removed"] == 1.0
    assert "does not need the lungs" in result.reading
    data = result.to_dict()
    assert set(VARIANTS) <= set(data) and data["lungs_removed"]["roc_auc"] == 1.0
    assert {"saliency_in_lungs", "lung_area", "reading"} <= set(data)
    assert data["lung_area"] == pytest.approx(lungs().mean())


def test_a_model_that_reads_the_lung_loses_its_auc_without_lungs() -> None:
    result = run(lambda x: proba(x[:, 10:20, 7:12, 0].mean(axis=(1, 2))))
    auc = {v: result.evaluations[v].metrics["roc_auc"] for v in VARIANTS}
    assert auc["as_is"] == 1.0 and auc["lungs_only"] == 1.0 and auc["control"] == 1.0
    # Every lung is filled with its image's median outside: near chance.
    assert abs(auc["lungs_removed"] - 0.5) < 0.1
    assert "the model uses the lungs" in result.reading
    assert "| lungs removed (filled) | 40 |" in result.to_markdown()


def test_images_without_a_plausible_mask_are_left_out_and_named() -> None:
    names = [f"{'bad' if i < 3 else 'img'}{i}.png" for i in range(40)]
    result = run(lambda x: proba(x[:, :4, :4, 0].mean(axis=(1, 2))), names)
    assert result.excluded == ["bad0.png", "bad1.png", "bad2.png"]
    assert all(e.meta["n"] == 37 for e in result.evaluations.values())

    # A chunk where the segmenter finds no lung at all is left out, not fatal.
    class NoneInSecond(FixedSegmenter):
        def predict(self, images, *, names):
            if names[0] == "img24.png":
                raise DataError("No lungs were found in any of the 16 images")
            return super().predict(images, names=names)

    x, y = cases()
    names = [f"img{i}.png" for i in range(40)]
    partial = run_lung_test(
        [(x[:24], names[:24]), (x[24:], names[24:])],
        y,
        predict_proba=lambda x: proba(x[:, :4, :4, 0].mean(axis=(1, 2))),
        evaluate=evaluate,
        segmenter=NoneInSecond(),
    )
    assert (
        partial.excluded == names[24:] and partial.evaluations["as_is"].meta["n"] == 24
    )
    with pytest.raises(DataError, match="no plausible lung mask in any of the 40"):
        run(lambda x: proba(x[:, 0, 0, 0]), ["bad.png"] * 40)
