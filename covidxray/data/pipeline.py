"""The tf.data pipeline: records and their labels in, float32 batches out.

`batches` turns the records of one split into `(images, labels)` batches:
uint8 pixels gathered from the scan's store (or decoded from disk with a
`Preprocessing`), then an optional transform (augmentation), then float32 in
[0, 1]. The order of a pass is in record order, reshuffled every pass, or
drawn with replacement by `draw_weights` (a `balanced` view). When the split's
pixels fit in memory (`fits_in_memory`), they are copied once into a uint8
tensor and every batch is gathered in the graph; a larger store is read a
block of chunks of consecutive rows at a time (`block_batches`). The balanced
class weights are computed here, once, for `XrayDataset.class_weights` and
`Classifier.fit` alike. See `docs/guides/datasets.md`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError
from .preprocessing import Preprocessing
from .records import Record

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = [
    "BLOCK_BYTES",
    "CHUNK_BYTES",
    "MEMORY_VARIABLE",
    "Transform",
    "balanced_class_weights",
    "batches",
    "block_batches",
    "block_plan",
    "draw_weights",
    "fits_in_memory",
    "memory_limit",
    "with_transform",
]

#: Environment variable: the most bytes of pixels a split copies into memory
#: for the in-graph gather (see `memory_limit`).
MEMORY_VARIABLE = "COVIDXRAY_PIPELINE_MEMORY"
#: Bytes of pixels that the block path (`block_batches`) reads at once, and
#: the run of consecutive rows it is made of.
BLOCK_BYTES = 64 * 1024**2
CHUNK_BYTES = 4 * 1024**2

#: A transform of uint8 batches for `XrayDataset.as_tf_dataset`: called with
#: images (N, H, W, C) uint8 and a stateless seed (an int32 tensor of shape (2,)),
#: it returns float32 images in [0, 1] (or uint8, then scaled to [0, 1]).
Transform = Callable[[Any, Any], Any]


def balanced_class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """Weights n / (k * n_class) per class index; 0 for an absent class."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=n_classes)
    total = int(counts.sum())
    return {
        i: float(total / (n_classes * counts[i])) if counts[i] else 0.0
        for i in range(n_classes)
    }


def draw_weights(records: Sequence[Record], sampling: str | None) -> np.ndarray:
    """The chance of each record per draw (sums to 1): uniform for
    `sampling=None`; with `"class"`, every class weighs the same; with
    `"source"`, every source keeps its share, split equally among the classes
    it holds.

    Examples:
        >>> from covidxray.data.records import Record
        >>> recs = [
        ...     Record(f"{i}", "covid" if i < 1 else "non", "train", None, "a",
        ...            "", "", "", "", 1, 1, "L", "PNG", 1)
        ...     for i in range(4)
        ... ]
        >>> draw_weights(recs, "class").round(3).tolist()
        [0.5, 0.167, 0.167, 0.167]
    """
    recs = records
    if not recs:
        return np.zeros(0)
    if sampling is None:
        return np.full(len(recs), 1.0 / len(recs))
    cells = Counter((r.source, r.label) for r in recs)
    if sampling == "class":
        per_label = Counter(r.label for r in recs)
        w = np.array([1.0 / (len(per_label) * per_label[r.label]) for r in recs])
    else:
        sources = Counter(r.source for r in recs)
        held = Counter(src for src, _ in cells)
        w = np.array(
            [
                sources[r.source] / (held[r.source] * cells[(r.source, r.label)])
                for r in recs
            ]
        )
    return w / w.sum()


