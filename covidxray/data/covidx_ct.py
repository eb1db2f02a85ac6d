"""The COVIDx CT layout: CT slices with their split, class and body box.

COVID-Net CT's split files, `{train,val,test}_COVIDx_CT-<variant>.txt`
(variants `2A`, `2B`, `3A`, `3B`), give one slice a line: `filename class
xmin ymin xmax ymax`, class 0 normal, 1 pneumonia, 2 COVID-19, and the box
the bounding box of the body. The slices are 8-bit PNGs in one folder
(`<variant>_images/`); an optional `metadata.csv` has a row per patient.
Every slice is read inside its box, wherever it is read (`body_box` finds
it for a path). See `docs/guides/datasets.md`.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

from PIL import Image

from ..errors import DataError
from .boxes import Box, box_problem
from .layouts import CT_SPLIT_FILE, ReadContext, _listed_path, register_layout
from .records import Entry
from .tables import read_csv, read_text

logger = logging.getLogger("covidxray")

__all__ = ["COVIDX_CT_FINDINGS", "body_box", "ct_patient", "read_covidx_ct"]

#: COVIDx CT's findings, by the class number of its split files.
COVIDX_CT_FINDINGS = ("Normal", "Pneumonia", "COVID-19")
_SLICE_NUMBER = re.compile(r"[_\-.]?\d+$")


def _ct_split_files(source: Path) -> dict[str, dict[str, Path]]:
    """COVIDx CT split files, by variant (`2A`, `3B`...) then split; for a
    split file, its variant's files only."""
    folder = source.parent if source.is_file() else source
    if not folder.is_dir():
        return {}
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.glob("*.txt")):
        match = CT_SPLIT_FILE.match(path.name)
        if match is not None:
            variant = match.group(2).upper()
            found.setdefault(variant, {})[match.group(1).lower()] = path
    if source.is_file():
        match = CT_SPLIT_FILE.match(source.name)
        return (
            {}
            if match is None
            else {match.group(2).upper(): found[match.group(2).upper()]}
        )
    return found


def _ct_variant(source: Path) -> tuple[str, dict[str, Path]] | None:
    """The variant to read: the newest version, "A" (confirmed cases) before "B"."""
    files = _ct_split_files(source)
    if not files:
        return None

    def rank(variant: str) -> tuple[int, bool, str]:
        number = variant[:-1]
        return (int(number) if number.isdigit() else 0, variant.endswith("A"), variant)

    variant = max(files, key=rank)
    if len(files) > 1:
        logger.info(
            "'%s' holds COVIDx CT-%s; reading CT-%s. Pass one of another "
            "variant's split files to read that one.",
            source,
            ", CT-".join(sorted(files)),
            variant,
        )
    return variant, files[variant]


def _ct_image_folder(root: Path, variant: str) -> Path:
    """Where the slices are: `<variant>_images/`, else another `*_images/`
    folder (CT-2B's slices sit in `2A_images/`), else the root."""
    named = [root / f"{variant}_images", root / f"{variant[:-1]}A_images"]
    others = sorted(
        p for p in root.iterdir() if p.is_dir() and p.name.lower().endswith("_images")
    )
    return next((p for p in [*named, *others] if p.is_dir()), root)


def _ct_patients(root: Path) -> dict[str, dict[str, str]]:
    """metadata.csv's rows by patient id ({} without the file)."""
    table = root / "metadata.csv"
    if not table.is_file():
        return {}
    header, rows = read_csv(table)
    key = next(
        (k for k in ("patient id", "patient_id", "patientid") if k in header), ""
    )
    return {row[key]: row for row in rows if key and row.get(key)}


def ct_patient(stem: str, patients: Mapping[str, object] | None = None) -> str:
    """The patient of a COVIDx CT slice: the longest `metadata.csv` patient
    id that starts its name (up to a `_`), else the name up to the slice
    number.

    Examples:
        >>> ct_patient("NCP_96_1328_0032")
        'NCP_96_1328'
        >>> ct_patient("NCP_96_1328_0032", {"NCP_96": {}})
        'NCP_96'
    """
    parts = stem.split("_")
    for n in range(len(parts) - 1, 0, -1):
        if patients and "_".join(parts[:n]) in patients:
            return "_".join(parts[:n])
    return _SLICE_NUMBER.sub("", stem) or stem


