"""Argument checks shared by every layer, with messages a person can act on.

Each message names the argument and where it was passed, what is allowed and
what was received, in the Keras manner.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = [
    "check_choice",
    "check_image_size",
    "check_model_classes",
    "check_positive_int",
    "renamed_argument",
]


F = TypeVar("F", bound=Callable[..., Any])


def renamed_argument(old: str, new: str, where: str) -> Callable[[F], F]:
    """Accept the keyword `old` as a deprecated alias of `new`.

    Passing `old=` emits a `DeprecationWarning` that names `new` and passes
    the value on as `new`; passing both is a TypeError. The wrapped function
    keeps its own signature (and so its documentation).

    Examples:
        >>> import warnings
        >>> @renamed_argument("train", "data", "fit")
        ... def fit(data=None):
        ...     return data
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     fit(train=3)
        3
        >>> print(caught[0].message)
        The `train` argument of fit is deprecated; use `data` instead.
    """

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(
                        f"{where} got both `{new}` and its deprecated alias "
                        f"`{old}`. Pass `{new}` only."
                    )
                warnings.warn(
                    f"The `{old}` argument of {where} is deprecated; use `{new}` "
                    "instead.",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def check_choice(name: str, value: Any, allowed: Sequence[Any], where: str) -> None:
    """Raise a ValueError naming the argument, the allowed values and the value.

    Examples:
        >>> check_choice("color_mode", "rgba", ("grayscale", "rgb"), "load_dataset")
        Traceback (most recent call last):
        ...
        ValueError: The `color_mode` argument of load_dataset must be one of \
'grayscale', 'rgb'. Received: 'rgba'.
    """
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ValueError(
            f"The `{name}` argument of {where} must be one of {choices}. "
            f"Received: {value!r}."
        )


def check_positive_int(name: str, value: Any, where: str) -> int:
    """Return `value` if it is a positive integer (not a bool), else raise.

    Examples:
        >>> check_positive_int("epochs", 0, "fit")
        Traceback (most recent call last):
        ...
        ValueError: The `epochs` argument of fit must be a positive integer. \
Received: 0.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"The `{name}` argument of {where} must be a positive integer. "
            f"Received: {value!r}."
        )
    return value


def check_image_size(value: Any, where: str) -> tuple[int, int]:
    """Return `(height, width)` as ints from a pair of positive integers.

    Examples:
        >>> check_image_size([64, 48], "Preprocessing")
        (64, 48)
    """
    try:
        height, width = (int(v) for v in value)
    except (TypeError, ValueError):
        height = width = 0
    if height < 1 or width < 1:
        raise ValueError(
            f"The `image_size` argument of {where} must be a pair (height, width) "
            f"of positive integers. Received: {value!r}."
        )
    return height, width


def check_model_classes(model: Any, class_names: Sequence[str]) -> None:
    """Check that `class_names` are distinct and fit the model's output units:
    one sigmoid unit (or two) for two classes, one unit per class otherwise."""
    names = list(class_names)
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(
            "The `class_names` argument of Classifier needs at least two distinct "
            f"names. Received: {names!r}."
        )
    units = model.output_shape[-1]
    expected = 1 if len(names) == 2 else len(names)
    if units not in (expected, 2 if len(names) == 2 else expected):
        raise ValueError(
            f"The model has {units} output units, but {len(names)} class names "
            f"were given ({names}); expected {expected} units."
        )
