"""Reading the CSV and TXT files that datasets ship, as robustly as they need."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DataError
from .reading import read_table_bytes

logger = logging.getLogger("covidxray")

__all__ = ["read_csv", "read_text"]


def read_text(path: Path) -> str:
    """Read a text file as UTF-8 (BOM allowed), falling back to Latin-1."""
    raw = read_table_bytes(path)  # a regular file of at most MAX_TABLE_BYTES
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        logger.info("'%s' is not valid UTF-8; reading it as Latin-1.", path)
        return raw.decode("latin-1")


def _csv_error(path: Path, line: int, exc: csv.Error) -> DataError:
    limit = csv.field_size_limit()
    if "field limit" in str(exc):
        return DataError(
            f"'{path}', line {line}: a field is longer than {limit:,} characters, "
            "the limit of a CSV field; the table is not read."
        )
    return DataError(f"'{path}', line {line}: not a valid CSV row: {exc}.")


def _rows(reader: Any, path: Path) -> Iterator[list[str]]:
    """The rows of a CSV reader; a `DataError` naming the file and line for a
    row that cannot be parsed."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _csv_error(path, reader.line_num, exc) from None


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
    except csv.Error as exc:
        raise _csv_error(path, reader.line_num, exc) from None
    names = [h.strip().lower() for h in header]
    rows: list[dict[str, str]] = []
    for cells in _rows(reader, path):
        if not any(c.strip() for c in cells):
            continue
        row = {}
        for i, name in enumerate(names):
            if name:
                row[name] = cells[i].strip() if i < len(cells) else ""
        rows.append(row)
    return [n for n in names if n], rows
