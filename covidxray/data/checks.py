"""Checks of an assembled dataset's classes, so that nothing is lost silently.

`load_dataset` runs them once the records are read, labelled, deduplicated and
split: a class emptied by deduplication, folder names that differ only in
case, and (for evaluation) folder names that match neither class of a binary
model. `class_map` renames findings before any of this. See
`docs/reliability.md`.
"""

from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..errors import CovidXrayWarning, DataError
from .labels import canon, is_covid_name
from .records import Entry, Record

__all__ = [
    "apply_class_map",
    "check_case_collisions",
    "check_emptied_classes",
    "class_folder_links",
    "conflicting_copies",
    "describe_conflicts",
    "parse_class_map",
    "summary_lines",
    "unknown_binary_findings",
]

#: Findings that read as the negative side of a binary task whatever the
#: model's negative class is called (after `labels.canon`).
_NEGATIVE_WORDS = {"normal", "nofinding", "healthy", "negative", "other", "others"}
_NEGATIVE_PREFIXES = ("non", "not", "no")


def parse_class_map(text: str, where: str = "--class-map") -> dict[str, str]:
    """A `FOLDER=CLASS,...` text as a dict.

    Examples:
        >>> parse_class_map("cats=non,dogs=covid")
        {'cats': 'non', 'dogs': 'covid'}
        >>> parse_class_map("cats")
        Traceback (most recent call last):
        ...
        ValueError: --class-map must be FOLDER=CLASS pairs separated by commas, \
e.g. cats=non,dogs=covid. Received: 'cats'.
    """
    out: dict[str, str] = {}
    for item in text.split(","):
        name, sep, target = item.partition("=")
        if not sep or not name.strip() or not target.strip() or name.strip() in out:
            raise ValueError(
                f"{where} must be FOLDER=CLASS pairs separated by commas, e.g. "
                f"cats=non,dogs=covid. Received: {text!r}."
            )
        out[name.strip()] = target.strip()
    return out


def apply_class_map(
    entries: Sequence[Entry], class_map: Mapping[str, str] | None
) -> list[Entry]:
    """The entries with their findings renamed by `class_map` (finding ->
    new finding). A name that is no finding of the data is an error.

    Raises:
        ValueError: `class_map` is not a dict of strings, or names a finding
            the data does not have.
    """
    if not class_map:
        return list(entries)
    if not isinstance(class_map, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in class_map.items()
    ):
        raise ValueError(
            "The `class_map` argument of load_dataset must be a dict from a "
            f"finding (a folder name) to a class name. Received: {class_map!r}."
        )
    findings = {e.finding for e in entries}
    unknown = sorted(set(class_map) - findings)
    if unknown:
        raise ValueError(
            f"The `class_map` argument of load_dataset names {unknown}, which are "
            f"not findings of the data. Its findings: {sorted(findings)}."
        )
    return [
        replace(e, finding=class_map[e.finding]) if e.finding in class_map else e
        for e in entries
    ]


def check_case_collisions(entries: Sequence[Entry], where: str) -> None:
    """Warn when findings differ only in case (`COVID/` beside `covid/`):
    their images are merged into one class."""
    by_lower: dict[str, set[str]] = defaultdict(set)
    for entry in entries:
        by_lower[entry.finding.lower()].add(entry.finding)
    clashes = [sorted(names) for names in by_lower.values() if len(names) > 1]
    for names in clashes:
        warnings.warn(
            f"The class folders {names} of '{where}' differ only in case; their "
            "images are merged into one class. Rename one, or pass class_map= "
            "(--class-map) to say what each is.",
            CovidXrayWarning,
            stacklevel=3,
        )


