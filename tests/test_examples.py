"""The example scripts run from top to bottom and write what they say."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import covidxray

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: The examples import the covidxray under test (a checkout, or the installed one).
PACKAGE_PATH = str(Path(covidxray.__file__).resolve().parents[1])


def run(script: str, *args: str, cwd: Path) -> str:
    path = os.pathsep.join(filter(None, [PACKAGE_PATH, os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_every_example_has_a_header_docstring() -> None:
    for script in sorted(EXAMPLES.glob("*.py")):
        text = script.read_text()
        assert text.startswith('"""'), script.name
        assert "How to run:" in text and "Description:" in text, script.name


def test_audit_dataset(tmp_path: Path) -> None:
    out = run("audit_dataset.py", "--out", str(tmp_path / "a"), cwd=tmp_path)
    assert "SYNTHETIC" in out and "3 images appear in more than one split" in out
    assert (tmp_path / "a" / "audit.json").is_file()


def test_expand_covid_images(tmp_path: Path) -> None:
    out = run("expand_covid_images.py", "--out", str(tmp_path / "e"), cwd=tmp_path)
    assert "84 source images + 158 new = 242 images" in out
    assert len(list((tmp_path / "e").iterdir())) == 158


@pytest.mark.slow
def test_predict_and_explain(tmp_path: Path) -> None:
    out = run(
        "predict_and_explain.py",
        "--out",
        str(tmp_path / "x"),
        "--epochs",
        "1",
        "--image-size",
        "48",
        cwd=tmp_path,
    )
    assert "SYNTHETIC" in out
    written = {p.name for p in (tmp_path / "x").iterdir()}
    assert {"model.keras", "gradcam_grid.png", "gradcam_0.png"} <= written


@pytest.mark.slow
def test_external_validation(tmp_path: Path) -> None:
    out = run(
        "external_validation.py",
        "--out",
        str(tmp_path / "ext"),
        "--epochs",
        "1",
        "--image-size",
        "48",
        "--seeds",
        "2",
        cwd=tmp_path,
    )
    assert "SYNTHETIC" in out
    report = (tmp_path / "ext" / "external.md").read_text()
    # the positives-only external set: 12 images, specificity not measurable
    lines = [r for r in report.splitlines() if r.startswith("| positives | ")]
    assert len(lines) == 4  # 2 seeds, the images scored, the mean
    assert all(r.endswith("| n/a | n/a |") for r in lines[:2] + lines[3:])
    assert lines[2] == "| positives | 12 | 0 | 0 |"
    assert (tmp_path / "ext" / "paper_cnn_1.keras").is_file()
