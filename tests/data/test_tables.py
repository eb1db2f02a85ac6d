"""The CSV and text files datasets ship: BOMs, Latin-1, stray commas, blank lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from covidxray import DataError
from covidxray.data.tables import read_csv, read_text


def test_read_csv_normalises_headers_and_cells(tmp_path: Path) -> None:
    path = tmp_path / "meta.csv"
    path.write_bytes(
        b"\xef\xbb\xbf Path , Finding,\n a.png , covid ,\n\n b.png,normal\n"
    )
    names, rows = read_csv(path)
    assert names == ["path", "finding"]
    assert rows == [
        {"path": "a.png", "finding": "covid"},
        {"path": "b.png", "finding": "normal"},
    ]


def test_latin1_is_read_and_empty_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "l.txt").write_bytes("Säo Paulo".encode("latin-1"))
    assert read_text(tmp_path / "l.txt") == "Säo Paulo"
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataError, match="is empty; expected a CSV with a header row"):
        read_csv(tmp_path / "e.csv")
    with pytest.raises(DataError, match="Could not read"):
        read_text(tmp_path / "missing.txt")
