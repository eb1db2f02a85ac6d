"""Decoding one image file into canonical pixels, with the hashes the audit needs.

Everything here works on one image at a time, with Pillow and numpy only, so it
can run in threads while records are scanned and again at prediction time.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DICOM_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "ColorMode",
    "ImageInfo",
    "ResizeMode",
    "decode_file",
    "image_to_array",
    "perceptual_hash",
]

ColorMode = Literal["grayscale", "rgb"]
ResizeMode = Literal["stretch", "pad", "crop"]

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".webp",
    ".tif",
    ".tiff",
)
DICOM_EXTENSIONS: tuple[str, ...] = (".dcm", ".dicom")
#: Images with more pixels than this are refused before they are decoded
#: (decompression bombs). 50 MP is well above any chest X-ray.
DEFAULT_MAX_PIXELS = 50_000_000

COLOR_MODES: tuple[str, ...] = ("grayscale", "rgb")
RESIZE_MODES: tuple[str, ...] = ("stretch", "pad", "crop")


@dataclass(frozen=True)
class ImageInfo:
    """What the scan learns about one file, before any resizing."""

    width: int
    height: int
    mode: str
    format: str
    n_bytes: int
    sha256: str
    pixel_hash: str
    phash: str


def _is_dicom(path: str, data: bytes) -> bool:
    return path.lower().endswith(DICOM_EXTENSIONS) or data[128:132] == b"DICM"


def _read_dicom(path: str, data: bytes) -> tuple[Image.Image, str]:
    try:
        import pydicom
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError(
            f"'{path}' is a DICOM file, and reading DICOM needs pydicom. "
            'Install it with: pip install "covidxray[dicom]"'
        ) from exc
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        arr = np.asarray(ds.pixel_array, dtype=np.float64)
    except Exception as exc:
        raise DataError(f"Could not read the DICOM file '{path}': {exc}") from exc
    if arr.ndim != 2:
        raise DataError(
            f"Expected a single-frame grayscale DICOM image in '{path}'. "
            f"Received pixel data of shape {arr.shape}."
        )
    bits = int(getattr(ds, "BitsStored", 0) or arr.dtype.itemsize * 8)
    if int(getattr(ds, "PixelRepresentation", 0)) == 1:
        arr = arr + 2 ** (bits - 1)  # signed: shift to 0 .. 2**bits - 1
    arr = np.clip(arr / float(2**bits - 1), 0.0, 1.0)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "MONOCHROME1":
        arr = 1.0 - arr  # MONOCHROME1 stores bright as low values
    img = Image.fromarray(np.round(arr * 255.0).astype(np.uint8), mode="L")
    return img, photometric


def _composite_on_black(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _canonical(img: Image.Image) -> Image.Image:
    """Return an 8-bit 'L' or 'RGB' image, whatever the file's mode was."""
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode == "P":
        if "transparency" in img.info:
            return _composite_on_black(img)
        return img.convert("RGB")
    if mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        out = _composite_on_black(img)
        return out.convert("L") if mode in ("LA", "La") else out
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        full = 65535.0 if arr.max(initial=0) > 255 or mode.startswith("I;16") else 255.0
        arr = np.clip(arr / full, 0.0, 1.0)
        return Image.fromarray(np.round(arr * 255.0).astype(np.uint8), mode="L")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        arr = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo)
        arr = np.nan_to_num(arr)
        return Image.fromarray(np.round(arr * 255.0).astype(np.uint8), mode="L")
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV


def perceptual_hash(img: Image.Image) -> str:
    """256-bit DCT perceptual hash of an image, as 64 hex digits.

    The image is reduced to 64x64 grayscale; the hash keeps the signs (against
    the median) of the 16x16 lowest DCT frequencies but the DC term. Copies of
    one image that were resized, recompressed or slightly cropped differ in few
    bits; different chest X-rays, which look much alike, differ in many more
    than a 64-bit hash would show. Compare hashes with `hamming`.

    Examples:
        >>> import numpy as np
        >>> from PIL import Image
        >>> from covidxray.datasets import synthetic_xray
        >>> rng = np.random.default_rng(0)
        >>> a = Image.fromarray(synthetic_xray(rng, (128, 128), opacities=True))
        >>> b = a.resize((100, 100))  # the same image, smaller
        >>> c = Image.fromarray(synthetic_xray(rng, (128, 128), opacities=True))
        >>> h = perceptual_hash(a)
        >>> len(h), hamming(h, perceptual_hash(b)) <= 24
        (64, True)
        >>> hamming(h, perceptual_hash(c)) > 24
        True
    """
    small = img.convert("L").resize((64, 64), Image.Resampling.BOX)
    pixels = np.asarray(small, dtype=np.float64)
    coefficients = (_DCT64 @ pixels @ _DCT64.T)[:16, :16].flatten()[1:]
    bits = np.append(coefficients > np.median(coefficients), False)
    return np.packbits(bits).tobytes().hex()


