"""Random state in training: each layer's seed stream from one seed, and
Python's and NumPy's global generators kept as they were (see
`docs/architecture.md`).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import keras
import numpy as np
import tensorflow as tf

from .. import _keras_compat

__all__ = ["global_random_state_kept", "seed_streams"]


def seed_streams(model: keras.Model, seed: int | None) -> None:
    """Give each layer's `SeedGenerator` (dropout and the like) a state derived
    from `seed`, so that the same seed gives the same training. None leaves
    the states as they are."""
    if seed is None:
        return
    generators = _keras_compat.seed_generators(model)
    states = np.random.SeedSequence(int(seed)).generate_state(max(1, len(generators)))
    for generator, state in zip(generators, states, strict=False):
        value = int(state) % (2**31 - 1) + 1
        generator.state.assign(tf.constant([value, 0], dtype=generator.state.dtype))


@contextlib.contextmanager
def global_random_state_kept() -> Iterator[None]:
    """Put Python's and NumPy's global generators back as they were on exit,
    whatever Keras drew from them (cloning a model draws new layer seeds).
    TensorFlow's global seed is never set."""
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
