"""Decoding one image file into canonical pixels: file -> pixels, nothing else.

Everything here works on one image at a time, with Pillow and numpy only (and
pydicom for DICOM), so it can run in threads while records are scanned and again
at prediction time.

Integer images deeper than 8 bits are brought to 8 bits by their real range,
the *window*: see `to_uint8` and the "Image files" section of the datasets guide
(`docs/guides/datasets.md`). The hashes of what is decoded are taken in
`identity`; resizing, trimming and equalising, in `preprocessing`.
"""

from __future__ import annotations

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
from .identity import file_hash, perceptual_hash, pixel_hash
from .reading import read_limited

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DICOM_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "PERCENTILE_WINDOW",
    "ColorMode",
    "Decoded",
    "ImageInfo",
    "ResizeMode",
    "Window",
    "check_window",
    "decode_file",
    "decode_pixels",
    "describe",
    "to_uint8",
]

ColorMode = Literal["grayscale", "rgb"]
ResizeMode = Literal["stretch", "pad", "crop"]
#: How raw pixel values become 8 bits: `"auto"`, `"percentile"`, or a fixed
#: `(low, high)` pair of raw values. See `to_uint8`.
Window = str | tuple[float, float]
#: The percentiles of `window="percentile"`: below the first is black, above the
#: second white.
PERCENTILE_WINDOW = (0.5, 99.5)

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
    bit_depth: int = 8
    #: How the file's values became 8 bits: `"none"` (8-bit data, kept),
    #: `"bit-depth"` (scaled by its bits), `"range"` (its own minimum to
    #: maximum: floats, negative values, DICOM without a window), `"voi"`
    #: (a DICOM file's own window or VOI LUT), `"percentile"` or `"fixed"`
    #: (the `window` asked for).
    window: str = ""


def _is_dicom(path: str, data: bytes) -> bool:
    return path.lower().endswith(DICOM_EXTENSIONS) or data[128:132] == b"DICM"


def check_window(window: Any, where: str) -> Window:
    """Validate a `window` argument; returns `"auto"`, `"percentile"` or a
    `(low, high)` tuple of floats.

    Examples:
        >>> check_window([0, 4095], "load_dataset")
        (0.0, 4095.0)
        >>> check_window("median", "load_dataset")
        Traceback (most recent call last):
        ...
        ValueError: The `window` argument of load_dataset must be 'auto', \
'percentile' or a (low, high) pair with low < high. Received: 'median'.
    """
    if isinstance(window, str) and window in ("auto", "percentile"):
        return window
    if isinstance(window, np.ndarray):
        window = window.tolist()
    if not isinstance(window, str) and isinstance(window, Sequence):
        pair = tuple(window)
        if (
            len(pair) == 2
            and all(isinstance(v, (int, float, np.number)) for v in pair)
            and all(np.isfinite(v) for v in pair)
            and pair[0] < pair[1]
        ):
            return (float(pair[0]), float(pair[1]))
    raise ValueError(
        f"The `window` argument of {where} must be 'auto', 'percentile' or a "
        f"(low, high) pair with low < high. Received: {window!r}."
    )


def _percentiles(arr: np.ndarray, q: Sequence[float]) -> tuple[float, float]:
    """Percentiles of an image; a histogram for small non-negative integers."""
    if arr.dtype.kind in "ui" and arr.size and arr.min() >= 0 and arr.max() < 2**16:
        counts = np.cumsum(np.bincount(arr.ravel()))
        ranks = [
            min(arr.size - 1, int(np.floor(p / 100.0 * (arr.size - 1)))) for p in q
        ]
        lo, hi = (int(np.searchsorted(counts, r, side="right")) for r in ranks)
        return float(lo), float(hi)
    lo, hi = np.percentile(arr, q)
    return float(lo), float(hi)


