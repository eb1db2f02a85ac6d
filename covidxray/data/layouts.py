"""Readers for the public COVID chest X-ray dataset layouts.

A reader is one small function that turns a dataset, as it comes from its
source, into `Entry` objects (path, finding, split, patient). Register it with
`register_layout` and `load_dataset(layout="auto")` will detect it; nothing
else needs to change. The guide *Datasets and layouts* describes each layout.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .checks import class_folder_links
from .decode import DICOM_EXTENSIONS, IMAGE_EXTENSIONS, find_images
from .labels import canon
from .records import Entry
from .tables import read_csv, read_text

__all__ = [
    "CT_SPLIT_FILE",
    "LAYOUTS",
    "SYNTHETIC_NOTICE",
    "Layout",
    "ReadContext",
    "detect_layout",
    "is_synthetic",
    "register_layout",
]

SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
UNLABELLED = {"", "todo", "unknown"}
READ_EXTENSIONS = IMAGE_EXTENSIONS + DICOM_EXTENSIONS
#: The notice file that marks a folder of synthetic demo images (written by
#: `covidxray.datasets.make_synthetic`).
SYNTHETIC_NOTICE = "SYNTHETIC.txt"


@dataclass
class ReadContext:
    """What a reader needs besides the path: filters and where to put problems."""

    report: Callable[[str, str], None]
    views: Sequence[str] | None = None
    modality: str | None = "X-ray"
    dropped: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Layout:
    """A registered dataset layout."""

    name: str
    detect: Callable[[Path], bool]
    read: Callable[[Path, ReadContext], list[Entry]]
    description: str


LAYOUTS: dict[str, Layout] = {}


def register_layout(
    name: str,
    *,
    detect: Callable[[Path], bool],
    description: str,
    before: str | None = None,
) -> Callable[
    [Callable[[Path, ReadContext], list[Entry]]],
    Callable[[Path, ReadContext], list[Entry]],
]:
    """Register a reader under `name`. Detection tries layouts in order: the
    order of registration, or just `before` the layout it names (a layout
    whose signature is more specific than that one's)."""

    def wrap(
        read: Callable[[Path, ReadContext], list[Entry]],
    ) -> Callable[[Path, ReadContext], list[Entry]]:
        items = [(k, v) for k, v in LAYOUTS.items() if k != name]
        at = [k for k, _ in items].index(before) if before in LAYOUTS else len(items)
        items.insert(at, (name, Layout(name, detect, read, description)))
        LAYOUTS.clear()
        LAYOUTS.update(items)
        return read

    return wrap


def detect_layout(source: Path) -> str:
    """Name of the first registered layout that recognises `source`."""
    for layout in LAYOUTS.values():
        if layout.detect(source):
            return layout.name
    raise DataError(
        f"Could not recognise the dataset layout of '{source}'. Expected a folder "
        "per class, a metadata CSV (ieee8023, Figure1, Actualmed, CoronaHack), "
        "COVIDx or COVIDx CT split .txt files, or a manifest CSV with `path,label` "
        "columns. "
        f"Pass layout= one of {', '.join(repr(n) for n in LAYOUTS)} to choose."
    )


# --------------------------------------------------------------------------- helpers


def _header(path: Path) -> list[str]:
    try:
        first = read_text(path).splitlines()[0]
    except (DataError, IndexError):
        return []
    return [h.strip().strip('"').lower() for h in first.split(",")]


def _table(source: Path, default_name: str) -> Path | None:
    if source.is_file():
        return source
    candidate = source / default_name
    return candidate if candidate.is_file() else None


def _listed_path(root: Path, relative: str, ctx: ReadContext) -> str | None:
    """Join a path from a table to its root, refusing paths that leave the root."""
    if not relative:
        ctx.report(str(root), "a row has an empty file name")
        return None
    joined = os.path.normpath(os.path.join(root, relative))
    base = os.path.normpath(root)
    if os.path.commonpath([os.path.abspath(joined), os.path.abspath(base)]) != (
        os.path.abspath(base)
    ):
        ctx.report(
            joined,
            f"the path {relative!r} leaves the dataset folder '{base}'; "
            "only paths inside it are read",
        )
        return None
    return joined


def _csv_with(source: Path, default_name: str, *columns: str) -> Path | None:
    table = _table(source, default_name)
    if table is None or table.suffix.lower() != ".csv":
        return None
    header = set(_header(table))
    return table if all(c in header for c in columns) else None


def _keep_view(row: dict[str, str], ctx: ReadContext) -> bool:
    if ctx.modality is not None:
        modality = row.get("modality", "")
        if modality and canon(modality) != canon(ctx.modality):
            ctx.dropped[f"modality {modality}"] += 1
            return False
    if ctx.views is not None:
        view = row.get("view", "")
        if view.lower() not in {v.lower() for v in ctx.views}:
            ctx.dropped[f"view {view or 'blank'}"] += 1
            return False
    return True


def _labelled(finding: str, ctx: ReadContext) -> bool:
    if finding.strip().lower() in UNLABELLED:
        ctx.dropped[f"finding {finding.strip() or 'blank'}"] += 1
        return False
    return True


#: The name of a COVIDx CT split file (`covidx_ct`), which the chest X-ray
#: COVIDx reader leaves alone: group 1 is the split, group 2 the variant.
CT_SPLIT_FILE = re.compile(
    r"^(train|val|test)_covidx[_-]?ct-(\w+)\.txt$", re.IGNORECASE
)


# --------------------------------------------------------------------------- ieee8023


def _is_ieee8023(source: Path) -> bool:
    return _csv_with(source, "metadata.csv", "finding", "filename") is not None


@register_layout(
    "ieee8023",
    detect=_is_ieee8023,
    description="COVID-19 image data collection: metadata.csv + images/",
)
def read_ieee8023(source: Path, ctx: ReadContext) -> list[Entry]:
    """Read ieee8023/covid-chestxray-dataset (old and new `metadata.csv`)."""
    table = _csv_with(source, "metadata.csv", "finding", "filename")
    assert table is not None
    root = table.parent
    entries = []
    for row in read_csv(table)[1]:
        finding = row.get("finding", "")
        if not _labelled(finding, ctx) or not _keep_view(row, ctx):
            continue
        folder = row.get("folder") or "images"
        path = _listed_path(root, os.path.join(folder, row.get("filename", "")), ctx)
        if path is not None:
            patient = row.get("patientid") or None
            modality = _modality(row.get("modality", ""))
            entries.append(Entry(path, finding, None, patient, None, modality))
    return entries


def _modality(value: str) -> str:
    """A metadata row's modality as records name it: "CT", "X-ray" (also for
    a blank cell), or the cell as written."""
    known = {"ct": "CT", "xray": "X-ray", "cr": "X-ray", "dx": "X-ray", "": "X-ray"}
    return known.get(canon(value), value.strip())


# ------------------------------------------------------------ Figure1 and Actualmed


def _is_actualmed(source: Path) -> bool:
    return _csv_with(source, "metadata.csv", "finding", "imagename") is not None


def _is_figure1(source: Path) -> bool:
    table = _csv_with(source, "metadata.csv", "finding", "patientid")
    return table is not None and "imagename" not in _header(table)


def _read_agchung(source: Path, ctx: ReadContext, name: str) -> list[Entry]:
    table = _table(source, "metadata.csv")
    assert table is not None
    root = table.parent
    entries = []
    for row in read_csv(table)[1]:
        finding = row.get("finding", "")
        if not finding:
            ctx.dropped["finding blank"] += 1
            continue
        if not _keep_view(row, ctx):
            continue
        patient = row.get("patientid", "")
        if name == "actualmed":
            relative = os.path.join("images", row.get("imagename", ""))
        else:
            relative = os.path.join("images", patient + ".jpg")
            for ext in IMAGE_EXTENSIONS:
                if (root / "images" / (patient + ext)).exists():
                    relative = os.path.join("images", patient + ext)
                    break
        path = _listed_path(root, relative, ctx)
        if path is not None:
            entries.append(Entry(path, finding, None, patient or None, None))
    return entries


@register_layout(
    "actualmed",
    detect=_is_actualmed,
    description="Actualmed COVID chest X-ray set: metadata.csv (imagename) + images/",
)
def read_actualmed(source: Path, ctx: ReadContext) -> list[Entry]:
    """Read the Actualmed set (`imagename` column)."""
    return _read_agchung(source, ctx, "actualmed")


@register_layout(
    "figure1",
    detect=_is_figure1,
    description="Figure1 COVID chest X-ray set: metadata.csv + images/<patientid>.*",
)
def read_figure1(source: Path, ctx: ReadContext) -> list[Entry]:
    """Read the Figure1 set (file name = patientid + extension)."""
    return _read_agchung(source, ctx, "figure1")


# --------------------------------------------------------------------------- CoronaHack

CORONAHACK_CSV = "Chest_xray_Corona_Metadata.csv"


def _is_coronahack(source: Path) -> bool:
    return _csv_with(source, CORONAHACK_CSV, "x_ray_image_name", "label") is not None


@register_layout(
    "coronahack",
    detect=_is_coronahack,
    description="Kaggle CoronaHack: Chest_xray_Corona_Metadata.csv + train/ test/",
)
def read_coronahack(source: Path, ctx: ReadContext) -> list[Entry]:
    """Read Kaggle CoronaHack. A row is COVID when Label_2 is COVID-19."""
    table = _csv_with(source, CORONAHACK_CSV, "x_ray_image_name", "label")
    assert table is not None
    root = table.parent / "Coronahack-Chest-XRay-Dataset"
    if (root / "Coronahack-Chest-XRay-Dataset").is_dir():
        root = root / "Coronahack-Chest-XRay-Dataset"  # as the Kaggle zip unpacks
    entries = []
    for row in read_csv(table)[1]:
        parts = [
            row.get("label", ""),
            row.get("label_1_virus_category", ""),
            row.get("label_2_virus_category", ""),
        ]
        finding = "/".join(p for p in parts if p)
        if not _labelled(finding, ctx):
            continue
        split = SPLIT_NAMES.get(row.get("dataset_type", "").lower())
        folder = split or "train"
        relative = os.path.join(
            root.relative_to(table.parent), folder, row.get("x_ray_image_name", "")
        )
        path = _listed_path(table.parent, relative, ctx)
        if path is not None:
            entries.append(Entry(path, finding, split, None, None))
    return entries


# --------------------------------------------------------------------------- COVIDx

COVIDX_LABELS = {"positive", "negative", "covid-19", "normal", "pneumonia"}


def _covidx_files(source: Path) -> list[Path]:
    """The chest X-ray COVIDx split files (COVIDx CT's are not among them)."""
    if source.is_file():
        x_ray = source.suffix.lower() == ".txt" and not CT_SPLIT_FILE.match(source.name)
        return [source] if x_ray else []
    return sorted(
        p
        for p in source.glob("*.txt")
        if "covidx" in p.name.lower()
        and p.name.lower().startswith(("train", "test", "val"))
        and not CT_SPLIT_FILE.match(p.name)
    )


def _parse_covidx_line(line: str) -> tuple[str, str, str, str | None] | None:
    tokens = line.split()
    if len(tokens) < 3:
        return None
    if tokens[-1].lower() in COVIDX_LABELS:  # three fields, no source
        label, filename, patient = tokens[-1], tokens[-2], " ".join(tokens[:-2])
        return patient, filename, label, None
    if len(tokens) < 4:
        return None
    source, label, filename = tokens[-1], tokens[-2], tokens[-3]
    return " ".join(tokens[:-3]), filename, label, source


@register_layout(
    "covidx",
    detect=lambda source: bool(_covidx_files(source)),
    description="COVIDx (COVID-Net) split files train_COVIDx*.txt / test_COVIDx*.txt",
)
def read_covidx(source: Path, ctx: ReadContext) -> list[Entry]:
    """Read COVIDx split files, parsing each line from the right."""
    entries = []
    for txt in _covidx_files(source):
        root = txt.parent
        split = SPLIT_NAMES.get(txt.name.lower().split("_")[0], "train")
        for number, line in enumerate(read_text(txt).splitlines(), start=1):
            if not line.strip():
                continue
            parsed = _parse_covidx_line(line)
            if parsed is None:
                ctx.report(
                    f"{txt}:{number}",
                    "expected `patientid filename label [source]`, "
                    f"found {line.strip()!r}",
                )
                continue
            patient, filename, label, src = parsed
            if label.lower() not in COVIDX_LABELS:
                ctx.report(
                    f"{txt}:{number}",
                    f"expected a label in {sorted(COVIDX_LABELS)}, found {label!r}",
                )
                continue
            finding = "COVID-19" if label.lower() == "positive" else label
            folder = split if (root / split).is_dir() else ""
            path = _listed_path(root, os.path.join(folder, filename), ctx)
            if path is not None:
                entries.append(Entry(path, finding, split, patient, src or None))
    return entries


# --------------------------------------------------------------------------- manifest


def _manifest_table(source: Path) -> Path | None:
    if source.is_file():
        return _csv_with(source, "", "path", "label")
    for name in ("manifest.csv", "labels.csv"):
        found = _csv_with(source, name, "path", "label")
        if found is not None:
            return found
    return None


@register_layout(
    "manifest",
    detect=lambda source: _manifest_table(source) is not None,
    description="A manifest CSV: path,label[,patient_id][,split]",
)
def read_manifest(source: Path, ctx: ReadContext) -> list[Entry]:
    """Read a plain manifest CSV. Paths are relative to the CSV's folder."""
    table = _manifest_table(source)
    if table is None:
        raise DataError(
            f"Expected a manifest CSV with `path,label` columns at '{source}' "
            "(or manifest.csv / labels.csv inside it)."
        )
    entries = []
    for number, row in enumerate(read_csv(table)[1], start=2):
        split_text = row.get("split", "").lower()
        split = SPLIT_NAMES.get(split_text) if split_text else None
        if split_text and split is None:
            ctx.report(
                f"{table}:{number}",
                f"expected split one of train, val, test; found {split_text!r}",
            )
            continue
        path = _listed_path(table.parent, row.get("path", ""), ctx)
        if path is None:
            continue
        if not _labelled(row.get("label", ""), ctx):
            continue
        patient = row.get("patient_id") or row.get("patient") or None
        entries.append(Entry(path, row["label"], split, patient, None))
    return entries


# --------------------------------------------------------------------------- folders


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
    )


