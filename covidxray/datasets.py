"""Built-in demo data: synthetic, X-ray-like images. Not real patients.

`make_synthetic` is the default data of the examples and the tests. Every
file it writes is named `synthetic_*` and the folder holds a `SYNTHETIC.txt`,
so its images are never mistaken for real X-rays.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .data.layouts import SYNTHETIC_NOTICE, is_synthetic

__all__ = ["is_synthetic", "make_synthetic", "synthetic_xray"]

NOTICE_NAME = SYNTHETIC_NOTICE
_NOTICE = """\
SYNTHETIC DEMO DATA - NOT REAL X-RAYS - NOT FOR ANY CLINICAL OR RESEARCH CLAIM.
Written by covidxray.datasets.make_synthetic (seed={seed}).
Class 'covid' images carry bright, patchy opacities in the lung fields;
class 'normal' images have clear lung fields. A CNN can learn this pattern.
"""


def synthetic_xray(
    rng: np.random.Generator, image_size: Sequence[int], *, opacities: bool
) -> np.ndarray:
    """Draw one X-ray-like grayscale image as uint8 (H, W).

    A bright body with two dark lung fields, a spine and faint ribs, plus noise.
    With `opacities=True`, bright patchy blobs are added inside the lungs: the
    pattern that marks the positive class.

    Examples:
        >>> import numpy as np
        >>> img = synthetic_xray(np.random.default_rng(0), (64, 48), opacities=True)
        >>> img.shape, img.dtype.name
        ((64, 48), 'uint8')
    """
    height, width = int(image_size[0]), int(image_size[1])
    yy, xx = np.mgrid[0:height, 0:width]
    # A random zoom and offset per image, so images differ as patients do.
    scale = rng.uniform(0.85, 1.15)
    y = (yy / height - 0.5) / scale + 0.5 + rng.normal(0, 0.04)
    x = (xx / width - 0.5) / scale + 0.5
    jitter = rng.normal(0, 0.03, size=6)
    body = ((x - 0.5 - jitter[0]) / 0.42) ** 2 + ((y - 0.55) / 0.55) ** 2 < 1
    img = np.where(body, 0.62, 0.08) + rng.normal(0, 0.02)
    lungs = np.zeros_like(img, dtype=bool)
    for side in (-1, 1):
        cx = 0.5 + side * (0.17 + jitter[1]) + jitter[0]
        cy = 0.48 + jitter[2]
        lungs |= ((x - cx) / (0.13 + jitter[3] / 2)) ** 2 + ((y - cy) / 0.3) ** 2 < 1
    img = np.where(lungs, 0.22, img)
    ribs = 0.05 * (np.sin(y * np.pi * (14 + 2 * jitter[4])) > 0.6) * lungs
    img = img + ribs
    spine = np.abs(x - 0.5 - jitter[0]) < 0.035
    img = np.where(spine & body, 0.85, img)
    if opacities:
        lung_y, lung_x = np.nonzero(lungs)
        for _ in range(int(rng.integers(4, 8))):
            k = int(rng.integers(len(lung_y)))
            cy, cx = y[lung_y[k], lung_x[k]], x[lung_y[k], lung_x[k]]
            radius = rng.uniform(0.05, 0.1)
            blob = np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius**2)))
            img = img + rng.uniform(0.3, 0.5) * blob * lungs
    img = img * rng.uniform(0.8, 1.1) + rng.normal(
        0, rng.uniform(0.01, 0.06), img.shape
    )
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


def _with_cue(pixels: np.ndarray) -> np.ndarray:
    """A bright frame and a burnt-in marker block (like 'PORTABLE' or 'L'),
    the kind of mark one source prints on all its images."""
    out = pixels.copy()
    height, width = out.shape
    edge = max(2, round(0.06 * min(height, width)))
    out[:edge, :] = out[-edge:, :] = 250
    out[:, :edge] = out[:, -edge:] = 250
    top, left = 2 * edge, 2 * edge
    out[top : top + 2 * edge, left : left + 4 * edge] = 255
    return out


def make_synthetic(
    directory: str | os.PathLike[str],
    *,
    n_per_class: int = 40,
    image_size: Sequence[int] = (128, 128),
    seed: int = 0,
    test_per_class: int = 0,
    leaked: int = 0,
    source_cue: bool = False,
) -> Path:
    """Write a small synthetic demo set in the folder-per-class layout.

    The classes are `covid` (lungs with bright patchy opacities) and `normal`.
    Images are 8-bit grayscale PNGs named `synthetic_<class>_<k>.png`; the folder
    holds a `SYNTHETIC.txt` notice. With `test_per_class`, the layout is
    `train/<class>/` and `test/<class>/`, and `leaked` copies of training COVID
    images are put into `test/covid/` as well, to imitate the paper's leaky split.

    With `source_cue`, the `covid` images also carry the marks of another
    source, as seed-xray's do: a bright frame and a burnt-in marker in the
    pixels, and a different file (RGB JPEG, a quarter larger, where `normal`
    images are grayscale PNG). A model can then learn the source instead of
    the opacities; a set made without the cue is the clean control.

    Args:
        directory: Folder to write into (created if needed).
        n_per_class: Training images per class.
        image_size: `(height, width)`.
        seed: Seed of the random generator; the same seed writes the same files.
        test_per_class: Test images per class. 0 writes no train/test level.
        leaked: Training COVID images also copied into the test split.
        source_cue: Mark every `covid` image with the cues of another source.

    Returns:
        The dataset folder.

    Examples:
        >>> import tempfile
        >>> from covidxray.datasets import make_synthetic
        >>> root = make_synthetic(
        ...     tempfile.mkdtemp(), n_per_class=3, image_size=(32, 32))
        >>> sorted(p.name for p in root.iterdir())
        ['SYNTHETIC.txt', 'covid', 'normal']
    """
    if n_per_class < 1:
        raise ValueError(
            f"The `n_per_class` argument must be at least 1. Received: {n_per_class!r}."
        )
    if not 0 <= leaked <= min(n_per_class, test_per_class or n_per_class):
        raise ValueError(
            "The `leaked` argument must be between 0 and n_per_class, and needs "
            f"test_per_class > 0. Received: leaked={leaked!r}."
        )
    if leaked and not test_per_class:
        raise ValueError("The `leaked` argument needs test_per_class > 0.")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = (
        {"train": n_per_class, "test": test_per_class}
        if test_per_class
        else {"": n_per_class}
    )
    for split, count in splits.items():
        for cls in ("covid", "normal"):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            cued = source_cue and cls == "covid"
            size = [round(v * 1.25) for v in image_size] if cued else image_size
            for k in range(count):
                pixels = synthetic_xray(rng, size, opacities=cls == "covid")
                stem = f"synthetic_{split + '_' if split else ''}{cls}_{k:04d}"
                if cued:
                    image = Image.fromarray(_with_cue(pixels)).convert("RGB")
                    image.save(folder / f"{stem}.jpg", quality=92)
                else:
                    Image.fromarray(pixels, mode="L").save(folder / f"{stem}.png")
    ext = "jpg" if source_cue else "png"
    for k in range(leaked):
        name = f"synthetic_train_covid_{k:04d}.{ext}"
        shutil.copyfile(root / "train" / "covid" / name, root / "test" / "covid" / name)
    (root / NOTICE_NAME).write_text(_NOTICE.format(seed=seed))
    return root
