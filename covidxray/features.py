"""Frozen-backbone features, computed once per image and kept for reuse.

A frozen backbone's output depends only on its weights and the pixels it is
given. `FeatureCache` therefore keeps one table per backbone (found by a hash
of its weights and layers) with one row per image (found by a hash of the
exact float pixels the model receives). A feature is computed once, whichever
fit, split, seed or evaluation asks for it again.

`Classifier.fit` caches a frozen backbone's features for its own run on its
own; a `FeatureCache` passed as `Classifier(feature_cache=...)` lives on, so
that every fit, prediction and evaluation of that classifier (and of clones
made from its parameters, as cross-validation makes them) shares it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ._validation import check_choice
from .data.cache import temporary_store
from .models import find_backbone, split_at_backbone

logger = logging.getLogger("covidxray")

__all__ = ["FEATURE_MEMORY_LIMIT", "FeatureCache"]

#: Features above this many bytes (per cache) go to memory-mapped files.
FEATURE_MEMORY_LIMIT = 2 * 1024**3
CACHE_CHOICES = ("auto", True, False)
#: Pixels per call of the frozen part (15 images at 160 x 160, 7 at 224 x
#: 224): its activations, not the features, set the peak memory of a pass.
EXTRACT_PIXELS = 400_000
#: Layers without weights or randomness that may move from the head into the
#: cached features.
_MOVABLE = (
    keras.layers.AveragePooling2D,
    keras.layers.MaxPooling2D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.Flatten,
)


def use_feature_cache(
    cache_features: str | bool,
    model: keras.Model,
    *,
    augmenter: Any,
    strategy: tf.distribute.Strategy | None,
    sampled: bool = False,
    lung_focus: bool = False,
) -> bool:
    """Decide whether `fit` caches a frozen backbone's features.

    `"auto"` caches when the model has a frozen registered backbone, it splits
    cleanly there, and neither an augmenter nor a strategy is used. True asks
    for caching and raises a ValueError saying why when it cannot be done.
    """
    check_choice("cache_features", cache_features, CACHE_CHOICES, "fit")
    if cache_features is False:
        return False
    backbone = find_backbone(model)
    reasons = []
    if backbone is None:
        reasons.append("the model has no registered backbone")
    elif backbone.trainable:
        reasons.append("the backbone is trainable (unfrozen)")
    if augmenter is not None:
        reasons.append("an augmenter changes the images every epoch")
    if strategy is not None:
        reasons.append("a distribution strategy is used")
    if sampled:
        reasons.append("a balanced view draws other images every epoch")
    if lung_focus:
        reasons.append("lung_focus needs the gradients with respect to the images")
    if not reasons:
        try:
            features, _ = split_at_backbone(model)
            if features.trainable_weights:
                reasons.append("layers before the backbone have trainable weights")
        except ValueError as exc:
            reasons.append(str(exc))
    if reasons and cache_features is True:
        raise ValueError(
            "fit(cache_features=True) cannot cache features: "
            + "; ".join(reasons)
            + ". Pass cache_features='auto' or False."
        )
    if reasons:
        logger.info("Not caching features: %s.", "; ".join(reasons))
    return not reasons


def pool_into_features(
    features: keras.Model, head: keras.Model
) -> tuple[keras.Model, keras.Model]:
    """Move the pooling (and flattening) layers that start the head into the
    features, so that the cache holds what the head's first trained layer
    reads: for the paper's head (2 x 2 average pooling, then flatten) a quarter
    of the feature map, for a global pooling one vector per image (2,048 floats
    for a ResNet50 instead of 7 x 7 x 2,048). Returns the pair unchanged when
    the head does not start so, or is not a simple chain (checked on numbers).
    """
    layers = [la for la in head.layers if not isinstance(la, keras.layers.InputLayer)]
    lead = 0
    while lead < len(layers) and isinstance(layers[lead], _MOVABLE):
        lead += 1
    if lead == 0 or lead == len(layers):
        return features, head
    try:
        moved = features.outputs[0]
        shape = tuple(head.input_shape)
        for layer in layers[:lead]:
            moved = layer(moved)
            shape = tuple(layer.compute_output_shape(shape))
        pooled_in = keras.Input(shape[1:])
        x = pooled_in
        for layer in layers[lead:]:
            x = layer(x)
        new_head = keras.Model(pooled_in, x)
        new_features = keras.Model(features.inputs, moved)
        probe = np.random.default_rng(0).random((2, *head.input_shape[1:]), np.float32)
        reduced = probe
        for layer in layers[:lead]:
            reduced = layer(reduced)
        same = np.allclose(
            new_head(reduced, training=False), head(probe, training=False), atol=1e-5
        )
    except (ValueError, TypeError):
        return features, head
    return (new_features, new_head) if same else (features, head)


@dataclass
class _Table:
    """The features of one backbone: rows in blocks, found by image key."""

    index: dict[bytes, int] = field(default_factory=dict)
    blocks: list[np.ndarray] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    used: int = 0  # rows written in the last block

    @property
    def size(self) -> int:
        return self.starts[-1] + self.used if self.blocks else 0

    @property
    def nbytes(self) -> int:
        """Bytes of the rows written (not of the room kept for more)."""
        return self.size * self.blocks[0][0].nbytes if self.blocks else 0

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The features of rows (global numbers), as one array."""
        if len(self.blocks) == 1:
            return np.asarray(self.blocks[0][rows])
        which = np.searchsorted(self.starts, rows, side="right") - 1
        out = np.empty((len(rows), *self.blocks[0].shape[1:]), self.blocks[0].dtype)
        for b in np.unique(which):
            mask = which == b
            out[mask] = self.blocks[b][rows[mask] - self.starts[b]]
        return out


