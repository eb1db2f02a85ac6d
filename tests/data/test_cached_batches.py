"""Cached batches: the in-graph gather and the block path give today's batches.

`_old_batches` below is the pipeline's cached path as it was before the
in-graph gather (at ffebead): the order of a pass, then one NumPy gather per
batch across the Python boundary. The tests compare the new path against it,
bit for bit, on the same TensorFlow, so that they hold whatever TensorFlow's
shuffle gives on the machine they run on.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from covidxray.data import pipeline
from covidxray.data.pipeline import batches, draw_weights
from covidxray.data.preprocessing import Preprocessing
from covidxray.data.records import Record

N, SIZE = 37, 8  # 37 images: the last batch of a pass is short


def _records(n: int = N) -> list[Record]:
    return [
        Record(f"{i}.png", "covid" if i % 3 == 0 else "normal", "train", None,
               "ab"[i % 2], "", "", "", "", SIZE, SIZE, "L", "PNG", 1)
        for i in range(n)
    ]  # fmt: skip


def _store() -> tuple[np.ndarray, dict[str, int], np.ndarray]:
    """Pixels of N + 5 rows (5 belong to no record), rows not in record order."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (N + 5, SIZE, SIZE, 1), dtype=np.uint8)
    rows = dict(
        zip((r.path for r in _records()), rng.permutation(N + 5)[:N], strict=True)
    )
    labels = np.array([0 if i % 3 == 0 else 1 for i in range(N)], np.int32)
    return pixels, {k: int(v) for k, v in rows.items()}, labels


def _old_order(n, seed, shuffle, weights):  # the pipeline's `_order` at ffebead
    if shuffle and weights is not None:
        edges = tf.constant(np.cumsum(weights)[:-1], tf.float64)
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        return draws.take(n).map(
            lambda r: tf.searchsorted(
                edges,
                tf.reshape(tf.cast(r % (2**32), tf.float64) / 2.0**32, [1]),
                side="right",
            )[0]
        )
    order = tf.data.Dataset.range(n)
    if shuffle:
        order = order.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    return order


def _old_batches(recs, labels, pixels, rows, *, size, seed, shuffle=False,
                 weights=None, shard=None, transform=None, dtype="float32"):  # fmt: skip
    """`batches` with pixels at ffebead: a NumPy gather per batch."""
    order = _old_order(len(recs), seed, shuffle, weights)
    if shard is not None:
        order = order.shard(shard[1], shard[0]).take(len(recs) // shard[1])
    index = tf.constant([rows[r.path] for r in recs], tf.int64)
    targets = tf.constant(labels)
    ds = order.map(lambda i: (tf.gather(index, i), tf.gather(targets, i)))
    ds = ds.batch(size).map(
        lambda idx, y: (
            tf.numpy_function(lambda i: np.asarray(pixels[i]), [idx], tf.uint8),
            y,
        )
    )
    if transform is not None:
        ds = pipeline.with_transform(ds, transform, seed)
    elif dtype == "float32":
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y))
    return ds


def _epochs(ds: tf.data.Dataset, n: int = 2) -> list[list[tuple[np.ndarray, ...]]]:
    return [[(x.numpy(), y.numpy()) for x, y in ds] for _ in range(n)]


def _assert_same(new: list, old: list) -> None:
    assert len(new) == len(old)
    for epoch_new, epoch_old in zip(new, old, strict=True):
        assert len(epoch_new) == len(epoch_old)
        for (x1, y1), (x0, y0) in zip(epoch_new, epoch_old, strict=True):
            assert x1.dtype == x0.dtype
            np.testing.assert_array_equal(x1, x0)  # bit for bit
            np.testing.assert_array_equal(y1, y0)


def _seed_marks(images, seed):
    """A transform whose output shows the per-batch seed it was given."""
    return images // 2 + tf.cast(seed[0] % 100, tf.uint8)


CASES = {
    "in order": {},
    "uint8": {"dtype": "uint8"},
    "shuffled": {"shuffle": True},
    "balanced": {"shuffle": True, "weights": "class"},
    "sharded": {"shuffle": True, "shard": (1, 3)},
    "balanced and sharded": {"shuffle": True, "weights": "source", "shard": (2, 3)},
    "transform": {"shuffle": True, "transform": _seed_marks},
}


@pytest.mark.parametrize("case", list(CASES))
def test_in_graph_gather_gives_the_batches_of_the_numpy_gather(case: str) -> None:
    pixels, rows, labels = _store()
    recs = _records()
    kw = dict(CASES[case])
    if "weights" in kw:
        kw["weights"] = draw_weights(recs, kw["weights"])
    new = batches(
        recs, labels, preprocessing=Preprocessing((SIZE, SIZE)), pixels=pixels,
        rows=rows, max_pixels=10**6, batch_size=5, seed=7, split="train", **kw,
    )  # fmt: skip
    old = _old_batches(recs, labels, pixels, rows, size=5, seed=7, **kw)
    _assert_same(_epochs(new), _epochs(old))


