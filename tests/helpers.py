"""Small helpers shared by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(
    path: Path,
    size: tuple[int, int] = (24, 20),
    mode: str = "L",
    value: int = 128,
    fmt: str | None = None,
    seed: int = 0,
) -> Path:
    """Write a small random image of `mode` at `path` (size is width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "L":
        img = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8))
    elif mode == "RGB":
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    else:
        img = Image.new(mode, (w, h), value)
    img.save(path, format=fmt)
    return path