def _parse_ct_line(line: str) -> tuple[str, str, Box] | str:
    """`(filename, class, box)` of a split file's line, or what is wrong."""
    tokens = line.split()
    if len(tokens) != 6:
        return f"expected `filename class xmin ymin xmax ymax`, found {line.strip()!r}"
    name, number = tokens[0], tokens[1]
    if number not in ("0", "1", "2"):
        return (
            f"expected the class of '{name}' to be 0 (normal), 1 (pneumonia) or "
            f"2 (COVID-19), found {number!r}"
        )
    try:
        left, top, right, bottom = (int(v) for v in tokens[2:])
    except ValueError:
        return f"expected a box of four whole numbers for '{name}', found {tokens[2:]}"
    return name, number, (left, top, right, bottom)


def _slice_size(path: str) -> tuple[int, int] | None:
    """A slice's `(width, height)` from its header; None when Pillow cannot
    open it (the scan then says why)."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _read_ct_split(
    txt: Path,
    split: str,
    folder: Path,
    patients: Mapping[str, Mapping[str, str]],
    ctx: ReadContext,
    listed: dict[str, str],
) -> list[Entry]:
    entries = []
    for number, line in enumerate(read_text(txt).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{txt}:{number}"
        parsed = _parse_ct_line(line)
        if isinstance(parsed, str):
            ctx.report(where, parsed)
            continue
        name, cls, box = parsed
        if name in listed:
            ctx.report(
                where, f"the slice '{name}' is listed twice (also at {listed[name]})"
            )
            continue
        listed[name] = where
        path = _listed_path(folder, name, ctx)
        if path is None:
            continue
        if not os.path.isfile(path):
            ctx.report(where, f"the slice '{path}' does not exist")
            continue
        size = _slice_size(path)
        problem = box_problem(box, size) if size is not None else None
        if problem is not None:
            ctx.report(where, f"'{name}': {problem}")
            continue
        patient = ct_patient(Path(name).stem, patients)
        source = patients.get(patient, {}).get("source") or None
        finding = COVIDX_CT_FINDINGS[int(cls)]
        entries.append(Entry(path, finding, split, patient, source, "CT", box))
    return entries


@register_layout(
    "covidx-ct",
    before="ieee8023",
    detect=lambda source: _ct_variant(source) is not None,
    description="COVIDx CT (COVID-Net CT): {train,val,test}_COVIDx_CT-<variant>.txt "
    "(filename class xmin ymin xmax ymax) + <variant>_images/",
)
def read_covidx_ct(source: Path, ctx: ReadContext) -> list[Entry]:
    """Read COVIDx CT: CT slices, each with its split, class and body box."""
    found = _ct_variant(source)
    if found is None:
        raise DataError(
            f"Expected COVIDx CT split files such as train_COVIDx_CT-3A.txt at "
            f"'{source}'."
        )
    variant, files = found
    root = next(iter(files.values())).parent
    folder = _ct_image_folder(root, variant)
    patients = _ct_patients(root)
    listed: dict[str, str] = {}
    entries: list[Entry] = []
    for split in ("train", "val", "test"):
        if split in files:
            entries += _read_ct_split(
                files[split], split, folder, patients, ctx, listed
            )
    return entries


def body_box(path: str | os.PathLike[str]) -> Box | None:
    """The body box of a COVIDx CT slice, from the split files in its
    folder or the folder above it; None for any other image. `predict` and
    the command's Grad-CAM overlays read a slice with it, as the scan did.

    Examples:
        >>> body_box("no/such/folder/x.png") is None
        True
    """
    file = Path(path)
    for folder in (file.parent.parent, file.parent):
        try:
            stamp = os.stat(folder).st_mtime_ns
        except OSError:
            continue
        names = _ct_listing(str(folder), stamp)
        if not names:
            continue
        stamps = tuple((n, os.stat(folder / n).st_mtime_ns) for n in names)
        box = _boxes_in(str(folder), stamps).get(file.name)
        if box is not None:
            return box
    return None


@functools.lru_cache(maxsize=64)
def _ct_listing(folder: str, stamp: int) -> tuple[str, ...]:
    """The COVIDx CT split files of a folder (cached while it is unchanged)."""
    return tuple(
        p.name
        for files in _ct_split_files(Path(folder)).values()
        for p in files.values()
    )


@functools.lru_cache(maxsize=16)
def _boxes_in(folder: str, stamps: tuple[tuple[str, int], ...]) -> dict[str, Box]:
    out: dict[str, Box] = {}
    for name, _ in stamps:
        for line in read_text(Path(folder) / name).splitlines():
            parsed = _parse_ct_line(line)
            if not isinstance(parsed, str):
                out.setdefault(parsed[0], parsed[2])
    return out
