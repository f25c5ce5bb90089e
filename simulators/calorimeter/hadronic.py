"""A toy model of charged-pion showers.

The model keeps the features that make hadron showers hard to emulate, with parameters from the
literature where one exists (a toy, not a fit to test-beam data):

1. **First interaction** at a depth z₀ ~ Exp(1) in interaction lengths λ_I. Before it the pion is
   a minimum-ionizing track depositing ``mip_mev_per_lambda`` per λ_I on the shower axis; a pion
   that has lost all its energy before interacting stops there.
2. **Electromagnetic fraction** (π⁰ → γγ): mean f_em = 1 − (E/E₀)^(k−1) (Groom, NIM A 572 (2007)
   633; E₀ = 1 GeV, k = 0.82), clipped to [0.05, 0.95], drawn per shower from a Beta distribution
   of concentration κ (event-to-event f_em fluctuations dominate hadronic resolution; Wigmans,
   *Calorimetry*, 2nd ed., ch. 2–4).
3. **Invisible energy** (nuclear binding, recoils, neutrinos): the hadronic part is seen with a
   fraction v ~ Beta around h/e = ``h_over_e``, so the calorimeter is non-compensating.
4. **Longitudinal profile**, two components as in Bock et al., NIM 186 (1981) 533: the EM part
   is a GFlash shower (:mod:`.em`) of energy f_em E starting at z₀; the hadronic part a Gamma
   profile in λ_I from z₀, shape a = 0.6165 + 0.3183 ln(E/GeV) (fluctuating log-normally by
   ``shape_spread``) and rate d = 0.9099 − 0.0237 ln(E/GeV) per λ_I.
5. **Lateral profile** of the hadronic part: the same core + tail form as GFlash, much wider
   (radii in mm growing linearly with the depth after z₀), and fewer, more energetic spots,
   N_h = ``spots_per_gev`` (E_h/GeV)^0.9, so lateral fluctuations are larger.
6. **Sampling fluctuations** of the hadronic part use their own, larger stochastic term (set in
   the simulator).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammainc

from .em import GFlashParameters, em_profile
from .geometry import Detector
from .spots import StepGrid, StepProfile

__all__ = ["HadronicParameters", "PionShowers", "pion_profiles"]


@dataclass(frozen=True)
class HadronicParameters:
    """Parameters of the toy hadronic model (see the module docstring)."""

    mip_mev_per_lambda: float = 220.0
    mip_radius_mm: float = 1.0
    groom_e0_mev: float = 1000.0
    groom_k: float = 0.82
    f_em_concentration: float = 6.0
    h_over_e: float = 0.65
    h_over_e_concentration: float = 25.0
    bock_a: tuple[float, float] = (0.6165, 0.3183)
    bock_d: tuple[float, float] = (0.9099, -0.0237)
    shape_spread: float = 0.2
    core_fraction: float = 0.5
    r_core_mm: float = 20.0
    r_tail_mm: float = 80.0
    widening_per_lambda: float = 0.25
    spots_per_gev: float = 20.0
    spots_power: float = 0.9


@dataclass
class PionShowers:
    """Three step profiles (track, EM part, hadronic part) and the bookkeeping of the energy.

    Attributes:
        track, em, hadronic: step profiles on one grid.
        start_lambda: depth of the first interaction, shape (N,).
        e_em, e_hadronic_visible, e_invisible: energies in MeV, shape (N,).
        leak: visible energy deposited outside the readout layers, shape (N,).
    """

    track: StepProfile
    em: StepProfile
    hadronic: StepProfile
    start_lambda: np.ndarray
    e_em: np.ndarray
    e_hadronic_visible: np.ndarray
    e_invisible: np.ndarray
    leak: np.ndarray


def _beta(rng: np.random.Generator, mean: np.ndarray, conc: float) -> np.ndarray:
    return rng.beta(mean * conc, (1.0 - mean) * conc)


def pion_profiles(
    energy: np.ndarray,
    grid: StepGrid,
    detector: Detector,
    rng: np.random.Generator,
    *,
    par: HadronicParameters | None = None,
    em_par: GFlashParameters | None = None,
) -> PionShowers:
    """Draws the step profiles of charged-pion showers of ``energy`` MeV, shape (N,)."""
    par = par or HadronicParameters()
    em_par = em_par or GFlashParameters()
    energy = np.asarray(energy, dtype=np.float64).reshape(-1)
    n, k = energy.size, grid.n_steps
    z0 = rng.exponential(1.0, n)

    # ionization track up to the first interaction (or until the pion has stopped)
    dl = np.clip(np.minimum(grid.lam_hi[None, :], z0[:, None]) - grid.lam_lo[None, :], 0.0, None)
    e_track = par.mip_mev_per_lambda * dl
    cum = np.cumsum(e_track, axis=1)
    e_track = np.clip(np.minimum(cum, energy[:, None]) - (cum - e_track), 0.0, None)
    track_total = e_track.sum(axis=1)
    track_inside = track_total
    # the track stops before its first interaction if its range is shorter
    range_lambda = energy / par.mip_mev_per_lambda
    stopped = range_lambda <= z0
    # track energy beyond the last readout step (punch-through) leaks
    beyond = np.clip(np.minimum(z0, range_lambda) - grid.lam_hi[-1], 0.0, None)
    track_leak = par.mip_mev_per_lambda * beyond
    e_shower = np.where(stopped, 0.0, energy - track_inside - track_leak)
    e_shower = np.maximum(e_shower, 0.0)
    on = e_track > 0
    track = StepProfile(
        e_track,
        on.astype(np.int64),
        np.ones((n, k)),
        np.full((n, k), par.mip_radius_mm),
        np.full((n, k), par.mip_radius_mm),
    )

    # EM fraction and invisible energy
    e_gev = np.maximum(e_shower, 1.0) / par.groom_e0_mev
    f_mean = np.clip(1.0 - e_gev ** (par.groom_k - 1.0), 0.05, 0.95)
    f_em = _beta(rng, f_mean, par.f_em_concentration)
    vis = _beta(rng, np.full(n, par.h_over_e), par.h_over_e_concentration)
    e_em = f_em * e_shower
    e_had = vis * (1.0 - f_em) * e_shower
    e_inv = (1.0 - vis) * (1.0 - f_em) * e_shower

    # EM part: a GFlash shower starting at the first interaction
    start_x0 = grid.lambda_to_x0(z0)
    em_energy = np.maximum(e_em, 1e-3)  # GFlash needs E > 0; 1 keV showers deposit nothing
    em, em_leak = em_profile(em_energy, grid, detector, rng, start_x0=start_x0, par=em_par)
    scale = (e_em / em_energy)[:, None]
    em.energy *= scale
    em_leak = em_leak * scale[:, 0]

    # hadronic part: Gamma profile in interaction lengths from z0
    lne = np.log(np.maximum(e_shower, 1.0) / 1000.0)
    a = np.maximum(par.bock_a[0] + par.bock_a[1] * lne, 0.3)
    a = a * np.exp(par.shape_spread * rng.standard_normal(n))
    d = np.maximum(par.bock_d[0] + par.bock_d[1] * lne, 0.2)
    s_lo = np.maximum(grid.lam_lo[None, :] - z0[:, None], 0.0)
    s_hi = np.maximum(grid.lam_hi[None, :] - z0[:, None], 0.0)
    frac = gammainc(a[:, None], d[:, None] * s_hi) - gammainc(a[:, None], d[:, None] * s_lo)
    e_h = e_had[:, None] * frac
    had_leak = e_had - e_h.sum(axis=1)
    n_h = par.spots_per_gev * np.maximum(e_had / 1000.0, 0.0) ** par.spots_power
    counts = np.rint(n_h[:, None] * frac).astype(np.int64)
    counts = np.where(e_h > 0, np.maximum(counts, 1), 0)
    widen = 1.0 + par.widening_per_lambda * 0.5 * (s_lo + s_hi)
    hadronic = StepProfile(
        e_h,
        counts,
        np.full((n, k), par.core_fraction),
        par.r_core_mm * widen,
        par.r_tail_mm * widen,
    )
    return PionShowers(
        track=track,
        em=em,
        hadronic=hadronic,
        start_lambda=z0,
        e_em=e_em,
        e_hadronic_visible=e_had,
        e_invisible=e_inv,
        leak=track_leak + em_leak + had_leak,
    )
