"""Tests of `Params`: scikit-learn's `get_params` / `set_params` semantics.

`Classifier` is checked with scikit-learn itself in `test_classifier.py`; here
the base class, on plain objects, without TensorFlow.
"""

from __future__ import annotations

import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from covidxray._params import Params


class Outer(Params):
    def __init__(self, inner: object = None, *, rate: float = 0.1) -> None:
        self.inner = inner
        self.rate = rate
        self.changed: list[tuple[str, object, object]] = []

    def fit(self) -> Outer:
        return self

    def _parameter_changed(self, name: str, old: object, new: object) -> None:
        self.changed.append((name, old, new))


def test_get_params_lists_nested_parameters_only_when_deep() -> None:
    inner = LogisticRegression(C=2.0)
    outer = Outer(inner, rate=0.5)
    shallow = outer.get_params(deep=False)
    assert shallow == {"inner": inner, "rate": 0.5}
    deep = outer.get_params()  # deep=True is the default, as in scikit-learn
    assert deep["inner"] is inner and deep["inner__C"] == 2.0
    assert set(deep) == {"inner", "rate"} | {f"inner__{k}" for k in inner.get_params()}
    assert Outer(LogisticRegression, rate=1).get_params() == {
        "inner": LogisticRegression,  # a class is not expanded
        "rate": 1,
    }


def test_set_params_sets_nested_parameters_and_tells_the_owner() -> None:
    inner = LogisticRegression()
    outer = Outer(inner)
    assert outer.set_params(inner__C=5.0, rate=0.01) is outer
    assert inner.C == 5.0 and outer.rate == 0.01
    assert outer.changed == [("rate", 0.1, 0.01)]  # nested changes are the inner's
    assert outer.set_params() is outer and len(outer.changed) == 1


def test_set_params_refuses_unknown_and_impossible_names() -> None:
    outer = Outer(LogisticRegression())
    with pytest.raises(
        ValueError, match=r"Unknown parameter 'speed' for Outer\. Valid: inner, rate\."
    ):
        outer.set_params(speed=1)
    with pytest.raises(ValueError, match="Invalid parameter 'nope'"):
        outer.set_params(inner__nope=1)  # scikit-learn's own refusal
    with pytest.raises(
        ValueError, match="'rate' of Outer has no parameters of its own"
    ):
        outer.set_params(rate__x=1)


def test_scikit_learn_clone_and_grid_style_names_work_on_params() -> None:
    outer = Outer(LogisticRegression(C=3.0), rate=0.2)
    twin = clone(outer)
    assert twin is not outer and twin.inner is not outer.inner
    assert twin.get_params()["inner__C"] == 3.0 and twin.rate == 0.2
