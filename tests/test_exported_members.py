"""The public surface: __all__ is complete, sorted and importable."""

from __future__ import annotations

import types

import covidxray

# Names a module namespace holds that are not part of the API.
NOT_API = {"annotations", "TYPE_CHECKING", "Any"}


def test_all_is_sorted_and_complete() -> None:
    assert covidxray.__all__ == sorted(covidxray.__all__)
    for name in covidxray.__all__:
        assert getattr(covidxray, name) is not None, name
    public = {
        name
        for name in dir(covidxray)
        if not name.startswith("_")
        and not isinstance(getattr(covidxray, name), types.ModuleType)
    }
    assert public - NOT_API == set(covidxray.__all__) - {"__version__"}
    # Lazily imported names resolve to the objects of their modules.
    from covidxray import classifier, models

    assert covidxray.Classifier is classifier.Classifier
    assert covidxray.build_cnn is models.build_cnn


def test_errors_are_value_errors() -> None:
    assert issubclass(covidxray.DataError, ValueError)
    assert issubclass(covidxray.NotFittedError, ValueError)
