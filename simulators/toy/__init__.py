"""Toy simulators of the SBI benchmark (Lueckmann et al. 2021), with tractable likelihoods.

Each matches the task of the same name in ``sbibm`` (priors, noise, data dimension), so that
posterior estimates can be compared with published numbers; :mod:`.reference` samples their
reference posteriors.

References:
    Lueckmann, Boelts, Greenberg, Gonçalves, Macke (2021). Benchmarking simulation-based
    inference. AISTATS. https://arxiv.org/abs/2101.04653
"""

from __future__ import annotations

from .gaussian_linear import GaussianLinear
from .lotka_volterra import LotkaVolterra, solve_lotka_volterra
from .reference import reference_posterior, smc_posterior
from .slcp import SLCP
from .two_moons import TwoMoons

__all__ = [
    "SLCP",
    "GaussianLinear",
    "LotkaVolterra",
    "TwoMoons",
    "reference_posterior",
    "smc_posterior",
    "solve_lotka_volterra",
]
