"""High-level shower features, computed the way the CaloChallenge 2022 evaluation computes them.

For a batch of showers (N, n_voxels) in MeV and a readout :class:`~.geometry.Geometry`:

* ``E_tot/E_inc``: total deposited energy over the incident energy;
* ``E_layer_{l}``: energy in layer l (MeV);
* ``ec_eta_{l}``, ``ec_phi_{l}``: centres of energy Σ x_i E_i / Σ E_i with the voxel centres
  x = r cos α, y = r sin α (mm), for the layers binned in α;
* ``width_eta_{l}``, ``width_phi_{l}``: √(Σ x_i² E_i / Σ E_i − ec²), clipped at zero, same layers;
* ``ec_r_{l}``, ``width_r_{l}``: the same with the radial bin centres, every layer;
* ``sparsity_{l}``: the fraction of voxels of layer l at or below the threshold (zero by default).

As in the challenge, sums of energy get 1e-16 added in denominators, so empty layers give 0.

Example:
    >>> import numpy as np
    >>> from simulators.calorimeter import load_geometry, high_level_features
    >>> g = load_geometry("ds1_photons")
    >>> f = high_level_features(np.ones((2, 368)), np.full((2, 1), 368.0), g)
    >>> float(f["E_tot/E_inc"][0])
    1.0
"""

from __future__ import annotations

import numpy as np

from ..base import SimulatorInputError
from .geometry import Geometry

__all__ = ["feature_names", "high_level_features", "layer_energies"]

_EPS = 1e-16


def _check(showers: np.ndarray, geometry: Geometry) -> np.ndarray:
    x = np.asarray(showers, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != geometry.n_voxels:
        raise SimulatorInputError(
            f"showers must have shape (N, {geometry.n_voxels}) for geometry "
            f"{geometry.name!r}, got {x.shape}"
        )
    return x


def layer_energies(showers: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Energy per readout layer, shape (N, n_layers), in the order of ``geometry.layers``."""
    x = _check(showers, geometry)
    return np.stack([x[:, s].sum(axis=1) for s in geometry.layer_slices], axis=1)


def feature_names(geometry: Geometry) -> list[str]:
    """Names of the features :func:`high_level_features` returns, in its order."""
    names = ["E_tot/E_inc"]
    names += [f"E_layer_{lid}" for lid in geometry.layers]
    for lid in geometry.alpha_binned:
        names += [f"ec_eta_{lid}", f"ec_phi_{lid}", f"width_eta_{lid}", f"width_phi_{lid}"]
    for lid in geometry.layers:
        names += [f"ec_r_{lid}", f"width_r_{lid}"]
    names += [f"sparsity_{lid}" for lid in geometry.layers]
    return names


def _centre_width(coord: np.ndarray, e: np.ndarray, total: np.ndarray) -> tuple[np.ndarray, ...]:
    ec = (e @ coord) / (total + _EPS)
    second = (e @ (coord * coord)) / (total + _EPS)
    return ec, np.sqrt(np.clip(second - ec**2, 0.0, None))


def high_level_features(
    showers: np.ndarray, e_inc: np.ndarray, geometry: Geometry, *, threshold: float = 0.0
) -> dict[str, np.ndarray]:
    """The challenge's high-level features of each shower.

    Args:
        showers: voxel energies in MeV, shape (N, n_voxels).
        e_inc: incident energies in MeV, shape (N,) or (N, 1).
        geometry: the readout geometry of ``showers``.
        threshold: voxels with energy above it count as hit in the sparsity.

    Returns:
        ``{name: array of shape (N,)}`` with the names of :func:`feature_names`.
    """
    x = _check(showers, geometry)
    e_inc = np.asarray(e_inc, dtype=np.float64).reshape(-1)
    if e_inc.shape[0] != x.shape[0]:
        raise SimulatorInputError(
            f"e_inc must have one value per shower ({x.shape[0]}), got {e_inc.shape[0]}"
        )
    r_all, a_all = geometry.voxel_centres()
    out: dict[str, np.ndarray] = {"E_tot/E_inc": x.sum(axis=1) / e_inc}
    layer_e = layer_energies(x, geometry)
    for j, lid in enumerate(geometry.layers):
        out[f"E_layer_{lid}"] = layer_e[:, j]
    parts = {}
    for j, (lid, s) in enumerate(zip(geometry.layers, geometry.layer_slices, strict=True)):
        e, r, a = x[:, s], r_all[s], a_all[s]
        if lid in geometry.alpha_binned:
            ec_x, w_x = _centre_width(r * np.cos(a), e, layer_e[:, j])
            ec_y, w_y = _centre_width(r * np.sin(a), e, layer_e[:, j])
            out[f"ec_eta_{lid}"], out[f"ec_phi_{lid}"] = ec_x, ec_y
            out[f"width_eta_{lid}"], out[f"width_phi_{lid}"] = w_x, w_y
        parts[f"ec_r_{lid}"], parts[f"width_r_{lid}"] = _centre_width(r, e, layer_e[:, j])
        parts[f"sparsity_{lid}"] = 1.0 - (e > threshold).mean(axis=1)
    for lid in geometry.layers:
        out[f"ec_r_{lid}"] = parts[f"ec_r_{lid}"]
        out[f"width_r_{lid}"] = parts[f"width_r_{lid}"]
    for lid in geometry.layers:
        out[f"sparsity_{lid}"] = parts[f"sparsity_{lid}"]
    return out
