"""Exceptions and warnings raised by covidxray.

Every error the library raises on purpose is one of these, or a plain
`ValueError` / `TypeError` for a bad argument. Messages name the argument or
file, what was expected and what was found.
"""

from __future__ import annotations

__all__ = [
    "AllSeenError",
    "CovidXrayWarning",
    "DataError",
    "NotFittedError",
    "WeightsUnavailableError",
]


class DataError(ValueError):
    """A file, folder or argument of a dataset is not what was expected.

    It names the file or argument, what was expected and what was found.

    Examples:
        >>> from covidxray import DataError
        >>> issubclass(DataError, ValueError)
        True
    """


class AllSeenError(DataError):
    """Every image an evaluation would score was seen in training or validation.

    `evaluate`, the lung test and the report leave seen images out; when none
    is left there is nothing honest to score.

    Attributes:
        n_images: How many images there were to score (all of them seen).

    Examples:
        >>> from covidxray import AllSeenError, DataError
        >>> error = AllSeenError("All 3 images were seen.", n_images=3)
        >>> isinstance(error, DataError), error.n_images
        (True, 3)
    """

    def __init__(self, message: str, *, n_images: int) -> None:
        super().__init__(message)
        self.n_images = n_images


class NotFittedError(ValueError, AttributeError):
    """A `Classifier` was used before `fit` or `load`.

    Like scikit-learn's own `NotFittedError`, it is both a `ValueError` and an
    `AttributeError`, so `except AttributeError` and `hasattr` treat a missing
    fit as a missing attribute.

    Examples:
        >>> from covidxray import NotFittedError
        >>> issubclass(NotFittedError, ValueError)
        True
        >>> issubclass(NotFittedError, AttributeError)
        True
    """


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be downloaded or read.

    The message names the backbone, the Keras weight file, the folder to put it
    in, and the `weights=` alternatives.

    Examples:
        >>> from covidxray import WeightsUnavailableError
        >>> issubclass(WeightsUnavailableError, RuntimeError)
        True
    """


class CovidXrayWarning(UserWarning):
    """Base class of the warnings covidxray emits (skipped files, shortcuts...).

    Examples:
        >>> from covidxray import CovidXrayWarning
        >>> issubclass(CovidXrayWarning, UserWarning)
        True
    """