def _scale(arr: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map `low` to 0 and `high` to 255, clipping; a lookup table for uint16."""
    span = high - low if high > low else 1.0
    if arr.dtype == np.uint16 or arr.dtype == np.uint8:
        values = np.arange(int(arr.max(initial=0)) + 1, dtype=np.float64)
        lut = np.round(np.clip((values - low) / span, 0.0, 1.0) * 255.0)
        return lut.astype(np.uint8)[arr]
    out = np.clip((arr.astype(np.float64) - low) / span, 0.0, 1.0)
    return np.round(out * 255.0).astype(np.uint8)


def to_uint8(
    arr: np.ndarray, window: Window = "auto", bits: int | None = None
) -> tuple[np.ndarray, int]:
    """Bring raw pixel values to 8 bits.

    `window="auto"` keeps 8-bit data as it is. Deeper integer data is scaled by
    its real range: `bits` significant bits when the file declares them (a PNG
    `sBIT` chunk, DICOM `BitsStored`), else the smallest of 10, 12, 14 or 16
    bits that holds the image's largest value; so a 12-bit image in a 16-bit
    PNG fills 0-255 instead of 0-16. Float data is scaled from its minimum to
    its maximum. `"percentile"` maps the image's own `PERCENTILE_WINDOW`
    percentiles to black and white (any bit depth); `(low, high)` maps those
    raw values to black and white.

    Args:
        arr: Raw pixel values, (H, W) or (H, W, C).
        window: `"auto"`, `"percentile"` or `(low, high)`.
        bits: Significant bits the file declares, if any.

    Returns:
        The uint8 array and the bit depth the data was taken to have.

    Examples:
        >>> import numpy as np
        >>> ramp = np.linspace(0, 4095, 8).astype(np.uint16)  # 12-bit data
        >>> to_uint8(ramp)[0].tolist(), to_uint8(ramp)[1]
        ([0, 36, 73, 109, 146, 182, 219, 255], 12)
        >>> to_uint8(ramp, window=(0, 2047))[0].tolist()
        [0, 73, 146, 219, 255, 255, 255, 255]
    """
    if arr.dtype == np.uint8 and window == "auto":
        return arr, 8  # kept as it is (declared bits cannot apply to 8-bit data)
    if arr.dtype.kind == "f":
        arr = np.nan_to_num(arr.astype(np.float64))
    if arr.size == 0:
        return np.zeros(arr.shape, np.uint8), bits or 8
    low, top = float(arr.min()), float(arr.max())
    if bits is not None and (arr.dtype == np.uint8 or top >= 2**bits):
        bits = None  # declared bits that do not fit the data: ignore them
    if bits is None:
        if arr.dtype == np.uint8:
            bits = 8
        elif arr.dtype.kind in "ui" and low >= 0:
            # The data's own range, rounded up to a usual bit depth.
            bits = next(
                (b for b in (8, 10, 12, 14, 16) if top < 2**b),
                max(17, int(np.ceil(np.log2(top + 1)))),
            )
        else:
            bits = arr.dtype.itemsize * 8
    if window == "percentile":
        lo, hi = _percentiles(arr, PERCENTILE_WINDOW)
        return _scale(arr, lo, hi if hi > lo else lo + 1.0), bits
    if isinstance(window, tuple):
        return _scale(arr, window[0], window[1]), bits
    if arr.dtype == np.uint8:
        return arr, bits
    if arr.dtype.kind == "f" or low < 0:
        return _scale(arr, low, top if top > low else low + 1.0), bits
    return _scale(arr, 0.0, float(2**bits - 1)), bits


def _dicom_tools() -> tuple[Any, Any]:
    try:
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:  # pydicom 2
        from pydicom.pixel_data_handlers.util import (  # type: ignore[no-redef]
            apply_modality_lut,
            apply_voi_lut,
        )
    return apply_modality_lut, apply_voi_lut


def _read_dicom(
    path: str, data: bytes, max_pixels: int, window: Window
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, int, str]:
    """Read a DICOM image with pydicom's own tools.

    The steps are pydicom's: the modality LUT (rescale slope and intercept),
    then the VOI LUT or window the file gives (`window="auto"`; another
    `window` replaces it), then MONOCHROME1 is inverted so that bright is high.
    A file with neither a window nor a VOI LUT is mapped from its values' own
    minimum to their maximum, after the modality LUT.

    Returns:
        The stored values, the 8-bit image with `window`, the 8-bit image with
        the file's own window, the photometric interpretation, the bits
        stored, and how the `"auto"` image was windowed (`"voi"` or
        `"range"`).
    """
    try:
        import pydicom
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise _needs_package(
            f"'{path}' is a DICOM file, and reading DICOM needs pydicom. "
            'Install it with: pip install "covidxray[dicom]"'
        ) from exc
    apply_modality_lut, apply_voi_lut = _dicom_tools()
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        rows, cols = int(ds.Rows), int(ds.Columns)
    except Exception as exc:
        raise DataError(f"Could not read the DICOM file '{path}': {exc}") from exc
    if rows * cols > max_pixels:
        raise DataError(
            f"'{path}' is {cols}x{rows} = {rows * cols:,} pixels, over the limit of "
            f"max_pixels={max_pixels:,}. Raise max_pixels if the image is genuine."
        )
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DataError(
            f"'{path}' is a multi-frame DICOM file ({frames} frames); covidxray "
            "reads single radiographs. Export the frame you want as its own file."
        )
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if "BitsStored" not in ds and "BitsAllocated" in ds:
        ds.BitsStored = ds.BitsAllocated  # optional in some exports
    try:
        stored = np.asarray(ds.pixel_array)
    except Exception as exc:
        if syntax is not None and syntax.is_compressed and _has_decoder(syntax):
            raise DataError(
                f"The compressed ({syntax.name}) pixel data of '{path}' could not be "
                f"decoded; the file may be corrupt. pydicom said: {exc}"
            ) from exc
        if syntax is not None and syntax.is_compressed:
            raise _needs_package(
                f"'{path}' is compressed ({syntax.name}) and no installed decoder "
                "reads it. Install one, e.g. pip install pylibjpeg "
                "pylibjpeg-libjpeg pylibjpeg-openjpeg (or python-gdcm). "
                f"pydicom said: {exc}"
            ) from exc
        raise DataError(f"Could not decode the pixels of '{path}': {exc}") from exc
    if stored.ndim != 2:
        raise DataError(
            f"Expected a single-frame grayscale DICOM image in '{path}'. "
            f"Received pixel data of shape {stored.shape}."
        )
    bits = int(getattr(ds, "BitsStored", 0) or stored.dtype.itemsize * 8)
    try:
        values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
        # Without a window or VOI LUT: the values' own range, after the
        # modality LUT (the stored type's whole range would leave a flat grey).
        low, high = float(values.min()), float(values.max())
        ends = np.array([low, high if high > low else low + 1.0])
        voi, used = values, "range"
        if "WindowCenter" in ds or "VOILUTSequence" in ds:
            used = "voi"
            voi = np.asarray(apply_voi_lut(values, ds), dtype=np.float64)
            if "VOILUTSequence" in ds:
                lut_bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
                ends = np.array([0.0, float(2**lut_bits - 1)])
            else:
                ends = np.asarray(apply_voi_lut(np.array([-1e12, 1e12]), ds), float)
    except Exception as exc:
        raise DataError(
            f"Could not apply the modality or VOI LUT of '{path}': {exc}"
        ) from exc
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))

    def shown(gray: np.ndarray) -> np.ndarray:
        # MONOCHROME1 stores bright as low values
        return 255 - gray if photometric == "MONOCHROME1" else gray

    auto = shown(_scale(voi, float(ends.min()), float(ends.max())))
    gray = auto if window == "auto" else shown(to_uint8(values, window)[0])
    return stored, gray, auto, photometric, bits, used


def _needs_package(message: str) -> DataError:
    """A DataError that says a package is missing: it depends on this machine,
    not on the file, so a cache must not remember it."""
    error = DataError(message)
    error.needs_package = True  # type: ignore[attr-defined]
    return error


def _has_decoder(syntax: Any) -> bool:
    """Whether pydicom has a working decoder for a transfer syntax."""
    try:
        from pydicom.pixels import get_decoder

        return bool(get_decoder(syntax).is_available)
    except Exception:  # pydicom 2, or a syntax pydicom does not know
        return False


def _png_significant_bits(data: bytes) -> int | None:
    """The largest channel's significant bits from a PNG's sBIT chunk, if any."""
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind == b"sBIT" and 1 <= length <= 4:
            return max(data[pos + 8 : pos + 8 + length])
        if kind in (b"IDAT", b"IEND"):
            return None
        pos += 12 + length
    return None


def _composite_on_black(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _raw_pixels(img: Image.Image) -> np.ndarray:
    """The image's own values: uint8 (H, W) or (H, W, 3), or deeper integers or
    floats (H, W); transparency composited on black. Equal RGB channels become
    one, so a gray picture saved as RGB is the same pixels as saved as gray."""
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img)
        if mode == "F":
            return arr.astype(np.float32)
        arr = arr.astype(np.int64)
        if arr.min(initial=0) >= 0 and arr.max(initial=0) < 2**16:
            return arr.astype(np.uint8 if arr.max(initial=0) < 256 else np.uint16)
        return arr.astype(np.int32)
    if mode == "L":
        return np.asarray(img)
    if mode in ("LA", "La"):
        return np.asarray(_composite_on_black(img).convert("L"))
    if mode == "1":
        return np.asarray(img.convert("L"))
    if mode == "P" and "transparency" not in img.info:
        img = img.convert("RGB")
    elif mode in ("P", "PA", "RGBA", "RGBa"):
        img = _composite_on_black(img)
    elif mode != "RGB":
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    arr = np.asarray(img)
    if (arr[:, :, 0] == arr[:, :, 1]).all() and (arr[:, :, 1] == arr[:, :, 2]).all():
        return np.ascontiguousarray(arr[:, :, 0])
    return arr


def _canonical(img: Image.Image, window: Window = "auto") -> Image.Image:
    """Return an 8-bit 'L' or 'RGB' image, whatever the file's mode was."""
    if img.mode in ("L", "RGB") and window == "auto":
        return img
    gray, _ = to_uint8(_raw_pixels(img), window)
    return Image.fromarray(gray)


#: The EXIF Orientation tag, and its values that turn or flip the image.
_ORIENTATION = 0x0112
_TURNS = (2, 3, 4, 5, 6, 7, 8)


def _open_pil(
    path: str, data: bytes, max_pixels: int
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
            img.load()
            oriented: Image.Image = img  # most files need no turn: no copy
            if img.getexif().get(_ORIENTATION, 1) in _TURNS:
                oriented = ImageOps.exif_transpose(img)
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
    return oriented, mode, fmt, oriented.size


def _container_bits(mode: str) -> int:
    if mode == "1":
        return 1
    if mode.startswith("I;16"):
        return 16
    return 32 if mode in ("I", "F") else 8


@dataclass(frozen=True)
class Decoded:
    """One decoded file, before any hash is taken (see `decode_pixels`).

    Attributes:
        image: The 8-bit 'L' or 'RGB' image `decode_file` returns.
        raw: The file's own values at full resolution, before any windowing
            (what the pixel hash is taken on).
        hash_image: The image the perceptual hash is taken on: `image`, or
            the `"auto"` window of the file when another window was asked for.
        data: The file's bytes.
        mode: Pillow mode of the file (`"DICOM"` files: their own).
        format: File format (`JPEG`, `PNG`, `DICOM`, ...).
        bit_depth: Significant bits per sample the file declares, else those
            of its format.
    """

    image: Image.Image
    raw: np.ndarray
    hash_image: Image.Image
    data: bytes
    mode: str
    format: str
    bit_depth: int
    window: str = ""


def _window_used(raw: np.ndarray, window: Window) -> str:
    """`ImageInfo.window` of a non-DICOM file (see `to_uint8`)."""
    if isinstance(window, tuple):
        return "fixed"
    if window == "percentile":
        return "percentile"
    if raw.dtype == np.uint8:
        return "none"
    return "range" if raw.dtype.kind == "f" or raw.min(initial=0) < 0 else "bit-depth"


def decode_pixels(
    path: str | os.PathLike[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    data: bytes | None = None,
    window: Window = "auto",
) -> Decoded:
    """Read and fully decode one image file, hashing nothing: `decode_file`
    without the `ImageInfo` (same arguments and errors)."""
    path = os.fspath(path)
    window = check_window(window, "decode_file")
    if data is None:
        data = read_limited(path)  # regular files, at most MAX_FILE_BYTES
    if not data:
        raise DataError(f"'{path}' is empty (0 bytes); expected an image file.")
    if _is_dicom(path, data):
        raw, gray, auto_gray, mode, bits, used = _read_dicom(
            path, data, max_pixels, window
        )
        fmt, pil = "DICOM", None
        used = used if window == "auto" else _window_used(raw, window)
    else:
        pil, mode, fmt, _ = _open_pil(path, data, max_pixels)
        raw = _raw_pixels(pil)
        # sBIT only means something for data deeper than 8 bits: Pillow gives
        # 16-bit RGB as 8-bit, and 8-bit data is kept as it is.
        deep = mode.startswith("I;16")
        declared = _png_significant_bits(data) if fmt == "PNG" and deep else None
        gray, _ = to_uint8(raw, window, declared)
        auto_gray = gray if window == "auto" else to_uint8(raw, "auto", declared)[0]
        bits = declared or _container_bits(mode)
        used = _window_used(raw, window)
    if (
        pil is not None
        and gray is raw
        and (pil.mode, raw.ndim) in (("L", 2), ("RGB", 3))
    ):
        img = pil  # the decoded image already holds these pixels: no copy
    else:
        img = Image.fromarray(gray)
    hashed = img if auto_gray is gray else Image.fromarray(auto_gray)
    return Decoded(img, raw, hashed, data, mode, fmt, bits, used)


def decode_file(
    path: str | os.PathLike[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    data: bytes | None = None,
    window: Window = "auto",
) -> tuple[Image.Image, ImageInfo]:
    """Read and fully decode one image file.

    The file is decoded at full resolution, and its pixel hash is taken on
    those pixels before any resizing or windowing: a PNG copy of a JPEG's
    pixels has the same hash as the JPEG, whatever the `image_size` asked for.

    Args:
        path: The file (JPEG, PNG 8/16-bit, BMP, GIF, WebP, TIFF or DICOM).
        max_pixels: Refuse images with more pixels than this before decoding.
        data: The file's bytes, if already read.
        window: How raw values become 8 bits (see `to_uint8`): `"auto"`,
            `"percentile"` or `(low, high)`. For DICOM, `"auto"` applies the
            file's own modality and VOI LUTs.

    Returns:
        The image as an 8-bit 'L' or 'RGB' Pillow image, with EXIF orientation
        applied and transparency composited on black, and its `ImageInfo`
        (`bit_depth`: the significant bits the file declares, else the bits
        per sample of its format).

    Raises:
        DataError: The file is missing, empty, not an image, truncated, or too
            large, or a DICOM file cannot be decoded. The message names the file.

    Examples:
        >>> import tempfile, os
        >>> from PIL import Image
        >>> folder = tempfile.mkdtemp()
        >>> Image.new("RGBA", (40, 30), (255, 0, 0, 128)).save(f"{folder}/a.png")
        >>> img, info = decode_file(f"{folder}/a.png")
        >>> img.mode, img.size, info.mode, info.format, info.bit_depth
        ('RGB', (40, 30), 'RGBA', 'PNG', 8)
    """
    decoded = decode_pixels(path, max_pixels=max_pixels, data=data, window=window)
    return decoded.image, describe(decoded)


def describe(decoded: Decoded) -> ImageInfo:
    """The `ImageInfo` of a decoded file: its size, format and hashes (taken by
    `identity`)."""
    img = decoded.image
    return ImageInfo(
        width=img.width,
        height=img.height,
        mode=decoded.mode,
        format=decoded.format,
        n_bytes=len(decoded.data),
        sha256=file_hash(decoded.data),
        pixel_hash=pixel_hash(decoded.raw),
        phash=perceptual_hash(decoded.hash_image),
        bit_depth=decoded.bit_depth,
        window=decoded.window,
    )


def array_to_image(array: Any) -> Image.Image:
    """Turn a (H, W) or (H, W, C) uint8 or float [0, 1] array into an image.

    A 2-D array of deeper integers (uint16, int32) keeps its values, in a
    16- or 32-bit image, so that `to_uint8`'s window applies to it."""
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(
            "Expected an image array of shape (H, W), (H, W, 1), (H, W, 3) or "
            f"(H, W, 4). Received shape {arr.shape}."
        )
    if arr.ndim == 2 and arr.dtype.kind in "ui" and arr.dtype != np.uint8:
        if arr.dtype == np.uint16:
            return Image.fromarray(arr)
        return Image.fromarray(arr.astype(np.int32))
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
