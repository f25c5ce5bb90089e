"""Training: settings, batches, the step context and the one trainer.

See :mod:`surrogates.training.trainer` for the loop, :mod:`surrogates.training.context` for
what a model's step goes through and :mod:`surrogates.training.protocols` for what a model
provides.
"""

from __future__ import annotations

from .batches import ArrayBatches, split_indices, to_device, validation_batch_size
from .config import TrainConfig, TrainResult
from .context import StepContext, default_step
from .protocols import AveragedModel, LossModel, OptimizerModel, StepModel, ValidationModel
from .tracking import METRICS
from .trainer import CHECKPOINT, Trainer, copy_state

__all__ = [
    "CHECKPOINT",
    "METRICS",
    "ArrayBatches",
    "AveragedModel",
    "LossModel",
    "OptimizerModel",
    "StepContext",
    "StepModel",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "ValidationModel",
    "copy_state",
    "default_step",
    "split_indices",
    "to_device",
    "validation_batch_size",
]
