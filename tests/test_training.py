"""Bounded feature caching: pooled vectors, and a file above the memory limit."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from covidxray import Classifier, _training, build_pretrained, load_dataset
from covidxray.models import split_at_backbone


@pytest.mark.parametrize(("head", "size"), [("gap", 1280), ("seed", 1280)])
def test_the_pooling_moves_into_the_features(head: str, size: int) -> None:
    model = build_pretrained(
        "mobilenetv2", input_shape=(96, 96, 1), weights=None, head=head
    )
    full_features, _ = split_at_backbone(model)
    features, new_head = _training.pool_into_features(*split_at_backbone(model))
    assert len(features.output_shape) == 2  # vectors, not feature maps
    # gap: 1 x 1 x 1280; seed (2 x 2 average pooling of 3 x 3): 1 x 1 x 1280
    assert features.output_shape[1] == size
    assert np.prod(full_features.output_shape[1:]) == 9 * 1280
    x = np.random.default_rng(0).random((3, 96, 96, 1)).astype(np.float32)
    np.testing.assert_allclose(
        new_head(features(x, training=False), training=False),
        model(x, training=False),
        atol=1e-5,
    )


def test_a_head_that_starts_with_weights_is_left_as_it_is() -> None:
    inp = keras.Input((4, 4, 8))
    out = keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 1)(inp))
    )
    head = keras.Model(inp, out)
    features = keras.Sequential([keras.Input((4, 4, 8))])
    assert _training.pool_into_features(features, head) == (features, head)


def test_features_above_the_limit_go_to_a_file(
    synthetic_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = load_dataset(synthetic_root, image_size=(32, 32), batch_size=8)
    stores = []
    real = _training._feature_store

    def spy(n: int, shape: tuple[int, ...]) -> np.ndarray:
        store = real(n, shape)
        stores.append(store)
        return store

    monkeypatch.setattr(_training, "FEATURE_MEMORY_LIMIT", 0)
    monkeypatch.setattr(_training, "_feature_store", spy)
    keras.utils.set_random_seed(0)
    model = build_pretrained("mobilenetv2", input_shape=(32, 32, 1), weights=None)
    clf = Classifier(model, class_names=data.class_names)
    clf.fit(data, epochs=2, verbose=0, cache_features=True)
    assert clf.feature_cache_used_ and stores
    assert all(isinstance(s, np.memmap) and s.ndim == 2 for s in stores)
    n_train = len(data.split_records("train"))
    assert n_train <= len(stores[0]) < n_train + 8  # sized from the batch count
    assert clf.predict_proba(data.images("val")).shape == (
        len(data.split_records("val")),
        2,
    )


def test_features_keep_their_order_whatever_the_batch_sizes() -> None:
    import tensorflow as tf

    x = np.arange(8 * 2, dtype=np.float32).reshape(8, 2)
    y = np.arange(8, dtype=np.int32)
    # Batches of 2, 3 and 3: the store is sized from the first (3 x 2 rows), so
    # the last batch does not fit and must follow in order.
    bounds = [(0, 2), (2, 5), (5, 8)]
    spec = (tf.TensorSpec((None, 2), tf.float32), tf.TensorSpec((None,), tf.int32))
    unknown = tf.data.Dataset.from_generator(
        lambda: ((x[i:j], y[i:j]) for i, j in bounds), output_signature=spec
    )
    uneven = unknown.apply(tf.data.experimental.assert_cardinality(3))
    assert int(uneven.cardinality()) == 3 and int(unknown.cardinality()) < 0
    for ds in (uneven, unknown):
        feats, labels = _training._run_features(lambda t: t * 2, ds)
        np.testing.assert_array_equal(feats, x * 2)
        np.testing.assert_array_equal(labels, y)