def test_fits_in_memory_reads_the_variable(monkeypatch) -> None:
    pixels, rows, labels = _store()
    assert pipeline.fits_in_memory(pixels.nbytes)
    monkeypatch.setenv(pipeline.MEMORY_VARIABLE, "100")
    assert not pipeline.fits_in_memory(pixels.nbytes)
    assert pipeline.fits_in_memory(100)
    monkeypatch.setenv(pipeline.MEMORY_VARIABLE, "lots")
    with pytest.raises(ValueError, match=pipeline.MEMORY_VARIABLE):
        pipeline.fits_in_memory(1)


def _block_batches(monkeypatch, pixels, **kw) -> tf.data.Dataset:
    _, rows, labels = _store()
    monkeypatch.setenv(pipeline.MEMORY_VARIABLE, "1")  # nothing fits: blocks
    monkeypatch.setattr(pipeline, "CHUNK_BYTES", 2 * SIZE * SIZE)  # 2 rows a chunk
    monkeypatch.setattr(pipeline, "BLOCK_BYTES", 6 * SIZE * SIZE)  # 3 chunks a block
    return batches(
        _records(), labels, preprocessing=Preprocessing((SIZE, SIZE)),
        pixels=pixels, rows=rows, max_pixels=10**6, batch_size=4, seed=3,
        split="train", dtype="uint8", **kw,
    )  # fmt: skip


def _ids(epoch: list, pixels: np.ndarray) -> list[int]:
    """Each served image's row in the store."""
    flat = pixels.reshape(len(pixels), -1)
    out = []
    for x, _ in epoch:
        for image in x.reshape(len(x), -1):
            out.append(int(np.flatnonzero((flat == image).all(axis=1))[0]))
    return out


def test_block_path_serves_every_image_once_per_epoch_seeded(
    monkeypatch, tmp_path
) -> None:
    pixels, rows, labels = _store()
    mapped = np.memmap(tmp_path / "p.bin", np.uint8, "w+", shape=pixels.shape)
    mapped[:] = pixels
    ds = _block_batches(monkeypatch, mapped, shuffle=True)
    first, second = _epochs(ds)
    wanted = sorted(rows[r.path] for r in _records())
    assert sorted(_ids(first, pixels)) == wanted == sorted(_ids(second, pixels))
    assert _ids(first, pixels) != _ids(second, pixels)  # reshuffled each pass
    again = _epochs(_block_batches(monkeypatch, mapped, shuffle=True))
    _assert_same(again, [first, second])  # the same seed, the same passes
    by_row = {rows[r.path]: k for k, r in enumerate(_records())}
    # Labels travel with their images.
    for x, y in first:
        for image, label in zip(x, y, strict=True):
            k = by_row[_ids([(image[None], None)], pixels)[0]]
            assert label == labels[k]


def test_block_path_in_order_and_balanced_and_sharded(monkeypatch, tmp_path) -> None:
    pixels, rows, labels = _store()
    recs = _records()
    in_order = _epochs(_block_batches(monkeypatch, pixels), 1)
    old = _epochs(_old_batches(recs, labels, pixels, rows, size=4, seed=3,
                               dtype="uint8"), 1)  # fmt: skip
    _assert_same(in_order, old)  # without shuffling, the same batches as before
    weights = draw_weights(recs, "class")
    drawn = _epochs(_block_batches(monkeypatch, pixels, shuffle=True, weights=weights))
    for epoch in drawn:
        assert sum(len(x) for x, _ in epoch) == N
    covid = [
        np.mean([labels[rows_inv] == 0 for rows_inv in _positions(e, pixels, rows)])
        for e in drawn
    ]
    assert all(0.25 < share < 0.75 for share in covid)  # about half, not a third
    shares = [
        _ids(_epochs(_block_batches(monkeypatch, pixels, shuffle=True, shard=(k, 3)),
                     1)[0], pixels)
        for k in range(3)
    ]  # fmt: skip
    assert all(len(s) == N // 3 for s in shares)
    assert len(set().union(*shares)) == 3 * (N // 3)  # disjoint shares


def _positions(epoch: list, pixels: np.ndarray, rows: dict[str, int]) -> list[int]:
    by_row = {row: int(path.split(".")[0]) for path, row in rows.items()}
    return [by_row[i] for i in _ids(epoch, pixels)]


def test_block_plan_serves_whole_chunks_a_block_at_a_time() -> None:
    chunk_of = np.repeat(np.arange(10), 3)[:29]  # 10 chunks of 3 (the last of 2)
    plan = pipeline.block_plan(chunk_of, 4, np.random.default_rng(5))
    assert [len(b) for b in plan] != [12, 12, 5]  # the short chunk is anywhere
    assert sorted(np.concatenate(plan).tolist()) == list(range(29))
    for block in plan:
        chunks = set(chunk_of[block].tolist())
        assert len(chunks) <= 4  # whole chunks, at most 4 a block
        assert sum((chunk_of == c).sum() for c in chunks) == len(block)
    assert any(list(b) != sorted(b) for b in plan)  # shuffled within a block
    again = pipeline.block_plan(chunk_of, 4, np.random.default_rng(5))
    assert all(np.array_equal(x, y) for x, y in zip(plan, again, strict=True))
    weights = np.where(np.arange(29) < 3, 1.0, 0.0)
    weights /= weights.sum()
    drawn = pipeline.block_plan(chunk_of, 4, np.random.default_rng(5), weights)
    assert len(np.concatenate(drawn)) == 29
    assert set(np.concatenate(drawn).tolist()) <= {0, 1, 2}