@dataclass
class _Parts:
    """A model split for caching: its frozen features, its head, the table
    the features' layers and weights select, and the hash of the frozen part
    with the checksum of its weights that tells when to hash it again."""

    features: keras.Model
    head: keras.Model
    extract: Callable[[Any], Any]
    table: _Table = field(default_factory=_Table)
    fingerprint: str = ""
    checksum: bytes | None = None  # None: not hashed yet


class FeatureCache:
    """Features of frozen backbones, computed once per image and shared by
    every fit, prediction and evaluation that asks again.

    A table is kept per frozen part (the backbone and the weightless layers
    around it), found by a hash of every layer's settings and every weight:
    a backbone whose weights change (fine-tuning, other random weights) or
    whose input scaling differs gets its own table, never another's features.
    A row is kept per image, found by a hash of the exact float pixels the
    model receives: the same image in two splits, two datasets or two seeds
    is computed once. What is cached is the output of the frozen part plus
    any pooling or flattening that starts the head (see `Classifier.fit`'s
    `cache_features`).

    Memory stays bounded: features beyond `memory_limit` bytes go to
    temporary memory-mapped files, deleted with the cache. A cache is safe to
    share between threads; a copy of it (`copy.deepcopy`, a cloned
    classifier) is the same cache, and a pickled one comes back empty.

    The full hash of a model's frozen part is taken once per model; each
    later call (a `fit`, an `evaluate`, a `predict_proba`) compares a checksum
    of its weights (sums and a sample: about 0.1 s for a ResNet101V2 on 2 CPU
    cores, against 0.3 s for the full hash) and hashes again when it changed.
    So give `predict_proba` batches, not one image at a time. A layer's
    settings are read once per model: after changing one in place (not its
    weights), build a new model or `clear()` the cache.

    Args:
        memory_limit: Bytes of features kept in memory, over all tables.
        folder: Folder of the memory-mapped files. Default:
            `$COVIDXRAY_CACHE_DIR`, else the system's temporary folder.

    Attributes:
        computed: Images the frozen parts were run on.
        reused: Images served from the cache instead.

    Examples:
        >>> import keras, numpy as np
        >>> from covidxray import FeatureCache, build_pretrained
        >>> keras.utils.set_random_seed(0)
        >>> model = build_pretrained(
        ...     "mobilenetv2", input_shape=(32, 32, 3), weights=None)
        >>> cache = FeatureCache()
        >>> x = np.random.default_rng(0).random((4, 32, 32, 3), np.float32)
        >>> first, again = cache.predict(model, x), cache.predict(model, x)
        >>> cache.computed, cache.reused
        (4, 4)
        >>> bool(np.allclose(again, model(x), atol=1e-5))
        True
    """

    def __init__(
        self,
        memory_limit: int = FEATURE_MEMORY_LIMIT,
        folder: str | os.PathLike[str] | None = None,
    ) -> None:
        if isinstance(memory_limit, bool) or int(memory_limit) < 0:
            raise ValueError(
                "The `memory_limit` argument of FeatureCache must be a number of "
                f"bytes >= 0. Received: {memory_limit!r}."
            )
        self.memory_limit = int(memory_limit)
        self.folder = folder
        self.computed = 0
        self.reused = 0
        self._in_memory = 0
        self._tables: dict[str, _Table] = {}
        self._split: weakref.WeakKeyDictionary[Any, _Parts] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        with self._lock:
            images = sum(t.size for t in self._tables.values())
            return (
                f"FeatureCache({len(self._tables)} backbones, {images} images, "
                f"{self.nbytes / 1e6:.1f} MB; computed {self.computed}, "
                f"reused {self.reused})"
            )

    def __copy__(self) -> FeatureCache:
        return self  # one cache, shared: a cloned classifier keeps it

    def __deepcopy__(self, memo: dict[int, Any]) -> FeatureCache:
        return self

    def __getstate__(self) -> dict[str, Any]:
        return {"memory_limit": self.memory_limit, "folder": self.folder}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    @property
    def nbytes(self) -> int:
        """Bytes of features held (in memory and in files)."""
        with self._lock:
            return sum(t.nbytes for t in self._tables.values())

    def clear(self) -> None:
        """Forget every feature, and what it knew of each model (read again
        on the next call). Their memory and files are freed once no training
        pipeline still reads them."""
        with self._lock:
            self._tables.clear()
            self._split = weakref.WeakKeyDictionary()
            self._in_memory = 0

    def predict(self, model: keras.Model, images: Any) -> np.ndarray | None:
        """`model(images, training=False)`, with the frozen part's features
        taken from the cache (and computed for images it lacks).

        Args:
            model: A model with a frozen registered backbone, e.g. from
                `build_pretrained`.
            images: Float images in [0, 1] of the model's input shape,
                `(N, H, W, C)`, as the model takes them.

        Returns:
            The model's outputs, or None when the model has no frozen
            backbone to cache (then call the model itself).

        Raises:
            ValueError: `images` are not of the model's input shape.
        """
        parts = self._parts(model)
        if parts is None:
            return None
        x = np.asarray(images)
        wanted = tuple(parts.features.input_shape[1:])
        if x.ndim != len(wanted) + 1 or any(
            w is not None and w != got
            for w, got in zip(wanted, x.shape[1:], strict=True)
        ):
            raise ValueError(
                "The `images` argument of FeatureCache.predict must have the "
                f"model's input shape (N, {', '.join(str(w) for w in wanted)}). "
                f"Received: {x.shape}."
            )
        return self._outputs(parts, x)

    # ------------------------------------------------------------ internals

    def _outputs(self, parts: _Parts, images: Any) -> np.ndarray:
        """The model's outputs for a batch, from its parts (see `_parts`)."""
        rows = self._rows(parts, images)
        if not len(rows):
            return np.zeros((0, *parts.head.output_shape[1:]), np.float32)
        return np.asarray(parts.head(parts.table.take(rows), training=False))

    def _parts(self, model: keras.Model) -> _Parts | None:
        """The model split at its frozen backbone, with its table; None when it
        has no frozen registered backbone or does not split cleanly."""
        backbone = find_backbone(model)
        if backbone is None or backbone.trainable:
            return None
        with self._lock:
            split = self._split.get(model)
            if split is None:
                try:
                    features, head = pool_into_features(*split_at_backbone(model))
                except ValueError:
                    return None
                spec = tf.TensorSpec((None, *features.input_shape[1:]), tf.float32)
                extract = tf.function(
                    lambda x: features(x, training=False),
                    input_signature=[spec],
                    autograph=False,  # a plain call: nothing to convert
                )
                split = self._split[model] = _Parts(features, head, extract)
            if split.features.trainable_weights:
                return None
            checksum = _checksum(split.features)
            if checksum != split.checksum:
                split.fingerprint = _fingerprint(split.features)
                split.checksum = checksum
            split.table = self._tables.setdefault(split.fingerprint, _Table())
        return split

    def _rows(self, parts: _Parts, images: Any, expected: int = 0) -> np.ndarray:
        """The table rows of a batch of images, running the frozen part on
        those not in it. `expected` says how many more images this pass
        brings, so that a first pass over a dataset fills one block."""
        x = np.ascontiguousarray(images, dtype=np.float32)
        keys = [hashlib.blake2b(image, digest_size=16).digest() for image in x]
        table = parts.table
        with self._lock:
            rows = np.array([table.index.get(k, -1) for k in keys], np.int64)
            todo: dict[bytes, int] = {}
            for i in np.flatnonzero(rows < 0):
                todo.setdefault(keys[i], int(i))
            if todo:
                new = x[list(todo.values())]
                step = max(1, EXTRACT_PIXELS // int(np.prod(x.shape[1:3])))
                feats = np.concatenate(
                    [
                        np.asarray(parts.extract(new[i : i + step]))
                        for i in range(0, len(new), step)
                    ]
                )
                # This batch's share of new images, over the rest of the pass.
                more = int(expected * len(todo) / max(len(keys), 1))
                self._append(table, list(todo), feats, more)
                rows = np.array([table.index[k] for k in keys], np.int64)
            self.computed += len(todo)
            self.reused += len(keys) - len(todo)
        return rows

    def _append(
        self, table: _Table, keys: list[bytes], feats: np.ndarray, more: int
    ) -> None:
        room = len(table.blocks[-1]) - table.used if table.blocks else 0
        if room < len(feats):
            # A pass's expected size, else room to grow by half: few blocks.
            n = max(len(feats), more or max(256, table.size // 2))
            nbytes = n * feats[0].nbytes
            if self._in_memory + nbytes <= self.memory_limit:
                block = np.empty((n, *feats.shape[1:]), feats.dtype)
                self._in_memory += nbytes
            else:
                block = temporary_store(
                    (n, *feats.shape[1:]),
                    self.folder,
                    dtype=feats.dtype,
                    prefix="covidxray-features-",
                    fix="Pass FeatureCache(folder=...)",
                )
            table.starts.append(table.size)
            table.blocks.append(block)
            table.used = 0
        start = table.used
        table.blocks[-1][start : start + len(feats)] = feats
        table.used += len(feats)
        first = table.starts[-1] + start
        for i, key in enumerate(keys):
            table.index[key] = first + i


def _checksum(features: keras.Model) -> bytes:
    """For every weight, its sum, its sum of squares and a strided sample of
    64 of its values: cheaper than a hash of every byte (one weight copied at
    a time, nothing traced), and different after any real change."""
    parts = []
    for weight in features.weights:
        flat = np.asarray(keras.ops.convert_to_numpy(weight)).reshape(-1)
        if flat.dtype.kind == "f":
            sums = [flat.sum(dtype=np.float64), np.dot(flat, flat)]
        else:
            sums = [flat.sum(dtype=np.int64), 0]
        parts.append(np.asarray(sums, np.float64).tobytes())
        parts.append(np.ascontiguousarray(flat[:: max(1, flat.size // 64)]).tobytes())
    return b"".join(parts)


def _fingerprint(features: keras.Model) -> str:
    """A hash of a model's frozen part: every layer's type and settings (its
    name left out), nested models layer by layer, and every weight."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{features.input_shape}|{features.output_shape}\n".encode())

    def layer_settings(layer: keras.layers.Layer) -> None:
        digest.update(f"{type(layer).__module__}.{type(layer).__qualname__}|".encode())
        inner = getattr(layer, "layers", None)
        if isinstance(layer, keras.Model) and inner is not None:
            for sub in inner:
                layer_settings(sub)
            return
        try:
            config = dict(layer.get_config())
            config.pop("name", None)
            text = json.dumps(config, sort_keys=True, default=_plain)
        except (NotImplementedError, TypeError, ValueError):
            # Settings that cannot be written down: this layer object's own
            # mark, so that no other model shares its table (nor its reuse).
            text = f"unlisted-{_mark(layer)}"
        digest.update(text.encode())

    for layer in features.layers:
        layer_settings(layer)
    for weight in features.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(f"{value.shape}|{value.dtype}\n".encode())
        digest.update(value.data)
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    """A JSON stand-in for a setting: arrays by their bytes, others by repr."""
    if isinstance(value, np.ndarray):
        digest = hashlib.blake2b(np.ascontiguousarray(value).data).hexdigest()
        return f"{value.dtype.str}{value.shape}{digest}"
    return repr(value)


#: The marks made for layer objects, kept here: nothing is written on a
#: user's layer, and a mark goes with its layer.
_MARKS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_MARKS_LOCK = threading.Lock()


def _mark(layer: Any) -> str:
    """A mark made once for a layer object (a fresh one for every layer)."""
    with _MARKS_LOCK:
        mark = _MARKS.get(layer)
        if mark is None:
            mark = _MARKS[layer] = uuid.uuid4().hex
        return mark


def cached_batches(
    cache: FeatureCache,
    parts: _Parts,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset | None,
    seed: int | None,
) -> tuple[tf.data.Dataset, tf.data.Dataset | None]:
    """The training and validation batches as (features, labels), the
    features taken from `cache` (computed once for images it lacks) and
    gathered from its table batch by batch: nothing is copied into
    TensorFlow."""
    batch = int(next(iter(train_ds))[0].shape[0])

    def batches(ds: tf.data.Dataset, shuffle: bool) -> tf.data.Dataset:
        rows, labels = _rows_and_labels(cache, parts, ds)
        order = tf.data.Dataset.range(len(rows))
        if shuffle:
            order = order.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True)
        table = parts.table

        def gather(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return table.take(rows[idx]), labels[idx]

        shape = (None, *parts.features.output_shape[1:])
        dtype = tf.as_dtype(labels.dtype)
        return order.batch(batch).map(
            lambda i: tuple(
                tf.ensure_shape(t, s)
                for t, s in zip(
                    tf.numpy_function(gather, [i], [tf.float32, dtype]),
                    (shape, (None,)),
                    strict=True,
                )
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    train_feats = batches(train_ds, shuffle=True)
    val_feats = batches(val_ds, shuffle=False) if val_ds is not None else None
    logger.info("Frozen-backbone features: %r.", cache)
    return train_feats, val_feats


def _rows_and_labels(
    cache: FeatureCache, parts: _Parts, ds: Iterable[Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Table rows and labels of every batch of `ds`, in order."""
    n_batches = int(getattr(ds, "cardinality", lambda: -1)())  # < 0: unknown
    rows: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for i, (x, y) in enumerate(ds):
        left = max(n_batches - i, 0) * len(x)
        rows.append(cache._rows(parts, x, expected=left))
        labels.append(np.asarray(y).reshape(-1))
    return np.concatenate(rows), np.concatenate(labels)
