"""Tests of `covidxray._scoring`: which split an evaluation scores, the
seen-check, and how a dataset's classes map onto a model's, on datasets,
records and arrays, with no `Classifier` (and no training) where possible."""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from covidxray import (
    Classifier,
    CovidXrayWarning,
    DataError,
    Preprocessing,
    build_cnn,
    load_dataset,
)
from covidxray._persist import ModelMetadata
from covidxray._scoring import (
    FittedModel,
    _pick_split,
    _unseen,
    model_labels,
    scores,
)
from covidxray._seen import TrainingRecord

SIZE = 48


@pytest.fixture(scope="module")
def data(leaky_root: Path):
    """train/ and test/, with 3 training COVID images copied into test/ (kept:
    not deduplicated, as an evaluation reads a folder)."""
    return load_dataset(
        leaky_root, image_size=(SIZE, SIZE), batch_size=8, deduplicate=False
    )


@pytest.fixture(scope="module")
def record(data) -> TrainingRecord:
    """What a model fitted on `data` saw: its train and val splits."""
    seen = data.split_records("train") + data.split_records("val")
    return TrainingRecord.from_records(seen, {"complete": True})


@pytest.fixture(scope="module")
def fitted(data, record) -> FittedModel:
    keras.utils.set_random_seed(0)
    return FittedModel(
        model=build_cnn((SIZE, SIZE, 1)),
        preprocessing=Preprocessing((SIZE, SIZE)),
        class_names=tuple(data.class_names),
        positive_index=data.class_names.index(data.positive_class),
        record=record,
    )


def test_the_split_is_test_by_default_and_checked(data) -> None:
    records, meta = _pick_split(data, None, "evaluate")
    test = data.split_records("test")
    assert test and records == test and meta["split"] == "test"
    assert meta["n_total"] == len(test) and meta["scope"].startswith("test split:")
    assert meta["data_fingerprint"] == data.fingerprint()
    every, meta = _pick_split(data, "all", "evaluate")
    assert every == list(data.records)
    assert meta["scope"].startswith(f"external set: all {len(every)} images")
    with pytest.raises(ValueError, match="`split` argument of evaluate must be one"):
        _pick_split(data, "holdout", "evaluate")


def test_an_empty_split_names_the_dataset_and_how_to_fix_it(
    synthetic_root: Path,
) -> None:
    flat = load_dataset(synthetic_root, image_size=(SIZE, SIZE), validation_split=0.0)
    assert not flat.split_records("val")
    with pytest.raises(DataError, match="val split of .* is empty.*validation_split"):
        _pick_split(flat, "val", "tune_threshold")


def test_labels_map_by_role_for_two_classes_and_by_name_for_more(data) -> None:
    records = list(data.records)
    positive = np.array([r.label == data.positive_class for r in records])
    names = data.class_names
    pos = names.index(data.positive_class)
    labels = model_labels(data, records, names, pos)
    np.testing.assert_array_equal(labels, np.where(positive, pos, 1 - pos))
    flipped = model_labels(data, records, names[::-1], 1 - pos)  # other order
    np.testing.assert_array_equal(flipped, np.where(positive, 1 - pos, pos))
    three = [*names, "pneumonia"]
    by_name = model_labels(data, records, three, 1)
    assert [three[i] for i in by_name] == [r.label for r in records]
    with pytest.raises(DataError, match="are not among the model's classes"):
        model_labels(data, records, ["a", "b", "c"], 1)


def test_the_seen_check_leaves_out_what_the_record_holds(data, record) -> None:
    test = data.split_records("test")
    meta: dict = {"scope": "test"}
    kept = _unseen(record, test, meta, include_seen=False, where="evaluate")
    assert meta["n_seen"] == 3 and len(kept) == len(test) - 3
    seen = set(record.check(test).exact)
    assert seen.isdisjoint(kept) and len(seen) == 3
    assert meta["seen_checked"] and meta["record_complete"]
    meta = {"scope": "test"}
    assert _unseen(record, test, meta, True, "evaluate") == list(range(len(test)))
    assert meta["include_seen"] and meta["n_seen"] == 3
    everything = TrainingRecord.from_records(test)
    with pytest.raises(DataError, match=f"All {len(test)} images to score"):
        _unseen(everything, test, {"scope": "test"}, False, "evaluate")


