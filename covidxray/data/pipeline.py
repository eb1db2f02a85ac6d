"""The tf.data pipeline: records and their labels in, float32 batches out.

`batches` turns the records of one split into `(images, labels)` batches:
uint8 pixels gathered from the scan's store (or decoded from disk with a
`Preprocessing`), then an optional transform (augmentation), then float32 in
[0, 1]. The order of a pass is in record order, reshuffled every pass, or
drawn with replacement by `draw_weights` (a `balanced` view). The balanced
class weights are computed here, once, for `XrayDataset.class_weights` and
`Classifier.fit` alike. See `docs/guides/datasets.md`.
"""

from __future__ import annotations

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
    "Transform",
    "balanced_class_weights",
    "batches",
    "draw_weights",
    "with_transform",
]

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
        pixels: The scan's uint8 store, or None to decode from disk.
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
    if pixels is not None:
        ds = _cached_batches(recs, labels, batch_size, order, pixels, rows)
    else:
        ds = _decoded_batches(
            recs, labels, batch_size, order, preprocessing, max_pixels
        )
    shape = (None, *preprocessing.input_shape)

    def checked(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.ensure_shape(x, shape), tf.ensure_shape(y, (None,))

    ds = ds.map(checked, num_parallel_calls=tf.data.AUTOTUNE)
    if transform is not None:
        ds = with_transform(
            ds, transform, seed if transform_seed is None else transform_seed
        )
    elif dtype == "float32":
        ds = ds.map(
            lambda x, y: (tf.cast(x, tf.float32) / 255.0, y),
            num_parallel_calls=tf.data.AUTOTUNE,
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


def _cached_batches(
    recs: list[Record],
    labels: np.ndarray,
    size: int,
    order: tf.data.Dataset,
    pixels: np.ndarray,
    rows: Mapping[str, int],
) -> tf.data.Dataset:
    """uint8 batches gathered from the pixel cache by row index."""
    import tensorflow as tf

    index = tf.constant([rows[r.path] for r in recs], tf.int64)
    targets = tf.constant(labels)

    def gather(idx: np.ndarray) -> np.ndarray:
        return np.asarray(pixels[idx])

    ds = order.map(lambda i: (tf.gather(index, i), tf.gather(targets, i)))
    return ds.batch(size).map(
        lambda idx, y: (
            tf.numpy_function(gather, [idx], tf.uint8, stateful=False),
            y,
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


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