def batches(
    records: Sequence[Record],
    labels: np.ndarray,
    *,
    preprocessing: Preprocessing,
    pixels: np.ndarray | None,
    rows: Mapping[str, int],
    max_pixels: int,
    batch_size: int,
    seed: int,
    split: str,
    shuffle: bool = False,
    weights: np.ndarray | None = None,
    dtype: str = "float32",
    transform: Transform | None = None,
    transform_seed: int | None = None,
    shard: tuple[int, int] | None = None,
) -> tf.data.Dataset:
    """`(images, labels)` batches of some records, as `XrayDataset.as_tf_dataset`
    describes them.

    Args:
        records: The records served (not empty), in order.
        labels: Their class indices, int32.
        preprocessing: How a file is decoded when `pixels` is None.
        pixels: The scan's uint8 store, or None to decode from disk. When
            the split's rows fit (`fits_in_memory`), they are copied into a
            tensor and gathered in the graph; else `block_batches` reads them.
        rows: Each record's path -> its row in `pixels`.
        max_pixels: Refuse larger images when decoding.
        batch_size: Images per batch.
        seed: Seed of the shuffle or the draws, and default `transform_seed`.
        split: The split's name, for messages.
        shuffle: Reshuffle (or, with `weights`, draw) every pass.
        weights: Draw each pass with replacement with these chances (see
            `draw_weights`) instead of shuffling.
        dtype: `"float32"` (in [0, 1]) or `"uint8"`.
        transform: `transform(images, seed)` of uint8 batches (float32 only).
        transform_seed: Seed of the per-batch seeds; default: `seed`.
        shard: `(index, count)`: only the `index`-th of `count` equal shares.

    Returns:
        The `tf.data.Dataset`.
    """
    import tensorflow as tf

    recs = list(records)
    order = _order(len(recs), seed, shuffle, weights)
    if shard is not None:
        index, count = (int(v) for v in shard)
        if count < 1 or not 0 <= index < count:
            raise ValueError(
                "The `shard` argument of as_tf_dataset must be (index, count) "
                f"with 0 <= index < count. Received: {shard!r}."
            )
        share = len(recs) // count
        if share == 0:
            raise DataError(
                f"The {split} split has {len(recs)} images, fewer than the "
                f"{count} workers that share it."
            )
        order = order.shard(count, index).take(share)
        shard = (index, count)
    shape = (None, *preprocessing.input_shape)
    cast = transform is None and dtype == "float32"

    def finish(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x, y = tf.ensure_shape(x, shape), tf.ensure_shape(y, (None,))
        return (tf.cast(x, tf.float32) / 255.0 if cast else x), y

    if pixels is None:
        ds = _decoded_batches(
            recs, labels, batch_size, order, preprocessing, max_pixels
        ).map(finish, num_parallel_calls=tf.data.AUTOTUNE)
    elif fits_in_memory(len(recs) * int(np.prod(pixels.shape[1:]))):
        ds = _gathered_batches(recs, labels, batch_size, order, pixels, rows, finish)
    else:
        ds = block_batches(
            recs, labels, batch_size, pixels, rows, seed=seed, shuffle=shuffle,
            weights=weights, shard=shard,
        ).map(finish, num_parallel_calls=tf.data.AUTOTUNE)  # fmt: skip
    if transform is not None:
        ds = with_transform(
            ds, transform, seed if transform_seed is None else transform_seed
        )
    if shard is not None:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.OFF
        )
        ds = ds.with_options(options)
    return ds.prefetch(tf.data.AUTOTUNE)


def _order(
    n: int, seed: int, shuffle: bool, weights: np.ndarray | None
) -> tf.data.Dataset:
    """Positions in the split, one pass: in order, reshuffled every pass,
    or drawn with `weights` (a `balanced` view)."""
    import tensorflow as tf

    if shuffle and weights is not None:
        edges = tf.constant(np.cumsum(weights)[:-1], tf.float64)
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(
            n
        )
        return draws.map(
            lambda r: tf.searchsorted(
                edges,
                # Dataset.random gives integers in [0, 2**32).
                tf.reshape(tf.cast(r % (2**32), tf.float64) / 2.0**32, [1]),
                side="right",
            )[0]
        )
    order = tf.data.Dataset.range(n)
    if shuffle:
        order = order.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    return order


