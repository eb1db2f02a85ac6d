"""Every private Keras access covidxray relies on, each behind one small function.

Keras 3 offers no public way to do these few things, or offers it only as
text (error messages). Keeping them here means that a Keras upgrade that
changes one of them breaks this module first: `tests/test_keras_compat.py`
pins each behaviour used here and names the Keras version when it fails.
No other module of covidxray reads `keras.src` or a private Keras attribute
(a test scans the package). See `docs/architecture.md`.

Written against Keras 3.15.
"""

from __future__ import annotations

import os
import urllib.error
from typing import Any

import keras

__all__ = [
    "KERAS_VERSION",
    "functional_chain",
    "initial_epoch",
    "is_download_failure",
    "keras_home",
    "reset_initial_epoch",
    "seed_generators",
]

KERAS_VERSION = keras.__version__


def keras_home() -> str:
    """The folder Keras settled on when it was imported (`$KERAS_HOME`, else
    `~/.keras`), as Keras itself reads it.

    Keras reads `KERAS_HOME` once, at import; only its private
    `keras.src.backend.config.keras_home()` tells the folder it uses. Falls
    back to the environment on another Keras layout.
    """
    try:
        from keras.src.backend import config as keras_config

        return str(keras_config.keras_home())
    except (ImportError, AttributeError):  # pragma: no cover - other Keras layouts
        return os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")


def is_download_failure(exc: BaseException) -> bool:
    """Whether `exc`, raised while Keras fetched weights, is a failed download.

    `keras.utils.get_file` re-raises a network error as a bare `Exception`
    whose text starts "URL fetch failure", and a file whose hash does not
    match as a `ValueError` saying "corrupted file": only the text tells.
    """
    text = str(exc)
    return (
        isinstance(exc, urllib.error.URLError | ConnectionError | TimeoutError)
        or "URL fetch failure" in text
        or "corrupted file" in text
        or type(exc) is Exception  # keras.utils.get_file re-raises as bare Exception
    )


def functional_chain(
    model: keras.Model,
) -> list[tuple[keras.layers.Layer, dict[str, Any]]]:
    """The layers of a straight-chain functional model in order, with the
    keyword arguments each was called with (None values left out).

    This walks Keras' private layer graph (`_nodes_by_depth`, and each input
    tensor's `_keras_history`). It is needed only for models whose parts are
    not named: flat graphs saved by `build_pretrained` before it built named
    sub-models, and users' own models.

    Raises:
        ValueError: The graph cannot be read, or it is not a straight chain
            (one input, and each layer feeds only the next).
    """
    by_depth = getattr(model, "_nodes_by_depth", None)
    if by_depth is None:
        raise ValueError(
            f"Cannot read the layer graph of the model '{model.name}' "
            f"({type(model).__name__}); expected a functional or Sequential model."
        )
    chain: list[tuple[keras.layers.Layer, dict[str, Any]]] = []
    previous = None
    for depth in sorted(by_depth, reverse=True):  # the input sits deepest
        nodes = by_depth[depth]
        node = nodes[0]
        sources = [t._keras_history.operation for t in node.input_tensors]
        straight = len(nodes) == 1 and (
            sources == [previous] if previous is not None else node.is_input
        )
        if not straight:
            names = ", ".join(n.operation.name for n in nodes)
            raise ValueError(
                f"The model '{model.name}' is not a straight chain of layers: at "
                f"depth {depth} it has {names}, fed by "
                f"{[s.name for s in sources] or 'nothing'}. Feature caching and "
                "Grad-CAM split a model at its backbone, which needs each layer "
                "to feed only the next. Pass cache_features=False to fit, or "
                "build the model as one chain."
            )
        if not node.is_input:
            kwargs = dict(node.arguments.kwargs) if node.arguments else {}
            kwargs = {k: v for k, v in kwargs.items() if v is not None}
            chain.append((node.operation, kwargs))
        previous = node.operation
    return chain


def reset_initial_epoch(model: keras.Model) -> None:
    """Clear the epoch a `keras.callbacks.BackupAndRestore` restored into
    `model` (its private `_initial_epoch`), before a loop of our own runs
    the callbacks' `on_train_begin`."""
    model._initial_epoch = 0


def initial_epoch(model: keras.Model) -> int:
    """The epoch to resume from that a `BackupAndRestore` callback's
    `on_train_begin` set on `model` (0 when there was no backup).

    Keras' own `fit` reads it from the private `model._initial_epoch`; a
    training loop of our own has to read it there too.
    """
    return int(getattr(model, "_initial_epoch", 0) or 0)


def seed_generators(model: keras.Model) -> list[keras.random.SeedGenerator]:
    """Every `keras.random.SeedGenerator` held by a layer of `model`, nested
    models included, in a stable order.

    Keras keeps a layer's seed generators in private attributes, so this
    walks each layer's attributes (`vars(layer)`): nested models, sublayers
    held as attributes or in lists (custom blocks, attention), and the seed
    generators they hold.
    """
    found: list[keras.random.SeedGenerator] = []
    seen: set[int] = set()

    def visit(item: Any) -> None:
        if id(item) in seen:
            return
        seen.add(id(item))
        if isinstance(item, keras.random.SeedGenerator):
            found.append(item)
        elif isinstance(item, (list, tuple)):
            for value in item:
                visit(value)
        elif isinstance(item, keras.layers.Layer):
            for value in vars(item).values():
                if isinstance(value, (keras.layers.Layer, list, tuple)) or isinstance(
                    value, keras.random.SeedGenerator
                ):
                    visit(value)
            for inner in getattr(item, "layers", ()):
                visit(inner)

    visit(model)
    return found
