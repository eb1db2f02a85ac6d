"""Shared fixtures: synthetic data made on the fly, and the real seed-xray path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from covidxray.datasets import make_synthetic
from helpers import FakeLungModel

SEED_ENV = "COVIDXRAY_SEED_DATA"
EXTERNAL_ENV = "COVIDXRAY_EXTERNAL_DATA"
IEEE8023_ENV = "COVIDXRAY_IEEE8023_DATA"


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flat synthetic set: covid/ and normal/, 24 images each, 48x48."""
    return make_synthetic(
        tmp_path_factory.mktemp("synthetic"),
        n_per_class=24,
        image_size=(48, 48),
        seed=0,
    )


@pytest.fixture(scope="session")
def leaky_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic train/test set with 3 training COVID images copied into test."""
    return make_synthetic(
        tmp_path_factory.mktemp("leaky"),
        n_per_class=16,
        test_per_class=6,
        leaked=3,
        image_size=(48, 48),
        seed=1,
    )


def real_folder(variable: str) -> Path:
    """The folder a variable names, or skip when it is unset."""
    value = os.environ.get(variable)
    if not value:
        pytest.skip(f"{variable} is not set; real-data tests are skipped.")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"{variable}={value!r} is not a folder.")
    return path


@pytest.fixture(scope="session")
def seed_data() -> Path:
    """The real seed-xray folder, or skip when COVIDXRAY_SEED_DATA is unset."""
    return real_folder(SEED_ENV)


@pytest.fixture(scope="session")
def external_data() -> Path:
    """hannover-covid (COVID only, another hospital), or skip."""
    return real_folder(EXTERNAL_ENV)


@pytest.fixture(scope="session")
def ieee8023_data() -> Path:
    """ieee8023-2020-06 (both classes from one source), or skip."""
    return real_folder(IEEE8023_ENV)


@pytest.fixture
def fake_lungs(monkeypatch: pytest.MonkeyPatch) -> type[FakeLungModel]:
    """Make every lung search of the data layer use `FakeLungModel`."""
    from covidxray.lungs import unet

    FakeLungModel.calls = 0
    monkeypatch.setattr(unet, "default_lung_model", lambda: FakeLungModel())
    return FakeLungModel
