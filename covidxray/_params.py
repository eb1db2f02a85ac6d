"""`Params`: scikit-learn's `get_params` and `set_params` for `Classifier`."""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["Params"]


class Params:
    """Constructor arguments as parameters, in the scikit-learn manner."""

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, as scikit-learn's `get_params`."""
        keys = inspect.signature(type(self).__init__).parameters
        return {k: getattr(self, k) for k in keys if k != "self"}

    def set_params(self, **params: Any) -> Any:
        """Set constructor arguments (e.g. a lower `learning_rate` to fine-tune).

        A new `model` makes the classifier unfitted: the next `fit` trains it."""
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"Unknown parameter {key!r} for Classifier. "
                    f"Valid: {', '.join(valid)}."
                )
            if key == "model" and value is not getattr(self, "model", None):
                for name in ("model_", "training_record_"):  # a new model: unfitted
                    self.__dict__.pop(name, None)
            setattr(self, key, value)
        return self
