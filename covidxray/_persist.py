"""The `.keras` file of a `Classifier`: its metadata schema, atomic save, safe load.

A classifier file is a plain Keras `.keras` archive with one more member,
`covidxray.json`, which holds a `ModelMetadata`: the class names, threshold and
`Preprocessing` needed to predict again, plus where the file came from.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import keras

from ._filechecks import check_against_model, check_members, check_stored_values
from ._seen import TrainingRecord
from ._version import __version__, provenance
from .data.preprocessing import Preprocessing, outside_stacklevel
from .data.tempfiles import (
    check_writable,
    file_mode,
    remove_stale,
    temp_prefix,
    terminate_as_exit,
)
from .errors import CovidXrayWarning, DataError

logger = logging.getLogger("covidxray")

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "METADATA_NAME",
    "ModelMetadata",
    "RECORD_NAME",
    "check_model_path",
    "load_keras_model",
    "provenance",
    "read_classifier",
    "read_metadata",
    "read_training_record",
    "save_atomic",
]

METADATA_NAME = "covidxray.json"
RECORD_NAME = "covidxray_seen.bin"
FORMAT = "covidxray.Classifier"
#: 1: flat preprocessing dict, no schema. 2: this schema (reads version 1 too).
FORMAT_VERSION = 2


@dataclass(frozen=True)
class ModelMetadata:
    """What a classifier file says about its model.

    Attributes:
        class_names: Class names in label-index order.
        positive_class: The positive class of a binary task, or None.
        threshold: Decision threshold on P(positive).
        preprocessing: How inputs are decoded and resized.
        learning_rate: Learning rate of the last `fit`.
        seed: Seed of the last `fit`.
        spectral_decoupling: The `Classifier`'s `spectral_decoupling`
            strength (0 when off, and in files written before it was kept).
        lung_focus: The `Classifier`'s `lung_focus` strength (0 when off).
        segmenter: The lung segmenter's version and weights hash, for a model
            that depends on it (`lungs` preprocessing or `lung_focus`); None
            otherwise. A file that names another segmenter than the
            installed one is warned about when it is read.
        provenance: Versions of covidxray, TensorFlow and Keras that saved it.
        checkpoint: For a best-epoch checkpoint: epoch, monitor and value.
        training: What it was trained on, when `fit` got an `XrayDataset`: the
            data fingerprint, source, split settings, image counts and
            `modalities`. The content record itself is the archive member
            `covidxray_seen.bin`.
    """

    class_names: tuple[str, ...]
    positive_class: str | None
    threshold: float
    preprocessing: Preprocessing
    learning_rate: float = 1e-3
    seed: int | None = None
    spectral_decoupling: float = 0.0
    lung_focus: float = 0.0
    segmenter: Mapping[str, str] | None = None
    provenance: Mapping[str, str] = field(default_factory=provenance)
    checkpoint: Mapping[str, Any] | None = None
    training: Mapping[str, Any] | None = None

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities it was trained on, from `training["modalities"]`:
        `("X-ray",)` for a file saved before covidxray kept them (it read
        X-rays only) or trained on arrays."""
        return tuple((self.training or {}).get("modalities") or ("X-ray",))

    def to_dict(self) -> dict[str, Any]:
        """The JSON document stored in the file."""
        out: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "class_names": list(self.class_names),
            "positive_class": self.positive_class,
            "threshold": self.threshold,
            "learning_rate": self.learning_rate,
            "seed": self.seed,
            "spectral_decoupling": self.spectral_decoupling,
            "preprocessing": self.preprocessing.to_dict(),
            "provenance": dict(self.provenance),
        }
        if self.lung_focus:
            out["lung_focus"] = self.lung_focus
        if self.segmenter is not None:
            out["segmenter"] = dict(self.segmenter)
        if self.checkpoint is not None:
            out["checkpoint"] = dict(self.checkpoint)
        if self.training is not None:
            out["training"] = dict(self.training)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], path: Path) -> ModelMetadata:
        """Read and check a stored document (format version 1 or 2).

        Raises:
            DataError: A required field is missing or has a wrong value; the
                message names the file.
        """
        version = values.get("format_version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise DataError(
                f"'{path}' has an invalid covidxray file format {version!r}."
            )
        if version > FORMAT_VERSION:
            raise DataError(
                f"'{path}' was saved in covidxray file format {version!r}; this "
                f"covidxray ({__version__}) reads formats 1 to {FORMAT_VERSION}. "
                "Upgrade covidxray to load it."
            )
        required = ("class_names", "threshold", "preprocessing")
        missing = [k for k in required if k not in values]
        if missing:
            raise DataError(
                f"The covidxray metadata in '{path}' lacks {', '.join(missing)}."
            )
        check_stored_values(values, path)
        names = [str(c) for c in values["class_names"]]
        positive = values.get("positive_class")
        if positive is not None and positive not in names:
            raise DataError(
                f"The covidxray metadata in '{path}' is invalid: positive_class "
                f"{positive!r} is not one of the class names {names}."
            )
        try:
            versions = values.get("provenance") or {
                k: values[k] for k in provenance() if k in values
            }
            return cls(
                class_names=tuple(str(c) for c in values["class_names"]),
                positive_class=values.get("positive_class"),
                threshold=float(values["threshold"]),
                preprocessing=Preprocessing.from_dict(values["preprocessing"]),
                learning_rate=float(values.get("learning_rate", 1e-3)),
                seed=values.get("seed"),
                spectral_decoupling=float(values.get("spectral_decoupling", 0.0)),
                lung_focus=float(values.get("lung_focus", 0.0)),
                segmenter=values.get("segmenter"),
                provenance=dict(versions),
                checkpoint=values.get("checkpoint"),
                training=values.get("training"),
            )
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"The covidxray metadata in '{path}' is invalid: {exc}"
            ) from exc

    def __getitem__(self, key: str) -> Any:
        """Deprecated dict-style access (`metadata_["checkpoint"]`), kept from
        when `Classifier.metadata_` was a dict."""
        warnings.warn(
            f"ModelMetadata[{key!r}] is deprecated; use its attributes.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.to_dict()[key]

    def with_checkpoint(self, epoch: int, monitor: str, value: float) -> ModelMetadata:
        """A copy that marks a best-epoch checkpoint."""
        info = {"epoch": epoch, "monitor": monitor, "value": value}
        return replace(self, checkpoint=info)


def check_model_path(path: str | os.PathLike[str], where: str) -> Path:
    """Check, before any work, that a classifier file can be written at `path`:
    a `.keras` name, in a folder that exists and is writable.

    Raises:
        ValueError: The message names the user's path and what is wrong.

    Examples:
        >>> check_model_path("missing-folder/m.keras", "save")
        Traceback (most recent call last):
        ...
        ValueError: Cannot write 'missing-folder/m.keras' (save): the folder ...
    """
    target = Path(path)
    if target.suffix != ".keras":
        raise ValueError(
            f"The path given to {where} must end in '.keras'. Received: '{path}'."
        )
    check_writable(path, where)
    return target


def save_atomic(
    model: keras.Model,
    path: Path,
    metadata: ModelMetadata,
    record: TrainingRecord | None = None,
) -> Path:
    """Write `model` and `metadata` into one `.keras` file, atomically.

    The file is written beside the target under a temporary name and renamed
    over it, so a failed save (full disk, read-only folder, interruption,
    SIGTERM in the main thread) leaves an earlier file intact and no temporary
    file behind; a successful one removes the temporary files that killed
    runs left beside it. The file gets the mode the umask allows. A model trained
    with `MultiWorkerMirroredStrategy` is written by the chief worker only.
    """
    check_model_path(path, "save")
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is not None and not getattr(
        strategy.extended, "should_checkpoint", True
    ):
        # Multi-worker training: every worker has the same weights, and only
        # the chief writes, so that workers never race on one path.
        logger.info("Not the chief worker: the chief writes '%s'.", path)
        return path
    folder = path.parent if str(path.parent) else Path(".")
    with terminate_as_exit():  # SIGTERM, too, removes the temporary file
        handle, tmp_name = tempfile.mkstemp(
            prefix=temp_prefix(path.stem), suffix=".keras", dir=folder
        )
        os.close(handle)
        try:
            model.save(tmp_name)
            with zipfile.ZipFile(tmp_name, "a") as archive:
                archive.writestr(
                    METADATA_NAME, json.dumps(metadata.to_dict(), indent=2)
                )
                if record is not None:
                    archive.writestr(RECORD_NAME, record.to_bytes())
            os.chmod(tmp_name, file_mode())  # mkstemp's 0600 -> the umask's
            os.replace(tmp_name, path)
        except BaseException:
            try:
                os.remove(tmp_name)
            except OSError:
                pass
            raise
    remove_stale(folder, path.stem, ".keras")  # killed runs' leftovers
    return path


def read_metadata(path: Path) -> ModelMetadata:
    """The `ModelMetadata` of a classifier file.

    Raises:
        DataError: The file is missing, not a `.keras` archive, corrupted, or a
            plain Keras model without covidxray metadata.
    """
    if not path.is_file():
        raise DataError(f"No model file at '{path}'.")
    if not zipfile.is_zipfile(path):
        raise DataError(
            f"'{path}' is not a .keras archive (not a zip file); it may be truncated "
            "or corrupted."
        )
    check_members(path)  # before anything is unpacked
    try:
        with zipfile.ZipFile(path) as archive:
            if METADATA_NAME not in archive.namelist():
                raise DataError(
                    f"'{path}' is a Keras model without covidxray metadata. Load it "
                    "with keras.saving.load_model and wrap it: Classifier(model, "
                    "class_names=[...]), then fit it, or save it from a Classifier."
                )
            values = json.loads(archive.read(METADATA_NAME))
    except DataError:
        raise
    except (zipfile.BadZipFile, json.JSONDecodeError, OSError, KeyError) as exc:
        raise DataError(f"'{path}' is corrupted: {exc}") from exc
    if not isinstance(values, dict):
        raise DataError(f"The covidxray metadata in '{path}' is not a JSON object.")
    return ModelMetadata.from_dict(values, path)


def read_training_record(path: Path, metadata: ModelMetadata) -> TrainingRecord | None:
    """The content record of the images a model file was trained on, or None
    for a file saved without one (by an older version, or after `fit` on
    arrays)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if RECORD_NAME not in archive.namelist():
                return None
            data = archive.read(RECORD_NAME)
        return TrainingRecord.from_bytes(data, metadata.training)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DataError(f"The training record in '{path}' is corrupted: {exc}") from exc


def load_keras_model(path: Path) -> keras.Model:
    """Load the Keras model of a classifier file in safe mode (no code runs),
    once its members' sizes are checked."""
    check_members(path)
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise DataError(f"Could not load the Keras model in '{path}': {exc}") from exc


def read_classifier(
    path: Path,
) -> tuple[keras.Model, ModelMetadata, TrainingRecord | None]:
    """What a classifier file holds, as plain values: its Keras model (loaded
    in safe mode), its `ModelMetadata`, and its `TrainingRecord` (None when it
    was saved without one). `Classifier.load` builds the classifier from them.

    Raises:
        DataError: The file is missing, not a `.keras` archive, corrupted, a
            plain Keras model without covidxray metadata, a member unpacks to
            more than its limit, or the metadata does not fit the model.
    """
    meta = read_metadata(path)
    model = load_keras_model(path)
    check_against_model(model, meta.class_names, meta.preprocessing.input_shape, path)
    check_segmenter(meta, path)
    return model, meta, read_training_record(path, meta)


def check_segmenter(meta: ModelMetadata, path: Path) -> None:
    """Warn when a model file finds the lungs of what it reads
    (`Preprocessing(lungs=...)`) with another lung segmenter than the one
    installed: its lungs would be found differently than in training."""
    if meta.segmenter is None or not meta.preprocessing.needs_lungs:
        return
    from .lungs.unet import default_lung_model

    installed = default_lung_model().info()
    if dict(meta.segmenter) != installed:
        warnings.warn(
            f"'{path}' was made with lung segmenter version "
            f"{meta.segmenter.get('version')!r} (weights "
            f"{str(meta.segmenter.get('weights_sha256'))[:12]}...); this "
            f"covidxray has version {installed['version']!r} (weights "
            f"{installed['weights_sha256'][:12]}...). Its lungs will be found "
            "differently than when it was trained: install the covidxray "
            "version that made it, or retrain.",
            CovidXrayWarning,
            stacklevel=outside_stacklevel(),
        )
