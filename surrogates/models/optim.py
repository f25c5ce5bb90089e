"""The optimizer a family builds in its own ``configure_optimizers`` (VAE, GAN).

The trainer builds Adam itself for a model with only a ``loss``; a model that owns its step
(:class:`~surrogates.training.protocols.StepModel`) builds its optimizers here, from the same
:class:`~surrogates.training.TrainConfig` fields (``optimizer``, ``lr``, ``weight_decay``), so
every family reads them the same way.

Example:
    >>> import torch
    >>> from surrogates.training import TrainConfig
    >>> opt = adam(torch.nn.Linear(2, 1).parameters(), TrainConfig(lr=1e-4), betas=(0.5, 0.9))
    >>> opt.param_groups[0]["lr"], opt.param_groups[0]["betas"]
    (0.0001, (0.5, 0.9))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from ..training import TrainConfig

__all__ = ["adam"]


def adam(
    params: Iterable[Tensor], config: TrainConfig, *, betas: tuple[float, float] = (0.9, 0.999)
) -> torch.optim.Optimizer:
    """Adam (or AdamW for ``config.optimizer == "adamw"``) over the trainable ``params``, with
    the fused kernel where torch has one for the device, else the foreach one.

    Args:
        params: the weights.
        config: the training settings (``optimizer``, ``lr``, ``weight_decay``).
        betas: Adam's decay rates of the gradient's first and second moments.
    """
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    params = [p for p in params if p.requires_grad]
    kw = {"lr": config.lr, "weight_decay": config.weight_decay, "betas": tuple(betas)}
    try:
        return cls(params, fused=True, **kw)
    except (RuntimeError, ValueError):
        return cls(params, foreach=True, **kw)
