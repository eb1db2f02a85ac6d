"""Training: the losses, `fit`'s callbacks, seeding, and the training loops.

- `losses`: `SpectralDecoupling`, `compile_for`, `OPTIMIZERS`.
- `callbacks`: `BestCheckpoint`, `LogEpochs`, `ShowFullModel`, `previous_best`.
- `seeding`: `seed_streams`, `global_random_state_kept`.
- `loops`: `train`, `FitResult`, `multi_worker_fit`, `prepare`, `worker_shard`.

Every function takes Keras models, datasets and plain values, never the
`Classifier`, which calls into this package (see `docs/architecture.md`).
"""

from __future__ import annotations

from .callbacks import (
    BestCheckpoint,
    LogEpochs,
    ShowFullModel,
    own_callbacks,
    previous_best,
)
from .loops import (
    HEAD_STEPS_PER_EXECUTION,
    FitResult,
    multi_worker_fit,
    prepare,
    train,
    worker_shard,
)
from .losses import OPTIMIZERS, SpectralDecoupling, compile_for
from .seeding import global_random_state_kept, seed_streams

__all__ = [
    "HEAD_STEPS_PER_EXECUTION",
    "OPTIMIZERS",
    "BestCheckpoint",
    "FitResult",
    "LogEpochs",
    "ShowFullModel",
    "SpectralDecoupling",
    "compile_for",
    "global_random_state_kept",
    "multi_worker_fit",
    "own_callbacks",
    "prepare",
    "previous_best",
    "seed_streams",
    "train",
    "worker_shard",
]
