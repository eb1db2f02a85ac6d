"""The U-Net that finds the lungs, its weights (package data), and the checks
that catch an implausible mask: everything the lung segmenter needs that does
not read image files (it reads only its own weights) and imports nothing of
covidxray but `errors`, so that the data layer can find the lungs of the
images it decodes (`Preprocessing(lungs=...)`).

`LungModel` is that core; `covidxray.lungs.LungSegmenter` adds files. How it
was trained and what it scores: `docs/guides/lungs.md`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import DataError

__all__ = [
    "AREA_RANGE",
    "SEGMENTER_SIZE",
    "SEGMENTER_VERSION",
    "LungMask",
    "LungModel",
    "build_lung_unet",
    "check_mask",
    "clean_mask",
    "default_lung_model",
    "load_weights",
    "lung_box",
    "save_weights",
]

logger = logging.getLogger(__name__)

#: The version of the shipped weights (with their SHA-256, in `info()`), for
#: results that depend on the segmenter to record.
SEGMENTER_VERSION = "1"
#: The square side the U-Net sees; masks are mapped back to each image's size.
SEGMENTER_SIZE = 192
WEIGHTS_NAME = "lung_unet.npz"
_FILTERS = (16, 32, 64, 128)
_BATCH = 16

#: A plausible mask covers this share of the image (both lungs together).
AREA_RANGE = (0.08, 0.65)
#: A component smaller than this share of the largest one is noise, not a lung.
_MIN_LUNG_SHARE = 0.15


def build_lung_unet(size: int = SEGMENTER_SIZE) -> Any:
    """The segmenter's architecture: a four-level U-Net (16 to 128 filters,
    batch norm), one sigmoid output per pixel, for `(size, size, 1)` inputs in
    [0, 1].

    Args:
        size: The input's side in pixels, a multiple of 16.

    Returns:
        An uncompiled `keras.Model` named "lung_unet".

    Examples:
        >>> model = build_lung_unet(32)
        >>> model.output_shape
        (None, 32, 32, 1)
    """
    import keras
    from keras import layers

    if size % 16:
        raise ValueError(
            f"The `size` argument of build_lung_unet must be a multiple of 16. "
            f"Received: {size!r}."
        )

    def block(x: Any, filters: int, name: str) -> Any:
        for k in (1, 2):
            x = layers.Conv2D(
                filters, 3, padding="same", use_bias=False, name=f"{name}_conv{k}"
            )(x)
            x = layers.BatchNormalization(name=f"{name}_bn{k}")(x)
            x = layers.Activation("relu", name=f"{name}_relu{k}")(x)
        return x

    inputs = keras.Input((size, size, 1), name="image")
    x, skips = inputs, []
    for level, filters in enumerate(_FILTERS):
        x = block(x, filters, f"down{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = block(x, _FILTERS[-1], "bottom")
    for level in reversed(range(len(_FILTERS))):
        filters = _FILTERS[level]
        x = layers.Conv2DTranspose(
            filters, 2, strides=2, padding="same", name=f"up{level}_t"
        )(x)
        x = layers.Concatenate(name=f"up{level}_cat")([x, skips[level]])
        x = block(x, filters, f"up{level}")
    outputs = layers.Conv2D(1, 1, activation="sigmoid", name="lung")(x)
    return keras.Model(inputs, outputs, name="lung_unet")


def clean_mask(probability: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """A boolean mask from a lung probability map: thresholded, holes filled,
    and only the (at most two) largest components kept, so that a blob on a
    burnt-in marker or a device outside the chest does not count as lung.

    Examples:
        >>> import numpy as np
        >>> p = np.zeros((20, 20)); p[2:18, 2:8] = 1; p[2:18, 12:18] = 1
        >>> p[0, 19] = 1  # a speck in a corner
        >>> m = clean_mask(p)
        >>> int(m.sum()), bool(m[0, 19])
        (192, False)
    """
    from scipy import ndimage

    mask = np.asarray(probability) >= threshold
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(sizes)[::-1]
    keep = [order[0] + 1]
    if n > 1 and sizes[order[1]] >= _MIN_LUNG_SHARE * sizes[order[0]]:
        keep.append(order[1] + 1)
    return np.asarray(ndimage.binary_fill_holes(np.isin(labels, keep)))


def check_mask(mask: np.ndarray) -> list[str]:
    """What makes a lung mask implausible, in words; empty when it is plausible.

    A plausible mask covers 8% to 65% of the image and has two lungs side by
    side: two components, the smaller at least 15% of the larger, whose
    centres lie on either side of the image's vertical midline and more than
    a fifth of its width apart.

    Examples:
        >>> import numpy as np
        >>> m = np.zeros((20, 20), bool); m[2:18, 2:8] = m[2:18, 12:18] = True
        >>> check_mask(m)
        []
        >>> check_mask(np.zeros((20, 20), bool))
        ['no lung found']
    """
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    if not mask.any():
        return ["no lung found"]
    problems = []
    area = float(mask.mean())
    low, high = AREA_RANGE
    if not low <= area <= high:
        problems.append(
            f"the lungs cover {area:.0%} of the image (expected {low:.0%}-{high:.0%})"
        )
    labels, n = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())[1:]
    lungs = [i + 1 for i in np.argsort(sizes)[::-1][:2]]
    if n < 2 or sizes[lungs[1] - 1] < _MIN_LUNG_SHARE * sizes[lungs[0] - 1]:
        problems.append("one lung found, not two")
    else:
        width = mask.shape[1]
        columns = [float(np.nonzero(labels == k)[1].mean()) / width for k in lungs]
        left, right = min(columns), max(columns)
        if not (left < 0.5 < right and right - left > 0.2):
            problems.append("the two regions found are not side by side")
    return problems


@dataclass(frozen=True)
class LungMask:
    """One image's lung mask and what the checks found.

    Attributes:
        mask: Boolean `(height, width)` at the image's own size; True is lung.
        name: The file (or "image 3") the mask belongs to, for messages.
        problems: Why the mask is implausible, in words; empty when it is not.
    """

    mask: np.ndarray
    name: str
    problems: tuple[str, ...] = field(default=())

    @property
    def plausible(self) -> bool:
        """True when no check found a problem."""
        return not self.problems

    @property
    def area(self) -> float:
        """The share of the image that is lung."""
        return float(np.asarray(self.mask).mean())

    def box(self, margin: float = 0.0) -> tuple[int, int, int, int] | None:
        """The lungs' bounding box `(left, top, right, bottom)` in pixels,
        grown by `margin` times its size on each side and clipped to the
        image; None for an empty mask."""
        return lung_box(self.mask, margin)


def lung_box(mask: np.ndarray, margin: float = 0.0) -> tuple[int, int, int, int] | None:
    """The bounding box of a lung mask, `(left, top, right, bottom)`, grown by
    `margin` times its size on each side and clipped to the mask; None for an
    empty mask.

    Examples:
        >>> import numpy as np
        >>> mask = np.zeros((100, 100), bool); mask[20:80, 10:90] = True
        >>> lung_box(mask, 0.1)
        (2, 14, 98, 86)
    """
    mask = np.asarray(mask, bool)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    dy, dx = margin * (bottom - top), margin * (right - left)
    height, width = mask.shape
    return (
        max(0, int(round(left - dx))),
        max(0, int(round(top - dy))),
        min(width, int(round(right + dx))),
        min(height, int(round(bottom + dy))),
    )


def save_weights(model: Any, path: str | os.PathLike[str]) -> Path:
    """Write a U-Net's weights as the package ships them: float16 arrays in
    one `.npz` file, in `model.get_weights()` order (half the size of float32;
    the masks are measured with these rounded weights).

    Examples:
        >>> import tempfile, numpy as np
        >>> model = build_lung_unet(32)
        >>> path = save_weights(model, tempfile.mkdtemp() + "/w.npz")
        >>> w = load_weights(build_lung_unet(32), path).get_weights()[0]
        >>> float(np.abs(w - model.get_weights()[0]).max()) < 1e-3
        True
    """
    path = Path(path)
    arrays = {
        f"w{i:03d}": w.astype(np.float16) for i, w in enumerate(model.get_weights())
    }
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def load_weights(model: Any, path: str | os.PathLike[str]) -> Any:
    """Load weights written by `save_weights` into `model`; returns it.

    Raises:
        DataError: The file is not such a weights file, or does not fit the
            model. The message names the file.
    """
    try:
        with np.load(path) as archive:
            arrays = [archive[k].astype(np.float32) for k in sorted(archive.files)]
        model.set_weights(arrays)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(
            f"Could not read the lung segmenter's weights '{path}': {exc}"
        ) from exc
    return model


def _weights_path() -> Path:
    return Path(str(resources.files("covidxray.lungs").joinpath(WEIGHTS_NAME)))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _gray(image: Any, name: str) -> Image.Image:
    """A decoded 8-bit grayscale image from a PIL image or an array."""
    if isinstance(image, Image.Image):
        return image.convert("L")
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):
        arr = arr[..., :3].mean(axis=-1) if arr.shape[-1] > 1 else arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(
            f"The lung segmenter takes paths, PIL images or 2-D/(H, W, C) "
            f"arrays. Received {name} with shape {arr.shape}."
        )
    if arr.dtype != np.uint8:
        scale = 255.0 if arr.size and float(np.nanmax(arr)) <= 1.0 else 1.0
        arr = np.clip(np.nan_to_num(arr) * scale, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "L")


class LungModel:
    """The shipped U-Net and its weights: lung masks of decoded images.

    This is the part of `LungSegmenter` that reads no file: it takes PIL
    images and arrays. Each image is turned to grayscale, resized to
    192 x 192, segmented, and the probability map is resized back to the
    image's own size before it is thresholded and cleaned (`clean_mask`) and
    checked (`check_mask`).

    Args:
        weights: A weights file written by `save_weights` (for example by
            examples/train_lung_segmenter.py) to use instead of the shipped one.

    Attributes:
        version: `SEGMENTER_VERSION` for the shipped weights ("custom" else).
        weights_sha256: The SHA-256 of the weights file.
    """

    def __init__(self, weights: str | os.PathLike[str] | None = None) -> None:
        path = _weights_path() if weights is None else Path(weights)
        if not path.is_file():
            raise DataError(
                f"The lung segmenter's weights '{path}' are missing. They ship "
                "inside the covidxray package: reinstall it (pip install "
                "--force-reinstall covidxray), or pass weights= a file written "
                "by examples/train_lung_segmenter.py."
            )
        self.weights_path = path
        self.weights_sha256 = _sha256(path)
        self.version = SEGMENTER_VERSION if weights is None else "custom"
        self._model: Any = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(version={self.version!r}, "
            f"weights_sha256={self.weights_sha256[:12]!r}...)"
        )

    def info(self) -> dict[str, str]:
        """The version and weights hash, as a model file records them."""
        return {"version": self.version, "weights_sha256": self.weights_sha256}

    @property
    def model(self) -> Any:
        """The Keras U-Net, built and loaded on first use."""
        if self._model is None:
            self._model = load_weights(
                build_lung_unet(SEGMENTER_SIZE), self.weights_path
            )
        return self._model

    def probabilities(self, images: Iterable[Any]) -> list[np.ndarray]:
        """Lung probability maps in [0, 1], each at its image's own size.

        Args:
            images: PIL images or 2-D / `(H, W, C)` arrays (and paths, for a
                `LungSegmenter`).
        """
        grays = [self._gray(img, f"image {i}") for i, img in enumerate(images)]
        out: list[np.ndarray] = []
        size = SEGMENTER_SIZE
        for start in range(0, len(grays), _BATCH):
            chunk = grays[start : start + _BATCH]
            x = np.stack(
                [
                    np.asarray(
                        g.resize((size, size), Image.Resampling.BILINEAR), np.float32
                    )
                    for g in chunk
                ]
            )[..., None] / np.float32(255.0)
            p = np.asarray(self.model(x, training=False))[..., 0]
            for g, prob in zip(chunk, p, strict=True):
                full = Image.fromarray(prob.astype(np.float32), "F").resize(
                    g.size, Image.Resampling.BILINEAR
                )
                out.append(np.asarray(full, np.float32))
        return out

    def masks(self, images: Sequence[Any], names: Sequence[str]) -> list[LungMask]:
        """One checked `LungMask` per image, at its own size, with neither a
        warning nor an error for an implausible one (for callers that report
        them together, as the dataset scan does)."""
        return [
            LungMask(mask, name, tuple(check_mask(mask)))
            for name, mask in zip(
                names, map(clean_mask, self.probabilities(images)), strict=True
            )
        ]

    def _gray(self, image: Any, name: str) -> Image.Image:
        return _gray(image, name)


@functools.lru_cache(maxsize=1)
def default_lung_model() -> LungModel:
    """The shipped `LungModel`, built once per process: what the data layer
    finds lungs with (`Preprocessing(lungs=...)`, `load_dataset`)."""
    return LungModel()
