"""Electromagnetic showers after the GFlash parameterization.

Grindhammer & Peters, *The parameterized simulation of electromagnetic showers in homogeneous and
sampling calorimeters*, hep-ex/0001020 (1993); coefficients as in Geant4's ``gflash`` library
(``GVFlashHomoShowerTuning``, ``GFlashSamplingShowerTuning``).

Longitudinal profile. The energy deposited per radiation length follows a Gamma density

.. math:: \\frac{1}{E}\\frac{dE}{dt} = \\frac{(\\beta t)^{\\alpha-1} \\beta e^{-\\beta t}}
          {\\Gamma(\\alpha)}, \\qquad T = \\frac{\\alpha - 1}{\\beta},

whose parameters fluctuate from shower to shower: ln T and ln α are drawn from a correlated normal
with, for y = E/E_c in a homogeneous medium,
⟨ln T⟩ = ln(ln y − 0.812), ⟨ln α⟩ = ln(0.81 + (0.458 + 2.26/Z) ln y),
σ(ln T) = 1/(−1.4 + 1.26 ln y), σ(ln α) = 1/(−0.58 + 0.86 ln y), ρ = 0.705 − 0.023 ln y.
In a sampling calorimeter T and α shift by F_s (sampling frequency) and ê (mip/e ratio):
T_sam = T_hom − 0.55/F_s − 0.69 (1 − ê), α_sam = α_hom − 0.476/F_s, with their own spreads
σ(ln T) = 1/(−2.5 + 1.25 ln y), σ(ln α) = 1/(−0.82 + 0.79 ln y), ρ = 0.784 − 0.023 ln y.

Spots. N_s = (10.3 / 0.11) (E/GeV)^0.959 spots are spread along their own Gamma profile
(T_s = T_hom (0.813 + 0.0019 Z), α_s = α_hom (0.844 + 0.0026 Z)); each step's energy is shared
equally among the spots that fall in it.

Radial profile (see :mod:`.spots`), in Molière radii, with τ = t/T the depth over the shower
maximum: R_C = z1 + z2 τ, R_T = k1 (e^{k3 (τ − k2)} + e^{k4 (τ − k2)}),
p = p1 exp((p2 − τ)/p3 − e^{(p2 − τ)/p3}), each coefficient linear in Z or ln(E/GeV), plus the
sampling corrections in (1 − ê) and 1/F_s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammainc

from .geometry import Detector
from .spots import StepGrid, StepProfile

__all__ = [
    "GFlashParameters",
    "LongitudinalDraw",
    "draw_longitudinal",
    "em_profile",
    "longitudinal_moments",
    "mean_depth",
    "n_spots",
    "radial_parameters",
]


@dataclass(frozen=True)
class GFlashParameters:
    """Coefficients of the GFlash parameterization (homogeneous and sampling media)."""

    # homogeneous medium: means, spreads and correlation of ln T, ln α
    t1: float = -0.812
    a1: float = 0.81
    a2: float = 0.458
    a3: float = 2.26
    sig_t: tuple[float, float] = (-1.4, 1.26)
    sig_a: tuple[float, float] = (-0.58, 0.86)
    rho: tuple[float, float] = (0.705, -0.023)
    # sampling corrections
    s_t1: float = -0.55
    s_t2: float = -0.69
    s_a1: float = -0.476
    s_sig_t: tuple[float, float] = (-2.5, 1.25)
    s_sig_a: tuple[float, float] = (-0.82, 0.79)
    s_rho: tuple[float, float] = (0.784, -0.023)
    # radial profile, homogeneous
    rc: tuple[float, float, float, float] = (0.0251, 0.00319, 0.1162, -0.000381)
    rt: tuple[float, float, float, float, float, float] = (
        0.659,
        -0.00309,
        0.645,
        -2.59,
        0.3585,
        0.0412,
    )
    wc: tuple[float, float, float, float, float, float] = (
        2.632,
        -0.00094,
        0.401,
        0.00187,
        1.313,
        -0.0686,
    )
    # radial profile, sampling corrections
    s_rc: tuple[float, float] = (-0.0203, 0.0397)
    s_rt: tuple[float, float] = (-0.14, -0.495)
    s_wc: tuple[float, float] = (0.348, -0.642)
    # spots (sampling medium)
    spot_n: tuple[float, float] = (10.3 / 0.11, 0.959)
    spot_t: tuple[float, float] = (0.813, 0.0019)
    spot_a: tuple[float, float] = (0.844, 0.0026)


DEFAULT = GFlashParameters()
_TAU_MAX = 10.0  # radial parameters are frozen beyond this depth over T
_R_MAX = 100.0  # Molière radii; far beyond any readout


def _sigma(c: tuple[float, float], lny: np.ndarray) -> np.ndarray:
    # 1/(c0 + c1 ln y), capped at 0.5 as in GFlash (also where the denominator is small or < 0)
    den = c[0] + c[1] * lny
    return np.where(den > 2.0, 1.0 / np.maximum(den, 2.0), 0.5)


def longitudinal_moments(
    energy: np.ndarray, detector: Detector, par: GFlashParameters = DEFAULT
) -> dict[str, np.ndarray]:
    """Means, spreads and correlations of ln T and ln α at incident energies ``energy`` (MeV).

    Returns:
        ``{"lnT_hom", "lnA_hom", "sT_hom", "sA_hom", "rho_hom", "lnT", "lnA", "sT", "sA", "rho"}``;
        keys without suffix are the sampling-calorimeter values.
    """
    lny = np.log(np.asarray(energy, dtype=np.float64) / detector.critical_energy)
    z = detector.z_eff
    t_hom = np.maximum(par.t1 + lny, 0.1)
    a_hom = np.maximum(par.a1 + (par.a2 + par.a3 / z) * lny, 0.1)
    t_sam = np.maximum(t_hom + par.s_t1 / detector.f_s + par.s_t2 * (1 - detector.e_hat), 0.1)
    a_sam = np.maximum(a_hom + par.s_a1 / detector.f_s, 1.1)
    return {
        "lnT_hom": np.log(t_hom),
        "lnA_hom": np.log(a_hom),
        "sT_hom": _sigma(par.sig_t, lny),
        "sA_hom": _sigma(par.sig_a, lny),
        "rho_hom": par.rho[0] + par.rho[1] * lny,
        "lnT": np.log(t_sam),
        "lnA": np.log(a_sam),
        "sT": _sigma(par.s_sig_t, lny),
        "sA": _sigma(par.s_sig_a, lny),
        "rho": par.s_rho[0] + par.s_rho[1] * lny,
    }


def mean_depth(
    energy: np.ndarray, detector: Detector, par: GFlashParameters = DEFAULT
) -> np.ndarray:
    """The parameterization's centre of gravity ⟨t⟩ = T α/(α − 1) in X0 at the mean ln T, ln α."""
    m = longitudinal_moments(energy, detector, par)
    t, a = np.exp(m["lnT"]), np.exp(m["lnA"])
    return t * a / (a - 1.0)


