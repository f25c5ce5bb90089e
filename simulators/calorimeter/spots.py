"""Energy spots: from per-step shower profiles to voxel energies.

A shower is described on a grid of longitudinal steps (:class:`StepGrid`, each step inside one
readout layer) by a :class:`StepProfile`: per shower and step the deposited energy, the number of
energy spots that carry it (each spot gets an equal share, as in GFlash) and the parameters of the
two-component radial density

.. math:: f(r) = p \\frac{2 r R_C^2}{(r^2 + R_C^2)^2} + (1 - p) \\frac{2 r R_T^2}{(r^2 + R_T^2)^2},

whose cumulative distribution r²/(r² + R²) inverts in closed form, r = R √(u / (1 − u)).
The azimuth is uniform. Spots are histogrammed into voxels with one ``bincount`` per layer; no
Python loop runs over spots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .geometry import Detector, Geometry

__all__ = ["StepGrid", "StepProfile", "deposit", "draw_spots", "sampling_fluctuations"]


@dataclass(frozen=True)
class StepGrid:
    """Longitudinal steps covering the readout layers, each step inside one layer.

    Attributes:
        x0_lo, x0_hi: step boundaries in radiation lengths from the front face, shape (K,).
        lam_lo, lam_hi: the same boundaries in interaction lengths, shape (K,).
        layer: index (into ``geometry.layers``) of the layer holding each step, shape (K,).
        layer_x0, layer_lam: [start, end) of each layer, shape (n_layers, 2).
    """

    x0_lo: np.ndarray
    x0_hi: np.ndarray
    lam_lo: np.ndarray
    lam_hi: np.ndarray
    layer: np.ndarray
    layer_x0: np.ndarray
    layer_lam: np.ndarray

    @classmethod
    def build(
        cls,
        geometry: Geometry,
        detector: Detector,
        max_step_x0: float = 1.0,
        max_step_lambda: float = 0.1,
    ) -> StepGrid:
        """Splits every readout layer into equal steps no longer than the given limits."""
        dx, dl = detector.depths(geometry.layers)
        parts = []
        for i, ((x_a, x_b), (l_a, l_b)) in enumerate(zip(dx, dl, strict=True)):
            n = max(math.ceil((x_b - x_a) / max_step_x0 - 1e-9), 1)
            n = max(n, math.ceil((l_b - l_a) / max_step_lambda - 1e-9))
            fx = np.linspace(x_a, x_b, n + 1)
            fl = np.linspace(l_a, l_b, n + 1)
            parts.append((fx[:-1], fx[1:], fl[:-1], fl[1:], np.full(n, i)))
        cat = [np.concatenate(p) for p in zip(*parts, strict=True)]
        return cls(*cat, layer_x0=dx, layer_lam=dl)

    @property
    def n_steps(self) -> int:
        return len(self.layer)

    @property
    def x0_mid(self) -> np.ndarray:
        return 0.5 * (self.x0_lo + self.x0_hi)

    @property
    def lam_mid(self) -> np.ndarray:
        return 0.5 * (self.lam_lo + self.lam_hi)

    def lambda_to_x0(self, lam: np.ndarray) -> np.ndarray:
        """Maps a depth in interaction lengths to radiation lengths, piecewise linearly."""
        xp = np.concatenate([self.lam_lo, self.lam_hi[-1:]])
        fp = np.concatenate([self.x0_lo, self.x0_hi[-1:]])
        slope = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
        lam = np.asarray(lam, dtype=np.float64)
        return np.where(lam <= xp[-1], np.interp(lam, xp, fp), fp[-1] + slope * (lam - xp[-1]))

    def layer_steps(self, i: int) -> slice:
        """The steps of layer index ``i`` (they are contiguous)."""
        idx = np.flatnonzero(self.layer == i)
        return slice(int(idx[0]), int(idx[-1]) + 1)


@dataclass
class StepProfile:
    """Per shower (rows) and step (columns): energy, spot count and radial parameters.

    Attributes:
        energy: deposited energy in MeV, shape (N, K).
        n_spots: number of spots carrying it, integers, shape (N, K).
        p_core: weight of the core component in [0, 1], shape (N, K).
        r_core, r_tail: radii R_C and R_T in mm, shape (N, K).
    """

    energy: np.ndarray
    n_spots: np.ndarray
    p_core: np.ndarray
    r_core: np.ndarray
    r_tail: np.ndarray

    def columns(self, s: slice) -> StepProfile:
        return StepProfile(
            self.energy[:, s],
            self.n_spots[:, s],
            self.p_core[:, s],
            self.r_core[:, s],
            self.r_tail[:, s],
        )


def draw_spots(
    profile: StepProfile, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draws every spot of a profile.

    Per (shower, step) cell the number of core spots is Binomial(n, p) and the rest are tail
    spots, which is the same as choosing the component spot by spot; spots of one segment share
    their radius scale and energy, so per-spot arrays come from ``np.repeat``, not gathers.

    Returns:
        ``(shower, r, energy, u_alpha)``: per spot the shower index, the radius in mm (float32),
        the energy in MeV and a uniform float32 in [0, 1) fixing the azimuth.
    """
    n_cell = profile.n_spots
    n_core = rng.binomial(n_cell, np.clip(profile.p_core, 0.0, 1.0))
    seg_n = np.stack([n_core, n_cell - n_core], axis=-1).ravel()
    seg_r = np.stack([profile.r_core, profile.r_tail], axis=-1).astype(np.float32).ravel()
    e_spot = profile.energy / np.maximum(n_cell, 1)
    seg_e = np.repeat(e_spot.ravel(), 2)
    n, k = n_cell.shape
    seg_shower = np.repeat(np.arange(n, dtype=np.int64), 2 * k)
    u = rng.random((2, int(seg_n.sum())), dtype=np.float32)
    r = np.repeat(seg_r, seg_n)
    r *= np.sqrt(u[0] / (np.float32(1.0) - u[0]))
    return np.repeat(seg_shower, seg_n), r, np.repeat(seg_e, seg_n), u[1]


