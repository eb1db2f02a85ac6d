"""Probes: how well simple statistics of the files predict a label or a source.

A probe is a small random forest, scored by cross-validated ROC AUC. If
statistics that describe how a picture was made (its size, its borders, its
noise, its histogram) predict the label, a model can learn them instead of the
lungs. Used by `audit` and by the shortcut study.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .data.records import Record

#: File metadata the metadata probe sees.
METADATA_FEATURES = ("mode", "format", "width", "height", "aspect", "bytes")
#: Groups of image statistics the source probe sees.
IMAGE_FEATURES = (
    "histogram",
    "border",
    "corners",
    "noise",
    "sharpness",
    "size",
    "aspect",
    "bit_depth",
    "colour_mode",
)
_BINS = 16
_STEP = 512  # images read at once


def metadata_features(records: Sequence[Record], names: Sequence[str]) -> np.ndarray:
    """Columns of file metadata (one-hot for mode and format)."""
    columns: list[np.ndarray] = []
    for name in names:
        if name in ("mode", "format"):
            values = [getattr(r, name) for r in records]
            for level in sorted(set(values)):
                columns.append(np.array([v == level for v in values], dtype=float))
        elif name == "width":
            columns.append(np.array([r.width for r in records], dtype=float))
        elif name == "height":
            columns.append(np.array([r.height for r in records], dtype=float))
        elif name == "aspect":
            columns.append(np.array([r.width / r.height for r in records], dtype=float))
        elif name == "bytes":
            columns.append(
                np.log1p(np.array([r.n_bytes for r in records], dtype=float))
            )
    return np.stack(columns, axis=1)


def _pixel_statistics(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image statistics of uint8 images (N, H, W, C), as feature groups."""
    gray = images.astype(np.float32).mean(axis=-1) / 255.0
    n, h, w = gray.shape
    hist = np.stack(
        [np.histogram(g, bins=_BINS, range=(0.0, 1.0))[0] / g.size for g in gray]
    )
    bh, bw = max(1, h // 16), max(1, w // 16)
    frame = np.concatenate(
        [
            gray[:, :bh].reshape(n, -1),
            gray[:, -bh:].reshape(n, -1),
            gray[:, :, :bw].reshape(n, -1),
            gray[:, :, -bw:].reshape(n, -1),
        ],
        axis=1,
    )
    ch, cw = max(1, h // 8), max(1, w // 8)
    corners = np.stack(
        [
            gray[:, :ch, :cw].mean(axis=(1, 2)),
            gray[:, :ch, -cw:].mean(axis=(1, 2)),
            gray[:, -ch:, :cw].mean(axis=(1, 2)),
            gray[:, -ch:, -cw:].mean(axis=(1, 2)),
        ],
        axis=1,
    )
    # Noise: the spread of what a 3x3 mean does not explain; sharpness: the mean
    # gradient magnitude.
    padded = np.pad(gray, ((0, 0), (1, 1), (1, 1)), mode="edge")
    local = sum(
        padded[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)
    )
    residual = gray - local / 9.0
    gy, gx = np.gradient(gray, axis=(1, 2))
    return {
        "histogram": hist,
        "border": np.stack(
            [frame.mean(axis=1), frame.std(axis=1), (frame < 0.02).mean(axis=1)], 1
        ),
        "corners": corners,
        "noise": np.stack(
            [np.median(np.abs(residual).reshape(n, -1), axis=1), residual.std((1, 2))],
            axis=1,
        ),
        "sharpness": np.hypot(gx, gy).mean(axis=(1, 2))[:, None],
    }


def image_features(
    records: Sequence[Record], pixels: Any, names: Sequence[str] = IMAGE_FEATURES
) -> np.ndarray:
    """The source probe's statistics for `records`.

    Args:
        records: The images.
        pixels: A callable `pixels(records) -> uint8 (N, H, W, C)` (such as
            `XrayDataset.images_of`), read in blocks of 512 images.
        names: Which groups of `IMAGE_FEATURES` to use.

    Returns:
        A float array (len(records), features).
    """
    unknown = sorted(set(names) - set(IMAGE_FEATURES))
    if unknown:
        raise ValueError(
            f"Unknown image feature groups {unknown}; expected some of "
            f"{list(IMAGE_FEATURES)}."
        )
    blocks: list[dict[str, np.ndarray]] = []
    if set(names) & {"histogram", "border", "corners", "noise", "sharpness"}:
        for start in range(0, len(records), _STEP):
            blocks.append(_pixel_statistics(pixels(records[start : start + _STEP])))
    columns: list[np.ndarray] = []
    for name in names:
        if name == "size":
            columns.append(np.log([[r.width, r.height] for r in records]))
        elif name == "aspect":
            columns.append(np.array([[r.width / r.height] for r in records]))
        elif name == "bit_depth":
            columns.append(np.array([[r.bit_depth] for r in records], dtype=float))
        elif name == "colour_mode":
            columns.append(metadata_features(records, ["mode"]))
        else:
            columns.append(np.concatenate([b[name] for b in blocks]))
    return np.concatenate(columns, axis=1).astype(np.float64)


def probe_auc(x: np.ndarray, y: np.ndarray, seed: int) -> float | None:
    """Cross-validated ROC AUC of a random forest predicting `y` from `x`.

    Binary `y` gives the AUC; more classes give the macro one-vs-rest AUC.
    None when a class has fewer than 2 examples.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    counts = np.bincount(y)
    counts = counts[counts > 0]
    if len(counts) < 2 or counts.min() < 2:
        return None
    if np.all(x == x[0]):
        return 0.5  # a constant feature carries no information
    folds = int(min(5, counts.min()))
    model = RandomForestClassifier(
        n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1
    )
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    proba = cross_val_predict(model, x, y, cv=cv, method="predict_proba")
    if proba.shape[1] == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    labels = np.unique(y)
    return float(roc_auc_score(y, proba, multi_class="ovr", labels=labels))


def predicts(x: np.ndarray, target: np.ndarray, seed: int) -> float:
    """Cross-validated R^2 of a random forest predicting a continuous
    `target` (a model's output) from `x`: how much of it the statistics explain."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.model_selection import KFold, cross_val_predict

    model = RandomForestRegressor(
        n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1
    )
    cv = KFold(n_splits=5, shuffle=True, random_state=seed)
    guess = cross_val_predict(model, x, target, cv=cv)
    total = float(((target - target.mean()) ** 2).sum())
    return 1.0 - float(((target - guess) ** 2).sum()) / total if total else 0.0
