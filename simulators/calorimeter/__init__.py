"""Calorimeter showers in the format of the Fast Calorimeter Simulation Challenge 2022.

GFlash-parameterized electromagnetic showers (photons) and toy hadronic showers (charged pions) in
a Pb/LAr sampling calorimeter followed by a hadronic section, read out in the voxels of
CaloChallenge dataset 1 (368 voxels for photons, 533 for pions).

Modules: :mod:`.geometry` (readout binning, detector materials and layer depths),
:mod:`.em` (GFlash), :mod:`.hadronic` (pions), :mod:`.spots` (spots to voxels),
:mod:`.simulator` (:class:`Calorimeter`), :mod:`.features` (the challenge's high-level features).
"""

from .features import high_level_features, layer_energies
from .geometry import Detector, Geometry, load_detector, load_geometry, parse_binning_xml
from .simulator import CHALLENGE_ENERGIES, Calorimeter

__all__ = [
    "CHALLENGE_ENERGIES",
    "Calorimeter",
    "Detector",
    "Geometry",
    "high_level_features",
    "layer_energies",
    "load_detector",
    "load_geometry",
    "parse_binning_xml",
]
