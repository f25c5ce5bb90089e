"""Leaf building blocks of the package's networks (torch only).

* :func:`~.mlp.mlp`: the one dense-network builder;
* :mod:`.embeddings`: MLP, CNN, power-spectrum and DeepSets embeddings of observations, built from
  JSON specs by :func:`~.embeddings.build_embedding`;
* :mod:`.conv`: periodic 2-d convolutions and FiLM-conditioned encoder / decoder blocks for fields
  (C, H, W).
"""

from __future__ import annotations

from .conv import ConvDecoder, ConvEncoder, FiLM, PeriodicConv2d
from .embeddings import (
    CNNEmbedding,
    DeepSetEmbedding,
    IdentityEmbedding,
    MLPEmbedding,
    PowerSpectrumEmbedding,
    build_embedding,
    power_spectrum,
)
from .mlp import mlp

__all__ = [
    "CNNEmbedding",
    "ConvDecoder",
    "ConvEncoder",
    "DeepSetEmbedding",
    "FiLM",
    "IdentityEmbedding",
    "MLPEmbedding",
    "PeriodicConv2d",
    "PowerSpectrumEmbedding",
    "build_embedding",
    "mlp",
    "power_spectrum",
]