def _radial_lookup(edges: np.ndarray, overflow: int) -> tuple[float, np.ndarray] | None:
    """A table mapping floor(r / step) to the radial bin when all edges are multiples of one
    step (true of the challenge binnings, in mm): one gather instead of a binary search."""
    for step in (1.0, 0.5, 0.25, 0.1):
        q = edges / step
        if np.allclose(q, np.round(q), rtol=0, atol=1e-9) and q[-1] <= 100_000:
            grid = np.arange(int(np.rint(q[-1]))) * step
            table = np.searchsorted(edges, grid + 0.5 * step, side="right") - 1
            return step, np.append(table, overflow).astype(np.int64)
    return None


def deposit(
    profile: StepProfile, grid: StepGrid, geometry: Geometry, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Histograms the spots of a profile into voxels.

    Args:
        profile: energies and spots on ``grid``, N showers.
        grid: the longitudinal steps.
        geometry: the voxelization.
        rng: source of the spot positions.

    Returns:
        ``(voxels, lateral_leak)``: the mean voxel energies in MeV, shape (N, n_voxels), and per
        shower the energy of the spots beyond the outer radius of their layer, shape (N,).
    """
    n = profile.energy.shape[0]
    out = np.zeros((n, geometry.n_voxels))
    leak = np.zeros(n)
    for i, vslice in enumerate(geometry.layer_slices):
        shower, r, e, u_alpha = draw_spots(profile.columns(grid.layer_steps(i)), rng)
        edges = np.asarray(geometry.r_edges[i], dtype=np.float64)
        n_r, n_a = geometry.n_radial[i], geometry.n_alpha[i]
        nvox = n_r * n_a
        # spots beyond the outer edge go to one extra "leak" column per shower
        lookup = _radial_lookup(edges, overflow=nvox)
        if lookup is not None:
            step, table = lookup
            j = np.minimum(r * np.float32(1.0 / step), np.float32(len(table) - 1))
            vox = table[j.astype(np.int64)]
        else:
            vox = np.searchsorted(edges.astype(np.float32), r, side="right") - 1
            vox[vox >= n_r] = nvox
        if n_a > 1:
            vox += (u_alpha * n_a).astype(np.int64).clip(max=n_a - 1) * n_r
            np.minimum(vox, nvox, out=vox)
        vox += shower * (nvox + 1)
        hist = np.bincount(vox, weights=e, minlength=n * (nvox + 1)).reshape(n, nvox + 1)
        out[:, vslice] = hist[:, :nvox]
        leak += hist[:, nvox]
    return out, leak


def sampling_fluctuations(
    mean: np.ndarray, stochastic_term: float, rng: np.random.Generator
) -> np.ndarray:
    """Gamma-distributed visible energies with relative spread a/√(E/GeV).

    Each voxel energy e becomes Gamma(e / s, s) with s = a² · 1 GeV: mean e, variance e·s. Sums of
    Gamma variables with one scale are Gamma again, so the total of a shower fluctuates by exactly
    σ/E = a/√(E/GeV) whatever its spread over voxels, as if each spot were fluctuated (GFlash
    applies the same Gamma fluctuation step by step).
    """
    if stochastic_term <= 0:
        return mean.copy()
    scale = stochastic_term**2 * 1000.0
    return rng.gamma(np.maximum(mean, 0.0) / scale, scale)
