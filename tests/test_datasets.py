"""Tests of the synthetic demo data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidxray.datasets import make_synthetic


def test_layout_names_and_notice(tmp_path: Path) -> None:
    root = make_synthetic(
        tmp_path, n_per_class=3, test_per_class=2, leaked=1, image_size=(20, 24)
    )
    assert "SYNTHETIC" in (root / "SYNTHETIC.txt").read_text()
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    assert len(files) == 3 * 2 + 2 * 2 + 1
    assert all(Path(f).name.startswith("synthetic_") for f in files)
    img = Image.open(root / "train" / "covid" / "synthetic_train_covid_0000.png")
    assert img.mode == "L" and img.size == (24, 20)
    leaked = (root / "test" / "covid" / "synthetic_train_covid_0000.png").read_bytes()
    assert (
        leaked
        == (root / "train" / "covid" / "synthetic_train_covid_0000.png").read_bytes()
    )


def test_same_seed_same_files(tmp_path: Path) -> None:
    a = make_synthetic(tmp_path / "a", n_per_class=2, image_size=(16, 16), seed=4)
    b = make_synthetic(tmp_path / "b", n_per_class=2, image_size=(16, 16), seed=4)
    c = make_synthetic(tmp_path / "c", n_per_class=2, image_size=(16, 16), seed=5)
    name = "covid/synthetic_covid_0000.png"
    assert (a / name).read_bytes() == (b / name).read_bytes() != (c / name).read_bytes()


def test_covid_class_has_brighter_lungs(tmp_path: Path) -> None:
    root = make_synthetic(tmp_path, n_per_class=20, image_size=(64, 64))

    def mean_centre(cls: str) -> float:
        return float(
            np.mean(
                [
                    np.asarray(Image.open(p))[16:48, 8:56].mean()
                    for p in (root / cls).iterdir()
                ]
            )
        )

    assert mean_centre("covid") > mean_centre("normal") + 3


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="`n_per_class` argument"):
        make_synthetic(tmp_path, n_per_class=0)
    with pytest.raises(ValueError, match="`leaked` argument"):
        make_synthetic(tmp_path, n_per_class=2, leaked=1)
