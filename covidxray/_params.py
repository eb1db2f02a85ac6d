"""`Params`: scikit-learn's `get_params` and `set_params`, with its semantics.

The parameters are the constructor's arguments. `get_params(deep=True)` also
lists the parameters of a parameter that has `get_params` itself, as
`name__sub`; `set_params(name__sub=...)` sets them there. What a changed
parameter means for fitted state is the estimator's own business: it
overrides `_parameter_changed`.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["Params"]


class Params:
    """Constructor arguments as parameters, in the scikit-learn manner."""

    @classmethod
    def _parameter_names(cls) -> list[str]:
        keys = inspect.signature(cls.__init__).parameters
        return [k for k in keys if k != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments, as scikit-learn's `get_params`.

        Args:
            deep: Also list the parameters of each parameter that has
                `get_params` (a scikit-learn estimator, say), as `name__sub`.

        Returns:
            Parameter names mapped to their values.
        """
        out: dict[str, Any] = {}
        for key in self._parameter_names():
            value = getattr(self, key)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{key}__{k}", v) for k, v in value.get_params().items())
            out[key] = value
        return out

    def set_params(self, **params: Any) -> Any:
        """Set constructor arguments (e.g. a lower `learning_rate` to fine-tune).

        `name__sub=value` sets `sub` on the parameter `name` through its own
        `set_params`, as in scikit-learn.

        Returns:
            self.

        Raises:
            ValueError: A name is not a parameter (of this object, or of the
                parameter it is nested in).
        """
        if not params:
            return self
        valid = self.get_params(deep=False)
        nested: dict[str, dict[str, Any]] = {}
        for name, value in params.items():
            key, sep, sub = name.partition("__")
            if key not in valid:
                raise ValueError(
                    f"Unknown parameter {key!r} for {type(self).__name__}. "
                    f"Valid: {', '.join(valid)}."
                )
            if sep:
                if not hasattr(valid[key], "set_params"):
                    raise ValueError(
                        f"The parameter {key!r} of {type(self).__name__} has no "
                        f"parameters of its own, so {name!r} cannot be set. "
                        f"Received: {type(valid[key]).__name__}."
                    )
                nested.setdefault(key, {})[sub] = value
                continue
            old = valid[key]
            setattr(self, key, value)
            valid[key] = value
            self._parameter_changed(key, old, value)
        for key, sub_params in nested.items():
            valid[key].set_params(**sub_params)
        return self

    def _parameter_changed(self, name: str, old: Any, new: Any) -> None:
        """Called by `set_params` after a parameter got a new value; the
        estimator decides what that resets. Nothing by default."""
