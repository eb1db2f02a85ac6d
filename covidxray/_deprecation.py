"""One way to say that a name is deprecated, and what to use instead."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["deprecated", "renamed_argument"]


def deprecated(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn with a `DeprecationWarning` that `old` is now called `new`.

    Examples:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     deprecated("f(train=...)", "f(data=...)", stacklevel=1)
        >>> str(caught[0].message)
        'f(train=...) is deprecated; use f(data=...) instead.'
    """
    warnings.warn(
        f"{old} is deprecated; use {new} instead.",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


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
                deprecated(f"The `{old}` argument of {where}", f"`{new}`")
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
