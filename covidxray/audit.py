"""Finding leaks and shortcuts in a dataset: `audit` and `AuditReport`.

Everything here works on records (hashes and file metadata), not on pixels,
so an audit of thousands of images takes seconds once the scan is done.
"""

from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._probe import (
    IMAGE_FEATURES,
    METADATA_FEATURES,
    image_features,
    metadata_features,
    probe_auc,
)
from .data import identity
from .data.catalog import load_dataset
from .data.dataset import XrayDataset
from .data.layouts import is_synthetic
from .data.records import Record, count_by_source
from .data.split import SPLIT_ORDER, content_groups, cross_source_copies

logger = logging.getLogger("covidxray")

__all__ = ["AuditReport", "audit"]

#: A shortcut probe AUC at or above this raises a warning.
SHORTCUT_WARN_AUC = 0.8
_FEATURES = METADATA_FEATURES


@dataclass
class AuditReport:
    """What `audit` found. Every list holds plain, JSON-friendly values.

    Attributes:
        n_images: Images audited (kept plus removed duplicates).
        exact_duplicates: Groups of files with the same bytes or pixels. Each is
            a dict with `paths`, `splits`, `labels`, `cross_split` and `removed`
            (how many copies `deduplicate=True` already left out).
        near_duplicates: Pairs of different files whose perceptual hashes differ
            in at most `near_threshold` bits, as dicts with `paths`, `splits`,
            `distance` and `cross_split`.
        patient_overlap: Patients found in more than one split, with the splits.
        class_table: Per class: counts of colour modes and formats, and size
            statistics.
        shortcut_auc: Cross-validated ROC AUC of a model that predicts the label
            from file metadata alone (1.0 = metadata gives the label away).
        shortcut_feature_auc: The same probe with one feature at a time.
        source_table: Images per source and class.
        cross_source_copies: Pairs of images of two sources whose perceptual
            hashes differ in at most `SAME_PICTURE.copy_bits()` bits (12 of
            256: the same radiograph published twice), with `paths`,
            `sources`, `labels`, `distance`.
        source_probe: How well image statistics (intensity histogram, border
            and corners, noise, sharpness, size, aspect, bit depth, colour
            mode) predict the source (`source_auc`, macro one-vs-rest) and the
            label (`label_auc`, and `label_auc_by_source` within each source
            that holds both classes), as cross-validated ROC AUC, and a
            `reading` in plain words.
        modalities: Images per modality (`"X-ray"`, `"CT"`); a mix is
            warned about: the modality is a shortcut of its own.
        patients: Patients per split (those with a patient id).
        boxes: Images read inside a body box (COVIDx CT slices).
        warnings: Plain sentences about what needs attention.
    """

    n_images: int
    exact_duplicates: list[dict[str, Any]] = field(default_factory=list)
    near_duplicates: list[dict[str, Any]] = field(default_factory=list)
    patient_overlap: dict[str, list[str]] = field(default_factory=dict)
    class_table: dict[str, dict[str, Any]] = field(default_factory=dict)
    shortcut_auc: float | None = None
    shortcut_feature_auc: dict[str, float] = field(default_factory=dict)
    near_threshold: int = 24
    source_table: dict[str, dict[str, int]] = field(default_factory=dict)
    cross_source_copies: list[dict[str, Any]] = field(default_factory=list)
    source_probe: dict[str, Any] = field(default_factory=dict)
    modalities: dict[str, int] = field(default_factory=dict)
    patients: dict[str, int] = field(default_factory=dict)
    boxes: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def cross_split_duplicates(self) -> list[dict[str, Any]]:
        """The exact duplicate groups that span more than one split."""
        return [g for g in self.exact_duplicates if g["cross_split"]]

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-friendly dict."""
        return {
            "n_images": self.n_images,
            "exact_duplicates": self.exact_duplicates,
            "near_duplicates": self.near_duplicates,
            "near_threshold": self.near_threshold,
            "patient_overlap": self.patient_overlap,
            "class_table": self.class_table,
            "shortcut_auc": self.shortcut_auc,
            "shortcut_feature_auc": self.shortcut_feature_auc,
            "source_table": self.source_table,
            "cross_source_copies": self.cross_source_copies,
            "source_probe": self.source_probe,
            "modalities": self.modalities,
            "patients": self.patients,
            "boxes": self.boxes,
            "warnings": self.warnings,
        }

    def to_markdown(self) -> str:
        """The report as a Markdown document."""
        lines = ["# Dataset audit", "", f"Images audited: {self.n_images}", ""]
        if self.modalities:
            mix = ", ".join(f"{k} {v}" for k, v in self.modalities.items())
            lines += [f"Modality: {mix}", ""]
        if self.patients:
            per = ", ".join(f"{k} {v}" for k, v in self.patients.items())
            lines += [f"Patients: {per}", ""]
        if self.boxes:
            lines += [f"Read inside their body box: {self.boxes} images", ""]
        lines += ["## Warnings", ""]
        lines += [f"- {w}" for w in self.warnings] or ["- None."]
        cross = self.cross_split_duplicates
        lines += [
            "",
            "## Exact duplicates",
            "",
            f"{len(self.exact_duplicates)} groups of identical images, "
            f"{len(cross)} of them across splits.",
            "",
        ]
        for group in cross[:20]:
            lines.append(
                "- "
                + ", ".join(
                    f"`{os.path.basename(p)}` ({s})"
                    for p, s in zip(group["paths"], group["splits"], strict=True)
                )
            )
        near_cross = [p for p in self.near_duplicates if p["cross_split"]]
        lines += [
            "",
            "## Near-duplicates",
            "",
            f"{len(self.near_duplicates)} pairs within {self.near_threshold} bits of "
            f"perceptual hash, {len(near_cross)} of them across splits.",
            "",
            "## Patients in more than one split",
            "",
            f"{len(self.patient_overlap)} patients.",
            "",
            "## Per class",
            "",
            "| class | images | modes | formats | median size (w x h) | size range |",
            "|---|---|---|---|---|---|",
        ]
        for name, row in self.class_table.items():
            modes = ", ".join(f"{k} {v}" for k, v in row["modes"].items())
            formats = ", ".join(f"{k} {v}" for k, v in row["formats"].items())
            lines.append(
                f"| {name} | {row['n']} | {modes} | {formats} | "
                f"{row['median_width']:.0f} x {row['median_height']:.0f} | "
                f"{row['min_side']}-{row['max_side']} px |"
            )
        lines += ["", "## Shortcut probe", ""]
        if self.shortcut_auc is None:
            lines.append("Not run (too few images per class).")
        else:
            lines.append(
                "Cross-validated ROC AUC of a random forest that sees only file "
                f"metadata ({', '.join(_FEATURES)}): **{self.shortcut_auc:.3f}**."
            )
            lines += ["", "| feature alone | AUC |", "|---|---|"]
            lines += [
                f"| {k} | {v:.3f} |" for k, v in self.shortcut_feature_auc.items()
            ]
        lines += self._source_lines()
        return "\n".join(lines) + "\n"

    def _source_lines(self) -> list[str]:
        classes = sorted({c for row in self.source_table.values() for c in row})
        lines = ["", "## Sources", ""]
        lines += [
            "| source | " + " | ".join(classes) + " |",
            "|---|" + "---|" * len(classes),
        ]
        for name, row in self.source_table.items():
            lines.append(
                f"| {name} | " + " | ".join(str(row.get(c, 0)) for c in classes) + " |"
            )
        if self.cross_source_copies:
            lines += [
                "",
                f"{len(self.cross_source_copies)} images are copies of an image of "
                "another source (perceptual hash within "
                f"{identity.SAME_PICTURE.copy_bits(256)} bits).",
            ]
        probe = self.source_probe
        if probe:
            lines += ["", "### Source probe", "", probe.get("reading", ""), ""]
            lines += ["| what the statistics predict | ROC AUC |", "|---|---|"]
            if probe.get("source_auc") is not None:
                lines.append(f"| the source | {probe['source_auc']:.3f} |")
            if probe.get("label_auc") is not None:
                lines.append(f"| the label, all sources | {probe['label_auc']:.3f} |")
            for name, auc in probe.get("label_auc_by_source", {}).items():
                if auc is not None:
                    lines.append(f"| the label, within {name} | {auc:.3f} |")
        return lines


def _exact_groups(
    records: Sequence[Record], removed_paths: set[str]
) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for idx in content_groups(records):
        recs = [records[i] for i in idx]
        groups.append(
            {
                "paths": [r.path for r in recs],
                "splits": [r.split for r in recs],
                "labels": [r.label for r in recs],
                "same_bytes": len({r.sha256 for r in recs}) == 1,
                "cross_split": len({r.split for r in recs}) > 1,
                "removed": sum(r.path in removed_paths for r in recs),
            }
        )
    groups.sort(key=lambda g: (not g["cross_split"], g["paths"][0]))
    return groups


def _near_pairs(
    records: Sequence[Record], threshold: int, exact: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    if not records:
        return []
    hashes = identity.stack_hashes([r.phash for r in records])
    same_content = {
        frozenset((a, b))
        for g in exact
        for a in g["paths"]
        for b in g["paths"]
        if a != b
    }
    pairs = []
    for i, j, distance in zip(*identity.near_pairs(hashes, threshold), strict=True):
        a, b = records[int(i)], records[int(j)]
        if frozenset((a.path, b.path)) in same_content:
            continue
        pairs.append(
            {
                "paths": [a.path, b.path],
                "splits": [a.split, b.split],
                "labels": [a.label, b.label],
                "distance": int(distance),
                "cross_split": a.split != b.split,
            }
        )
    pairs.sort(key=lambda p: (not p["cross_split"], p["distance"], p["paths"]))
    return pairs


def _class_table(records: Sequence[Record]) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for label in sorted({r.label for r in records}):
        recs = [r for r in records if r.label == label]
        widths = np.array([r.width for r in recs])
        heights = np.array([r.height for r in recs])
        sides = np.concatenate([widths, heights])
        table[label] = {
            "n": len(recs),
            "modes": dict(Counter(r.mode for r in recs).most_common()),
            "formats": dict(Counter(r.format for r in recs).most_common()),
            "median_width": float(np.median(widths)),
            "median_height": float(np.median(heights)),
            "min_side": int(sides.min()),
            "max_side": int(sides.max()),
            "median_bytes": float(np.median([r.n_bytes for r in recs])),
        }
    return table


def audit(
    dataset: XrayDataset | str | os.PathLike[str],
    *,
    near_threshold: int | None = None,
    shortcut_probe: bool = True,
    source_probe: bool = True,
    seed: int = 0,
    **load_kwargs: Any,
) -> AuditReport:
    """Look for leaks and shortcuts in a dataset.

    It reports exact duplicates (same bytes or pixels) within and across splits,
    near-duplicates (perceptual hash within `near_threshold` of 256 bits), patients in
    two splits, a per-class table of colour mode, format and size, and a
    shortcut probe: the cross-validated ROC AUC of a random forest that predicts
    the label from file metadata alone (mode, format, width, height, aspect,
    bytes). A high AUC means the classes differ in how their files were made,
    and a model can cheat by learning that instead of the lungs.

    Duplicates that `load_dataset(deduplicate=True)` already removed are still
    reported (with `removed` counts), so the audit describes the source.

    Args:
        dataset: An `XrayDataset`, or a path (or several sources, as
            `load_dataset` takes them), which is then read with
            `load_dataset(path, deduplicate=False, image_size=(64, 64),
            **load_kwargs)`.
        near_threshold: Hamming distance (of 256 bits) for near-duplicates;
            None (the default) takes it from `identity.SAME_PICTURE`: 24. On
            seed-xray, copies of one figure differ by 4-20 bits and different
            studies of one patient by 38 or more.
        shortcut_probe: Run the metadata shortcut probe.
        source_probe: Run the source probe on image statistics (reads every
            image's cached pixels once).
        seed: Seed of the probe's cross-validation and forest.
        **load_kwargs: Passed to `load_dataset` when `dataset` is a path.

    Returns:
        The `AuditReport`.

    Examples:
        >>> import tempfile
        >>> from covidxray import audit
        >>> from covidxray.datasets import make_synthetic
        >>> root = make_synthetic(tempfile.mkdtemp(), n_per_class=6, test_per_class=3,
        ...                       leaked=2, image_size=(32, 32))
        >>> report = audit(root)
        >>> len(report.cross_split_duplicates)
        2
        >>> report.warnings[1]
        '2 images appear in more than one split (exact copies)...'
    """
    if not isinstance(dataset, XrayDataset):
        load_kwargs.setdefault("deduplicate", False)
        load_kwargs.setdefault("image_size", (64, 64))
        dataset = load_dataset(dataset, **load_kwargs)
    if near_threshold is None:
        near_threshold = identity.SAME_PICTURE.near_bits(256)
    removed = [pair[0] for pair in dataset.duplicates_removed]
    removed_paths = {r.path for r in removed}
    records = list(dataset.records) + removed
    report = AuditReport(n_images=len(records), near_threshold=near_threshold)
    report.exact_duplicates = _exact_groups(records, removed_paths)
    report.near_duplicates = _near_pairs(
        records, near_threshold, report.exact_duplicates
    )
    splits_of_patient: dict[str, set[str]] = defaultdict(set)
    for rec in dataset.records:
        if rec.patient_id:
            splits_of_patient[rec.patient_id].add(rec.split)
    report.patient_overlap = {
        p: sorted(s) for p, s in sorted(splits_of_patient.items()) if len(s) > 1
    }
    report.class_table = _class_table(records)
    report.modalities = dict(Counter(r.modality for r in records).most_common())
    patients: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for rec in dataset.records:
        if rec.patient_id:
            patients[rec.split].add((str(rec.source), rec.patient_id))
    report.patients = {s: len(patients[s]) for s in SPLIT_ORDER if s in patients}
    report.boxes = sum(r.box is not None for r in records)

    positive = dataset.positive_class or dataset.class_names[-1]
    y = np.array([r.label == positive for r in records], dtype=int)
    if shortcut_probe and np.bincount(y, minlength=2).min() >= 2:
        report.shortcut_auc = probe_auc(metadata_features(records, _FEATURES), y, seed)
        for name in _FEATURES:
            auc = probe_auc(metadata_features(records, [name]), y, seed)
            report.shortcut_feature_auc[name] = 0.5 if auc is None else auc

    report.source_table = count_by_source(records, dataset.class_names)
    report.cross_source_copies = _copies(records)
    if source_probe:
        report.source_probe = _source_probe(dataset, records, y, seed)

    paths = list(dataset.sources.values()) or [dataset.source]
    if any(is_synthetic(p) for p in paths):
        report.warnings.append("This is SYNTHETIC demo data, not X-rays.")
    cross = report.cross_split_duplicates
    if cross:
        n_files = sum(len(g["paths"]) - 1 for g in cross)
        still = sum(len(g["paths"]) - g["removed"] > 1 for g in cross)
        note = (
            "all removed by deduplicate=True"
            if dataset.duplicates_removed and not still
            else "accuracy measured on this split is inflated"
        )
        report.warnings.append(
            f"{n_files} images appear in more than one split (exact copies), {note}."
        )
    within = [g for g in report.exact_duplicates if not g["cross_split"]]
    if within:
        report.warnings.append(
            f"{len(within)} groups of exact copies within a split weight some "
            "images twice."
        )
    conflicts = [g for g in report.exact_duplicates if len(set(g["labels"])) > 1]
    if conflicts:
        named = "; ".join(
            " = ".join(
                f"'{p}' ({label})"
                for p, label in zip(g["paths"], g["labels"], strict=True)
            )
            for g in conflicts[:5]
        )
        more = f"; and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
        report.warnings.append(
            f"{len(conflicts)} images appear with different labels; their label is "
            f"unknown: {named}{more}."
        )
    near_cross = [p for p in report.near_duplicates if p["cross_split"]]
    if near_cross:
        report.warnings.append(
            f"{len(near_cross)} pairs of near-duplicate images (perceptual hash within "
            f"{near_threshold} bits) span two splits; check them by eye."
        )
    if len(report.modalities) > 1:
        mix = ", ".join(f"{k} {v}" for k, v in report.modalities.items())
        report.warnings.append(
            f"The images mix modalities ({mix}): a model tells CT from X-ray far "
            "more easily than COVID-19 from the rest, so a label that differs "
            "between modalities is a shortcut. Evaluate within one modality."
        )
    if report.patient_overlap:
        report.warnings.append(
            f"{len(report.patient_overlap)} patients have images in more than one "
            "split."
        )
    if report.shortcut_auc is not None and report.shortcut_auc >= SHORTCUT_WARN_AUC:
        best = max(report.shortcut_feature_auc.items(), key=lambda kv: kv[1])
        report.warnings.append(
            f"Shortcut: file metadata alone predicts '{positive}' with ROC AUC "
            f"{report.shortcut_auc:.2f} (best single feature: {best[0]}, AUC "
            f"{best[1]:.2f}). The classes likely come from different sources; a model "
            "can learn the source instead of the disease. Validate externally."
        )
    report.warnings += _confound_warnings(report, positive)
    for sentence in report.warnings:
        logger.info("audit: %s", sentence)
    return report


def _copies(records: Sequence[Record]) -> list[dict[str, Any]]:
    out = []
    for i, j, distance in cross_source_copies(records):
        a, b = records[i], records[j]
        out.append(
            {
                "paths": [a.path, b.path],
                "sources": [a.source, b.source],
                "labels": [a.label, b.label],
                "distance": distance,
            }
        )
    return out


def _source_probe(
    dataset: XrayDataset, records: Sequence[Record], y: np.ndarray, seed: int
) -> dict[str, Any]:
    kept = {r.path for r in dataset.records}
    # Removed duplicates have no cached pixels of their own: probe the kept ones.
    recs = [r for r in records if r.path in kept]
    labels = np.array([y[i] for i, r in enumerate(records) if r.path in kept])
    x = image_features(recs, dataset.images_of, IMAGE_FEATURES)
    names = sorted({str(r.source) for r in recs})
    source = np.array([names.index(str(r.source)) for r in recs])
    by_source: dict[str, float | None] = {}
    for k, name in enumerate(names):
        inside = source == k
        if len(set(labels[inside].tolist())) == 2:
            by_source[name] = probe_auc(x[inside], labels[inside], seed)
    result: dict[str, Any] = {
        "features": list(IMAGE_FEATURES),
        "source_auc": probe_auc(x, source, seed) if len(names) > 1 else None,
        "label_auc": probe_auc(x, labels, seed),
        "label_auc_by_source": by_source,
    }
    result["reading"] = _reading(result)
    return result


def _reading(probe: dict[str, Any]) -> str:
    """The probe's numbers in plain words."""
    words = []
    source_auc = probe["source_auc"]
    if source_auc is not None:
        if source_auc >= SHORTCUT_WARN_AUC:
            words.append(
                f"Simple image statistics tell the sources apart (ROC AUC "
                f"{source_auc:.2f}): each source has a look of its own, which a "
                "model can learn."
            )
        else:
            words.append(
                f"Simple image statistics tell the sources apart only weakly (ROC "
                f"AUC {source_auc:.2f})."
            )
    for name, auc in probe["label_auc_by_source"].items():
        if auc is None:
            continue
        if auc >= SHORTCUT_WARN_AUC:
            words.append(
                f"Within {name}, the same statistics predict the label (ROC AUC "
                f"{auc:.2f}): there the classes differ in how the pictures were "
                "made, not only in the lungs."
            )
        else:
            words.append(
                f"Within {name}, they predict the label weakly (ROC AUC {auc:.2f})."
            )
    return " ".join(words)


def _confound_warnings(report: AuditReport, positive: str) -> list[str]:
    out = []
    table = report.source_table
    totals: dict[str, int] = {}
    for row in table.values():
        for label, n in row.items():
            totals[label] = totals.get(label, 0) + n
    single = {
        name: next(label for label, n in row.items() if n)
        for name, row in table.items()
        if sum(1 for n in row.values() if n) == 1
    }
    if len(table) > 1 and single:
        for label in sorted(set(single.values())):
            mine = [n for n, lab in single.items() if lab == label]
            share = sum(table[n][label] for n in mine) / max(1, totals[label])
            if share == 1.0:
                out.append(
                    f"The label follows the source: every '{label}' image comes from "
                    f"{', '.join(mine)}, where no other class appears. A model can "
                    "learn the source instead of the disease."
                )
            else:
                verb = "holds" if len(mine) == 1 else "hold"
                out.append(
                    f"{', '.join(mine)} {verb} only '{label}' ({share:.0%} of the "
                    f"'{label}' images): their look alone says '{label}'. Evaluate "
                    "within sources that hold both classes."
                )
    for name, auc in report.source_probe.get("label_auc_by_source", {}).items():
        if auc is not None and auc >= SHORTCUT_WARN_AUC:
            out.append(
                f"In {name}, the label follows the source: image statistics of how "
                f"the pictures were made predict '{positive}' with ROC AUC {auc:.2f}. "
                "Its classes likely come from different places."
            )
    return out
