"""FeatureCache: a frozen backbone's features computed once per image, shared by
fits, predictions and evaluations, bounded in memory."""

from __future__ import annotations

import threading
from pathlib import Path

import keras
import numpy as np
import pytest
from sklearn.base import clone

from covidxray import Classifier, FeatureCache, build_pretrained, load_dataset
from covidxray.features import _Parts, _rows_and_labels, _Table, pool_into_features
from covidxray.models import split_at_backbone


def _backbone_model(seed: int = 0, size: int = 32) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return build_pretrained("mobilenetv2", input_shape=(size, size, 1), weights=None)


@pytest.mark.parametrize(
    ("head", "side", "size"), [("gap", 128, 1280), ("paper", 128, 5120)]
)
def test_the_pooling_moves_into_the_features(head: str, side: int, size: int) -> None:
    model = build_pretrained(
        "mobilenetv2", input_shape=(side, side, 1), weights=None, head=head
    )
    full_features, _ = split_at_backbone(model)
    features, new_head = pool_into_features(*split_at_backbone(model))
    assert len(features.output_shape) == 2  # vectors, not feature maps
    # gap: 1 x 1 x 1280; paper (2 x 2 average pooling of 4 x 4): 2 x 2 x 1280
    assert features.output_shape[1] == size
    assert np.prod(full_features.output_shape[1:]) == 16 * 1280
    x = np.random.default_rng(0).random((3, side, side, 1)).astype(np.float32)
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
    assert pool_into_features(features, head) == (features, head)


def test_features_above_the_limit_go_to_files(synthetic_root: Path) -> None:
    data = load_dataset(synthetic_root, image_size=(32, 32), batch_size=8)
    cache = FeatureCache(memory_limit=0)
    clf = Classifier(
        _backbone_model(), class_names=data.class_names, feature_cache=cache
    )
    clf.fit(data, epochs=2, verbose=0, cache_features=True)
    assert clf.feature_cache_used_
    (table,) = cache._tables.values()
    assert table.blocks and all(isinstance(b, np.memmap) for b in table.blocks)
    n_train = len(data.split_records("train"))
    assert n_train <= len(table.blocks[0]) < n_train + 8  # sized from the batch count
    x = data.images("val")
    proba = clf.predict_proba(x)
    assert proba.shape == (len(x), 2)
    direct = np.asarray(clf.model_(x.astype(np.float32) / 255.0, training=False))
    np.testing.assert_allclose(proba[:, 1], direct[:, 0], atol=1e-5)


def test_a_memory_limit_splits_the_rows_between_memory_and_a_file() -> None:
    row = 2 * 4  # two float32 values
    cache = FeatureCache(memory_limit=64 * row)  # a first block of 60 rows fits
    parts = _Parts(None, None, lambda t: t[:, :2] * 2, _Table())  # type: ignore[arg-type]
    x = np.arange(100 * 3, dtype=np.float32).reshape(100, 3)
    first = cache._rows(parts, x[:60], expected=60)  # a pass of 60 images
    rows = np.concatenate([first, cache._rows(parts, x[60:], expected=40)])
    blocks = parts.table.blocks
    assert len(blocks) == 2 and not isinstance(blocks[0], np.memmap)
    assert isinstance(blocks[1], np.memmap)  # no room left in memory
    order = np.random.default_rng(0).permutation(100)  # across both blocks
    np.testing.assert_array_equal(parts.table.take(rows[order]), x[order, :2] * 2)
    assert (cache.computed, cache.reused) == (100, 0)
    again = cache._rows(parts, x[order])
    np.testing.assert_array_equal(again, rows[order])
    assert (cache.computed, cache.reused) == (100, 100)


def test_rows_keep_their_order_and_a_repeated_image_is_computed_once() -> None:
    import tensorflow as tf

    x = np.arange(8 * 2, dtype=np.float32).reshape(8, 2)
    x[5] = x[1]  # the same pixels twice
    y = np.arange(8, dtype=np.int32)
    bounds = [(0, 2), (2, 5), (5, 8)]  # uneven batches
    spec = (tf.TensorSpec((None, 2), tf.float32), tf.TensorSpec((None,), tf.int32))
    unknown = tf.data.Dataset.from_generator(
        lambda: ((x[i:j], y[i:j]) for i, j in bounds), output_signature=spec
    )
    uneven = unknown.apply(tf.data.experimental.assert_cardinality(3))
    assert int(uneven.cardinality()) == 3 and int(unknown.cardinality()) < 0
    for ds in (uneven, unknown):
        cache = FeatureCache()
        calls: list[int] = []

        def extract(t: np.ndarray, calls: list[int] = calls) -> np.ndarray:
            calls.append(len(t))
            return t * 2

        parts = _Parts(None, None, extract, _Table())  # type: ignore[arg-type]
        rows, labels = _rows_and_labels(cache, parts, ds)
        np.testing.assert_array_equal(parts.table.take(rows), x * 2)
        np.testing.assert_array_equal(labels, y)
        assert sum(calls) == 7 and rows[5] == rows[1]


