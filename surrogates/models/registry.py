"""The one registry of model families: name -> surrogate class and its architecture type.

The command line (``surrogates train MODEL``), the report and ``surrogates.Flow`` (etc.) read
it; a new family is a module in :mod:`surrogates.models` plus one line in :data:`FAMILIES`.
Classes are imported on first use so that ``surrogates --help`` does not import torch.

Example:
    >>> names()
    ['flow', 'gan', 'vae']
    >>> get("flow").__name__
    'Flow'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from simulators.errors import UserError

if TYPE_CHECKING:
    from .arch import ArchConfig
    from .base import Surrogate

__all__ = ["FAMILIES", "arch_type", "get", "names"]

#: family name -> (module, class name, one line for --help)
FAMILIES: dict[str, tuple[str, str, str]] = {
    "flow": ("surrogates.models.flows", "Flow", "conditional neural spline flow"),
    "gan": ("surrogates.models.gan", "GAN", "conditional WGAN-GP"),
    "vae": ("surrogates.models.vae", "VAE", "conditional variational autoencoder"),
}


def names() -> list[str]:
    """The registered family names, sorted."""
    return sorted(FAMILIES)


def get(name: str) -> type[Surrogate]:
    """The surrogate class registered as ``name``."""
    if name not in FAMILIES:
        raise UserError(f"unknown model {name!r}; available: {', '.join(names())}")
    module, attr, _ = FAMILIES[name]
    return getattr(importlib.import_module(module), attr)


def arch_type(name: str) -> type[ArchConfig]:
    """The architecture dataclass of family ``name``."""
    return get(name).Arch
