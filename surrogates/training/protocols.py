"""What a model provides to the trainer, as typed protocols.

A model is a :class:`torch.nn.Module` that implements

* :class:`LossModel` -- ``loss(batch, *, generator)``: a scalar to minimize, used by the
  trainer's default step (:func:`~surrogates.training.context.default_step`: one optimizer,
  Adam unless the model builds its own, :class:`OptimizerModel`) and as the default validation
  quantity ``val_loss`` (flows, VAEs, NPE); or
* :class:`StepModel` -- ``configure_optimizers(config)`` and ``train_step(batch, ctx)``: the
  model owns the update and goes through the :class:`~surrogates.training.StepContext` for
  autocast, backward (clipping, the non-finite skip), optimizer steps and logging (GANs);

and optionally

* :class:`ValidationModel` -- ``validation_metrics(batch, *, generator)``: named validation
  quantities, written as ``val_<name>`` columns and selectable as ``TrainConfig.monitor``;
* :class:`AveragedModel` -- ``ema_modules()``: the submodules whose weights the moving average
  (``TrainConfig.ema``) covers; by default it covers the whole model.

All randomness of a step (dequantization noise, reparameterization, latent draws) comes from
``generator``/``ctx.generator``, the trainer's own checkpointed :class:`torch.Generator`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from .config import TrainConfig
    from .context import StepContext

__all__ = ["AveragedModel", "LossModel", "OptimizerModel", "StepModel", "ValidationModel"]


@runtime_checkable
class LossModel(Protocol):
    """A model trained by minimizing one loss with one optimizer."""

    def loss(self, batch: Sequence[Tensor], *, generator: torch.Generator | None = None) -> Tensor:
        """A scalar to minimize for ``batch``."""
        ...


@runtime_checkable
class OptimizerModel(Protocol):
    """A model that builds its own optimizers (default: Adam over every trainable weight)."""

    def configure_optimizers(self, config: TrainConfig) -> Sequence[torch.optim.Optimizer]:
        """The optimizers, built from ``config`` (rates, weight decay)."""
        ...


@runtime_checkable
class StepModel(OptimizerModel, Protocol):
    """A model that owns its optimizers and its training step."""

    def train_step(self, batch: Any, ctx: StepContext) -> None:
        """One update: every backward, step and logged quantity goes through ``ctx``."""
        ...


@runtime_checkable
class ValidationModel(Protocol):
    """A model that names its own validation quantities."""

    def validation_metrics(
        self, batch: Sequence[Tensor], *, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Scalars for ``batch``; the trainer averages them over the validation rows."""
        ...


@runtime_checkable
class AveragedModel(Protocol):
    """A model whose weight average covers only some of its modules (e.g. a GAN's generator)."""

    def ema_modules(self) -> Sequence[nn.Module]:
        """The submodules whose floating-point weights and buffers are averaged."""
        ...
