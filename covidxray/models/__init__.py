"""Models: the builders, the backbone registry, the in-model layers and the
surgery that splits a model at its backbone.

- `builders`: `build_cnn`, `build_pretrained` and its heads, `copy_model`.
- `backbones`: the `Backbone` registry and where the ImageNet weights come from.
- `layers`: `ChannelRepeat` and `BackbonePreprocess`, serialisable.
- `split`: `find_backbone`, `split_at_backbone`, `unfreeze_backbone`.

Every name is importable from here, as before the package was split (see
`docs/architecture.md`).
"""

from __future__ import annotations

from .backbones import (
    BACKBONES,
    Backbone,
    get_backbone,
    keras_cache_dir,
    list_backbones,
)
from .builders import HEADS, build_cnn, build_pretrained, copy_model
from .layers import PREPROCESS_MODES, BackbonePreprocess, ChannelRepeat
from .split import find_backbone, split_at_backbone, unfreeze_backbone

__all__ = [
    "BACKBONES",
    "HEADS",
    "PREPROCESS_MODES",
    "Backbone",
    "BackbonePreprocess",
    "ChannelRepeat",
    "build_cnn",
    "build_pretrained",
    "copy_model",
    "find_backbone",
    "get_backbone",
    "keras_cache_dir",
    "list_backbones",
    "split_at_backbone",
    "unfreeze_backbone",
]
