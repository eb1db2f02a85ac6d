"""The old home of `load_dataset` and `XrayDataset`, kept so old imports work.

The data layer now has one module per concept (see `docs/architecture.md`):
`catalog` (`load_dataset`), `dataset` (`XrayDataset`), `pipeline` (the
`tf.data` batches and class weights), `cache` (the scan and the cache file).
Import from those, or from `covidxray` itself.
"""

from __future__ import annotations

from .catalog import DEFAULT_CACHE_MEMORY_LIMIT, NO_CLASS, load_dataset, source_name
from .dataset import XrayDataset
from .pipeline import Transform, balanced_class_weights, with_transform

__all__ = [
    "DEFAULT_CACHE_MEMORY_LIMIT",
    "NO_CLASS",
    "Transform",
    "XrayDataset",
    "balanced_class_weights",
    "load_dataset",
    "source_name",
    "with_transform",
]
