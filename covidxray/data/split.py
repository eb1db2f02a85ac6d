"""Removing duplicates and splitting records, grouped by patient and stratified."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import replace

import numpy as np

from . import identity
from .records import Record

logger = logging.getLogger("covidxray")

__all__ = [
    "COPY_BITS",
    "SPLIT_ORDER",
    "assign_splits",
    "check_fractions",
    "content_groups",
    "cross_source_copies",
    "deduplicate",
]

SPLIT_ORDER = ("train", "val", "test")
#: What an evaluation can score: one split, or all the images ("all").
EVALUATION_SPLITS = (*SPLIT_ORDER, "all")
#: Images of two sources whose 256-bit perceptual hashes differ in at most this
#: many bits are copies: `identity.SAME_PICTURE.copy_bits(256)`, which the code
#: reads (this name is kept for those who imported it).
COPY_BITS = identity.SAME_PICTURE.copy_bits(256)


def content_groups(
    records: Sequence[Record], *, cross_source_bits: int | None = None
) -> list[list[int]]:
    """Groups (of 2 or more) of indices of records that share bytes or decoded
    pixels, found with a union-find over both hashes. With `cross_source_bits`,
    records of different sources whose perceptual hashes differ in at most
    that many bits are joined too."""
    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for key in ("sha256", "pixel_hash"):
        first: dict[str, int] = {}
        for i, rec in enumerate(records):
            value = getattr(rec, key)
            if value in first:
                parent[find(i)] = find(first[value])
            else:
                first[value] = i
    if cross_source_bits is not None and len({r.source for r in records}) > 1:
        for i, j, _ in cross_source_copies(records, cross_source_bits):
            parent[find(i)] = find(j)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(records)):
        groups[find(i)].append(i)
    return [g for g in groups.values() if len(g) > 1]


def cross_source_copies(
    records: Sequence[Record], bits: int | None = None
) -> list[tuple[int, int, int]]:
    """`(i, j, distance)` for records from different sources whose perceptual
    hashes differ in at most `bits` bits (default: the copies of
    `identity.SAME_PICTURE`)."""
    if not records:
        return []
    if bits is None:
        bits = identity.SAME_PICTURE.copy_bits(256)
    hashes = identity.stack_hashes([r.phash for r in records])
    i, j, distance = identity.near_pairs(hashes, bits)
    return [
        (a, b, d)
        for a, b, d in zip(i.tolist(), j.tolist(), distance.tolist(), strict=True)
        if records[a].source != records[b].source
    ]


def deduplicate(
    records: Sequence[Record],
    *,
    cross_source_bits: int | None = None,
    fixed: Collection[str] = (),
) -> tuple[list[Record], list[tuple[Record, Record]]]:
    """Keep one copy of each image content.

    Copies are images with the same bytes or the same decoded pixels, and with
    `cross_source_bits`, images of two sources within that many bits of
    perceptual hash. Of each group the copy kept is one whose split its source
    fixed (the paths in `fixed`), if any: a source's own test image stays in
    its test set, and a copy of it in a source without splits leaves. Among
    those, the copy in the earliest split is kept (train, then val, then
    test), so a test image that also sits in train leaves the test set. A
    group whose copies carry different labels is dropped whole: its label is
    unknown.

    Returns:
        The kept records, in their original order, and `(removed, kept)` pairs
        (`kept` is the removed record itself when its group was dropped).
    """
    removed: list[tuple[Record, Record]] = []
    drop: set[int] = set()
    for group in content_groups(records, cross_source_bits=cross_source_bits):
        labels = {records[i].label for i in group}
        if len(labels) > 1:
            logger.warning(
                "Dropped %d copies of one image that carry different labels %s: %s",
                len(group),
                sorted(labels),
                ", ".join(records[i].path for i in group),
            )
            drop.update(group)
            removed.extend((records[i], records[i]) for i in group)
            continue
        order = sorted(
            group,
            key=lambda i: (
                records[i].path not in fixed,
                SPLIT_ORDER.index(records[i].split),
                i,
            ),
        )
        keep = order[0]
        for i in order[1:]:
            drop.add(i)
            removed.append((records[i], records[keep]))
    if removed:
        moves = Counter(f"{a.split}->{b.split}" for a, b in removed)
        logger.info(
            "deduplicate=True removed %d duplicate images (%s).",
            len(removed),
            ", ".join(f"{k}: {v}" for k, v in sorted(moves.items())),
        )
    return [r for i, r in enumerate(records) if i not in drop], removed


def _split_off(
    records: list[Record],
    indices: Sequence[int],
    fraction: float,
    target: str,
    rng: np.random.Generator,
) -> None:
    """Move about `fraction` of `indices` to split `target`, whole patients at a
    time, class by class."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i in indices:
        rec = records[i]
        groups[
            rec.patient_id if rec.patient_id is not None else f"\0{rec.path}"
        ].append(i)
    by_label: dict[str, list[str]] = defaultdict(list)
    for key, members in sorted(groups.items()):
        majority = Counter(records[i].label for i in members).most_common(1)[0][0]
        by_label[majority].append(key)
    for label in sorted(by_label):
        keys = by_label[label]
        order = rng.permutation(len(keys))
        total = sum(len(groups[k]) for k in keys)
        wanted = round(total * fraction)
        taken = 0
        for j in order:
            if taken >= wanted:
                break
            members = groups[keys[j]]
            for i in members:
                records[i] = replace(records[i], split=target)
            taken += len(members)


