"""Readout geometry and detector description of the toy calorimeter.

Two pieces of configuration, both JSON files in the package's own format under ``geometries/``:

* a **readout geometry** (:class:`Geometry`): the voxelization of the Fast Calorimeter Simulation
  Challenge 2022 (CaloChallenge) — per readout layer the radial bin edges (mm) and the number of
  azimuthal (α) bins. Voxels are ordered radial bins fastest, then α, then layer, as in the
  challenge files. Any challenge binning XML can be read with :func:`parse_binning_xml`.
* a **detector** (:class:`Detector`): the materials of the sampling structure, from which the
  effective GFlash quantities (Z_eff, X0, R_M, E_c, F_s, ê) follow, and the longitudinal extent of
  every readout layer in radiation lengths X0 and in nuclear interaction lengths λ_I.

Example:
    >>> from simulators.calorimeter.geometry import load_geometry
    >>> g = load_geometry("ds1_photons")
    >>> g.n_voxels, g.layers
    (368, (0, 1, 2, 3, 12))
"""

from __future__ import annotations

import itertools
import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..base import SimulatorInputError

__all__ = [
    "GEOMETRY_DIR",
    "Detector",
    "Geometry",
    "Material",
    "load_detector",
    "load_geometry",
    "parse_binning_xml",
]

#: folder holding the built-in geometry and detector JSON files
GEOMETRY_DIR = Path(__file__).resolve().parent / "geometries"

_ES_MEV = 21.2  # multiple-scattering energy scale in the Molière radius, R_M = X0 E_s / E_c