def test_fits_seeds_and_evaluations_share_one_pass_of_the_backbone(
    synthetic_root: Path,
) -> None:
    data = load_dataset(
        synthetic_root,
        image_size=(32, 32),
        batch_size=8,
        validation_split=0.2,
        test_split=0.25,
    )
    n = len(data.records)
    cache = FeatureCache()
    model = _backbone_model()
    first = Classifier(model, class_names=data.class_names, feature_cache=cache)
    first.fit(data, epochs=2, verbose=0)
    assert first.feature_cache_used_
    fitted = len(data.split_records("train")) + len(data.split_records("val"))
    assert (cache.computed, cache.reused) == (fitted, 0)
    evaluation = first.evaluate(data, n_bootstrap=10)
    assert cache.computed == n and len(evaluation.y_true) == len(
        data.split_records("test")
    )
    # Another seed, another head, the same frozen backbone: nothing to compute.
    again = _backbone_model(seed=1)
    again.get_layer("mobilenetv2").set_weights(
        model.get_layer("mobilenetv2").get_weights()
    )
    second = Classifier(
        again, class_names=data.class_names, seed=1, feature_cache=cache
    )
    second.fit(data, epochs=2, verbose=0)
    second.evaluate(data, n_bootstrap=10)
    assert cache.computed == n and cache.reused == n
    x = data.images("test")
    through_cache = second.predict_proba(x)
    direct = np.asarray(second.model_(x.astype(np.float32) / 255.0, training=False))
    np.testing.assert_allclose(through_cache[:, 1], direct[:, 0], atol=1e-5)
    # scikit-learn's clone shares the cache and copies the model, weights and
    # all: the copy's frozen backbone is the same, so it computes nothing new.
    twin = clone(first)
    assert twin.feature_cache is cache and twin.model is not first.model
    twin.fit(data, epochs=1, verbose=0)
    assert twin.feature_cache_used_ and cache.computed == n


def test_other_backbone_weights_never_get_stale_features() -> None:
    cache = FeatureCache()
    x = np.random.default_rng(0).random((3, 32, 32, 1), np.float32)
    a, b = _backbone_model(seed=0), _backbone_model(seed=1)
    cache.predict(a, x)
    out_b = cache.predict(b, x)  # same pixels, other weights: computed again
    assert cache.computed == 6 and len(cache._tables) == 2
    np.testing.assert_allclose(out_b, b(x, training=False), atol=1e-5)
    b.get_layer("mobilenetv2").trainable = True
    assert cache.predict(b, x) is None  # a backbone that trains is not cached
    assert cache.nbytes > 0
    cache.clear()
    assert cache.nbytes == 0 and "0 backbones" in repr(cache)


def test_threads_sharing_a_cache_compute_each_image_once() -> None:
    cache = FeatureCache()
    model = _backbone_model()
    x = np.random.default_rng(1).random((16, 32, 32, 1), np.float32)
    outs: list[np.ndarray] = []
    threads = [
        threading.Thread(target=lambda: outs.append(cache.predict(model, x)))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outs) == 3 and cache.computed == 16 and cache.reused == 32
    for out in outs:
        np.testing.assert_array_equal(out, outs[0])


def test_a_negative_memory_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="`memory_limit` argument of FeatureCache"):
        FeatureCache(memory_limit=-1)


def test_another_input_normalisation_gets_its_own_table() -> None:
    # The same backbone weights behind another weightless preprocessing layer:
    # the frozen part computes other features, so it must not share a table.
    cache = FeatureCache()
    a = _backbone_model()
    b = keras.models.clone_model(a)
    b.set_weights(a.get_weights())
    b.get_layer("stem").get_layer(
        "preprocess"
    ).mode = "torch"  # MobileNetV2's own is "tf"
    x = np.random.default_rng(2).random((3, 32, 32, 1), np.float32)
    cache.predict(a, x)
    out_b = cache.predict(b, x)
    assert len(cache._tables) == 2 and cache.computed == 6
    np.testing.assert_allclose(out_b, b(x, training=False), atol=1e-5)
    held_a, held_b = (t.take(np.arange(3)) for t in cache._tables.values())
    own_b = pool_into_features(*split_at_backbone(b))[0](x, training=False)
    # Random MobileNetV2 features are tiny (about 1e-12): compare to their scale.
    scale = float(np.abs(own_b).max())
    np.testing.assert_allclose(held_b, own_b, rtol=1e-3, atol=1e-4 * scale)
    assert np.abs(held_a - held_b).max() > 0.05 * scale


