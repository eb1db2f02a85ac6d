"""The public surface: __all__ is complete, sorted and importable."""

from __future__ import annotations

import covidxray


def test_all_is_sorted_and_complete() -> None:
    assert covidxray.__all__ == sorted(covidxray.__all__)
    for name in covidxray.__all__:
        assert getattr(covidxray, name) is not None, name
    public = {n for n in dir(covidxray) if not n.startswith("_")}
    modules = {
        "audit",
        "data",
        "datasets",
        "errors",
        "annotations",
        "importlib",
        "logging",
        "augment",
        "classifier",
        "explain",
        "metrics",
        "models",
        "plots",
        "cli",
        "TYPE_CHECKING",
        "Any",
    }
    assert public - modules - set(covidxray.__all__) == set()


def test_errors_are_value_errors() -> None:
    assert issubclass(covidxray.DataError, ValueError)
    assert issubclass(covidxray.NotFittedError, ValueError)
