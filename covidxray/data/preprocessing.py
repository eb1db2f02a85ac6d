"""`Preprocessing`: how one image becomes the pixels a model sees.

One value of it, `(image_size, color_mode, resize, window, trim, equalize,
lungs)`, decodes and resizes a file
the same way wherever an image enters covidxray: the dataset scan, the
no-cache path of `tf.data`, `Classifier.predict`, Grad-CAM overlays and the
command line. A saved classifier stores it, so a file is read at prediction
time exactly as it was read at training time.

The steps after decoding live here too: `trim_box`, `equalize` and
`image_to_array` (the resize). With `lungs="crop"` or `"mask"` the lungs are
found by the segmenter that ships with covidxray, and boxed by its
`lung_box` (`covidxray.lungs.unet`, imported only then); see
`docs/guides/lungs.md`.
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
from ..errors import CovidXrayWarning, DataError
from .boxes import Box, crop_to_box
from .contrast import EQUALIZE_MODES, equalize
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

__all__ = [
    "EQUALIZE_MODES",
    "LUNG_MODES",
    "Preprocessing",
    "equalize",
    "image_to_array",
    "report_lungs",
    "trim_box",
]

#: What `Preprocessing(lungs=...)` does with the lungs: nothing, crop to
#: them, or crop to them and blank everything outside them.
LUNG_MODES: tuple[str, ...] = ("none", "crop", "mask")
#: The lung crop's margin: this share of the lungs' box on each side.
LUNG_MARGIN = 0.08
#: With `lungs="mask"`, the lungs are grown by this share of the model
#: input's larger side before everything outside them is set to 0.
LUNG_DILATION = 0.02

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
        lungs: `"none"`; `"crop"` crops to the lungs' bounding box plus
            `LUNG_MARGIN` of it on each side (inside the trimmed part) before
            resizing; `"mask"` also sets everything outside the lungs, grown
            by `LUNG_DILATION`, to 0 after resizing. The lungs come from the
            shipped `LungSegmenter`, run on the decoded image. An image with
            no lungs found is kept whole (unmasked), with a warning that
            names it.

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
    lungs: str = "none"

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
        check_choice("lungs", self.lungs, LUNG_MODES, "Preprocessing")

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

    @property
    def needs_lungs(self) -> bool:
        """True when reading an image needs its lung mask (`lungs` is set)."""
        return self.lungs != "none"

    def lung_masks(
        self, images: Sequence[Image.Image], names: Sequence[str] | None = None
    ) -> list[np.ndarray | None]:
        """The lung mask of each decoded image, at its own size, from the
        shipped `LungSegmenter` in one batch; all None when `lungs` is
        `"none"` (nothing is segmented).

        The lungs come from the shipped U-Net (`covidxray.lungs.unet`). An
        implausible mask is warned about with its image's name
        (`CovidXrayWarning`, one warning per call); an empty one makes
        `to_array` keep the image whole. Only a dataset scan refuses a set
        in which no image has lungs.
        """
        if not self.needs_lungs:
            return [None] * len(images)
        from ..lungs.unet import default_lung_model  # TensorFlow: only now

        if names is None:
            names = [f"image {k}" for k in range(len(images))]
        results = default_lung_model().masks(list(images), names)
        found = [(r.name, r.problems) for r in results if r.problems]
        report_lungs(found, len(results), refuse_empty=False)
        return [r.mask for r in results]

    def seen_box(
        self,
        image: Image.Image,
        box: Box | None = None,
        lungs: np.ndarray | None = None,
    ) -> tuple[int, int, int, int] | None:
        """The part of a decoded image the model sees, `(left, top, right,
        bottom)`, when a `box` (a CT slice's body box), `trim` or `lungs`
        cuts some of it away; else None.

        Args:
            image: The decoded image.
            box: Its body box, cut first.
            lungs: The lung mask of the image inside `box` (`lung_masks`),
                needed when `lungs` is set.

        Raises:
            ValueError: `lungs` is set and no mask was given, or the mask's
                shape is not the image's (inside `box`).
        """
        inner = self._seen_inside(crop_to_box(image, box), lungs)
        if box is None:
            return inner
        left, top = int(box[0]), int(box[1])
        if inner is None:
            return (left, top, int(box[2]), int(box[3]))
        return (left + inner[0], top + inner[1], left + inner[2], top + inner[3])

    def _seen_inside(
        self, image: Image.Image, lungs: np.ndarray | None
    ) -> tuple[int, int, int, int] | None:
        """`seen_box` of an image already cut to its body box."""
        box = trim_box(image, self.trim) if self.trim else None
        if not self.needs_lungs:
            return box
        from ..lungs.unet import lung_box  # numpy only; imported on first use

        outer = box or (0, 0, image.width, image.height)
        found = lung_box(self._mask_for(image, lungs), LUNG_MARGIN)
        if found is None:  # no lungs: the (trimmed) image, whole
            return box
        left, top = max(outer[0], found[0]), max(outer[1], found[1])
        right, bottom = min(outer[2], found[2]), min(outer[3], found[3])
        if right - left < 1 or bottom - top < 1:  # the lungs were trimmed away
            return box
        return (left, top, right, bottom)

    def _mask_for(
        self, image: Image.Image, lungs: np.ndarray | None, name: str = "the image"
    ) -> np.ndarray:
        if lungs is None:
            raise ValueError(
                f"Preprocessing(lungs={self.lungs!r}) needs the lung mask of "
                f"'{name}': pass lungs=, from Preprocessing.lung_masks([image])."
            )
        lungs = np.asarray(lungs, bool)
        if lungs.shape != (image.height, image.width):
            raise ValueError(
                f"The `lungs` mask of '{name}' has shape {lungs.shape}; the image "
                f"is {image.height} x {image.width} (height x width)."
            )
        return lungs

    def to_array(
        self,
        image: Image.Image,
        *,
        name: str = "the image",
        box: Box | None = None,
        lungs: np.ndarray | None = None,
    ) -> np.ndarray:
        """Resize and convert a decoded image: uint8 of shape `input_shape`.
        A `box` (a CT slice's body box, `Record.box`) is cut out first.

        Args:
            image: The decoded image (`decode`).
            name: The file, for messages.
            box: Its body box, or None.
            lungs: The lung mask of the image inside `box` (`lung_masks`),
                needed when `lungs` is set.

        Raises:
            DataError: Pillow cannot convert the image's mode, or `box` is
                outside it (names `name`).
            ValueError: `lungs` is set and no fitting mask was given.
        """
        image = crop_to_box(image, box, name=name)
        if self.needs_lungs:
            lungs = self._mask_for(image, lungs, name)  # missing: ValueError
        try:
            seen = self._seen_inside(image, lungs)
            cropped = image.crop(seen) if seen is not None else image
            cropped = equalize(_canonical(cropped), self.equalize)
            out = image_to_array(
                cropped, self.image_size, color_mode=self.color_mode, resize=self.resize
            )
        except (ValueError, OSError) as exc:  # a mode Pillow cannot convert
            raise DataError(
                f"'{name}' could not be converted to {self.color_mode}: {exc}"
            ) from exc
        if self.lungs == "mask" and lungs is not None:
            inside = self.mask_array(image, lungs)
            if inside.any():  # none seen (no lungs, or trimmed away): unmasked
                radius = LUNG_DILATION * max(self.image_size)
                out = out * _grown(inside, radius)[:, :, None].astype(np.uint8)
        return out

    def mask_array(self, image: Image.Image, lungs: np.ndarray) -> np.ndarray:
        """A lung mask mapped onto the model's input as the image's pixels
        are (the same crop and resize): boolean of shape `image_size`.

        Examples:
            >>> import numpy as np
            >>> from PIL import Image
            >>> prep = Preprocessing((4, 8))
            >>> mask = np.zeros((10, 20), bool); mask[:, :10] = True
            >>> prep.mask_array(Image.new("L", (20, 10)), mask)[0].tolist()
            [True, True, True, True, False, False, False, False]
        """
        lungs = self._mask_for(image, lungs)
        as_image = Image.fromarray(np.asarray(lungs, np.uint8) * 255)
        box = self._seen_inside(image, lungs)
        if box is not None:
            as_image = as_image.crop(box)
        height, width = self.image_size
        resized = _resized(as_image, width, height, self.resize)
        return np.asarray(resized) >= 128

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
        return self.load_many([image], max_pixels=max_pixels, boxes=[box])[0]

    def load_many(
        self,
        images: Sequence[ImageLike],
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        boxes: Sequence[Box | None] | None = None,
    ) -> np.ndarray:
        """Read several images as the model sees them (`load`), each cut to
        its box of `boxes` when given, their lungs found in one batch when
        `lungs` is set: uint8 `(N, *input_shape)`."""
        decoded: list[Image.Image] = []
        names: list[str] = []
        boxes = list(boxes) if boxes is not None else [None] * len(images)
        for k, (image, box) in enumerate(zip(images, boxes, strict=True)):
            if isinstance(image, (str, os.PathLike)):
                img = self.decode(image, max_pixels=max_pixels)[0]
                names.append(os.fspath(image))
            else:
                if not isinstance(image, Image.Image):
                    image = array_to_image(image)
                img = _canonical(image, self.window)
                names.append(f"image {k}")
            decoded.append(crop_to_box(img, box, name=names[-1]))
        masks = self.lung_masks(decoded, names)
        out = np.zeros((len(decoded), *self.input_shape), np.uint8)
        for k, (img, name, mask) in enumerate(zip(decoded, names, masks, strict=True)):
            out[k] = self.to_array(img, name=name, lungs=mask)
        return out

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
            # Only when set, so a cache or model file written before
            # `lungs` existed still matches the same preprocessing.
            **({"lungs": self.lungs} if self.needs_lungs else {}),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Preprocessing:
        """Rebuild a `Preprocessing` from `to_dict`'s output. A dict without
        `window`, `trim`, `equalize` or `lungs` (saved before they existed)
        gets `"auto"`, 0, `"none"` and `"none"`, which is how images were
        read then.

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
            lungs=values.get("lungs", "none"),
        )


def _grown(mask: np.ndarray, radius: float) -> np.ndarray:
    """`mask` grown by `radius` pixels (a disc)."""
    from scipy import ndimage

    if radius <= 0 or not mask.any():
        return mask
    return np.asarray(ndimage.distance_transform_edt(~mask) <= radius)


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
    if color_mode == "grayscale" and img.mode != "L":
        img = img.convert("L")  # fewer channels to resize (L to L would copy)
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


def report_lungs(
    found: Sequence[tuple[str, Sequence[str]]],
    readable: int,
    *,
    refuse_empty: bool = True,
) -> None:
    """Warn once (at the first caller outside covidxray), naming the files,
    when some lung masks are implausible: each image's is used as found (an
    empty one: no crop, no mask). With `refuse_empty` (a dataset scan), fail
    when no readable image has lungs.

    Raises:
        DataError: With `refuse_empty`, every one of several readable images
            has an empty mask.
    """
    empty = [p for p, why in found if "no lung found" in why]
    if refuse_empty and readable > 1 and len(empty) == readable:
        raise DataError(
            f"No lungs were found in any of the {readable} images (first: "
            f"'{empty[0]}'). Are they frontal chest X-rays?"
        )
    if found:
        first = list(found)[:5]
        named = "; ".join(f"'{p}': {', '.join(why)}" for p, why in first)
        more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
        warnings.warn(
            f"{len(found)} of {readable} images have an implausible lung mask: "
            f"{named}{more}. They are read as found (an empty mask: the image "
            "whole)"
            + (
                "; the dataset's `lung_problems` lists them all."
                if refuse_empty
                else "."
            ),
            CovidXrayWarning,
            stacklevel=outside_stacklevel(),
        )


def outside_stacklevel() -> int:
    """The `stacklevel` of `warnings.warn`, called from here, that points at
    the first frame outside the covidxray package (the user's call)."""
    import sys

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame = sys._getframe(1)  # the function that warns
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        package + os.sep
    ):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level