def unknown_binary_findings(
    findings: Sequence[str], negative: str, positive: str
) -> list[str]:
    """The findings (folder names) that match neither class of a binary model
    by the naming rules: the positive class (or a COVID-like name when it is
    one), the negative class, a negation of the positive (`non-covid`,
    `not_covid`, or `non` alone), or a name that reads as negative
    (`normal`, `no finding`, `healthy`, `negative`, `other`, `pneumonia`).
    Hierarchical findings (`Pneumonia/Viral/...`, from metadata tables) are
    left to the label rules.

    Examples:
        >>> unknown_binary_findings(["cats", "dogs", "covid"], "normal", "covid")
        ['cats', 'dogs']
        >>> unknown_binary_findings(["non-COVID", "COVID-19"], "normal", "covid")
        []
        >>> unknown_binary_findings(["non", "covid"], "normal", "covid")
        []
    """
    pos, neg = canon(positive), canon(negative)
    covid = is_covid_name(positive)
    out = []
    for finding in sorted(set(findings)):
        name = canon(finding)
        if "/" in finding or name in (pos, neg) or name in _NEGATIVE_WORDS:
            continue
        if (covid and is_covid_name(finding)) or "pneumonia" in name:
            continue
        stem = next(
            (name[len(p) :] for p in _NEGATIVE_PREFIXES if name.startswith(p)), ""
        )
        if name in _NEGATIVE_PREFIXES or (
            stem and (stem == pos or (covid and is_covid_name(stem)))
        ):
            continue  # `non` (seed-xray's folder), `non-covid`, `not_covid`
        out.append(finding)
    return out


def conflicting_copies(
    removed: Sequence[tuple[Record, Record]],
) -> list[list[Record]]:
    """The groups of copies that deduplication dropped whole because they carry
    different labels (same bytes or pixels), each sorted by path."""
    dropped = [a for a, b in removed if a is b]
    groups: dict[str, list[Record]] = defaultdict(list)
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    for rec in dropped:
        a, b = find("s" + rec.sha256), find("p" + rec.pixel_hash)
        if a != b:
            parent[a] = b
    for rec in dropped:
        groups[find("s" + rec.sha256)].append(rec)
    return [sorted(g, key=lambda r: r.path) for g in groups.values() if len(g) > 1]


def describe_conflicts(groups: Sequence[Sequence[Record]], limit: int = 3) -> str:
    """Display text of conflicting copies: `'a.png' (covid) = 'b.png' (non)`."""
    shown = [
        " = ".join(f"'{r.path}' ({r.label})" for r in group) for group in groups[:limit]
    ]
    more = f"; and {len(groups) - limit} more" if len(groups) > limit else ""
    return "; ".join(shown) + more


def check_emptied_classes(
    before: Sequence[Record],
    after: Sequence[Record],
    removed: Sequence[tuple[Record, Record]],
    class_names: Sequence[str],
    where: str,
) -> None:
    """Raise when deduplication left a class that had images with none.

    Raises:
        DataError: Saying how many images of the class there were, and that
            they were copies of images of another class (dropped, since their
            label is unknown) or of each other.
    """
    had = Counter(r.label for r in before)
    has = Counter(r.label for r in after)
    for name in class_names:
        if not had[name] or has[name]:
            continue
        mine = [(a, b) for a, b in removed if a.label == name]
        conflicts = [a for a, b in mine if a is b]
        others = sorted(
            {
                r.label
                for group in conflicting_copies(removed)
                if any(g.label == name for g in group)
                for r in group
            }
            - {name}
        )
        if conflicts and others:
            why = (
                f"all {had[name]} {name} images were copies of "
                f"{' or '.join(others)} images and were dropped (a copy with two "
                "labels has no label)"
            )
            example = describe_conflicts(
                [
                    g
                    for g in conflicting_copies(removed)
                    if any(r.label == name for r in g)
                ]
            )
        else:
            why = f"all {had[name]} {name} images were copies and were dropped"
            example = ", ".join(f"'{a.path}'" for a, _ in mine[:3])
        raise DataError(
            f"After deduplication the class {name!r} of '{where}' has no images: "
            f"{why}, e.g. {example}. Remove the copies from one class folder "
            "(or check for a class folder that links to another), or pass "
            "deduplicate=False to keep them."
        )


def summary_lines(removed: Sequence[tuple[Record, Record]]) -> list[str]:
    """`XrayDataset.summary` lines naming the copies dropped for their labels."""
    groups = conflicting_copies(removed)
    if not groups:
        return []
    n = sum(len(g) for g in groups)
    return [
        f"  copies with conflicting labels dropped: {n} ({describe_conflicts(groups)})"
    ]


def class_folder_links(class_dirs: Sequence[Any], root: Any) -> list[str]:
    """Class folders that are links to `root` or to a folder above it (they
    would read every class's images as their own)."""
    top = root.resolve()
    return [
        str(d) for d in class_dirs if d.is_symlink() and top.is_relative_to(d.resolve())
    ]
