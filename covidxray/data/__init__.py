"""The data layer: layouts, decoding, splitting, `load_dataset` and `XrayDataset`."""

from .decode import decode_file, find_images, image_to_array
from .layouts import LAYOUTS, register_layout
from .loader import XrayDataset, load_dataset
from .preprocessing import Preprocessing
from .records import Entry, Record

__all__ = [
    "LAYOUTS",
    "Entry",
    "Preprocessing",
    "Record",
    "XrayDataset",
    "decode_file",
    "find_images",
    "image_to_array",
    "load_dataset",
    "register_layout",
]