def memory_limit() -> int:
    """The most bytes of pixels one split may copy into a TensorFlow tensor for
    the in-graph gather: `$COVIDXRAY_PIPELINE_MEMORY` when set, else an eighth
    of the memory available now (`MemAvailable` on Linux; 8 GiB where it
    cannot be read), and at most 1 GiB. The copy holds about three times the
    split's bytes at its peak, and twice after (measured with 250 MB).

    Raises:
        ValueError: The variable is set to something else than a number of
            bytes.
    """
    value = os.environ.get(MEMORY_VARIABLE, "").strip()
    if value:
        try:
            return int(float(value))
        except ValueError:
            raise ValueError(
                f"The environment variable {MEMORY_VARIABLE} must be a number of "
                f"bytes. Received: {value!r}."
            ) from None
    return min(_available_memory() // 8, 1024**3)


def fits_in_memory(nbytes: int) -> bool:
    """Whether `nbytes` of pixels go into memory for the in-graph gather
    (at most `memory_limit()`)."""
    return int(nbytes) <= memory_limit()


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 8 * 1024**3


def _gathered_batches(
    recs: list[Record],
    labels: np.ndarray,
    size: int,
    order: tf.data.Dataset,
    pixels: np.ndarray,
    rows: Mapping[str, int],
    finish: Callable[[Any, Any], Any],
) -> tf.data.Dataset:
    """Batches gathered in the graph from the split's pixels, copied once into
    a uint8 tensor in record order: no Python runs per batch."""
    import tensorflow as tf

    wanted = np.array([rows[r.path] for r in recs], np.int64)
    with tf.device("/cpu:0"):  # where tf.data runs, whatever the strategy
        store = tf.constant(pixels[wanted])
    targets = tf.constant(labels)
    return order.batch(size).map(
        lambda i: finish(tf.gather(store, i), tf.gather(targets, i)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def block_batches(
    records: Sequence[Record],
    labels: np.ndarray,
    size: int,
    pixels: np.ndarray,
    rows: Mapping[str, int],
    *,
    seed: int,
    shuffle: bool = False,
    weights: np.ndarray | None = None,
    shard: tuple[int, int] | None = None,
) -> tf.data.Dataset:
    """uint8 batches read from a store too large for memory, a block at a time.

    The split's records, sorted by their row in the store, fall into chunks of
    `CHUNK_BYTES` of consecutive rows. A block is `BLOCK_BYTES` of chunks,
    read in one NumPy call, its rows in ascending order (a memory-mapped file
    is then read a chunk at a time, front to back), so that no Python runs per
    batch. Without `shuffle`, a block is consecutive records, and the batches
    are those of the in-graph gather. With `shuffle`, every pass puts the
    chunks in a new order, takes them a block at a time and shuffles the
    images within each block (`block_plan`): every image once a pass, and a
    batch mixes images from chunks all over the store (a store is in scan
    order, often one class folder after another), but not from the whole
    split at once. With `weights`, the pass draws as many records with
    replacement as the split holds, with those chances, and serves them chunk
    by chunk the same way. The order is seeded: one NumPy generator per pass,
    seeded from a `tf.data` random stream seeded by `seed`. `shard` takes
    every `count`-th image of a pass, from `index`.
    """
    import tensorflow as tf

    recs = list(records)
    n = len(recs)
    wanted = np.array([rows[r.path] for r in recs], np.int64)
    row_bytes = max(1, int(np.prod(pixels.shape[1:])))
    per_chunk = max(1, CHUNK_BYTES // row_bytes)
    per_block = max(1, BLOCK_BYTES // (per_chunk * row_bytes))  # chunks a block
    chunk_of = np.empty(n, np.int64)
    chunk_of[np.argsort(wanted, kind="stable")] = np.arange(n) // per_chunk
    targets = np.asarray(labels, np.int32)

    # A read: whole batches' worth of a block (the last read of a pass may be
    # shorter), so that batches cut across reads as they do across blocks.
    step = max(size, per_chunk * per_block // size * size)

    def generate(pass_seed: Any) -> Any:
        if shuffle:
            rng = np.random.default_rng(int(pass_seed))
            served = np.concatenate(block_plan(chunk_of, per_block, rng, weights))
        else:
            served = np.arange(n)
        if shard is not None:  # every count-th image of the pass, from index
            index, count = shard
            served = served[index::count][: n // count]
        for k in range(0, len(served), step):
            positions = served[k : k + step]
            ask = wanted[positions]
            ascending = np.argsort(ask, kind="stable")
            # Rows in ascending order, and where each served image is in them.
            yield pixels[ask[ascending]], targets[positions], np.argsort(ascending)

    signature = (
        tf.TensorSpec((None, *pixels.shape[1:]), tf.uint8),
        tf.TensorSpec((None,), tf.int32),
        tf.TensorSpec((None,), tf.int64),
    )

    def cut(x: tf.Tensor, y: tf.Tensor, where: tf.Tensor) -> tf.data.Dataset:
        starts = tf.data.Dataset.range(0, tf.shape(y, tf.int64)[0], size)
        return starts.map(
            lambda k: (tf.gather(x, where[k : k + size]), y[k : k + size])
        )

    passes = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return (
        passes.take(1)
        .flat_map(
            lambda s: tf.data.Dataset.from_generator(
                generate, output_signature=signature, args=(s,)
            )
        )
        .prefetch(1)  # the next read runs while this one is served
        .flat_map(cut)
    )


def block_plan(
    chunk_of: np.ndarray,
    per_block: int,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
) -> list[np.ndarray]:
    """One shuffled pass of the block path: the positions each block serves.

    Args:
        chunk_of: Each position's chunk (0, 1, ...: consecutive rows).
        per_block: Chunks in a block.
        rng: This pass's generator.
        weights: Draw `len(chunk_of)` positions with replacement with these
            chances instead of serving each position once.

    Returns:
        The blocks in serving order, each the positions it serves, shuffled.

    Examples:
        >>> plan = block_plan(np.array([0, 0, 1, 1, 2, 2]), 2,
        ...                   np.random.default_rng(0))
        >>> sorted(int(p) for block in plan for p in block)
        [0, 1, 2, 3, 4, 5]
        >>> [len(block) for block in plan]
        [4, 2]
    """
    n = len(chunk_of)
    drawn = rng.choice(n, size=n, p=weights) if weights is not None else np.arange(n)
    by_chunk = np.argsort(chunk_of[drawn], kind="stable")
    cut = np.flatnonzero(np.diff(chunk_of[drawn][by_chunk])) + 1
    chunks = [drawn[k] for k in np.split(by_chunk, cut)]
    order = rng.permutation(len(chunks))
    return [
        rng.permutation(np.concatenate([chunks[c] for c in order[k : k + per_block]]))
        for k in range(0, len(order), per_block)
    ]


def _decoded_batches(
    recs: list[Record],
    labels: np.ndarray,
    size: int,
    order: tf.data.Dataset,
    prep: Preprocessing,
    limit: int,
) -> tf.data.Dataset:
    """uint8 batches decoded from disk, file by file, with `preprocessing`."""
    import tensorflow as tf

    boxes = {r.path: r.box for r in recs if r.box is not None}

    def read(path: bytes) -> np.ndarray:
        name = path.decode()
        return prep.load(name, max_pixels=limit, box=boxes.get(name))

    paths = tf.constant([r.path for r in recs])
    targets = tf.constant(labels)
    ds = order.map(lambda i: (tf.gather(paths, i), tf.gather(targets, i)))
    ds = ds.map(
        lambda p, y: (tf.numpy_function(read, [p], tf.uint8, stateful=False), y),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return ds.batch(size)


def with_transform(
    ds: tf.data.Dataset, transform: Transform, seed: int | None
) -> tf.data.Dataset:
    """Apply `transform(images, seed)` to `(images, labels)` batches.

    Each batch gets its own stateless seed (an int32 tensor of shape (2,))
    from a stream seeded by `seed`, zipped in order, so the same seed gives the
    same images whatever the parallelism. The result is float32; a transform
    that returns uint8 is scaled to [0, 1].
    """
    import tensorflow as tf

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(
        2, drop_remainder=True
    )

    def apply(
        batch: tuple[tf.Tensor, tf.Tensor], pair: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        x, y = batch
        out = tf.convert_to_tensor(transform(x, tf.cast(pair % (2**31 - 1), tf.int32)))
        if out.dtype == tf.uint8:
            out = tf.cast(out, tf.float32) / 255.0
        return tf.cast(out, tf.float32), y

    return tf.data.Dataset.zip((ds, seeds)).map(
        apply, num_parallel_calls=tf.data.AUTOTUNE
    )
