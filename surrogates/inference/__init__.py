"""Simulation-based inference with the package's conditional flows.

* :class:`NPE`: neural posterior estimation (fit on arrays or streamed HDF5 datasets, sample,
  exact ``log_prob`` on the prior's support, safe save/load);
* :mod:`.support`: bijections onto prior supports and torch versions of the simulators' priors;
* :mod:`.defaults`, :mod:`.network`, :mod:`.simulations`: NPE's default settings, its torch
  module and the checking of its training simulations (embeddings: :mod:`surrogates.nn`);
* :mod:`.diagnostics`: simulation-based calibration, expected coverage, posterior predictive checks;
* :mod:`.sequential`: multi-round inference for one observation (truncated sequential NPE).
"""

from __future__ import annotations

from ..nn import build_embedding
from .defaults import default_train_config
from .diagnostics import (
    CoverageResult,
    PPCResult,
    SBCResult,
    expected_coverage,
    posterior_predictive_check,
    sbc,
    sbc_ranks,
    sbc_uniformity,
)
from .npe import NPE
from .sequential import TSNPEResult, tsnpe
from .support import SupportTransform, prior_from_dict, prior_to_dict, torch_prior

__all__ = [
    "NPE",
    "CoverageResult",
    "PPCResult",
    "SBCResult",
    "SupportTransform",
    "TSNPEResult",
    "build_embedding",
    "default_train_config",
    "expected_coverage",
    "posterior_predictive_check",
    "prior_from_dict",
    "prior_to_dict",
    "sbc",
    "sbc_ranks",
    "sbc_uniformity",
    "torch_prior",
    "tsnpe",
]
