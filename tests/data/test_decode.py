"""Reading real radiograph formats: bit depth, windows, DICOM LUTs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from covidxray import DataError, Preprocessing
from covidxray.data.decode import decode_file, to_uint8
from covidxray.data.preprocessing import image_to_array
from helpers import write_dicom as dicom
from helpers import write_dicom as write_dicom_file


def gradient(top: int, shape: tuple[int, int] = (16, 256)) -> np.ndarray:
    ramp = np.linspace(0, top, shape[1]).round().astype(np.uint16)
    return np.tile(ramp, (shape[0], 1))


def save_png16(path: Path, arr: np.ndarray, sbit: int | None = None) -> Path:
    info = PngImagePlugin.PngInfo()
    if sbit is not None:
        info.add(b"sBIT", bytes([sbit]))
    Image.fromarray(arr).save(path, pnginfo=info)
    return path


def test_a_12_bit_gradient_in_a_16_bit_png_fills_the_8_bit_range(
    tmp_path: Path,
) -> None:
    img, info = decode_file(save_png16(tmp_path / "g.png", gradient(4095)))
    pixels = np.asarray(img)
    assert img.mode == "L" and pixels.min() == 0 and pixels.max() == 255
    assert len(np.unique(pixels)) == 256  # all levels used, none crushed
    assert info.mode == "I;16" and info.bit_depth == 16


def test_the_png_sbit_chunk_sets_the_scale(tmp_path: Path) -> None:
    # 10 significant bits declared; the brightest pixel is only 500 of 1023.
    arr = gradient(500)
    img, info = decode_file(save_png16(tmp_path / "s.png", arr, sbit=10))
    assert info.bit_depth == 10
    assert np.asarray(img).max() == round(500 / 1023 * 255)
    # Without sBIT the data's own range is used: 500 < 2**10 gives 10 bits too.
    plain, _ = decode_file(save_png16(tmp_path / "p.png", arr))
    np.testing.assert_array_equal(np.asarray(plain), np.asarray(img))


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_8_bit_images_are_unchanged(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(0)
    shape = (20, 30) if mode == "L" else (20, 30, 3)
    arr = rng.integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    img, info = decode_file(tmp_path / "a.png")
    np.testing.assert_array_equal(np.asarray(img), arr)
    assert img.mode == mode and info.bit_depth == 8
    # An sBIT chunk on 8-bit data changes nothing either.
    sbit = PngImagePlugin.PngInfo()
    sbit.add(b"sBIT", bytes([5] * (1 if mode == "L" else 3)))
    Image.fromarray(arr).save(tmp_path / "s.png", pnginfo=sbit)
    np.testing.assert_array_equal(np.asarray(decode_file(tmp_path / "s.png")[0]), arr)


def test_fixed_and_percentile_windows(tmp_path: Path) -> None:
    path = save_png16(tmp_path / "g.png", gradient(4095))
    fixed = Preprocessing((16, 256), window=(1024, 2048)).load(path)[:, :, 0]
    ramp = gradient(4095)[0]
    assert (fixed[0][ramp <= 1024] == 0).all() and (fixed[0][ramp >= 2048] == 255).all()
    assert 0 < fixed[0][(ramp > 1100) & (ramp < 1900)].min()
    # An 8-bit image with little contrast is stretched by its own percentiles.
    dull = np.tile(np.linspace(100, 140, 200).astype(np.uint8), (10, 1))
    Image.fromarray(dull).save(tmp_path / "dull.png")
    auto = Preprocessing((10, 200)).load(tmp_path / "dull.png")
    stretched = Preprocessing((10, 200), window="percentile").load(
        tmp_path / "dull.png"
    )
    assert (auto.min(), auto.max()) == (100, 140)
    assert stretched.min() == 0 and stretched.max() == 255
    # An array in memory goes through the same window as the file.
    np.testing.assert_array_equal(
        Preprocessing((16, 256), window=(1024, 2048)).load(gradient(4095)),
        fixed[:, :, None],
    )


def test_window_is_validated_and_saved() -> None:
    prep = Preprocessing((8, 8), window=[0, 4095])
    assert prep.window == (0.0, 4095.0)
    assert Preprocessing.from_dict(prep.to_dict()) == prep
    old = {"image_size": [8, 8], "color_mode": "grayscale", "resize": "stretch"}
    assert Preprocessing.from_dict(old).window == "auto"  # files saved before
    for bad in ("median", (5, 1), (0, float("nan")), (1, 2, 3)):
        with pytest.raises(ValueError, match="`window` argument of Preprocessing"):
            Preprocessing((8, 8), window=bad)


def test_to_uint8_handles_signed_deep_and_float_data() -> None:
    signed = np.array([[-1000, 0, 1000]], np.int32)
    assert to_uint8(signed)[0].tolist() == [[0, 128, 255]]
    negative = np.array([[-300, -200, -100]], np.int32)
    assert to_uint8(negative)[0].tolist() == [[0, 128, 255]]
    floats = np.array([[100.0, 150.0, 200.0]], np.float32)  # min to max
    assert to_uint8(floats)[0].tolist() == [[0, 128, 255]]
    deep = np.array([[0, 65536, 131071]], np.int32)  # 17 bits
    pixels, bits = to_uint8(deep)
    assert bits == 17 and pixels.tolist() == [[0, 128, 255]]
    assert to_uint8(np.zeros((0, 3), np.uint16), "percentile")[0].shape == (0, 3)


def pydicom_reference(path: Path) -> np.ndarray:
    """What pydicom's own LUT functions give, scaled to 0-255 by hand."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(path)
    values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    # The window's output range for 12 bits unsigned after the rescale:
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    y_min, y_max = intercept, 4095 * slope + intercept
    return np.round((values - y_min) / (y_max - y_min) * 255).astype(np.uint8)


