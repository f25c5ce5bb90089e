"""Conditional generative surrogates p(x | θ) sharing one interface (:class:`Surrogate`).

Families: :mod:`.flows`, :mod:`.vae`, :mod:`.gan` (their MLP or convolutional networks, by kind
of data, in :mod:`.backbones`); :mod:`.registry` lists them all. The classes
load on first use, so reading the registry (the command line's ``--help``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["GAN", "VAE", "ArchConfig", "Flow", "FlowArch", "GANArch", "Surrogate",
           "SurrogateSimulator", "VAEArch"]  # fmt: skip

_WHERE = {"ArchConfig": ".arch", "Surrogate": ".base", "SurrogateSimulator": ".base",
          "Flow": ".flows", "FlowArch": ".flows", "VAE": ".vae", "VAEArch": ".vae",
          "GAN": ".gan", "GANArch": ".gan"}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(name)
    return getattr(importlib.import_module(_WHERE[name], __name__), name)