@dataclass
class LongitudinalDraw:
    """Per-shower Gamma-profile parameters (sampling medium, and homogeneous for the spots)."""

    T: np.ndarray
    alpha: np.ndarray
    T_hom: np.ndarray
    alpha_hom: np.ndarray
    alpha_mean: np.ndarray  # exp⟨ln α⟩, used to define τ

    @property
    def beta(self) -> np.ndarray:
        return (self.alpha - 1.0) / self.T


def draw_longitudinal(
    energy: np.ndarray,
    detector: Detector,
    rng: np.random.Generator,
    par: GFlashParameters = DEFAULT,
) -> LongitudinalDraw:
    """Draws correlated (ln T, ln α) per shower, sampling and homogeneous from the same normals."""
    m = longitudinal_moments(energy, detector, par)
    z = rng.standard_normal((2, np.size(energy)))

    def pair(lnt, lna, st, sa, rho):
        c1, c2 = np.sqrt((1 + rho) / 2), np.sqrt((1 - rho) / 2)
        return (
            np.exp(lnt + st * (c1 * z[0] + c2 * z[1])),
            np.exp(lna + sa * (c1 * z[0] - c2 * z[1])),
        )

    t, a = pair(m["lnT"], m["lnA"], m["sT"], m["sA"], m["rho"])
    th, ah = pair(m["lnT_hom"], m["lnA_hom"], m["sT_hom"], m["sA_hom"], m["rho_hom"])
    return LongitudinalDraw(
        T=np.maximum(t, 1.0),
        alpha=np.maximum(a, 1.1),
        T_hom=np.maximum(th, 0.5),
        alpha_hom=np.maximum(ah, 1.1),
        alpha_mean=np.exp(m["lnA"]),
    )


def n_spots(energy: np.ndarray, par: GFlashParameters = DEFAULT) -> np.ndarray:
    """Number of spots of a shower of ``energy`` MeV: N_s = n1 (E/GeV)^n2, at least one."""
    e = np.asarray(energy, dtype=np.float64) / 1000.0
    return np.maximum(np.rint(par.spot_n[0] * e ** par.spot_n[1]), 1.0).astype(np.int64)