def hamming(a: str, b: str) -> int:
    """Number of differing bits between two hex hashes of the same length."""
    return int(bin(int(a, 16) ^ int(b, 16)).count("1"))


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT64 = _dct_matrix(64)


def _open_pil(
    path: str, data: bytes, max_pixels: int, draft_to: Sequence[int] | None = None
) -> tuple[Image.Image, str, str, tuple[int, int]]:
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check below replaces Pillow's bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise DataError(
                    f"'{path}' is {width}x{height} = {width * height:,} pixels, "
                    f"over the limit of max_pixels={max_pixels:,} "
                    "(a possible decompression bomb). Raise max_pixels if the "
                    "image is genuine."
                )
            fmt = img.format or "UNKNOWN"
            mode = img.mode
            if draft_to is not None and fmt == "JPEG":
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the image is
                # at least that much larger than needed: same DCT data, same
                # pixels for byte-different copies, several times faster.
                side = max(128, *(int(v) for v in draft_to))
                img.draft(img.mode, (side, side))
            img.load()
            loaded_size = img.size
            oriented: Image.Image = ImageOps.exif_transpose(img)
    except DataError:
        raise
    except Image.DecompressionBombError as exc:
        raise DataError(f"'{path}' exceeds Pillow's pixel limit: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise DataError(
            f"'{path}' is not an image Pillow can read "
            f"(expected one of {' '.join(IMAGE_EXTENSIONS)})."
        ) from exc
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError...
        raise DataError(
            f"'{path}' could not be decoded, it may be truncated or corrupt: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if oriented.width < 1 or oriented.height < 1:
        raise DataError(f"'{path}' has no pixels ({oriented.width}x{oriented.height}).")
    if oriented.size != loaded_size:  # EXIF rotation swapped the sides
        width, height = height, width
    return oriented, mode, fmt, (width, height)


def decode_file(
    path: str | os.PathLike[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    data: bytes | None = None,
    draft_to: Sequence[int] | None = None,
) -> tuple[Image.Image, ImageInfo]:
    """Read and fully decode one image file.

    Args:
        path: The file (JPEG, PNG 8/16-bit, BMP, GIF, WebP, TIFF or DICOM).
        max_pixels: Refuse images with more pixels than this before decoding.
        data: The file's bytes, if already read.
        draft_to: The `(height, width)` the image will be resized to. Large
            JPEGs are then decoded at a reduced scale (never below this size,
            nor below 128 px); the returned image is smaller, `ImageInfo` still
            gives the file's own size.

    Returns:
        The image as an 8-bit 'L' or 'RGB' Pillow image, with EXIF orientation
        applied and transparency composited on black, and its `ImageInfo`.

    Raises:
        DataError: The file is missing, empty, not an image, truncated, or too
            large. The message names the file.

    Examples:
        >>> import tempfile, os
        >>> from PIL import Image
        >>> folder = tempfile.mkdtemp()
        >>> Image.new("RGBA", (40, 30), (255, 0, 0, 128)).save(f"{folder}/a.png")
        >>> img, info = decode_file(f"{folder}/a.png")
        >>> img.mode, img.size, info.mode, info.format
        ('RGB', (40, 30), 'RGBA', 'PNG')
    """
    path = os.fspath(path)
    if data is None:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError as exc:
            raise DataError(f"File not found: '{path}'.") from exc
        except OSError as exc:
            raise DataError(f"Could not read '{path}': {exc.strerror or exc}.") from exc
    if not data:
        raise DataError(f"'{path}' is empty (0 bytes); expected an image file.")
    if _is_dicom(path, data):
        img, mode = _read_dicom(path, data)
        fmt = "DICOM"
        size = img.size
    else:
        pil, mode, fmt, size = _open_pil(path, data, max_pixels, draft_to)
        img = _canonical(pil)
    digest = hashlib.blake2b(f"{img.mode}{img.size}".encode(), digest_size=20)
    digest.update(img.tobytes())
    info = ImageInfo(
        width=size[0],
        height=size[1],
        mode=mode,
        format=fmt,
        n_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        pixel_hash=digest.hexdigest(),
        phash=perceptual_hash(img),
    )
    return img, info


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


def array_to_image(array: Any) -> Image.Image:
    """Turn a (H, W) or (H, W, C) uint8 or float [0, 1] array into an image."""
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(
            "Expected an image array of shape (H, W), (H, W, 1), (H, W, 3) or "
            f"(H, W, 4). Received shape {arr.shape}."
        )
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.round(np.clip(arr, 0.0, 1.0) * 255.0)
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def is_image_name(name: str) -> bool:
    """Whether a file name has an extension covidxray reads."""
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS + DICOM_EXTENSIONS


def find_images(folder: str | os.PathLike[str]) -> list[str]:
    """Image files under `folder`, recursively, in sorted order; hidden files
    and folders (names starting with '.') are left out."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(
            os.path.join(dirpath, name)
            for name in sorted(filenames)
            if is_image_name(name) and not name.startswith(".")
        )
    return found