def test_dicom_rescale_and_window_follow_pydicom(tmp_path: Path) -> None:
    stored = gradient(4095, (8, 512))
    path = dicom(
        tmp_path / "w.dcm",
        stored,
        RescaleSlope=2,
        RescaleIntercept=-1024,
        WindowCenter=1500,
        WindowWidth=2000,
    )
    img, info = decode_file(path)
    pixels = np.asarray(img)
    np.testing.assert_array_equal(pixels, pydicom_reference(path))
    values = (
        stored.astype(int) * 2 - 1024
    )  # the modality LUT by hand: the window is 500-2500
    assert (pixels[values < 500] == 0).all() and (pixels[values > 2500] == 255).all()
    assert info.format == "DICOM" and info.bit_depth == 12
    # MONOCHROME1 is inverted after the window.
    inverted = dicom(
        tmp_path / "m1.dcm",
        stored,
        photometric="MONOCHROME1",
        RescaleSlope=2,
        RescaleIntercept=-1024,
        WindowCenter=1500,
        WindowWidth=2000,
    )
    np.testing.assert_array_equal(np.asarray(decode_file(inverted)[0]), 255 - pixels)
    # A window given by the user replaces the file's, on rescaled values.
    own = np.asarray(decode_file(path, window=(-1024, 7166))[0])
    assert own[0, 0] == 0 and own[0, -1] == 255 and own[0, 256] == 128


def test_dicom_without_a_window_uses_the_rescaled_range(tmp_path: Path) -> None:
    stored = gradient(4095, (4, 256))
    path = dicom(tmp_path / "r.dcm", stored, RescaleSlope=1, RescaleIntercept=-2048)
    pixels = np.asarray(decode_file(path)[0])
    assert pixels[0, 0] == 0 and pixels[0, -1] == 255


def test_dicom_refusals_name_the_file(tmp_path: Path) -> None:
    big = dicom(tmp_path / "big.dcm", gradient(4095, (100, 100)))
    with pytest.raises(DataError, match=r"big\.dcm.*max_pixels"):
        decode_file(big, max_pixels=9_999)
    multi = dicom(tmp_path / "multi.dcm", np.zeros((2, 4, 4)), frames=2)
    with pytest.raises(DataError, match=r"multi\.dcm.*multi-frame.*2 frames"):
        decode_file(multi)
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLSLossless

    ds = pydicom.dcmread(dicom(tmp_path / "jls.dcm", np.zeros((4, 4))))
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8 not really JPEG-LS \xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "jls.dcm", enforce_file_format=True)
    with pytest.raises(DataError, match=r"jls\.dcm.*compressed.*pylibjpeg"):
        decode_file(tmp_path / "jls.dcm")


@pytest.mark.parametrize(
    ("mode", "fmt", "ext"),
    [
        ("L", "PNG", ".png"),
        ("RGB", "JPEG", ".jpg"),
        ("RGBA", "PNG", ".png"),
        ("P", "GIF", ".gif"),
        ("CMYK", "JPEG", ".jpg"),
        ("RGB", "BMP", ".bmp"),
        ("RGB", "WEBP", ".webp"),
        ("L", "TIFF", ".tiff"),
        ("I;16", "PNG", ".png"),
    ],
)
def test_decode_formats_and_modes(
    tmp_path: Path, mode: str, fmt: str, ext: str
) -> None:
    path = tmp_path / f"img{ext}"
    if mode == "I;16":
        arr = np.full((10, 12), 65535, dtype=np.uint16)
        arr[:, :6] = 0
        Image.fromarray(arr).save(path)
    else:
        Image.new(
            mode,
            (12, 10),
            200 if mode in ("L", "P") else (200, 100, 50, 255)[: len(mode)],
        ).save(path, format=fmt)
    img, info = decode_file(path)
    assert img.mode in ("L", "RGB") and img.size == (12, 10)
    assert info.format == fmt
    for color_mode, channels in (("grayscale", 1), ("rgb", 3)):
        arr = image_to_array(img, (5, 6), color_mode=color_mode)
        assert arr.shape == (5, 6, channels) and arr.dtype == np.uint8
    if mode == "I;16":
        gray = image_to_array(img, (10, 12), color_mode="grayscale")[:, :, 0]
        assert (
            gray[:, 0].max() == 0 and gray[:, -1].min() == 255
        )  # full 16-bit range kept


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("L", (30, 10), 0)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    decoded, info = decode_file(tmp_path / "rot.jpg")
    assert decoded.size == (10, 30) and (info.width, info.height) == (10, 30)


def write_dicom(
    path: Path, pixels: np.ndarray, photometric: str, bits_stored: int
) -> Path:
    return write_dicom_file(path, pixels, bits=bits_stored, photometric=photometric)


def test_dicom_bits_stored_and_monochrome1(tmp_path: Path) -> None:
    pytest.importorskip("pydicom")
    pixels = np.zeros((8, 10), np.uint16)
    pixels[:, 5:] = 4095  # full scale for 12 bits stored
    pixels[:, 4] = 2048
    normal = write_dicom(tmp_path / "m2.dcm", pixels, "MONOCHROME2", 12)
    inverted = write_dicom(tmp_path / "m1.dcm", pixels, "MONOCHROME1", 12)
    img, info = decode_file(normal)
    arr = np.asarray(img)
    assert info.format == "DICOM" and info.mode == "MONOCHROME2"
    assert arr[0, 0] == 0 and arr[0, -1] == 255 and arr[0, 4] == 128  # 2048 / 4095
    arr = np.asarray(decode_file(inverted)[0])
    assert arr[0, 0] == 255 and arr[0, -1] == 0  # MONOCHROME1: low values are bright