@dataclass(frozen=True)
class Geometry:
    """CaloChallenge-style voxelization: concentric radial rings split in α sectors, per layer.

    Only layers that hold voxels are kept (the challenge files also list empty layer ids).

    Attributes:
        name: a short name.
        particle: the particle the binning was made for ("photon", "pion", ...).
        layers: ids of the readout layers, in order.
        r_edges: per layer, the radial bin edges in mm (starting at 0).
        n_alpha: per layer, the number of α bins covering [-π, π).
    """

    name: str
    particle: str
    layers: tuple[int, ...]
    r_edges: tuple[tuple[float, ...], ...]
    n_alpha: tuple[int, ...]
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not (len(self.layers) == len(self.r_edges) == len(self.n_alpha)) or not self.layers:
            raise SimulatorInputError(f"geometry {self.name!r}: inconsistent or empty layer lists")
        for lid, edges, na in zip(self.layers, self.r_edges, self.n_alpha, strict=True):
            e = np.asarray(edges)
            if len(e) < 2 or e[0] != 0 or np.any(np.diff(e) <= 0) or na < 1:
                raise SimulatorInputError(
                    f"geometry {self.name!r}: layer {lid} needs increasing r_edges from 0 "
                    f"and n_alpha >= 1"
                )

    # -- sizes and index ranges -------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_radial(self) -> tuple[int, ...]:
        """Number of radial bins per layer."""
        return tuple(len(e) - 1 for e in self.r_edges)

    @property
    def voxels_per_layer(self) -> tuple[int, ...]:
        return tuple(nr * na for nr, na in zip(self.n_radial, self.n_alpha, strict=True))

    @property
    def n_voxels(self) -> int:
        return sum(self.voxels_per_layer)

    @property
    def layer_slices(self) -> tuple[slice, ...]:
        """Voxel index range of each layer in a flattened shower."""
        bounds = np.concatenate([[0], np.cumsum(self.voxels_per_layer)])
        return tuple(slice(int(a), int(b)) for a, b in itertools.pairwise(bounds))

    @property
    def alpha_binned(self) -> tuple[int, ...]:
        """Ids of the layers with more than one α bin."""
        return tuple(lid for lid, na in zip(self.layers, self.n_alpha, strict=True) if na > 1)

    def layer_index(self, layer_id: int) -> int:
        """Position of ``layer_id`` in :attr:`layers`."""
        try:
            return self.layers.index(layer_id)
        except ValueError:
            raise SimulatorInputError(f"geometry {self.name!r} has no layer {layer_id}") from None

    # -- voxel coordinates ------------------------------------------------------------------
    def voxel_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Centres (r in mm, α in rad) of all voxels, each of shape (n_voxels,).

        As in the challenge: r is the middle of the radial bin and α the middle of the α bin, with
        the α bins splitting [-π, π) evenly (a single bin has α = 0).
        """
        rs, als = [], []
        for edges, na in zip(self.r_edges, self.n_alpha, strict=True):
            e = np.asarray(edges, dtype=np.float64)
            r_mid = 0.5 * (e[1:] + e[:-1])
            a_edges = np.linspace(-math.pi, math.pi, na + 1)
            a_mid = 0.5 * (a_edges[1:] + a_edges[:-1])
            rs.append(np.tile(r_mid, na))  # radial bins fastest
            als.append(np.repeat(a_mid, len(r_mid)))
        return np.concatenate(rs), np.concatenate(als)

    def voxel_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """The challenge's (η, φ)-like voxel coordinates x = r cos α, y = r sin α in mm."""
        r, a = self.voxel_centres()
        return r * np.cos(a), r * np.sin(a)

    def voxel_layer(self) -> np.ndarray:
        """Layer id of each voxel, shape (n_voxels,)."""
        return np.repeat(np.asarray(self.layers), self.voxels_per_layer)

    def reshape_layer(self, showers: np.ndarray, layer_id: int) -> np.ndarray:
        """One layer of a batch of showers as (N, n_alpha, n_radial)."""
        i = self.layer_index(layer_id)
        part = np.asarray(showers)[..., self.layer_slices[i]]
        return part.reshape(*part.shape[:-1], self.n_alpha[i], self.n_radial[i])

    # -- serialization ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "simsurrogates-calorimeter-geometry",
            "format_version": 1,
            "name": self.name,
            "particle": self.particle,
            **self.extra,
            "layers": [
                {"id": lid, "r_edges_mm": list(e), "n_alpha": na}
                for lid, e, na in zip(self.layers, self.r_edges, self.n_alpha, strict=True)
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Geometry:
        try:
            layers = d["layers"]
            extra = {k: v for k, v in d.items() if k not in _GEOMETRY_KEYS}
            return cls(
                name=str(d["name"]),
                particle=str(d["particle"]),
                layers=tuple(int(la["id"]) for la in layers),
                r_edges=tuple(tuple(float(x) for x in la["r_edges_mm"]) for la in layers),
                n_alpha=tuple(int(la["n_alpha"]) for la in layers),
                extra=extra,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SimulatorInputError(f"malformed calorimeter geometry: {exc!r}") from None


_GEOMETRY_KEYS = {"format", "format_version", "name", "particle", "layers"}


def parse_binning_xml(path: str | Path) -> Geometry:
    """Reads a CaloChallenge binning XML file (``<Bins><Bin ...><Layer .../>``).

    Layers whose ``r_edges`` hold a single edge carry no voxels and are dropped, which keeps the
    voxel order of the challenge files.

    Args:
        path: the XML file.

    Returns:
        The readout geometry; ``extra`` keeps the ``pid``, ``etaMin`` and ``etaMax`` attributes.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise SimulatorInputError(f"cannot read binning XML {str(path)!r}: {exc}") from None
    bins = root.findall("Bin") if root.tag != "Bin" else [root]
    if len(bins) != 1:
        raise SimulatorInputError(f"{path}: expected exactly one <Bin> element, got {len(bins)}")
    b = bins[0]
    layers, r_edges, n_alpha = [], [], []
    for el in b.findall("Layer"):
        edges = tuple(float(s) for s in el.attrib["r_edges"].split(",") if s.strip())
        if len(edges) < 2:
            continue
        layers.append(int(el.attrib["id"]))
        r_edges.append(edges)
        n_alpha.append(int(el.attrib.get("n_bin_alpha", "1")))
    extra = {}
    for key, out in (("pid", "pid"), ("etaMin", "eta_min"), ("etaMax", "eta_max")):
        if key in b.attrib:
            extra[out] = int(b.attrib[key])
    return Geometry(
        name=path.stem,
        particle=b.attrib.get("name", "unknown"),
        layers=tuple(layers),
        r_edges=tuple(r_edges),
        n_alpha=tuple(n_alpha),
        extra=extra,
    )


def _resolve(name_or_path: str | Path, what: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".json", ".xml"):
        if not p.is_file():
            raise SimulatorInputError(f"{what} file {str(p)!r} does not exist")
        return p
    builtin = GEOMETRY_DIR / f"{name_or_path}.json"
    if not builtin.is_file():
        names = sorted(q.stem for q in GEOMETRY_DIR.glob("*.json"))
        raise SimulatorInputError(
            f"unknown {what} {str(name_or_path)!r}; built in: {', '.join(names)}, "
            f"or a path to a .json (or binning .xml) file"
        )
    return builtin


def load_geometry(name_or_path: str | Path) -> Geometry:
    """Loads a built-in geometry by name (``ds1_photons``, ``ds1_pions``), a geometry JSON, or a
    CaloChallenge binning XML."""
    p = _resolve(name_or_path, "geometry")
    if p.suffix == ".xml":
        return parse_binning_xml(p)
    return Geometry.from_dict(json.loads(p.read_text()))


@dataclass(frozen=True)
class Material:
    """A homogeneous material: atomic number, mass number, density (g/cm³), X0 and λ_I (g/cm²)."""

    name: str
    Z: float
    A: float
    density: float
    x0: float
    lambda_i: float

    @property
    def critical_energy(self) -> float:
        """E_c in MeV, E_c = 2.66 (X0 Z / A)^1.1 with X0 in g/cm² (as in Geant4's GFlash)."""
        return 2.66 * (self.x0 * self.Z / self.A) ** 1.1


@dataclass(frozen=True)
class Detector:
    """The sampling calorimeter: absorber/active layers and longitudinal extent of the readout.

    Effective quantities follow Grindhammer & Peters (hep-ex/0001020, §4) for a sampling structure
    of absorber thickness d1 and active thickness d2 (weights w_i = d_i ρ_i / Σ d_j ρ_j).

    Attributes:
        name: a short name.
        absorber, active: the two materials.
        d_absorber_mm, d_active_mm: thicknesses of one sampling cell.
        layer_depths_x0: layer id -> [start, end) in radiation lengths from the front face.
        layer_depths_lambda: layer id -> [start, end) in interaction lengths.
        moliere_radius_mm: transverse scale of EM showers; ``None`` derives it from the materials.
    """

    name: str
    absorber: Material
    active: Material
    d_absorber_mm: float
    d_active_mm: float
    layer_depths_x0: dict[int, tuple[float, float]]
    layer_depths_lambda: dict[int, tuple[float, float]]
    moliere_radius_mm: float | None = None
    description: str = ""

    @property
    def _weights(self) -> tuple[float, float]:
        m1 = self.d_absorber_mm * self.absorber.density
        m2 = self.d_active_mm * self.active.density
        return m1 / (m1 + m2), m2 / (m1 + m2)

    @property
    def density(self) -> float:
        """Mean density in g/cm³."""
        m = self.d_absorber_mm * self.absorber.density + self.d_active_mm * self.active.density
        return m / (self.d_absorber_mm + self.d_active_mm)

    @property
    def z_eff(self) -> float:
        w1, w2 = self._weights
        return w1 * self.absorber.Z + w2 * self.active.Z

    @property
    def x0_mm(self) -> float:
        """Effective radiation length in mm: 1/X0 = Σ w_i / X0_i (in g/cm²), over the density."""
        w1, w2 = self._weights
        x0_gcm2 = 1.0 / (w1 / self.absorber.x0 + w2 / self.active.x0)
        return 10.0 * x0_gcm2 / self.density

    @property
    def _ec_over_x0(self) -> float:
        w1, w2 = self._weights
        return w1 * self.absorber.critical_energy / self.absorber.x0 + (
            w2 * self.active.critical_energy / self.active.x0
        )

    @property
    def critical_energy(self) -> float:
        """Effective critical energy E_c in MeV, E_c = X0_eff Σ w_i E_c,i / X0_i."""
        w1, w2 = self._weights
        x0_gcm2 = 1.0 / (w1 / self.absorber.x0 + w2 / self.active.x0)
        return x0_gcm2 * self._ec_over_x0

    @property
    def rm_mm(self) -> float:
        """Molière radius in mm (configured, or R_M = E_s / Σ w_i E_c,i / X0_i over the density)."""
        if self.moliere_radius_mm is not None:
            return float(self.moliere_radius_mm)
        return 10.0 * _ES_MEV / self._ec_over_x0 / self.density

    @property
    def f_s(self) -> float:
        """Sampling frequency F_s = X0_eff / (d_absorber + d_active)."""
        return self.x0_mm / (self.d_absorber_mm + self.d_active_mm)

    @property
    def e_hat(self) -> float:
        """Mip-to-electron sampling ratio, ê = 1 / (1 + 0.007 (Z_abs − Z_act))."""
        return 1.0 / (1.0 + 0.007 * (self.absorber.Z - self.active.Z))

    def depths(self, layers: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """[start, end) of each layer in X0 and in λ_I, each of shape (n_layers, 2).

        Raises:
            SimulatorInputError: a layer has no configured depth, or layers overlap / go backwards.
        """
        missing = [lid for lid in layers if lid not in self.layer_depths_x0]
        missing += [lid for lid in layers if lid not in self.layer_depths_lambda]
        if missing:
            raise SimulatorInputError(
                f"detector {self.name!r} has no longitudinal extent for layer(s) "
                f"{sorted(set(missing))}; known layers: {sorted(self.layer_depths_x0)}"
            )
        dx = np.array([self.layer_depths_x0[lid] for lid in layers], dtype=np.float64)
        dl = np.array([self.layer_depths_lambda[lid] for lid in layers], dtype=np.float64)
        for d, unit in ((dx, "X0"), (dl, "lambda")):
            if np.any(d[:, 1] <= d[:, 0]) or np.any(d[1:, 0] < d[:-1, 1] - 1e-9):
                raise SimulatorInputError(
                    f"detector {self.name!r}: layer depths in {unit} must be increasing and "
                    f"non-overlapping"
                )
        return dx, dl

    def to_dict(self) -> dict[str, Any]:
        def mat(m: Material) -> dict[str, Any]:
            return {
                "name": m.name,
                "Z": m.Z,
                "A": m.A,
                "density_g_cm3": m.density,
                "x0_g_cm2": m.x0,
                "lambda_g_cm2": m.lambda_i,
            }

        return {
            "format": "simsurrogates-calorimeter-detector",
            "format_version": 1,
            "name": self.name,
            "description": self.description,
            "absorber": mat(self.absorber),
            "active": mat(self.active),
            "d_absorber_mm": self.d_absorber_mm,
            "d_active_mm": self.d_active_mm,
            "moliere_radius_mm": self.moliere_radius_mm,
            "layers": [
                {
                    "id": lid,
                    "depth_x0": list(self.layer_depths_x0[lid]),
                    "depth_lambda": list(self.layer_depths_lambda[lid]),
                }
                for lid in sorted(self.layer_depths_x0)
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Detector:
        def mat(m: dict[str, Any]) -> Material:
            return Material(
                name=str(m["name"]),
                Z=float(m["Z"]),
                A=float(m["A"]),
                density=float(m["density_g_cm3"]),
                x0=float(m["x0_g_cm2"]),
                lambda_i=float(m["lambda_g_cm2"]),
            )

        try:
            rm = d.get("moliere_radius_mm")
            return cls(
                name=str(d["name"]),
                absorber=mat(d["absorber"]),
                active=mat(d["active"]),
                d_absorber_mm=float(d["d_absorber_mm"]),
                d_active_mm=float(d["d_active_mm"]),
                layer_depths_x0={int(la["id"]): tuple(la["depth_x0"]) for la in d["layers"]},
                layer_depths_lambda={
                    int(la["id"]): tuple(la["depth_lambda"]) for la in d["layers"]
                },
                moliere_radius_mm=None if rm is None else float(rm),
                description=str(d.get("description", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SimulatorInputError(f"malformed calorimeter detector: {exc!r}") from None


def load_detector(name_or_path: str | Path) -> Detector:
    """Loads a built-in detector by name (``pb_lar_tile``) or a detector JSON file."""
    p = _resolve(name_or_path, "detector")
    if p.suffix != ".json":
        raise SimulatorInputError(f"a detector must be a .json file, got {str(p)!r}")
    return Detector.from_dict(json.loads(p.read_text()))
