"""Leaf building blocks of the package's networks (torch only).

* :func:`~.mlp.mlp`: the one dense-network builder;
* :mod:`.embeddings`: MLP, CNN, power-spectrum and DeepSets embeddings of observations, built from
  JSON specs by :func:`~.embeddings.build_embedding`;
* :mod:`.conv`: periodic 2-d convolutions and FiLM-conditioned encoder / decoder blocks for fields
  (C, H, W);
* :mod:`.adversarial`: minibatch standard deviation, the gradient penalty, two-sample statistics
  and truncated latents for GANs.
"""

from __future__ import annotations

from .adversarial import (
    LeakyReLU02,
    MinibatchStd,
    energy_distance,
    gradient_penalty,
    power_spectrum_error,
    truncated_normal,
    wasserstein_1d,
)
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
    "LeakyReLU02",
    "MLPEmbedding",
    "MinibatchStd",
    "PeriodicConv2d",
    "PowerSpectrumEmbedding",
    "build_embedding",
    "energy_distance",
    "gradient_penalty",
    "mlp",
    "power_spectrum",
    "power_spectrum_error",
    "truncated_normal",
    "wasserstein_1d",
]
