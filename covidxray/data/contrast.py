"""Contrast equalisation of a decoded image: global histogram equalisation
and CLAHE, as `Preprocessing(equalize=...)` applies them after trimming and
before resizing. See `docs/guides/datasets.md`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["EQUALIZE_MODES", "equalize"]

#: What `Preprocessing(equalize=...)` does: nothing, global histogram
#: equalisation, or contrast-limited adaptive equalisation (8 x 8 tiles).
EQUALIZE_MODES: tuple[str, ...] = ("none", "histogram", "clahe")

_CLAHE_TILES = 8

_CLAHE_CLIP = 2.5  # times the mean count of a histogram bin


def _equalize_lut(hist: np.ndarray) -> np.ndarray:
    if np.count_nonzero(hist) <= 1:  # one level: nothing to spread
        return np.arange(len(hist), dtype=np.float64)
    cdf = np.cumsum(hist)
    lowest = cdf[np.argmax(hist > 0)]  # the darkest level present becomes 0
    span = cdf[-1] - lowest
    return np.round(
        np.clip(cdf - lowest, 0, None) / (span if span > 0 else 1.0) * 255.0
    )


def _clahe(gray: np.ndarray) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of a uint8 (H, W)
    image: 8 x 8 tiles, each histogram clipped at 2.5 times its mean bin,
    the tiles' mappings blended bilinearly between their centres."""
    h, w = gray.shape
    tiles_y, tiles_x = min(_CLAHE_TILES, h), min(_CLAHE_TILES, w)
    ys = np.linspace(0, h, tiles_y + 1).astype(int)
    xs = np.linspace(0, w, tiles_x + 1).astype(int)
    luts = np.empty((tiles_y, tiles_x, 256))
    for i in range(tiles_y):
        for j in range(tiles_x):
            tile = gray[ys[i] : ys[i + 1], xs[j] : xs[j + 1]]
            hist = np.bincount(tile.ravel(), minlength=256).astype(np.float64)
            limit = _CLAHE_CLIP * tile.size / 256.0
            excess = np.maximum(hist - limit, 0.0).sum()
            luts[i, j] = _equalize_lut(np.minimum(hist, limit) + excess / 256.0)

    def weights(n: int, edges: np.ndarray) -> tuple[np.ndarray, ...]:
        centres = (edges[:-1] + edges[1:] - 1) / 2.0
        where = np.interp(np.arange(n), centres, np.arange(len(centres)))
        low = np.floor(where).astype(int)
        return low, np.minimum(low + 1, len(centres) - 1), where - low

    y0, y1, wy = weights(h, ys)
    x0, x1, wx = weights(w, xs)
    wy, wx = wy[:, None], wx[None, :]
    top = luts[y0[:, None], x0[None, :], gray] * (1 - wx)
    top += luts[y0[:, None], x1[None, :], gray] * wx
    bottom = luts[y1[:, None], x0[None, :], gray] * (1 - wx)
    bottom += luts[y1[:, None], x1[None, :], gray] * wx
    return np.round(top * (1 - wy) + bottom * wy).astype(np.uint8)


def equalize(img: Image.Image, mode: str) -> Image.Image:
    """Histogram equalisation (`"histogram"`) or CLAHE (`"clahe"`) of an 8-bit
    'L' or 'RGB' image; an RGB image gets its gray level's mapping on every
    channel. `"none"` returns the image.

    Examples:
        >>> import numpy as np
        >>> from PIL import Image
        >>> ramp = np.tile(np.arange(100, 140, dtype=np.uint8), (8, 1))
        >>> dull = Image.fromarray(ramp)
        >>> out = np.asarray(equalize(dull, "histogram"))
        >>> int(out.min()), int(out.max())
        (0, 255)
    """
    if mode == "none":
        return img
    gray = np.asarray(img.convert("L"))
    if mode == "histogram":
        lut = _equalize_lut(np.bincount(gray.ravel(), minlength=256).astype(float))
        mapped = lut.astype(np.uint8)
        if img.mode == "L":
            return Image.fromarray(mapped[gray])
        return img.point(list(mapped) * 3)
    if mode == "clahe":
        out = _clahe(gray)
        if img.mode == "L":
            return Image.fromarray(out)
        # Scale each channel by how much its gray level moved.
        ratio = (out.astype(np.float64) + 1.0) / (gray.astype(np.float64) + 1.0)
        rgb = np.asarray(img, dtype=np.float64) * ratio[:, :, None]
        return Image.fromarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8))
    raise ValueError(
        f"The `equalize` argument must be one of {', '.join(EQUALIZE_MODES)}. "
        f"Received: {mode!r}."
    )
