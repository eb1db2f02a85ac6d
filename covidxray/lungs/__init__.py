"""Where the lungs are: the lung segmenter that ships with covidxray.

See `docs/guides/lungs.md`.
"""

from .segmenter import (
    SEGMENTER_SIZE,
    SEGMENTER_VERSION,
    LungMask,
    LungSegmenter,
    build_lung_unet,
    check_mask,
    clean_mask,
    load_weights,
    save_weights,
)

__all__ = [
    "SEGMENTER_SIZE",
    "SEGMENTER_VERSION",
    "LungMask",
    "LungSegmenter",
    "build_lung_unet",
    "check_mask",
    "clean_mask",
    "load_weights",
    "save_weights",
]
