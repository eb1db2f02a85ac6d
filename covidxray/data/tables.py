"""Reading the CSV and TXT files that datasets ship, as robustly as they need."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

from ..errors import DataError

logger = logging.getLogger("covidxray")

__all__ = ["read_csv", "read_text"]


def read_text(path: Path) -> str:
    """Read a text file as UTF-8 (BOM allowed), falling back to Latin-1."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"Could not read '{path}': {exc.strerror or exc}.") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        logger.info("'%s' is not valid UTF-8; reading it as Latin-1.", path)
        return raw.decode("latin-1")


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Read a CSV with a header row.

    Header names are stripped and lower-cased, unnamed trailing columns (from a
    trailing comma) are dropped, cells are stripped, and blank lines skipped.

    Returns:
        The header names and the rows, as dicts keyed by lower-case header.
    """
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(
            f"'{path}' is empty; expected a CSV with a header row."
        ) from None
    names = [h.strip().lower() for h in header]
    rows: list[dict[str, str]] = []
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue
        row = {}
        for i, name in enumerate(names):
            if name:
                row[name] = cells[i].strip() if i < len(cells) else ""
        rows.append(row)
    return [n for n in names if n], rows
