"""The data layer: from files on disk to `tf.data` batches.

One module per concept (see `docs/architecture.md`): `layouts` (readers and
their registry; COVIDx CT's reader in `covidx_ct`, its body boxes in
`boxes`), `decode` (file -> pixels), `identity` (hashes, the near-duplicate
search and `SAME_PICTURE`), `preprocessing` (pixels -> what a model sees),
`cache` (the scan and the cache file), `labels`, `split`, `catalog`
(`load_dataset`), `dataset` (`XrayDataset`) and `pipeline` (`tf.data` batches,
sampling, class weights).
"""

from . import covidx_ct  # noqa: F401 - registers the covidx-ct layout
from .catalog import load_dataset
from .dataset import XrayDataset
from .decode import decode_file, find_images
from .layouts import LAYOUTS, register_layout
from .preprocessing import Preprocessing, image_to_array
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