def test_new_weights_in_a_frozen_backbone_are_seen() -> None:
    cache = FeatureCache()
    model = _backbone_model()
    x = np.random.default_rng(3).random((2, 32, 32, 1), np.float32)
    cache.predict(model, x)
    backbone = model.get_layer("mobilenetv2")
    backbone.set_weights([w * 1.01 for w in backbone.get_weights()])
    out = cache.predict(model, x)  # the checksum changed: hashed again
    assert len(cache._tables) == 2 and cache.computed == 4
    np.testing.assert_allclose(out, model(x, training=False), atol=1e-5)


def test_predict_checks_its_input_and_takes_an_empty_batch() -> None:
    cache = FeatureCache()
    model = _backbone_model()
    assert cache.predict(model, np.zeros((0, 32, 32, 1), np.float32)).shape == (0, 1)
    with pytest.raises(ValueError, match=r"`images` argument.*\(N, 32, 32, 1\)"):
        cache.predict(model, np.zeros((2, 48, 48, 1), np.float32))


def test_a_copied_cache_is_the_same_and_a_pickled_one_comes_back_empty() -> None:
    import copy
    import pickle

    cache = FeatureCache(memory_limit=1000)
    cache.predict(_backbone_model(), np.zeros((1, 32, 32, 1), np.float32))
    assert copy.deepcopy(cache) is cache
    back = pickle.loads(pickle.dumps(cache))
    assert back.memory_limit == 1000 and back.nbytes == 0 and cache.nbytes > 0


def test_heads_train_the_same_with_many_steps_per_call(
    synthetic_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from covidxray.training import loops

    data = load_dataset(synthetic_root, image_size=(32, 32), batch_size=4)
    weights, used = [], []
    real = loops.compile_for

    def spy(*args: object, **kwargs: object) -> None:
        if "steps_per_execution" in kwargs:  # a head on cached features
            used.append(kwargs["steps_per_execution"])
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loops, "compile_for", spy)
    for steps in (1, loops.HEAD_STEPS_PER_EXECUTION):
        monkeypatch.setattr(loops, "HEAD_STEPS_PER_EXECUTION", steps)
        clf = Classifier(_backbone_model(), class_names=data.class_names)
        clf.fit(data, epochs=2, verbose=0, cache_features=True)
        weights.append(np.concatenate([w.ravel() for w in clf.model_.get_weights()]))
    assert used == [1, 32]  # the heads were compiled with each
    np.testing.assert_array_equal(weights[0], weights[1])


def test_without_a_pass_size_blocks_grow_by_half() -> None:
    cache = FeatureCache()
    parts = _Parts(None, None, lambda t: t * 2, _Table())  # type: ignore[arg-type]
    x = np.arange(4000 * 2, dtype=np.float32).reshape(4000, 2)
    rows = np.concatenate(
        [cache._rows(parts, x[i : i + 10]) for i in range(0, 4000, 10)]
    )
    sizes = [len(b) for b in parts.table.blocks]
    assert sizes[:2] == [256, 256] and len(sizes) <= 8  # 256, 256, 256, 384, ...
    np.testing.assert_array_equal(parts.table.take(rows), x * 2)


def test_a_flat_model_of_before_caches_the_same_features() -> None:
    # A model saved before build_pretrained named its parts is a flat graph:
    # it is split by its layer graph, and with the same weights its cached
    # features and outputs are today's, in the same table.
    from legacy_models import build_flat_pretrained

    flat = build_flat_pretrained("mobilenetv2", input_shape=(32, 32, 1), head="paper")
    nested = _backbone_model()
    flat.set_weights(nested.get_weights())
    cache = FeatureCache()
    x = np.random.default_rng(5).random((4, 32, 32, 1), np.float32)
    out_nested = cache.predict(nested, x)
    out_flat = cache.predict(flat, x)
    assert len(cache._tables) == 1 and (cache.computed, cache.reused) == (4, 4)
    np.testing.assert_allclose(out_flat, out_nested, atol=1e-6)
    np.testing.assert_allclose(out_flat, flat(x, training=False), atol=1e-5)


def test_no_attribute_is_written_on_a_users_layer() -> None:
    from covidxray.features import _fingerprint

    class Unlisted(keras.layers.Layer):  # settings that cannot be written down
        def call(self, x: object) -> object:
            return x

        def get_config(self) -> dict:
            raise NotImplementedError

    layer = Unlisted()
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layer(inputs))
    before = dict(vars(layer))
    first, again = _fingerprint(model), _fingerprint(model)
    assert first == again  # one mark per layer object, kept by covidxray
    assert vars(layer).keys() == before.keys()
    other = Unlisted()
    twin = keras.Model(inputs, other(inputs))
    assert _fingerprint(twin) != first  # another object, another table
