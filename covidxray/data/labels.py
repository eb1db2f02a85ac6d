"""Mapping the findings that sources write to the classes a model learns."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import DataError

__all__ = ["LabelMap", "canon", "is_covid_name", "make_label_map"]

_COVID = re.compile(r"covid|sarscov2|ncov")
_ALIASES = [
    {"covid", "covid19", "sarscov2", "covid19positive"},
    {"normal", "nofinding", "healthy"},
    {"pneumonia", "pnemonia"},  # CoronaHack spells it 'Pnemonia'
]


def canon(text: str) -> str:
    """Lower case, letters and digits only: 'COVID-19' and 'covid19' match."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


def is_covid_name(name: str) -> bool:
    """Whether a class or finding name means COVID-19, as the binary rule reads
    names ('COVID-19', 'covid', 'SARS-CoV-2', 'COVID-19, ARDS').

    Examples:
        >>> is_covid_name("COVID-19, ARDS"), is_covid_name("SARS")
        (True, False)
    """
    return bool(_COVID.search(canon(name)))


def _same(a: str, b: str) -> bool:
    ca, cb = canon(a), canon(b)
    return ca == cb or any(ca in group and cb in group for group in _ALIASES)


def _segments(finding: str) -> list[str]:
    """Finding segments, most specific first ('Pneumonia/Viral/COVID-19')."""
    parts = [p.strip() for p in finding.split("/") if p.strip()]
    return list(reversed(parts)) + [finding]


@dataclass(frozen=True)
class LabelMap:
    """Classes, and which finding maps to which class (None means dropped)."""

    class_names: tuple[str, ...]
    positive_class: str | None
    mapping: Mapping[str, str | None]


def make_label_map(
    findings: Sequence[str],
    *,
    classes: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    positive_class: str | None = None,
    keep_names: bool = True,
    single_class: bool = False,
) -> LabelMap:
    """Decide the classes from the distinct findings of a dataset.

    Binary by default: findings with a COVID-like segment (or matching
    `positive_class`) are positive, all others negative. With two plain findings
    (two class folders) and `keep_names`, their own names are kept; otherwise
    the classes are `non-<positive>` and `<positive>`. Class index 1 is always
    the positive class. With `single_class`, findings of one side only are
    allowed (an external set of positives only): the classes are then
    `non-<positive>` and `<positive>`.

    With `classes`, each finding goes to the first class that one of its
    segments matches, most specific segment first (`Pneumonia/Viral/COVID-19` is
    COVID-19, `Pneumonia/Bacterial/Strep` is pneumonia). Findings that match no
    class map to None and are dropped.

    Examples:
        >>> m = make_label_map(["covid", "non"])
        >>> m.class_names, m.positive_class
        (('non', 'covid'), 'covid')
        >>> m = make_label_map(
        ...     ["No Finding", "Pneumonia/Viral/COVID-19", "Pneumonia/Bacterial/Strep"],
        ...     classes=["normal", "pneumonia", "COVID-19"],
        ... )
        >>> m.mapping["Pneumonia/Viral/COVID-19"], m.mapping["No Finding"]
        ('COVID-19', 'normal')
    """
    distinct = sorted(set(findings))
    if not distinct:
        raise DataError("The dataset has no labelled images.")
    if classes is None:
        return _binary(distinct, positive_class, keep_names, single_class)
    if isinstance(classes, str):
        raise TypeError(
            "The `classes` argument of load_dataset must be a list of class names or "
            f"a dict from class name to findings. Received the string {classes!r}."
        )
    if isinstance(classes, Mapping):
        patterns = {
            str(k): [str(v) for v in vs] + [str(k)] for k, vs in classes.items()
        }
    else:
        patterns = {str(c): [str(c)] for c in classes}
    if len(patterns) < 2:
        raise ValueError(
            "The `classes` argument of load_dataset needs at least 2 classes. "
            f"Received: {list(patterns)}."
        )
    mapping: dict[str, str | None] = {}
    for finding in distinct:
        mapping[finding] = None
        for segment in _segments(finding):
            hit = next(
                (
                    name
                    for name, pats in patterns.items()
                    if any(_same(segment, p) for p in pats)
                ),
                None,
            )
            if hit is not None:
                mapping[finding] = hit
                break
    names = list(patterns)
    positive = _pick_positive(names, positive_class)
    if len(names) == 2 and positive is not None:
        names = [n for n in names if n != positive] + [positive]
    return LabelMap(tuple(names), positive, mapping)


def _pick_positive(names: Sequence[str], positive_class: str | None) -> str | None:
    if positive_class is not None:
        for name in names:
            if _same(name, positive_class):
                return name
        raise DataError(
            "The `positive_class` argument of load_dataset must be one of "
            f"{', '.join(repr(n) for n in names)}. Received: {positive_class!r}."
        )
    covid = [n for n in names if _COVID.search(canon(n))]
    return covid[0] if len(covid) == 1 else None


def _binary(
    distinct: Sequence[str],
    positive_class: str | None,
    keep_names: bool,
    single_class: bool = False,
) -> LabelMap:
    def is_positive(finding: str) -> bool:
        segments = _segments(finding)
        if positive_class is not None:
            return any(_same(s, positive_class) for s in segments)
        return any(_COVID.search(canon(s)) for s in segments)

    positives = [f for f in distinct if is_positive(f)]
    negatives = [f for f in distinct if not is_positive(f)]
    if positive_class is not None and not positives and not single_class:
        raise DataError(
            "The `positive_class` argument of load_dataset must match one of the "
            f"findings {list(distinct)}. Received: {positive_class!r}."
        )
    if (not positives or not negatives) and not single_class:
        wanted = repr(positive_class) if positive_class else "a COVID-like name"
        raise DataError(
            "Binary labels need a positive and a negative class. Found the findings "
            f"{list(distinct)}, and {len(positives)} of them match {wanted}. Pass "
            "positive_class= one of them, or classes= for several classes."
        )
    plain = "/" not in "".join(distinct)
    if keep_names and plain and len(positives) == 1 and len(negatives) == 1:
        names = (negatives[0], positives[0])
    else:
        pos = positive_class or "covid"
        names = (f"non-{pos}", pos)
    mapping: dict[str, str | None] = {
        f: names[1] if is_positive(f) else names[0] for f in distinct
    }
    return LabelMap(names, names[1], mapping)
