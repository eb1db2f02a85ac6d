"""Deprecated names warn, name the new one, and still work."""

from __future__ import annotations

import pytest

from covidxray._deprecation import deprecated, renamed_argument


@renamed_argument("train", "data", "fit")
def fit(data: int = 0) -> int:
    return data


def test_the_old_keyword_warns_and_passes_its_value_on() -> None:
    with pytest.warns(
        DeprecationWarning,
        match="The `train` argument of fit is deprecated; use `data` instead.",
    ):
        assert fit(train=3) == 3
    assert fit(data=4) == 4 and fit(5) == 5


def test_both_names_at_once_are_refused() -> None:
    with pytest.raises(
        TypeError, match="got both `data` and its deprecated alias `train`"
    ):
        fit(data=1, train=2)


def test_the_warning_points_at_the_caller() -> None:
    with pytest.warns(DeprecationWarning) as caught:
        fit(train=1)
    assert caught[0].filename == __file__
    with pytest.warns(DeprecationWarning, match="old is deprecated; use new instead"):
        deprecated("old", "new", stacklevel=1)
