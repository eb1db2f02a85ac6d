"""`Preprocessing`: how one image becomes the pixels a model sees.

One value of it, `(image_size, color_mode, resize, window, trim, equalize)`,
decodes and resizes a file
the same way wherever an image enters covidxray: the dataset scan, the
no-cache path of `tf.data`, `Classifier.predict`, Grad-CAM overlays and the
command line. A saved classifier stores it, so a file is read at prediction
time exactly as it was read at training time.

The steps after decoding live here too: `trim_box`, `equalize` and
`image_to_array` (the resize).
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
from .boxes import Box, crop_to_box
from .decode import (
    COLOR_MODES,
    DEFAULT_MAX_PIXELS,
    RESIZE_MODES,
    ImageInfo,
    Window,
    _canonical,
    array_to_image,
    check_window,
    decode_file,
)

__all__ = ["EQUALIZE_MODES", "Preprocessing", "equalize", "image_to_array", "trim_box"]

EQUALIZE_MODES: tuple[str, ...] = ("none", "histogram", "clahe")

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

    def to_array(
        self, image: Image.Image, *, name: str = "the image", box: Box | None = None
    ) -> np.ndarray:
        """Resize and convert a decoded image: uint8 of shape `input_shape`.
        A `box` (a CT slice's body box, `Record.box`) is cut out first.

        Raises:
            DataError: Pillow cannot convert the image's mode, or `box` is
                outside it (names `name`).
        """
        image = crop_to_box(image, box, name=name)
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
        self,
        image: ImageLike,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        box: Box | None = None,
    ) -> np.ndarray:
        """Read one image as the model sees it.

        Args:
            image: A file path, a PIL image, or an array (H, W) or (H, W, C) with
                1, 3 or 4 channels (uint8, or float in [0, 1]).
            max_pixels: Refuse files with more pixels than this.
            box: The part of the image to read, `(left, top, right, bottom)`
                (a CT slice's body box), or None for all of it.

        Returns:
            A uint8 array of shape `input_shape`.

        Raises:
            DataError: A file is missing, unreadable or too large.
            ValueError: An array of an unsupported shape.
        """
        if isinstance(image, (str, os.PathLike)):
            img, _ = self.decode(image, max_pixels=max_pixels)
            return self.to_array(img, name=os.fspath(image), box=box)
        if not isinstance(image, Image.Image):
            image = array_to_image(image)
        return self.to_array(_canonical(image, self.window), box=box)

    def seen_box(
        self, image: Image.Image, box: Box | None = None
    ) -> tuple[int, int, int, int] | None:
        """The part of a decoded image the model sees, `(left, top, right,
        bottom)`, when a `box` (a CT slice's body box) or `trim` cuts some of
        it away; else None."""
        if box is None:
            return trim_box(image, self.trim) if self.trim else None
        left, top = int(box[0]), int(box[1])
        if not self.trim:
            return (left, top, int(box[2]), int(box[3]))
        inner = trim_box(crop_to_box(image, box), self.trim)
        return (left + inner[0], top + inner[1], left + inner[2], top + inner[3])

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
            box: With `trim` or a body box, the part of the image the model
                saw, `seen_box(image, box)`; the rest of the map is 0.

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


def trim_box(img: Image.Image, fraction: float) -> tuple[int, int, int, int]:
    """The part of an image kept by trimming: uniform border lines (frames,
    padding: rows or columns whose values vary by less than 3 levels) are cut,
    then `fraction` of each side (where burnt-in text and markers sit).

    Returns:
        `(left, top, right, bottom)`, as `Image.crop` takes it.

    Examples:
        >>> import numpy as np
        >>> from PIL import Image
        >>> arr = np.zeros((100, 100), np.uint8)
        >>> arr[10:90, 20:80] = np.arange(60, dtype=np.uint8) + 50  # a framed picture
        >>> trim_box(Image.fromarray(arr), 0.05)
        (23, 14, 77, 86)
    """
    gray = np.asarray(img.convert("L"), dtype=np.int16)
    rows = np.ptp(gray, axis=1) >= 3
    cols = np.ptp(gray, axis=0) >= 3
    if not rows.any() or not cols.any():
        return (0, 0, img.width, img.height)
    top, bottom = int(np.argmax(rows)), len(rows) - int(np.argmax(rows[::-1]))
    left, right = int(np.argmax(cols)), len(cols) - int(np.argmax(cols[::-1]))
    dy, dx = round((bottom - top) * fraction), round((right - left) * fraction)
    if bottom - top - 2 * dy < 1 or right - left - 2 * dx < 1:
        return (left, top, right, bottom)
    return (left + dx, top + dy, right - dx, bottom - dy)


def image_to_array(
    img: Image.Image,
    image_size: Sequence[int],
    *,
    color_mode: str = "grayscale",
    resize: str = "stretch",
) -> np.ndarray:
    """Convert a decoded image to a uint8 array of shape (H, W, C).

    Args:
        img: A Pillow image, usually from `decode_file`.
        image_size: Target `(height, width)`.
        color_mode: `"grayscale"` gives 1 channel, `"rgb"` gives 3.
        resize: `"stretch"` ignores the aspect ratio; `"pad"` keeps it and pads
            with black; `"crop"` keeps it and crops the centre.

    Returns:
        A `uint8` array of shape `(height, width, channels)`.

    Examples:
        >>> from PIL import Image
        >>> img = Image.new("L", (200, 100), 255)
        >>> arr = image_to_array(img, (64, 64), resize="pad")
        >>> arr.shape, int(arr[0, 32, 0]), int(arr[32, 32, 0])
        ((64, 64, 1), 0, 255)
    """
    height, width = int(image_size[0]), int(image_size[1])
    img = _canonical(img)
    if color_mode == "grayscale":
        img = img.convert("L")  # fewer channels to resize
    out = _resized(img, width, height, resize)
    if color_mode == "rgb":
        out = out.convert("RGB")  # after the resize: a gray image resizes once
    arr = np.asarray(out, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr


def _resized(img: Image.Image, width: int, height: int, resize: str) -> Image.Image:
    resample = Image.Resampling.BILINEAR
    gap = 3.0  # reduce by whole factors first when shrinking a lot: faster, same look
    if resize == "stretch":
        out = img.resize((width, height), resample, reducing_gap=gap)
    elif resize in ("pad", "crop"):
        pick = min if resize == "pad" else max
        scale = pick(width / img.width, height / img.height)
        new_w = max(1, round(img.width * scale))
        new_h = max(1, round(img.height * scale))
        scaled = img.resize((new_w, new_h), resample, reducing_gap=gap)
        if resize == "pad":
            out = Image.new(img.mode, (width, height), 0)
            out.paste(scaled, ((width - new_w) // 2, (height - new_h) // 2))
        else:
            left, top = (new_w - width) // 2, (new_h - height) // 2
            out = scaled.crop((left, top, left + width, top + height))
    else:
        raise ValueError(
            "The `resize` argument must be one of 'stretch', 'pad', 'crop'. "
            f"Received: {resize!r}."
        )
    return out
