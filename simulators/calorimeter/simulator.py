"""The calorimeter simulator: photon or pion showers in CaloChallenge dataset-1 voxels.

θ = (E_inc,) in MeV; x = the energies of the voxels in MeV (float32), ordered as in the Fast
Calorimeter Simulation Challenge 2022 (radial bins fastest, then α, then layer). Photons use the
368-voxel binning, pions the 533-voxel one.

Pipeline per batch of showers: longitudinal step profiles (:mod:`.em`, :mod:`.hadronic`) → energy
spots histogrammed into voxels (:mod:`.spots`) → per-voxel Gamma sampling fluctuations with the
stochastic term a (σ/E = a/√(E/GeV) for the shower total) → a per-shower constant term →
voxels below the readout threshold set to zero. Showers are processed in batches of bounded spot
count, so memory stays bounded whatever the energy.

Example:
    >>> import numpy as np, simulators
    >>> sim = simulators.get("calorimeter", particle="photon")
    >>> x = sim.simulate(np.array([[1024.0], [65536.0]]), np.random.default_rng(0))
    >>> x.shape, x.dtype
    ((2, 368), dtype('float32'))
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..base import Discrete, LogUniform, Simulator, SimulatorInputError
from .em import em_profile, n_spots
from .geometry import Detector, Geometry, load_detector, load_geometry
from .hadronic import HadronicParameters, pion_profiles
from .spots import StepGrid, deposit, sampling_fluctuations

__all__ = ["CHALLENGE_ENERGIES", "Calorimeter", "ShowerTruth"]

#: the 15 incident energies of CaloChallenge dataset 1, 2^8 ... 2^22 MeV
CHALLENGE_ENERGIES = tuple(float(2**k) for k in range(8, 23))

# Upper bound on spots histogrammed at once (about 100 MB of temporaries).
_SPOTS_PER_BATCH = 2_000_000
_DEFAULT_GEOMETRY = {"photon": "ds1_photons", "pion": "ds1_pions"}


@dataclass
class ShowerTruth:
    """Energy bookkeeping per shower (MeV), for tests and diagnostics; shape (N,) each.

    ``e_visible`` is what the showers deposit in visible form before sampling fluctuations;
    it equals ``e_readout + leak_longitudinal + leak_lateral``; ``e_readout`` is the mean
    energy in the voxels (before fluctuations and threshold). ``e_invisible`` is the hadronic
    energy lost to binding and neutrinos (zero for photons), ``start_lambda`` the first
    interaction depth of pions (zero for photons).
    """

    e_visible: np.ndarray
    e_readout: np.ndarray
    leak_longitudinal: np.ndarray
    leak_lateral: np.ndarray
    e_invisible: np.ndarray
    start_lambda: np.ndarray


class Calorimeter(Simulator):
    """Photon (GFlash) or charged-pion (toy hadronic) showers in a Pb/LAr + tile calorimeter.

    Settings:
        particle: "photon" or "pion".
        energies: "discrete" (the 15 challenge energies 2^8 ... 2^22 MeV, uniform) or
            "log_uniform" on [e_min_mev, e_max_mev].
        e_min_mev, e_max_mev: range of the incident energy (both spectra).
        geometry: "auto" (ds1_photons / ds1_pions by particle), a built-in name, or a path to a
            geometry JSON or a CaloChallenge binning XML.
        detector: "pb_lar_tile" or a path to a detector JSON (materials, layer depths).
        stochastic_term: a of the EM sampling term a/√(E/GeV).
        hadronic_stochastic_term: the same for the hadronic part of pion showers.
        constant_term: relative per-shower calibration spread b.
        threshold_mev: voxels below this energy read zero.
    """

    name: ClassVar[str] = "calorimeter"
    version: ClassVar[int] = 1
    #: CaloChallenge dataset names, hard-linked to theta and x in dataset files
    h5_aliases: ClassVar[dict[str, str]] = {"incident_energies": "theta", "showers": "x"}
    defaults: ClassVar[dict[str, Any]] = {
        "particle": "photon",
        "energies": "discrete",
        "e_min_mev": 256.0,
        "e_max_mev": 4194304.0,
        "geometry": "auto",
        "detector": "pb_lar_tile",
        "stochastic_term": 0.10,
        "hadronic_stochastic_term": 0.40,
        "constant_term": 0.007,
        "threshold_mev": 0.1,
    }

    def __init__(self, **config: Any):
        super().__init__(**config)
        c = self._config
        name = _DEFAULT_GEOMETRY[c["particle"]] if c["geometry"] == "auto" else c["geometry"]
        self.geometry: Geometry = load_geometry(name)
        self.detector: Detector = load_detector(c["detector"])
        self.grid = StepGrid.build(self.geometry, self.detector)
        self.hadronic_parameters = HadronicParameters()
        self.param_names = ("E_inc",)
        self.x_shape = (self.geometry.n_voxels,)
        lo, hi = c["e_min_mev"], c["e_max_mev"]
        if c["energies"] == "discrete":
            values = [e for e in CHALLENGE_ENERGIES if lo * (1 - 1e-9) <= e <= hi * (1 + 1e-9)]
            if not values:
                raise SimulatorInputError(
                    f"calorimeter: no challenge energy (2^8 ... 2^22 MeV) lies in "
                    f"[e_min_mev, e_max_mev] = [{lo}, {hi}]"
                )
            self.prior = Discrete(values)
        else:
            self.prior = LogUniform([lo], [hi])

    def _check_config(self, config: dict[str, Any]) -> None:
        def bad(key: str, want: str) -> SimulatorInputError:
            return SimulatorInputError(f"calorimeter: {key} must be {want}, got {config[key]!r}")

        if config["particle"] not in ("photon", "pion"):
            raise bad("particle", '"photon" or "pion"')
        if config["energies"] not in ("discrete", "log_uniform"):
            raise bad("energies", '"discrete" or "log_uniform"')
        for key in ("e_min_mev", "e_max_mev"):
            v = config[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 10 <= v <= 1e7:
                raise bad(key, "a number in [10, 1e7] MeV")
        if not config["e_min_mev"] < config["e_max_mev"]:
            raise bad("e_min_mev", "smaller than e_max_mev")
        for key in ("stochastic_term", "hadronic_stochastic_term", "constant_term"):
            v = config[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 2:
                raise bad(key, "a number in [0, 2]")
        v = config["threshold_mev"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise bad("threshold_mev", "a number >= 0")
        for key in ("geometry", "detector"):
            if not isinstance(config[key], str) or not config[key]:
                raise bad(key, "a built-in name or a file path")

    # -- simulation -------------------------------------------------------------------------
    def _batches(self, energy: np.ndarray) -> list[slice]:
        """Consecutive showers whose spots together stay near the per-batch budget."""
        factor = 1.0 if self._config["particle"] == "photon" else 1.3
        cost = n_spots(energy) * factor + self.grid.n_steps
        group = ((np.cumsum(cost) - cost) // _SPOTS_PER_BATCH).astype(np.int64)
        bounds = [0, *(np.flatnonzero(np.diff(group)) + 1).tolist(), len(cost)]
        return [slice(a, b) for a, b in itertools.pairwise(bounds)]

    def _simulate(self, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.simulate_with_truth(theta, rng, _checked=True)[0]

    def simulate_with_truth(
        self, theta: Any, rng: np.random.Generator, *, _checked: bool = False
    ) -> tuple[np.ndarray, ShowerTruth]:
        """Like :meth:`simulate`, also returning the energy bookkeeping (:class:`ShowerTruth`)."""
        if not _checked:
            if not isinstance(rng, np.random.Generator):
                raise SimulatorInputError("rng must be a numpy.random.Generator")
            theta = self.check_theta(theta)
        energy = np.asarray(theta, dtype=np.float64)[:, 0]
        n = energy.size
        x = np.zeros((n, self.geometry.n_voxels), dtype=np.float32)
        fields = {k: np.zeros(n) for k in ShowerTruth.__dataclass_fields__}
        for s in self._batches(energy):
            xb, tb = self._simulate_batch(energy[s], rng)
            x[s] = xb
            for k, v in tb.items():
                fields[k][s] = v
        return x, ShowerTruth(**fields)

    def _simulate_batch(
        self, energy: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        c, g, grid, det = self._config, self.geometry, self.grid, self.detector
        a_em, a_had = c["stochastic_term"], c["hadronic_stochastic_term"]
        n = energy.size
        if c["particle"] == "photon":
            prof, leak_long = em_profile(energy, grid, det, rng)
            parts = [(prof, a_em)]
            e_inv = np.zeros(n)
            start = np.zeros(n)
            e_vis = energy
        else:
            pi = pion_profiles(energy, grid, det, rng, par=self.hadronic_parameters)
            parts = [(pi.track, a_em), (pi.em, a_em), (pi.hadronic, a_had)]
            leak_long, e_inv, start = pi.leak, pi.e_invisible, pi.start_lambda
            e_vis = energy - e_inv
        out = np.zeros((n, g.n_voxels))
        readout = np.zeros(n)
        leak_lat = np.zeros(n)
        for prof, a in parts:
            mean, lat = deposit(prof, grid, g, rng)
            readout += mean.sum(axis=1)
            leak_lat += lat
            out += sampling_fluctuations(mean, a, rng)
        if c["constant_term"] > 0:
            out *= np.maximum(1.0 + c["constant_term"] * rng.standard_normal(n), 0.0)[:, None]
        out[out < c["threshold_mev"]] = 0.0
        truth = {
            "e_visible": e_vis,
            "e_readout": readout,
            "leak_longitudinal": leak_long,
            "leak_lateral": leak_lat,
            "e_invisible": e_inv,
            "start_lambda": start,
        }
        return out.astype(np.float32), truth