def _is_folder_layout(source: Path) -> bool:
    return source.is_dir() and bool(_class_dirs(source))


@register_layout(
    "folder",
    detect=_is_folder_layout,
    description="A folder per class, optionally under train/ val/ test/",
)
def read_folders(source: Path, ctx: ReadContext) -> list[Entry]:
    """Read `root/<class>/*` or `root/{train,val,test}/<class>/*`."""
    if not source.is_dir():
        raise DataError(f"Expected a folder of class folders at '{source}'.")
    subdirs = _class_dirs(source)
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_NAMES]
    groups = (
        [(SPLIT_NAMES[d.name.lower()], d) for d in split_dirs]
        if split_dirs
        else [(None, source)]
    )
    entries: list[Entry] = []
    for split, folder in groups:
        class_dirs = _class_dirs(folder)
        if not class_dirs:
            raise DataError(f"Found no class folders under '{folder}'.")
        links = class_folder_links(class_dirs, folder)
        if links:
            raise DataError(
                f"The class folders {links} are links to '{folder}' or a folder "
                "above it, so they would hold every class's images. Remove them."
            )
        for class_dir in class_dirs:
            files = find_images(class_dir)
            if not files:
                raise DataError(
                    f"Found no images under '{class_dir}'. Files with these "
                    f"extensions are read: {' '.join(READ_EXTENSIONS)}."
                )
            entries.extend(Entry(f, class_dir.name, split, None, None) for f in files)
    return entries


def is_synthetic(directory: str | os.PathLike[str]) -> bool:
    """Whether a folder holds synthetic demo data (it holds SYNTHETIC.txt).

    Examples:
        >>> import tempfile
        >>> from covidxray.datasets import make_synthetic
        >>> is_synthetic(make_synthetic(tempfile.mkdtemp(), n_per_class=1,
        ...                             image_size=(8, 8)))
        True
    """
    return (Path(directory) / SYNTHETIC_NOTICE).is_file()
