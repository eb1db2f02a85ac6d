"""Small helpers shared by the tests."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
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


def write_dicom(
    path: Path,
    stored: np.ndarray,
    *,
    bits: int = 12,
    photometric: str = "MONOCHROME2",
    frames: int = 1,
    **tags: object,
) -> Path:
    """A DICOM file of `stored` values (16 bits allocated), with `tags`."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits, bits - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = stored.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(path).Rows == stored.shape[-2]
    return path


def two_sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two sources that write their classes their own ways: `a` (synthetic) and
    `b`, which republishes one image of `a` at another size and format (not
    the same bytes, nor the same pixels)."""
    from covidxray.datasets import make_synthetic

    # 128 px: a perceptual hash of a much smaller picture is not stable.
    a = make_synthetic(
        tmp_path_factory.mktemp("a"), n_per_class=12, image_size=(128, 128), seed=1
    )
    b = tmp_path_factory.mktemp("b")
    # Source b writes its classes its own way, and republishes one image of a
    # (another size, another format): not the same bytes, nor the same pixels.
    other = make_synthetic(b / "raw", n_per_class=10, image_size=(128, 128), seed=2)
    for folder, name in (("covid", "COVID-19"), ("normal", "non")):
        (b / name).mkdir()
        for path in sorted((other / folder).iterdir()):
            Image.open(path).save(b / name / path.name)
    copy = sorted((a / "covid").iterdir())[0]
    Image.open(copy).resize((60, 60)).save(
        b / "COVID-19" / "republished.jpg", quality=90
    )
    import shutil

    shutil.rmtree(b / "raw")
    return {"a": a, "b": b}


def make_folder_set(
    root: Path, classes=("covid", "normal"), n: int = 6, split: str | None = None
) -> Path:
    """Class folders of small random images, under `root/split` when given."""
    offset = {None: 0, "train": 100, "test": 200}[split]  # no image in two splits
    for c, cls in enumerate(classes):
        for k in range(n):
            base = root / split if split else root
            write_image(base / cls / f"{cls}_{k}.png", seed=1000 * c + k + offset)
    return root


#: The slices `write_covidx_ct` writes: split -> (patient, class, slices).
COVIDX_CT_PATIENTS = {
    "train": [
        ("NCP_1_10", 2, 3),
        ("NCP_2_11", 2, 3),
        ("CP_1_20", 1, 3),
        ("Normal_1_30", 0, 3),
    ],
    "val": [("NCP_3_12", 2, 2), ("Normal_2_31", 0, 2)],
    "test": [("NCP_4_13", 2, 3), ("CP_2_21", 1, 2), ("Normal_3_32", 0, 3)],
}
#: Slice size (width, height) and body box of `write_covidx_ct`.
COVIDX_CT_SIZE = (40, 32)
COVIDX_CT_BOX = (6, 4, 34, 28)


def write_covidx_ct(
    root: Path, variant: str = "3A", *, metadata: bool = False, extra: str = ""
) -> Path:
    """A COVIDx CT folder of exactly the published shape, with tiny slices:
    `{train,val,test}_COVIDx_CT-<variant>.txt` (`filename class xmin ymin xmax
    ymax`) and `<variant>_images/<patient>_<slice>.png`, 8-bit, black outside
    the body box. `extra` is appended to the test split file."""
    images = root / f"{variant}_images"
    images.mkdir(parents=True, exist_ok=True)
    left, top, right, bottom = COVIDX_CT_BOX
    rows = []
    for s, (split, patients) in enumerate(COVIDX_CT_PATIENTS.items()):
        lines = []
        for p, (patient, cls, n) in enumerate(patients):
            for k in range(n):
                rng = np.random.default_rng(1000 * s + 100 * p + k)
                arr = np.zeros(COVIDX_CT_SIZE[::-1], np.uint8)
                arr[top:bottom, left:right] = rng.integers(
                    40 + 60 * cls, 100 + 60 * cls, (bottom - top, right - left)
                )
                name = f"{patient}_{k:04d}.png"
                Image.fromarray(arr).save(images / name)
                lines.append(f"{name} {cls} {left} {top} {right} {bottom}")
            finding = ("Normal", "Pneumonia", "COVID-19")[cls]
            rows.append(f"{patient.rsplit('_', 1)[0]},SRC{p % 2},{finding},CT")
        text = "\n".join(lines) + "\n" + (extra if split == "test" else "")
        (root / f"{split}_COVIDx_CT-{variant}.txt").write_text(text)
    if metadata:
        header = "patient id,source,finding,modality"
        (root / "metadata.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


class FakeLungModel:
    """Stands in for the shipped U-Net (`covidxray.lungs.unet.LungModel`):
    two lungs at fixed shares of each image (rows 20%-85%, columns 15%-45%
    and 55%-85%), none for a file whose name has "nolung" in it. Counts the
    images it was asked about."""

    calls = 0

    def masks(self, images, names):
        from covidxray.lungs import LungMask, check_mask

        out = []
        for image, name in zip(images, names, strict=True):
            FakeLungModel.calls += 1
            if isinstance(image, Image.Image):
                w, h = image.size
            else:
                h, w = np.asarray(image).shape[:2]
            mask = np.zeros((h, w), bool)
            if "nolung" not in str(name):
                top, bottom = round(0.2 * h), round(0.85 * h)
                mask[top:bottom, round(0.15 * w) : round(0.45 * w)] = True
                mask[top:bottom, round(0.55 * w) : round(0.85 * w)] = True
            out.append(LungMask(mask, str(name), tuple(check_mask(mask))))
        return out

    def info(self):
        return {"version": "fake", "weights_sha256": "f" * 64}


#: Headless Chromium, where installed (`apt-get install chromium`): the
#: browser tests skip without it.
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
#: The marks of a browser test: slow, and skipped where no Chromium is installed.
BROWSER_TEST = [
    pytest.mark.slow,
    pytest.mark.skipif(BROWSER is None, reason="no headless Chromium installed"),
]


def browser_probe(
    page: Path, width: int = 1280, *, scrollbars: bool = True
) -> dict[str, int]:
    """Open `page` in headless Chromium at `width` px (with or without
    scrollbars) and return the `name=value;...` facts that a script of the
    page wrote into the body's `data-probe` attribute once it loaded."""
    result = subprocess.run(
        [
            str(BROWSER),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            *([] if scrollbars else ["--hide-scrollbars"]),
            "--disable-background-networking",
            "--disable-component-update",
            f"--window-size={width},1000",
            "--virtual-time-budget=3000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'data-probe="([^"]+)"', result.stdout)
    assert found, result.stderr[-2000:]
    return {k: int(v) for k, v in (p.split("=") for p in found.group(1).split(";"))}
