"""The lung segmenter that ships with covidxray: `LungSegmenter`, the shipped
U-Net (`covidxray.lungs.unet`) for files as well as images, with a warning
for every implausible mask.

How it was trained, what it scores on held-out patients and what its masks
look like on other sources: `docs/guides/lungs.md`.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from ..data.decode import decode_pixels
from ..errors import CovidXrayWarning, DataError
from .unet import (
    AREA_RANGE,
    SEGMENTER_SIZE,
    SEGMENTER_VERSION,
    LungMask,
    LungModel,
    build_lung_unet,
    check_mask,
    clean_mask,
    load_weights,
    save_weights,
)

__all__ = [
    "AREA_RANGE",
    "SEGMENTER_SIZE",
    "SEGMENTER_VERSION",
    "LungMask",
    "LungSegmenter",
    "build_lung_unet",
    "check_mask",
    "clean_mask",
    "default_segmenter",
    "load_weights",
    "save_weights",
]


class LungSegmenter(LungModel):
    """Find the lungs in chest X-rays with the U-Net that ships with covidxray.

    A `LungModel` that also reads files (decoded as covidxray decodes them:
    DICOM windows, 16-bit images). The weights are package data: nothing is
    downloaded. Each image is turned
    to grayscale, resized to 192 x 192, segmented, and the probability map is
    resized back to the image's own size before it is thresholded and cleaned
    (`clean_mask`). Every mask is checked (`check_mask`): an implausible one
    (empty, too small or too large, not two lungs side by side) is flagged in
    `LungMask.problems` and warned about with the file's name, never used
    silently.

    Args:
        weights: A weights file written by `save_weights` (for example by
            examples/train_lung_segmenter.py) to use instead of the shipped one.

    Attributes:
        version: `SEGMENTER_VERSION` for the shipped weights ("custom" else).
        weights_sha256: The SHA-256 of the weights file.

    Examples:
        >>> import numpy as np
        >>> from covidxray import LungSegmenter
        >>> seg = LungSegmenter()
        >>> seg.version
        '1'
        >>> image = np.zeros((300, 240), np.uint8)  # no chest at all
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     (result,) = seg.predict([image])
        >>> result.mask.shape, result.plausible
        ((300, 240), False)
    """

    def _gray(self, image: Any, name: str) -> Image.Image:
        if isinstance(image, (str, os.PathLike)):
            return decode_pixels(image).image.convert("L")  # no hashes: not needed
        return super()._gray(image, name)

    def predict(
        self, images: Any, *, names: Sequence[str] | None = None
    ) -> list[LungMask]:
        """One `LungMask` per image, at that image's own size.

        Args:
            images: A path, a PIL image or an array, or a sequence of them.
                An array (H, W) or (H, W, C) with C in 1, 3, 4 is one image;
                (N, H, W) or (N, H, W, C) is a batch.
            names: Names for messages (default: the paths, or "image i").

        Returns:
            A list of `LungMask`. An implausible mask is kept, flagged in its
            `problems` and warned about (`CovidXrayWarning`) with its name.

        Raises:
            DataError: No image of a batch of several has any lung (a folder of
                non-chest images, say), or a file cannot be read.
        """
        items: list[Any]
        if isinstance(images, np.ndarray):
            # (H, W) or (H, W, C) is one image; (N, H, W, C) or (N, H, W) a batch.
            one = images.ndim == 2 or (
                images.ndim == 3 and images.shape[-1] in (1, 3, 4)
            )
            items = [images] if one else list(images)
        elif isinstance(images, (str, os.PathLike, Image.Image)):
            items = [images]
        else:
            items = list(images)
        images = items
        if names is None:
            names = [
                str(img) if isinstance(img, (str, os.PathLike)) else f"image {i}"
                for i, img in enumerate(images)
            ]
        results = self.masks(images, names)
        bad = [r for r in results if not r.plausible]
        if len(results) > 1 and all(not r.mask.any() for r in results):
            raise DataError(
                f"No lungs were found in any of the {len(results)} images "
                f"(first: '{results[0].name}'). Are they frontal chest X-rays?"
            )
        for r in bad:
            warnings.warn(
                f"Implausible lung mask for '{r.name}': {'; '.join(r.problems)}.",
                CovidXrayWarning,
                stacklevel=2,
            )
        return results


@functools.lru_cache(maxsize=1)
def default_segmenter() -> LungSegmenter:
    """The shipped `LungSegmenter`, built once per process."""
    return LungSegmenter()
