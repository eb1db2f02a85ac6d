"""Argument checks shared by every layer, with messages a person can act on.

Each message names the argument and where it was passed, what is allowed and
what was received, in the Keras manner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "MAX_IMAGE_SIDE",
    "check_choice",
    "check_image_size",
    "check_model_classes",
    "check_positive_int",
]


#: The largest image side a model may take (and a model file may declare): a
#: 4096 x 4096 batch of 32 RGB images is already 6 GB of float32.
MAX_IMAGE_SIDE = 4096


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
    """Return `(height, width)` as ints from a pair of integers in
    [1, `MAX_IMAGE_SIDE`].

    Examples:
        >>> check_image_size([64, 48], "Preprocessing")
        (64, 48)
    """
    try:
        height, width = (int(v) for v in value)
    except (TypeError, ValueError):
        height = width = 0
    if not (1 <= height <= MAX_IMAGE_SIDE and 1 <= width <= MAX_IMAGE_SIDE):
        raise ValueError(
            f"The `image_size` argument of {where} must be a pair (height, width) "
            f"of integers from 1 to {MAX_IMAGE_SIDE}. Received: {value!r}."
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
