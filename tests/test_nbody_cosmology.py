"""Linear theory: background, growth factors, Eisenstein & Hu transfer functions, σ8."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from simulators.nbody.cosmology import (
    Cosmology,
    _eh_scales,
    tophat_window,
    transfer_eh,
    transfer_eh_nowiggle,
)


def test_growth_at_half_matches_reference_value() -> None:
    # Acceptance value of the issue: D(a=0.5)/D(1) = 0.6118 at Ω_m = 0.3 (flat ΛCDM).
    c = Cosmology(Omega_m=0.3, sigma_8=0.8)
    assert float(c.growth(0.5) / c.growth(1.0)) == pytest.approx(0.6118, abs=1e-4)


@pytest.mark.parametrize("omega_m", [0.1, 0.3, 0.5])
def test_growth_matches_heath_integral(omega_m: float) -> None:
    # For matter + Λ the growing mode is exactly D ∝ E(a) ∫_0^a da' / (a' E(a'))³ (Heath 1977).
    c = Cosmology(Omega_m=omega_m, sigma_8=0.8)

    def integral(a: float) -> float:
        return quad(lambda x: (x * float(c.efunc(x))) ** -3, 0, a, epsabs=0, epsrel=1e-12)[0]

    ref1 = float(c.efunc(1.0)) * integral(1.0)
    for a in (0.05, 0.2, 0.5, 0.8):
        ref = float(c.efunc(a)) * integral(a) / ref1
        assert float(c.growth(a)) == pytest.approx(ref, rel=1e-7)


def test_einstein_de_sitter_limits() -> None:
    # Ω_m = 1: D = a, D₂ = -3/7 a², f = 1, f₂ = 2, E = a^(-3/2).
    c = Cosmology(Omega_m=1.0, sigma_8=0.8, Omega_b=0.05)
    a = np.array([0.02, 0.1, 0.5, 1.0])
    np.testing.assert_allclose(c.growth(a), a, rtol=1e-9)
    np.testing.assert_allclose(c.growth2(a), -3 / 7 * a**2, rtol=1e-9)
    np.testing.assert_allclose(c.growth_rate(a), 1.0, rtol=1e-9)
    np.testing.assert_allclose(c.growth_rate2(a), 2.0, rtol=1e-9)
    np.testing.assert_allclose(c.efunc(a), a**-1.5, rtol=1e-12)


@pytest.mark.parametrize("omega_m", [0.15, 0.3, 0.5])
def test_growth_rates_and_second_order_fits(omega_m: float) -> None:
    # Exact for matter + Λ: f = -3/2 Ω_m(a) + 1 / (a² E³ I(a)), I = ∫_0^a da' / (a' E)³.
    # Standard fits: D₂ ≈ -3/7 D² Ω_m(a)^(-1/143) (to ~0.5%), f₂ ≈ 2 Ω_m(a)^(6/11) (to ~2%).
    c = Cosmology(Omega_m=omega_m, sigma_8=0.8)
    a = np.array([0.1, 0.5, 1.0])
    om = c.omega_m_a(a)
    integral = np.array(
        [quad(lambda x: (x * float(c.efunc(x))) ** -3, 0, ai, epsrel=1e-12)[0] for ai in a]
    )
    f_exact = -1.5 * om + 1.0 / (a**2 * c.efunc(a) ** 3 * integral)
    np.testing.assert_allclose(c.growth_rate(a), f_exact, rtol=1e-7)
    np.testing.assert_allclose(
        c.growth2(a), -3 / 7 * c.growth(a) ** 2 * om ** (-1 / 143), rtol=5e-3
    )
    np.testing.assert_allclose(c.growth_rate2(a), 2 * om ** (6 / 11), rtol=2e-2)


def test_momentum_factor_obeys_the_equation_of_motion() -> None:
    # FastPM's kick is exact in linear theory only if dG_p/da = 3/2 Ω_m D / (a² E).
    c = Cosmology(Omega_m=0.3, sigma_8=0.8)
    a = np.array([0.1, 0.3, 0.6, 0.9])
    eps = 1e-5
    deriv = (c.momentum_factor(a + eps) - c.momentum_factor(a - eps)) / (2 * eps)
    expected = 1.5 * 0.3 * c.growth(a) / (a**2 * c.efunc(a))
    np.testing.assert_allclose(deriv, expected, rtol=1e-7)


@pytest.mark.parametrize("transfer", ["eh_nowiggle", "eh"])
@pytest.mark.parametrize("theta", [(0.3, 0.8), (0.1, 0.6), (0.5, 1.0)])
def test_sigma8_normalization(transfer: str, theta: tuple[float, float]) -> None:
    # σ(8 Mpc/h) recomputed on an independent, 25x finer trapezoid grid equals the requested σ8,
    # and P ∝ D².
    c = Cosmology(Omega_m=theta[0], sigma_8=theta[1], transfer=transfer)
    lnk = np.linspace(np.log(1e-6), np.log(3e2), 200_001)
    k = np.exp(lnk)
    integrand = k**3 * c.linear_power(k) * tophat_window(8.0 * k) ** 2
    var = np.trapezoid(integrand, lnk) / (2 * np.pi**2)
    assert np.sqrt(var) == pytest.approx(theta[1], rel=1e-6)
    k = np.array([0.01, 0.1, 1.0])
    np.testing.assert_allclose(
        c.linear_power(k, 0.5), c.linear_power(k) * float(c.growth(0.5)) ** 2, rtol=1e-12
    )


def test_tophat_window_series_and_closed_form_agree() -> None:
    x = np.array([1e-4, 9.99e-4, 1.001e-3, 0.5, 4.4934])  # 4.4934: first zero of the window
    w = tophat_window(x)
    np.testing.assert_allclose(w[:3], 1 - x[:3] ** 2 / 10, rtol=1e-9)
    assert w[3] == pytest.approx(3 * (np.sin(0.5) - 0.5 * np.cos(0.5)) / 0.125, rel=1e-12)
    assert abs(w[4]) < 1e-4


@pytest.mark.parametrize("fn", [transfer_eh_nowiggle, transfer_eh])
def test_transfer_functions_limits(fn) -> None:
    # T → 1 on large scales, decreasing, and falling like ln k / k² on small scales.
    k = np.logspace(-5, 2, 400)
    t = fn(k, 0.3, 0.049, 0.6711)
    assert t[0] == pytest.approx(1.0, abs=1e-4)
    assert t[-1] < 1e-3
    smooth = transfer_eh_nowiggle(k, 0.3, 0.049, 0.6711)
    assert np.all(np.diff(smooth) < 0)


def test_eh_wiggles_oscillate_around_the_no_wiggle_form() -> None:
    # The BAO form agrees with the smooth form to a few percent and oscillates around it with the
    # period of the sound horizon: zero crossings of T_eh/T_nw - 1 are spaced by ~π/s.
    om, ob, h = 0.3, 0.049, 0.6711
    k = np.linspace(0.03, 0.4, 4000)  # h/Mpc
    ratio = transfer_eh(k, om, ob, h) / transfer_eh_nowiggle(k, om, ob, h)
    assert np.max(np.abs(ratio - 1)) < 0.06
    assert np.max(np.abs(ratio - 1)) > 0.01  # the wiggles are really there
    s = _eh_scales(om, ob, h, 2.7255).s * h  # Mpc/h
    crossings = k[1:][np.diff(np.sign(ratio - 1)) != 0]
    spacing = np.diff(crossings)
    assert len(crossings) >= 6
    assert np.median(spacing) == pytest.approx(np.pi / s, rel=0.15)
    # large and small scales: the oscillating part has died away
    assert transfer_eh(np.array([1e-5]), om, ob, h)[0] == pytest.approx(1.0, abs=1e-5)


def test_eh_sound_horizon_matches_its_fitting_formula() -> None:
    # EH98 eq. 26 approximates the drag-epoch sound horizon of eq. 6 to ~2%.
    for om, ob, h in [(0.3, 0.049, 0.6711), (0.2, 0.04, 0.7), (0.45, 0.05, 0.65)]:
        omh2, obh2 = om * h**2, ob * h**2
        fit = 44.5 * np.log(9.83 / omh2) / np.sqrt(1 + 10 * obh2**0.75)
        assert _eh_scales(om, ob, h, 2.7255).s == pytest.approx(fit, rel=0.02)
    # Planck-like cosmology: r_drag ≈ 147 Mpc (EH98's fit is within a few Mpc)
    assert _eh_scales(0.315, 0.049, 0.674, 2.7255).s == pytest.approx(147.0, rel=0.03)


def test_zero_baryon_limit_of_both_fits_agree() -> None:
    # Without baryons the two EH forms are independent fits of the same CDM transfer function.
    k = np.logspace(-3, 1, 50)
    t_nw = transfer_eh_nowiggle(k, 0.3, 1e-6, 0.7)
    t_eh = transfer_eh(k, 0.3, 1e-6, 0.7)
    np.testing.assert_allclose(t_eh, t_nw, rtol=0.05)


def test_bad_parameters_raise() -> None:
    with pytest.raises(ValueError, match="Omega_b"):
        Cosmology(Omega_m=0.04, sigma_8=0.8)
    with pytest.raises(ValueError, match="transfer"):
        Cosmology(Omega_m=0.3, sigma_8=0.8, transfer="bbks")
    with pytest.raises(ValueError, match="scale factor"):
        Cosmology(Omega_m=0.3, sigma_8=0.8).growth(1.5)