def check_fractions(validation_split: float, test_split: float | None) -> None:
    """Raise a ValueError unless both fractions are in [0, 1) and sum below 1."""
    for name, value in (
        ("validation_split", validation_split),
        ("test_split", test_split),
    ):
        if value is not None and not 0.0 <= float(value) < 1.0:
            raise ValueError(
                f"The `{name}` argument of load_dataset must be in [0, 1). "
                f"Received: {value!r}."
            )
    if validation_split + (test_split or 0.0) >= 1.0:
        raise ValueError(
            "The `validation_split` and `test_split` arguments of load_dataset must "
            f"add up to less than 1. Received: {validation_split!r} and {test_split!r}."
        )


def assign_splits(
    records: Sequence[Record],
    *,
    validation_split: float,
    test_split: float | None,
    seed: int,
) -> list[Record]:
    """Give every record a split.

    With `test_split=None` the source's own test (and validation) split is
    kept and everything else is the training pool. With a float, all images are
    split anew. Unless the source has one, the validation set is then taken
    from the training pool. Splits are stratified
    by class, group whole patients, and depend only on `seed`.

    Examples:
        >>> from covidxray.data.records import Record
        >>> recs = [
        ...     Record(f"{i}.png", "covid" if i % 2 else "non", "train", f"p{i // 4}",
        ...            None, "", str(i), str(i), "", 1, 1, "L", "PNG", 1)
        ...     for i in range(40)
        ... ]
        >>> out = assign_splits(recs, validation_split=0.25, test_split=None, seed=0)
        >>> sorted({r.split for r in out})
        ['train', 'val']
        >>> train = {r.patient_id for r in out if r.split == "train"}
        >>> train & {r.patient_id for r in out if r.split == "val"}
        set()
    """
    check_fractions(validation_split, test_split)
    rng = np.random.default_rng(seed)
    out = list(records)
    if test_split is not None:
        out = [replace(r, split="train") for r in out]
        _split_off(out, range(len(out)), float(test_split), "test", rng)
    else:
        keep = ("test", "val")
        out = [r if r.split in keep else replace(r, split="train") for r in out]
    pool = [i for i, r in enumerate(out) if r.split == "train"]
    # Patients already in test stay out of train and val.
    test_patients = {r.patient_id for r in out if r.split == "test" and r.patient_id}
    if test_patients:
        moved = [i for i in pool if out[i].patient_id in test_patients]
        if moved:
            logger.info(
                "Moved %d training images of patients that are also in the test split "
                "to test, so that no patient is in two splits.",
                len(moved),
            )
            for i in moved:
                out[i] = replace(out[i], split="test")
            pool = [i for i in pool if out[i].split == "train"]
    if any(r.split == "val" for r in out):
        logger.info("Kept the source's own validation split; validation_split unused.")
    else:
        _split_off(out, pool, float(validation_split), "val", rng)
    return out
