"""`fit`'s own callbacks: epoch logging, the best-epoch checkpoint with its
backup to resume from, early stopping, and the wrapper that shows a user's
callback the full model while only the head trains (see
`docs/architecture.md`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras

from .._persist import read_metadata
from ..errors import DataError

logger = logging.getLogger("covidxray")

__all__ = [
    "BestCheckpoint",
    "LogEpochs",
    "ShowFullModel",
    "own_callbacks",
    "previous_best",
]


def own_callbacks(
    save: Callable[[Path, int, str, float], Any],
    *,
    monitor: str,
    checkpoint: str | os.PathLike[str] | None,
    early_stopping: int | None,
    worker: tuple[int, int] | None = None,
) -> list[keras.callbacks.Callback]:
    """`fit`'s own callbacks: epoch logging, best-epoch checkpoint with a
    backup to resume from, and early stopping with the best weights restored.
    `worker` is `(index, count)` under a multi-worker strategy."""
    own: list[keras.callbacks.Callback] = [LogEpochs()]
    if checkpoint is not None:
        path = Path(checkpoint)
        best = previous_best(path, monitor)
        own.append(BestCheckpoint(save, path, monitor, best))
        # Under a multi-worker strategy every worker restores its own backup
        # (the chief's is the plain name), so that none writes over another's.
        index = worker[0] if worker is not None else 0
        suffix = ".backup" if index == 0 else f".backup-worker{index}"
        own.append(
            keras.callbacks.BackupAndRestore(str(path) + suffix, delete_checkpoint=True)
        )
    if early_stopping:
        own.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, patience=int(early_stopping), restore_best_weights=True
            )
        )
    return own


class BestCheckpoint(keras.callbacks.Callback):
    """Call `save(path, epoch, monitor, value)` whenever the monitored value
    improves; `save` writes the whole classifier atomically."""

    def __init__(
        self,
        save: Callable[[Path, int, str, float], Any],
        path: Path,
        monitor: str,
        best: float,
    ) -> None:
        super().__init__()
        self.save, self.path, self.monitor, self.best = save, path, monitor, best

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(value) or value >= self.best:
            return
        self.best = float(value)
        self.save(self.path, epoch + 1, self.monitor, float(value))
        logger.info(
            "Epoch %d: %s improved to %.4f; saved '%s'.",
            epoch + 1,
            self.monitor,
            value,
            self.path,
        )


class LogEpochs(keras.callbacks.Callback):
    """Log each epoch's metrics to the `covidxray` logger."""

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items())
        logger.info("Epoch %d: %s", epoch + 1, shown)


class ShowFullModel(keras.callbacks.Callback):
    """Run a user's callback while only the head trains, showing it the full model.

    The wrapped callback's `model` is the full model; a `stop_training` it
    sets there is passed on to the head that Keras is training.
    """

    def __init__(self, inner: keras.callbacks.Callback, full: keras.Model) -> None:
        super().__init__()
        self.inner, self.full = inner, full

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        self.inner.set_model(self.full)

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        self.inner.set_params(params)

    def _forward(self, hook: str, *args: Any, **kwargs: Any) -> None:
        self.full.stop_training = False
        getattr(self.inner, hook)(*args, **kwargs)
        if self.full.stop_training:
            self.model.stop_training = True


def _forwarder(hook: str) -> Callable[..., None]:
    def method(self: ShowFullModel, *args: Any, **kwargs: Any) -> None:
        self._forward(hook, *args, **kwargs)

    method.__name__ = hook
    return method


for _hook in (
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_begin",
    "on_test_end",
    "on_test_batch_begin",
    "on_test_batch_end",
    "on_predict_begin",
    "on_predict_end",
    "on_predict_batch_begin",
    "on_predict_batch_end",
):
    setattr(ShowFullModel, _hook, _forwarder(_hook))


def previous_best(path: Path, monitor: str) -> float:
    """The best monitored value of an interrupted run to resume, or infinity."""
    backup = Path(str(path) + ".backup")
    if path.is_file() and backup.is_dir():
        try:
            info = read_metadata(path).checkpoint or {}
            if info.get("monitor") == monitor:
                logger.info("Resuming; best %s so far is %.4f.", monitor, info["value"])
                return float(info["value"])
        except (DataError, KeyError, ValueError):
            pass
    return math.inf
