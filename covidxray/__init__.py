"""covidxray: chest X-ray classification (COVID-19 vs not) with Keras 3, honestly.

Research and teaching software. Not a medical device and not for clinical use.

The public API is this module. Names that need TensorFlow (models, the
classifier, augmentation, Grad-CAM) are imported on first use, so that reading
and auditing a dataset stays quick.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .audit import AuditReport, audit
from .data import Preprocessing, Record, XrayDataset, load_dataset
from .errors import (
    AllSeenError,
    CovidXrayWarning,
    DataError,
    NotFittedError,
    WeightsUnavailableError,
)
from .report import report

logging.getLogger("covidxray").addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from .augment import Augmenter
    from .classifier import Classifier
    from .comparison import Comparison, run_comparison
    from .crossval import SourceEvaluation, evaluate_by_source, leave_one_source_out
    from .explain import grad_cam, overlay
    from .features import FeatureCache
    from .lungs import LungMask, LungSegmenter
    from .lungs.ablation import LungTest
    from .metrics import Evaluation
    from .models import (
        Backbone,
        build_cnn,
        build_pretrained,
        list_backbones,
        split_at_backbone,
    )
    from .plots import (
        plot_calibration,
        plot_confusion_matrix,
        plot_gradcam_grid,
        plot_history,
        plot_roc,
    )

_LAZY = {
    "Augmenter": "augment",
    "Backbone": "models",
    "Classifier": "classifier",
    "Comparison": "comparison",
    "Evaluation": "metrics",
    "FeatureCache": "features",
    "LungMask": "lungs",
    "LungSegmenter": "lungs",
    "LungTest": "lungs.ablation",
    "SourceEvaluation": "crossval",
    "evaluate_by_source": "crossval",
    "leave_one_source_out": "crossval",
    "build_cnn": "models",
    "build_pretrained": "models",
    "grad_cam": "explain",
    "list_backbones": "models",
    "overlay": "explain",
    "run_comparison": "comparison",
    "split_at_backbone": "models",
    "plot_calibration": "plots",
    "plot_confusion_matrix": "plots",
    "plot_gradcam_grid": "plots",
    "plot_history": "plots",
    "plot_roc": "plots",
}

__all__ = [
    "AllSeenError",
    "AuditReport",
    "Augmenter",
    "Backbone",
    "Classifier",
    "Comparison",
    "CovidXrayWarning",
    "DataError",
    "Evaluation",
    "FeatureCache",
    "LungMask",
    "LungSegmenter",
    "LungTest",
    "NotFittedError",
    "Preprocessing",
    "Record",
    "SourceEvaluation",
    "WeightsUnavailableError",
    "XrayDataset",
    "__version__",
    "audit",
    "build_cnn",
    "build_pretrained",
    "evaluate_by_source",
    "grad_cam",
    "leave_one_source_out",
    "list_backbones",
    "load_dataset",
    "overlay",
    "plot_calibration",
    "plot_confusion_matrix",
    "plot_gradcam_grid",
    "plot_history",
    "plot_roc",
    "report",
    "run_comparison",
    "split_at_backbone",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'covidxray' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
