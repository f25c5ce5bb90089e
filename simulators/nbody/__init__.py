"""Particle-mesh N-body simulation of ΛCDM density fields conditioned on (Ω_m, σ_8).

Modules: :mod:`.cosmology` (linear theory), :mod:`.ic` (initial conditions), :mod:`.pm` (forces
and FastPM stepping), :mod:`.power` (power spectra, shared with the evaluation metrics),
:mod:`.design` (Latin hypercubes) and :mod:`.simulator` (the ``nbody`` simulator).
"""

from __future__ import annotations

from .cosmology import Cosmology
from .design import LatinHypercube
from .power import cross_correlation, cross_power, power_spectrum
from .simulator import NBody

__all__ = [
    "Cosmology",
    "LatinHypercube",
    "NBody",
    "cross_correlation",
    "cross_power",
    "power_spectrum",
]