def radial_parameters(
    energy: np.ndarray, tau: np.ndarray, detector: Detector, par: GFlashParameters = DEFAULT
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Core weight p and radii R_C, R_T (in Molière radii) at energy (MeV) and depth τ = t/T."""
    z = detector.z_eff
    lne = np.log(np.asarray(energy, dtype=np.float64) / 1000.0)
    fs, eh = detector.f_s, detector.e_hat
    # the fit covers the shower up to a few T; deeper (e.g. tails of small EM parts of pion
    # showers) keep the profile of τ = 10 instead of letting e^{k4 τ} overflow
    tau = np.clip(tau, 0.0, _TAU_MAX)
    rc = par.rc[0] + par.rc[1] * lne + (par.rc[2] + par.rc[3] * z) * tau
    p1 = par.wc[0] + par.wc[1] * z
    p2 = par.wc[2] + par.wc[3] * z
    p3 = par.wc[4] + par.wc[5] * lne
    w = (p2 - tau) / p3
    p = p1 * np.exp(w - np.exp(w))
    k1, k2, k3 = par.rt[0] + par.rt[1] * z, par.rt[2], par.rt[3]
    k4 = par.rt[4] + par.rt[5] * lne
    rt = k1 * (np.exp(k3 * (tau - k2)) + np.exp(k4 * (tau - k2)))
    # sampling calorimeter corrections
    rc = rc + par.s_rc[0] * (1 - eh) + par.s_rc[1] / fs * np.exp(-tau)
    p = p + (1 - eh) * (par.s_wc[0] + par.s_wc[1] / fs * np.exp(-((tau - 1.0) ** 2)))
    rt = rt + (1 - eh) * par.s_rt[0] + par.s_rt[1] / fs * np.exp(-tau)
    # keep the mixture valid far outside the fitted range
    rc = np.clip(rc, 1e-3, _R_MAX)
    return np.clip(p, 0.0, 1.0), rc, np.clip(rt, rc, _R_MAX)


def em_profile(
    energy: np.ndarray,
    grid: StepGrid,
    detector: Detector,
    rng: np.random.Generator,
    *,
    start_x0: np.ndarray | None = None,
    par: GFlashParameters = DEFAULT,
) -> tuple[StepProfile, np.ndarray]:
    """Longitudinal energy, spots and radial parameters of EM showers on ``grid``.

    Args:
        energy: shower energies in MeV, shape (N,).
        grid: longitudinal steps of the readout.
        detector: effective material constants.
        rng: source of the profile fluctuations.
        start_x0: depth of the shower start in X0, shape (N,) (0: the front face).
        par: GFlash coefficients.

    Returns:
        ``(profile, leak)``: the step profile and the energy deposited outside the readout layers
        (behind them, or in gaps between them), shape (N,).
    """
    energy = np.asarray(energy, dtype=np.float64).reshape(-1)
    n = energy.size
    start = np.zeros(n) if start_x0 is None else np.asarray(start_x0, dtype=np.float64)
    lon = draw_longitudinal(energy, detector, rng, par)
    beta = lon.beta[:, None]
    alpha = lon.alpha[:, None]
    t_lo = np.maximum(grid.x0_lo[None, :] - start[:, None], 0.0)
    t_hi = np.maximum(grid.x0_hi[None, :] - start[:, None], 0.0)
    e_step = energy[:, None] * (gammainc(alpha, beta * t_hi) - gammainc(alpha, beta * t_lo))
    leak = energy - e_step.sum(axis=1)

    # spots along their own profile
    z = detector.z_eff
    ts = np.maximum(lon.T_hom * (par.spot_t[0] + par.spot_t[1] * z), 0.5)[:, None]
    as_ = (lon.alpha_hom * (par.spot_a[0] + par.spot_a[1] * z))[:, None]
    as_ = np.maximum(as_, 1.1)
    bs = (as_ - 1.0) / ts
    frac = gammainc(as_, bs * t_hi) - gammainc(as_, bs * t_lo)
    counts = np.rint(n_spots(energy, par)[:, None] * frac).astype(np.int64)
    counts = np.where(e_step > 0, np.maximum(counts, 1), 0)

    # radial parameters at the middle of each step
    t_mid = 0.5 * (t_lo + t_hi)
    am = lon.alpha_mean[:, None]
    tau = t_mid / lon.T[:, None] * (alpha - 1.0) / alpha * am / (am - 1.0)
    p, rc, rt = radial_parameters(energy[:, None], tau, detector, par)
    rm = detector.rm_mm
    return StepProfile(e_step, counts, p, rc * rm, rt * rm), leak
