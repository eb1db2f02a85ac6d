"""Choice lists that the API and the command line share, in a module that
imports nothing heavy: the `covidxray` command builds its parser from them
without importing TensorFlow (`covidxray --help` stays fast and quiet).

The data layer's own choices (colour modes, resize policies, equalisation,
split names) live in `covidxray.data`, which does not import TensorFlow
either; this module holds the ones whose home module does.
"""

from __future__ import annotations

__all__ = ["AUGMENT_PRESETS", "EXPORT_FORMATS", "SCORE_BY"]

#: The presets `Augmenter.preset` knows: "paper" is the published comparison's
#: training augmentation (`Augmenter.paper_training`).
AUGMENT_PRESETS = ("paper", "xray", "acquisition")

#: What `Classifier.export(format=...)` and `covidxray export --format` write.
EXPORT_FORMATS = ("savedmodel", "tflite")

#: What an evaluation scores (`Classifier.evaluate(by=...)`, `--by`): each
#: image, or each patient by the mean probability of its images.
SCORE_BY = ("image", "patient")
