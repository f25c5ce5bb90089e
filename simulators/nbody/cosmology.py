"""Linear theory for flat ΛCDM: background, growth, transfer functions, linear power spectrum.

Units: distances in Mpc/h, wavenumbers in h/Mpc, power in (Mpc/h)³, time in units of 1/H0. The
growth factor is normalized to D(a=1) = 1, so a linear density field δ_L(k) generated at z = 0
scales as D(a) δ_L(k) at other times.

Example:
    >>> from simulators.nbody.cosmology import Cosmology
    >>> c = Cosmology(Omega_m=0.3, sigma_8=0.8)
    >>> round(float(c.growth(0.5) / c.growth(1.0)), 4)
    0.6118
    >>> round(float(c.sigma_r(8.0)), 6)
    0.8

References:
    Eisenstein & Hu (1998), ApJ 496, 605, "Baryonic features in the matter transfer function".
    Bouchet et al. (1995), A&A 296, 575 (second-order growth D₂ ≈ -3/7 D₁² Ω_m^(-1/143)).
    Feng et al. (2016), MNRAS 463, 2273, "FastPM" (the growth-based momentum factor G_p).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import simpson, solve_ivp

__all__ = [
    "Cosmology",
    "tophat_window",
    "transfer_eh",
    "transfer_eh_nowiggle",
]

T_CMB = 2.7255  # K, Fixsen (2009)
_LNA_MIN = np.log(1e-5)  # deep in matter domination: D ∝ a to ~1e-15


def tophat_window(x: np.ndarray) -> np.ndarray:
    """Fourier transform of a spherical top hat, W(x) = 3 (sin x - x cos x) / x³, with W(0) = 1."""
    x = np.asarray(x, dtype=np.float64)
    out = np.ones_like(x)
    big = x > 1e-3
    xb = x[big]
    out[big] = 3.0 * (np.sin(xb) - xb * np.cos(xb)) / xb**3
    xs = x[~big]
    out[~big] = 1.0 - xs**2 / 10.0  # series avoids cancellation
    return out


def transfer_eh_nowiggle(
    k: np.ndarray, Omega_m: float, Omega_b: float, h: float, T_cmb: float = T_CMB
) -> np.ndarray:
    """Eisenstein & Hu (1998) transfer function without baryon oscillations (their eqs. 26-31).

    Args:
        k: wavenumbers in h/Mpc.
        Omega_m, Omega_b, h: total matter and baryon density parameters, reduced Hubble constant.
        T_cmb: CMB temperature in K.

    Returns:
        T(k), tending to 1 as k → 0.
    """
    k = np.asarray(k, dtype=np.float64)
    om, ob = Omega_m * h**2, Omega_b * h**2
    fb = Omega_b / Omega_m
    theta = T_cmb / 2.7
    s = 44.5 * np.log(9.83 / om) / np.sqrt(1.0 + 10.0 * ob**0.75)  # Mpc, eq. 26
    alpha = 1.0 - 0.328 * np.log(431.0 * om) * fb + 0.38 * np.log(22.3 * om) * fb**2
    gamma = Omega_m * h * (alpha + (1.0 - alpha) / (1.0 + (0.43 * k * h * s) ** 4))
    q = k * theta**2 / gamma
    L0 = np.log(2.0 * np.e + 1.8 * q)
    C0 = 14.2 + 731.0 / (1.0 + 62.5 * q)
    return L0 / (L0 + C0 * q**2)


@dataclass(frozen=True)
class _EHScales:
    """The characteristic scales of Eisenstein & Hu (1998) §2, in Mpc⁻¹ and Mpc."""

    z_eq: float
    k_eq: float
    z_d: float
    R_d: float
    s: float  # sound horizon at the drag epoch
    k_silk: float


def _eh_scales(Omega_m: float, Omega_b: float, h: float, T_cmb: float) -> _EHScales:
    om, ob = Omega_m * h**2, Omega_b * h**2
    theta = T_cmb / 2.7
    z_eq = 2.50e4 * om * theta**-4
    k_eq = 7.46e-2 * om * theta**-2
    b1 = 0.313 * om**-0.419 * (1.0 + 0.607 * om**0.674)
    b2 = 0.238 * om**0.223
    z_d = 1291.0 * om**0.251 / (1.0 + 0.659 * om**0.828) * (1.0 + b1 * ob**b2)
    R_d = 31.5 * ob * theta**-4 * (1e3 / z_d)
    R_eq = 31.5 * ob * theta**-4 * (1e3 / z_eq)
    s = (
        2.0
        / (3.0 * k_eq)
        * np.sqrt(6.0 / R_eq)
        * np.log((np.sqrt(1.0 + R_d) + np.sqrt(R_d + R_eq)) / (1.0 + np.sqrt(R_eq)))
    )
    k_silk = 1.6 * ob**0.52 * om**0.73 * (1.0 + (10.4 * om) ** -0.95)
    return _EHScales(z_eq, k_eq, z_d, R_d, s, k_silk)


def transfer_eh(
    k: np.ndarray, Omega_m: float, Omega_b: float, h: float, T_cmb: float = T_CMB
) -> np.ndarray:
    """Eisenstein & Hu (1998) transfer function with baryon acoustic oscillations (eqs. 2-24).

    T = f_b T_b + f_c T_c: a CDM part with suppression (α_c) and log shift (β_c) and a baryon
    part with acoustic oscillations j₀(k s̃) damped at the Silk scale.

    Args:
        k: wavenumbers in h/Mpc.
        Omega_m, Omega_b, h: total matter and baryon density parameters, reduced Hubble constant.
        T_cmb: CMB temperature in K.

    Returns:
        T(k), tending to 1 as k → 0.
    """
    kh = np.asarray(k, dtype=np.float64)
    kk = np.maximum(kh * h, 1e-12)  # Mpc⁻¹
    om = Omega_m * h**2
    fb = Omega_b / Omega_m
    fc = 1.0 - fb
    sc = _eh_scales(Omega_m, Omega_b, h, T_cmb)
    q = kk / (13.41 * sc.k_eq)

    a1 = (46.9 * om) ** 0.670 * (1.0 + (32.1 * om) ** -0.532)
    a2 = (12.0 * om) ** 0.424 * (1.0 + (45.0 * om) ** -0.582)
    alpha_c = a1**-fb * a2 ** -(fb**3)
    bb1 = 0.944 / (1.0 + (458.0 * om) ** -0.708)
    bb2 = (0.395 * om) ** -0.0266
    beta_c = 1.0 / (1.0 + bb1 * (fc**bb2 - 1.0))

    def t0(alpha: float, beta: float) -> np.ndarray:
        lg = np.log(np.e + 1.8 * beta * q)
        c = 14.2 / alpha + 386.0 / (1.0 + 69.9 * q**1.08)
        return lg / (lg + c * q**2)

    ks = kk * sc.s
    f = 1.0 / (1.0 + (ks / 5.4) ** 4)
    t_cdm = f * t0(1.0, beta_c) + (1.0 - f) * t0(alpha_c, beta_c)

    y = (1.0 + sc.z_eq) / (1.0 + sc.z_d)
    sy = np.sqrt(1.0 + y)
    g = y * (-6.0 * sy + (2.0 + 3.0 * y) * np.log((sy + 1.0) / (sy - 1.0)))
    alpha_b = 2.07 * sc.k_eq * sc.s * (1.0 + sc.R_d) ** -0.75 * g
    beta_node = 8.41 * om**0.435
    beta_b = 0.5 + fb + (3.0 - 2.0 * fb) * np.sqrt((17.2 * om) ** 2 + 1.0)
    s_tilde = sc.s / (1.0 + (beta_node / ks) ** 3) ** (1.0 / 3.0)
    t_bar = (
        t0(1.0, 1.0) / (1.0 + (ks / 5.2) ** 2)
        + alpha_b / (1.0 + (beta_b / ks) ** 3) * np.exp(-((kk / sc.k_silk) ** 1.4))
    ) * np.sinc(kk * s_tilde / np.pi)
    return fb * t_bar + fc * t_cdm


_TRANSFERS = {"eh_nowiggle": transfer_eh_nowiggle, "eh": transfer_eh}


@dataclass(frozen=True)
class Cosmology:
    """A flat ΛCDM cosmology with its linear growth and σ8-normalized linear power spectrum.

    Growth follows from the ODEs in ln a (primes are d/d ln a, Ω_m(a) = Ω_m a⁻³ / E²):

    .. math::
        D'' + (2 - \\tfrac32 Ω_m(a)) D' = \\tfrac32 Ω_m(a) D, \\qquad
        D_2'' + (2 - \\tfrac32 Ω_m(a)) D_2' = \\tfrac32 Ω_m(a) (D_2 - D^2),

    started in matter domination at D = a, D₂ = -3/7 a², and normalized to D(1) = 1 (D₂ shares the
    normalization squared, so D₂(1) ≈ -3/7 Ω_m^(-1/143)).

    Args:
        Omega_m: total matter density today.
        sigma_8: rms linear density contrast in spheres of 8 Mpc/h at z = 0.
        h: reduced Hubble constant (enters the transfer function only).
        Omega_b: baryon density today.
        n_s: primordial spectral index.
        transfer: ``"eh_nowiggle"`` or ``"eh"`` (with baryon oscillations).
        T_cmb: CMB temperature in K.
    """

    Omega_m: float
    sigma_8: float
    h: float = 0.6711
    Omega_b: float = 0.049
    n_s: float = 0.9624
    transfer: str = "eh_nowiggle"
    T_cmb: float = T_CMB
    _growth: object = field(init=False, repr=False, compare=False)
    _amplitude: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.Omega_m <= 1.0:
            raise ValueError(f"Omega_m must be in (0, 1], got {self.Omega_m}")
        if not 0.0 <= self.Omega_b < self.Omega_m:
            raise ValueError(f"Omega_b must be in [0, Omega_m), got {self.Omega_b}")
        if self.sigma_8 <= 0.0 or self.h <= 0.0:
            raise ValueError("sigma_8 and h must be positive")
        if self.transfer not in _TRANSFERS:
            raise ValueError(f"transfer must be one of {sorted(_TRANSFERS)}, got {self.transfer!r}")
        object.__setattr__(self, "_growth", self._solve_growth())
        object.__setattr__(self, "_amplitude", 1.0)
        amp = (self.sigma_8 / self.sigma_r(8.0)) ** 2
        object.__setattr__(self, "_amplitude", amp)

    # -- background -------------------------------------------------------------------------
    @property
    def Omega_L(self) -> float:
        return 1.0 - self.Omega_m

    def efunc(self, a: np.ndarray | float) -> np.ndarray:
        """E(a) = H(a)/H0 = sqrt(Ω_m a⁻³ + Ω_Λ) (radiation neglected)."""
        a = np.asarray(a, dtype=np.float64)
        return np.sqrt(self.Omega_m * a**-3 + self.Omega_L)

    def omega_m_a(self, a: np.ndarray | float) -> np.ndarray:
        """Ω_m(a) = Ω_m a⁻³ / E(a)²."""
        a = np.asarray(a, dtype=np.float64)
        return self.Omega_m * a**-3 / self.efunc(a) ** 2

    # -- growth -------------------------------------------------------------------------------
    def _solve_growth(self):
        om = self.Omega_m

        def rhs(lna: float, y: np.ndarray) -> np.ndarray:
            a3 = np.exp(-3.0 * lna)
            oma = om * a3 / (om * a3 + 1.0 - om)
            d1, d1p, d2, d2p = y
            fric = 2.0 - 1.5 * oma
            return np.array(
                [d1p, -fric * d1p + 1.5 * oma * d1, d2p, -fric * d2p + 1.5 * oma * (d2 - d1**2)]
            )

        a0 = np.exp(_LNA_MIN)
        y0 = [a0, a0, -3.0 / 7.0 * a0**2, -6.0 / 7.0 * a0**2]
        sol = solve_ivp(
            rhs, (_LNA_MIN, 0.0), y0, method="DOP853", rtol=1e-11, atol=1e-16, dense_output=True
        )
        norm = sol.y[0, -1]
        scale = np.array([1 / norm, 1 / norm, 1 / norm**2, 1 / norm**2])
        return lambda lna: sol.sol(lna) * scale[:, None]

    def _g(self, a: np.ndarray | float) -> tuple[np.ndarray, ...]:
        a = np.asarray(a, dtype=np.float64)
        if np.any(a <= 0) or np.any(a > 1.0 + 1e-12):
            raise ValueError("scale factor must be in (0, 1]")
        lna = np.clip(np.log(a), _LNA_MIN, 0.0)
        y = self._growth(lna.reshape(-1))
        return tuple(v.reshape(a.shape) for v in y)

    def growth(self, a: np.ndarray | float) -> np.ndarray:
        """Linear growth factor D(a), D(1) = 1."""
        return self._g(a)[0]

    def growth2(self, a: np.ndarray | float) -> np.ndarray:
        """Second-order growth factor D₂(a) ≈ -3/7 D(a)² (negative in this convention)."""
        return self._g(a)[2]

    def growth_rate(self, a: np.ndarray | float) -> np.ndarray:
        """f = d ln D / d ln a."""
        d1, d1p, _, _ = self._g(a)
        return d1p / d1

    def growth_rate2(self, a: np.ndarray | float) -> np.ndarray:
        """f₂ = d ln D₂ / d ln a (≈ 2 Ω_m(a)^(6/11))."""
        _, _, d2, d2p = self._g(a)
        return d2p / d2

    def momentum_factor(self, a: np.ndarray | float) -> np.ndarray:
        """FastPM's G_p(a) = a³ E(a) dD/da = a² E(a) dD/d ln a.

        For a linear displacement field s (normalized at z = 0), the canonical momentum
        p = a² dx/dt (units H0 · Mpc/h) is G_p(a) s; dG_p/da = 3/2 Ω_m D / (a² E).
        """
        a = np.asarray(a, dtype=np.float64)
        _, d1p, _, _ = self._g(a)
        return a**2 * self.efunc(a) * d1p

    # -- power spectrum --------------------------------------------------------------------
    def transfer_function(self, k: np.ndarray) -> np.ndarray:
        """T(k) from the configured Eisenstein & Hu fit, k in h/Mpc."""
        return _TRANSFERS[self.transfer](k, self.Omega_m, self.Omega_b, self.h, self.T_cmb)

    def linear_power(self, k: np.ndarray, a: float = 1.0) -> np.ndarray:
        """P_lin(k, a) = A kⁿˢ T(k)² D(a)² in (Mpc/h)³, with A fixed by σ8; P(0) = 0."""
        k = np.asarray(k, dtype=np.float64)
        kp = np.where(k > 0, k, 1.0)
        p = self._amplitude * kp**self.n_s * self.transfer_function(kp) ** 2
        return np.where(k > 0, p, 0.0) * self.growth(a) ** 2

    def sigma_r(self, radius: float, a: float = 1.0) -> float:
        """rms linear density contrast in top-hat spheres, σ²(R) = ∫ k³P(k)W²(kR) d ln k / 2π²."""
        lnk = np.linspace(np.log(1e-5), np.log(1e2), 8001)
        k = np.exp(lnk)
        integrand = k**3 * self.linear_power(k, a) * tophat_window(k * radius) ** 2
        return float(np.sqrt(simpson(integrand, x=lnk) / (2.0 * np.pi**2)))
