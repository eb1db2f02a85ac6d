"""One way to say that a name is deprecated, and what to use instead."""

from __future__ import annotations

import warnings

__all__ = ["deprecated"]


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