def test_no_record_or_an_incomplete_one_warns(data) -> None:
    test = data.split_records("test")
    meta: dict = {}
    with pytest.warns(CovidXrayWarning, match="no record of its training images"):
        kept = _unseen(None, test, meta, False, "evaluate")
    assert kept == list(range(len(test))) and meta == {"seen_checked": False}
    partial = TrainingRecord.from_records(test[:1], {"complete": False})
    with pytest.warns(CovidXrayWarning, match="also trained on arrays"):
        _unseen(partial, test, {"scope": "x"}, False, "evaluate")


def test_arrays_are_scored_without_a_seen_check() -> None:
    inputs = keras.Input((8, 8, 1))
    mean = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(mean))
    fitted = FittedModel(model, Preprocessing((8, 8)), ("neg", "pos"))
    x = np.random.default_rng(0).random((70, 8, 8, 1)).astype(np.float32)
    y = np.arange(70) % 2
    labels, proba, meta, records = scores(fitted, (x, y), split=None, where="evaluate")
    assert records == []  # arrays have no records
    np.testing.assert_array_equal(labels, y)
    direct = np.asarray(model(x, training=False))[:, 0]
    np.testing.assert_allclose(proba[:, 1], direct, atol=1e-6)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert meta == {"seen_checked": False}
    with pytest.raises(ValueError, match="`split` argument of evaluate applies"):
        scores(fitted, (x, y), split="test", where="evaluate")
    with pytest.raises(ValueError, match="No labelled images to score"):
        scores(fitted, (x[:0], y[:0]), split=None, where="evaluate")


def test_a_dataset_is_scored_as_the_classifier_evaluates_it(data, fitted) -> None:
    labels, proba, meta, records = scores(fitted, data, split=None, where="evaluate")
    assert meta["n"] == meta["n_total"] - 3 == len(labels) == len(proba)
    assert len(records) == len(labels) and {r.split for r in records} == {"test"}
    assert set(meta["classes_found"].values()) <= set(data.class_names)
    clf = Classifier.from_config(
        ModelMetadata(
            class_names=fitted.class_names,
            positive_class=data.positive_class,
            threshold=0.5,
            preprocessing=fitted.preprocessing,
        ),
        fitted.model,
        fitted.record,
    )
    ev = clf.evaluate(data, n_bootstrap=0)
    np.testing.assert_array_equal(ev.y_true, labels)
    np.testing.assert_allclose(ev.y_score, proba, atol=1e-6)


def test_no_private_helper_receives_the_classifier_while_it_evaluates(
    data, fitted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime side of tests/test_layout.py's source check."""
    clf = Classifier.from_config(
        ModelMetadata(
            class_names=fitted.class_names,
            positive_class=data.positive_class,
            threshold=0.5,
            preprocessing=fitted.preprocessing,
        ),
        fitted.model,
        fitted.record,
    )
    package = str(Path(__file__).resolve().parents[1] / "covidxray")
    allowed_prefixes = ("Classifier.", "Params.")
    # the deprecated-alias wrapper of a method is that method's own decorator
    allowed = {"renamed_argument.<locals>.decorate.<locals>.wrapper"}
    received: set[str] = set()

    def watch(frame, event, arg):
        if event != "call" or not frame.f_code.co_filename.startswith(package):
            return
        code = frame.f_code
        name = getattr(code, "co_qualname", code.co_name)  # 3.11+
        if name.startswith(allowed_prefixes) or name in allowed:
            return
        module = Path(code.co_filename).stem
        public = not module.startswith("_") and not name.startswith("_")
        if public and "<locals>" not in name:
            return  # public API may take a classifier
        n = code.co_argcount + code.co_kwonlyargcount
        n += bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08)
        values = []
        for var in code.co_varnames[:n]:
            value = frame.f_locals.get(var)
            values += list(value) if isinstance(value, tuple) else [value]
            if isinstance(value, dict):
                values += list(value.values())
        if any(isinstance(v, Classifier) for v in values):
            received.add(f"{module}:{name}")

    sys.setprofile(watch)
    try:
        clf.evaluate(data, n_bootstrap=10)
        clf.evaluate(data.as_tf_dataset("test"), n_bootstrap=0)
        clf.tune_threshold(data)
        clf.predict_proba(data.images("test")[:2])
    finally:
        sys.setprofile(None)
    assert received == set(), sorted(received)
