"""`Preprocessing`: how one image becomes the pixels a model sees.

One value of it, `(image_size, color_mode, resize, window, trim, equalize)`,
decodes and resizes a file
the same way wherever an image enters covidxray: the dataset scan, the
no-cache path of `tf.data`, `Classifier.predict`, Grad-CAM overlays and the
command line. A saved classifier stores it, so a file is read at prediction
time exactly as it was read at training time.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .._validation import check_choice, check_image_size
from ..errors import DataError
from .decode import (
    COLOR_MODES,
    DEFAULT_MAX_PIXELS,
    EQUALIZE_MODES,
    RESIZE_MODES,
    ImageInfo,
    Window,
    _canonical,
    array_to_image,
    check_window,
    decode_file,
    equalize,
    image_to_array,
    trim_box,
)

__all__ = ["Preprocessing"]

ImageLike = Any  # a path, a PIL image, or a (H, W) / (H, W, C) array


@dataclass(frozen=True)
class Preprocessing:
    """Image size, colour mode and resize policy: one way to read an image.

    Attributes:
        image_size: `(height, width)` of the images the model sees.
        color_mode: `"grayscale"` (1 channel) or `"rgb"` (3 channels).
        resize: `"stretch"` ignores the aspect ratio; `"pad"` keeps it and pads
            with black; `"crop"` keeps it and crops the centre.
        window: How raw pixel values become 8 bits. `"auto"` keeps 8-bit
            images as they are, scales deeper ones by their real bit depth,
            and applies a DICOM file's own window; `"percentile"` stretches
            each image between its 0.5th and 99.5th percentiles; `(low, high)`
            maps those raw values to black and white.
        trim: 0 keeps the whole image. Above 0, uniform border lines (frames,
            padding) are cut, then this fraction of each side, where burnt-in
            text and markers sit (see `trim_box`).
        equalize: `"none"`, `"histogram"` (global histogram equalisation) or
            `"clahe"` (contrast-limited adaptive equalisation, 8 x 8 tiles),
            after trimming and before resizing.

    Examples:
        >>> import numpy as np
        >>> from covidxray import Preprocessing
        >>> prep = Preprocessing((64, 48), color_mode="rgb", resize="pad")
        >>> prep.channels, prep.input_shape
        (3, (64, 48, 3))
        >>> wide = np.full((10, 40), 255, np.uint8)  # a white 40 x 10 image
        >>> pixels = prep.load(wide)
        >>> pixels.shape, pixels.dtype.name
        ((64, 48, 3), 'uint8')
        >>> int(pixels[0, 0, 0]), int(pixels[32, 24, 0])  # black pad, white image
        (0, 255)
        >>> Preprocessing.from_dict(prep.to_dict()) == prep
        True
    """

    image_size: tuple[int, int] = (224, 224)
    color_mode: str = "grayscale"
    resize: str = "stretch"
    window: Window = "auto"
    trim: float = 0.0
    equalize: str = "none"

    def __post_init__(self) -> None:
        size = check_image_size(self.image_size, "Preprocessing")
        object.__setattr__(self, "image_size", size)
        object.__setattr__(self, "window", check_window(self.window, "Preprocessing"))
        check_choice("equalize", self.equalize, EQUALIZE_MODES, "Preprocessing")
        if not isinstance(self.trim, (int, float)) or not 0.0 <= self.trim < 0.5:
            raise ValueError(
                "The `trim` argument of Preprocessing must be a fraction in [0, 0.5). "
                f"Received: {self.trim!r}."
            )
        object.__setattr__(self, "trim", float(self.trim))
        check_choice("color_mode", self.color_mode, COLOR_MODES, "Preprocessing")
        check_choice("resize", self.resize, RESIZE_MODES, "Preprocessing")

    @property
    def channels(self) -> int:
        """1 for grayscale, 3 for RGB."""
        return 1 if self.color_mode == "grayscale" else 3

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """`(height, width, channels)`: the shape of one image the model takes."""
        return (*self.image_size, self.channels)

    # ------------------------------------------------------------------ reading

    def decode(
        self,
        path: str | os.PathLike[str],
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        data: bytes | None = None,
    ) -> tuple[Image.Image, ImageInfo]:
        """Decode a file once, before resizing, with what a scan measures.

        Returns:
            The decoded 8-bit image and its `ImageInfo` (size, format, hashes).

        Raises:
            DataError: The file is missing, unreadable or too large.
        """
        return decode_file(path, max_pixels=max_pixels, data=data, window=self.window)

    def to_array(self, image: Image.Image, *, name: str = "the image") -> np.ndarray:
        """Resize and convert a decoded image: uint8 of shape `input_shape`.

        Raises:
            DataError: Pillow cannot convert the image's mode (names `name`).
        """
        try:
            if self.trim:
                image = image.crop(trim_box(image, self.trim))
            image = equalize(_canonical(image), self.equalize)
            return image_to_array(
                image, self.image_size, color_mode=self.color_mode, resize=self.resize
            )
        except (ValueError, OSError) as exc:  # a mode Pillow cannot convert
            raise DataError(
                f"'{name}' could not be converted to {self.color_mode}: {exc}"
            ) from exc

    def load(
        self, image: ImageLike, *, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> np.ndarray:
        """Read one image as the model sees it.

        Args:
            image: A file path, a PIL image, or an array (H, W) or (H, W, C) with
                1, 3 or 4 channels (uint8, or float in [0, 1]).
            max_pixels: Refuse files with more pixels than this.

        Returns:
            A uint8 array of shape `input_shape`.

        Raises:
            DataError: A file is missing, unreadable or too large.
            ValueError: An array of an unsupported shape.
        """
        if isinstance(image, (str, os.PathLike)):
            img, _ = self.decode(image, max_pixels=max_pixels)
            return self.to_array(img, name=os.fspath(image))
        if not isinstance(image, Image.Image):
            image = array_to_image(image)
        return self.to_array(_canonical(image, self.window))

    def seen_box(self, image: Image.Image) -> tuple[int, int, int, int] | None:
        """The part of a decoded image the model sees, `(left, top, right,
        bottom)`, when `trim` cuts some of it away; else None."""
        return trim_box(image, self.trim) if self.trim else None

    def map_back(
        self,
        values: np.ndarray,
        size: Sequence[int],
        box: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Map a 2-D map on the model's input (a Grad-CAM heatmap) back onto
        the image it came from, undoing the resize policy.

        Args:
            values: Float array of shape `image_size`.
            size: `(width, height)` of the decoded image, as PIL gives it.
            box: With `trim`, the part of the image the model saw,
                `seen_box(image)`; the rest of the map is 0.

        Returns:
            A float32 array (height, width): with `"pad"` the padding is cut
            off, with `"crop"` the parts the model never saw are 0.

        Examples:
            >>> import numpy as np
            >>> prep = Preprocessing((4, 4), resize="pad")
            >>> heat = np.zeros((4, 4), np.float32)
            >>> heat[1:3, :] = 1.0  # the image sits in rows 1-2, between pads
            >>> prep.map_back(heat, (8, 4)).min()  # an 8 x 4 image: all of it
            np.float32(1.0)
        """
        if box is not None:
            left, top, right, bottom = (int(v) for v in box)
            inner = self.map_back(values, (right - left, bottom - top))
            full = np.zeros((int(size[1]), int(size[0])), np.float32)
            full[top:bottom, left:right] = inner
            return full
        width, height = int(size[0]), int(size[1])
        rows, cols = self.image_size
        values = np.asarray(values, dtype=np.float32)
        if self.resize == "pad":
            scale = min(cols / width, rows / height)
            new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
            top, left = (rows - new_h) // 2, (cols - new_w) // 2
            values = values[top : top + new_h, left : left + new_w]
        elif self.resize == "crop":
            scale = max(cols / width, rows / height)
            new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
            top, left = (new_h - rows) // 2, (new_w - cols) // 2
            canvas = np.zeros((new_h, new_w), np.float32)
            canvas[top : top + rows, left : left + cols] = values
            values = canvas
        resized = Image.fromarray(values).resize(
            (width, height), Image.Resampling.BILINEAR
        )
        return np.asarray(resized, dtype=np.float32)

    def __getitem__(self, key: str) -> Any:
        """Deprecated dict-style access (`preprocessing_["image_size"]`), kept
        from when `Classifier.preprocessing_` was a dict."""
        warnings.warn(
            f"Preprocessing[{key!r}] is deprecated; use the attribute "
            f"`.{key}` (a Preprocessing is no longer a dict).",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.to_dict()[key]

    # ------------------------------------------------------------------ storing

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict, the inverse of `from_dict`."""
        return {
            "image_size": list(self.image_size),
            "color_mode": self.color_mode,
            "resize": self.resize,
            "window": list(self.window)
            if isinstance(self.window, tuple)
            else self.window,
            "trim": self.trim,
            "equalize": self.equalize,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Preprocessing:
        """Rebuild a `Preprocessing` from `to_dict`'s output. A dict without
        `window`, `trim` or `equalize` (saved before they existed) gets
        `"auto"`, 0 and `"none"`, which is how images were read then.

        Raises:
            ValueError: A key is missing or a value is not allowed.
        """
        missing = [k for k in ("image_size", "color_mode", "resize") if k not in values]
        if missing:
            raise ValueError(
                "A preprocessing dict needs the keys image_size, color_mode and "
                f"resize. Missing: {', '.join(missing)}. Received: {dict(values)!r}."
            )
        return cls(
            tuple(values["image_size"]),  # type: ignore[arg-type]
            color_mode=values["color_mode"],
            resize=values["resize"],
            window=values.get("window", "auto"),
            trim=values.get("trim", 0.0),
            equalize=values.get("equalize", "none"),
        )
