"""Tests of fit's own callbacks: logging, the best checkpoint, resuming, and
showing a user's callback the full model while only the head trains."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from types import SimpleNamespace

import keras
import pytest

from covidxray.errors import DataError
from covidxray.training import (
    BestCheckpoint,
    LogEpochs,
    ShowFullModel,
    callbacks,
    own_callbacks,
    previous_best,
)


def test_best_checkpoint_saves_only_when_the_value_improves(tmp_path: Path) -> None:
    saved: list[tuple[Path, int, str, float]] = []
    path = tmp_path / "best.keras"
    best = BestCheckpoint(lambda *a: saved.append(a), path, "val_loss", math.inf)
    for epoch, value in enumerate([0.5, 0.6, float("nan"), 0.4, 0.4]):
        best.on_epoch_end(epoch, {"val_loss": value})
    best.on_epoch_end(5, {"loss": 0.1})  # no monitored value: nothing
    assert saved == [(path, 1, "val_loss", 0.5), (path, 4, "val_loss", 0.4)]
    assert best.best == 0.4
    resumed = BestCheckpoint(lambda *a: saved.append(a), path, "val_loss", 0.3)
    resumed.on_epoch_end(0, {"val_loss": 0.35})  # not better than the run before
    assert len(saved) == 2


def test_log_epochs_logs_every_metric(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="covidxray"):
        LogEpochs().on_epoch_end(2, {"loss": 0.25, "val_auc": 0.875})
    assert "Epoch 3: loss=0.2500, val_auc=0.8750" in caplog.text


def test_own_callbacks_for_each_setting(tmp_path: Path) -> None:
    def save(*args: object) -> None:
        return None

    plain = own_callbacks(save, monitor="loss", checkpoint=None, early_stopping=None)
    assert [type(c) for c in plain] == [LogEpochs]
    path = tmp_path / "m.keras"
    full = own_callbacks(save, monitor="val_loss", checkpoint=path, early_stopping=3)
    assert [type(c).__name__ for c in full] == [
        "LogEpochs",
        "BestCheckpoint",
        "BackupAndRestore",
        "EarlyStopping",
    ]
    assert full[2].backup_dir == f"{path}.backup"
    assert full[3].patience == 3 and full[3].restore_best_weights
    second = own_callbacks(
        save, monitor="loss", checkpoint=path, early_stopping=0, worker=(1, 2)
    )
    assert second[2].backup_dir == f"{path}.backup-worker1"  # its own backup
    assert len(second) == 3  # early_stopping=0: none


def test_previous_best_reads_an_interrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.keras"
    info = {"monitor": "val_loss", "value": 0.3}
    monkeypatch.setattr(
        callbacks, "read_metadata", lambda p: SimpleNamespace(checkpoint=info)
    )
    assert previous_best(path, "val_loss") == math.inf  # no file, no backup
    path.write_bytes(b"")
    assert previous_best(path, "val_loss") == math.inf  # a file but no backup
    Path(f"{path}.backup").mkdir()
    assert previous_best(path, "val_loss") == 0.3
    assert previous_best(path, "loss") == math.inf  # another monitor

    def broken(p: Path) -> None:
        raise DataError("not a model file")

    monkeypatch.setattr(callbacks, "read_metadata", broken)
    assert previous_best(path, "val_loss") == math.inf


def test_show_full_model_gives_the_full_model_and_passes_stop_on() -> None:
    full = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)], name="full")
    head = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)], name="head")
    seen: list[str] = []

    class Stopper(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: object = None) -> None:
            seen.append(self.model.name)
            if epoch == 1:
                self.model.stop_training = True

    wrapper = ShowFullModel(Stopper(), full)
    wrapper.set_model(head)
    wrapper.set_params({"epochs": 3})
    head.stop_training = False
    wrapper.on_epoch_end(0)
    assert not head.stop_training
    wrapper.on_epoch_end(1)
    assert seen == ["full", "full"] and head.stop_training
    assert wrapper.inner.params == {"epochs": 3}
