"""Power-spectrum estimator: normalization, mode counting, window, cross spectra (2-d and 3-d)."""

from __future__ import annotations

import numpy as np
import pytest

from simulators.nbody.ic import gaussian_field, white_noise
from simulators.nbody.power import cross_correlation, cross_power, power_spectrum

BOX = 200.0


def _grid(n: int, dim: int) -> list[np.ndarray]:
    x1 = np.arange(n) * (BOX / n)
    return np.meshgrid(*([x1] * dim), indexing="ij")


def _mode_counts(n: int, dim: int) -> np.ndarray:
    """Modes per shell counted by brute force over the full FFT grid."""
    m = np.fft.fftfreq(n) * n
    mag = np.sqrt(sum(g**2 for g in np.meshgrid(*([m] * dim), indexing="ij")))
    idx = np.floor(mag + 0.5).astype(int)
    return np.bincount(idx.ravel(), minlength=n // 2 + 1)[1 : n // 2 + 1]


@pytest.mark.parametrize("dim", [2, 3])
def test_plane_wave_power_and_mode_count(dim: int) -> None:
    # δ = A cos(k0 x) puts |δ_k|² = A²/4 at ±k0 and nothing elsewhere, so the shell holding k0 has
    # P = V (2 A²/4) / n_modes and every other shell is empty of power.
    n, m, amp = 16, 3, 0.7
    x = _grid(n, dim)[0]
    k0 = 2 * np.pi * m / BOX
    delta = amp * np.cos(k0 * x)
    k, p, n_modes = power_spectrum(delta, BOX)
    counts = _mode_counts(n, dim)
    np.testing.assert_array_equal(n_modes, counts)
    expected = np.zeros(len(p))
    expected[m - 1] = BOX**dim * 2 * amp**2 / 4 / counts[m - 1]
    np.testing.assert_allclose(p, expected, rtol=1e-12, atol=1e-12 * expected.max())
    # bin i is centred on i k_f
    kf = 2 * np.pi / BOX
    assert np.all(np.abs(k / kf - np.arange(1, len(k) + 1)) < 0.5)


@pytest.mark.parametrize("dim", [2, 3])
def test_fixed_amplitude_field_recovers_bin_averaged_power(dim: int) -> None:
    # A "fixed" field has |δ_k|² = P(|k|) N^d / V exactly, so each shell returns the mean of P over
    # its modes: an exact check of the normalization P = V <|FFT(δ)/N^d|²>.
    n = 24

    def power(k: np.ndarray) -> np.ndarray:
        return 50.0 * (k / 0.1) ** -1.5

    delta = gaussian_field(
        white_noise(n, np.random.default_rng(0), dim=dim), BOX, power, fixed_amplitude=True
    )
    k, p, n_modes = power_spectrum(delta, BOX)
    m = np.fft.fftfreq(n) * n
    kvec = np.meshgrid(*([m * 2 * np.pi / BOX] * dim), indexing="ij")
    kmag = np.sqrt(sum(g**2 for g in kvec)).ravel()
    idx = np.floor(kmag / (2 * np.pi / BOX) + 0.5).astype(int)
    safe = np.where(kmag > 0, kmag, 1.0)
    pk = np.where(kmag > 0, power(safe), 0.0)
    mean_p = np.bincount(idx, weights=pk)[1 : n // 2 + 1] / np.bincount(idx)[1 : n // 2 + 1]
    np.testing.assert_allclose(p, mean_p, rtol=1e-10)
    mean_k = np.bincount(idx, weights=kmag)[1 : n // 2 + 1] / np.bincount(idx)[1 : n // 2 + 1]
    np.testing.assert_allclose(k, mean_k, rtol=1e-12)
    assert n_modes.sum() == np.sum((idx >= 1) & (idx <= n // 2))


@pytest.mark.parametrize("dim", [2, 3])
def test_random_field_matches_power_within_cosmic_variance(dim: int) -> None:
    # Each shell of a Gaussian field scatters around P with relative sd sqrt(2 / n_modes):
    # the standardized residuals must have chi²/dof near 1 (a wrong factor of 2 gives ~30).
    n = 32 if dim == 3 else 128
    rng = np.random.default_rng(1)

    def power(k: np.ndarray) -> np.ndarray:
        return 1e3 * k / (1 + (k / 0.05) ** 2)

    delta = gaussian_field(white_noise(n, rng, dim=dim), BOX, power)
    k, p, n_modes = power_spectrum(delta, BOX)
    z = (p / power(k) - 1) / np.sqrt(2.0 / n_modes)
    sel = n_modes > 20
    chi2 = np.mean(z[sel] ** 2)
    assert 0.4 < chi2 < 1.8, chi2
    assert abs(np.mean(z[sel])) < 4 / np.sqrt(sel.sum())


def test_white_noise_power_is_cell_volume() -> None:
    # Unit white noise on N^3 cells has P = V / N^3 at every k.
    n = 32
    delta = np.random.default_rng(2).standard_normal((n, n, n))
    _, p, n_modes = power_spectrum(delta, BOX)
    expected = BOX**3 / n**3
    total = np.sum(p * n_modes) / np.sum(n_modes)
    assert abs(total / expected - 1) < 4 * np.sqrt(2 / n_modes.sum())


def test_cic_window_compensation_is_exact_for_a_plane_wave() -> None:
    # Compensation divides each mode by W(k)² = Π sinc⁴(k_i H / 2); for a wave along x only the
    # x factor differs from 1.
    n, m = 16, 5
    x = _grid(n, 3)[0]
    delta = np.cos(2 * np.pi * m * x / BOX)
    _, p_raw, _ = power_spectrum(delta, BOX)
    _, p_cic, _ = power_spectrum(delta, BOX, window="cic")
    w = np.sinc(m / n) ** 2  # sin(k H / 2) / (k H / 2) with k H = 2π m / n
    assert p_cic[m - 1] / p_raw[m - 1] == pytest.approx(1 / w**2, rel=1e-12)


def test_binning_options() -> None:
    n = 32
    delta = np.random.default_rng(3).standard_normal((n, n, n))
    k, _p, _ = power_spectrum(delta, BOX, k_max=0.3)
    kf = 2 * np.pi / BOX
    assert len(k) == int(0.3 / kf)
    k2, p2, _ = power_spectrum(delta, BOX, n_bins=5)
    np.testing.assert_allclose(p2, power_spectrum(delta, BOX)[1][:5])
    assert len(k2) == 5


def test_cross_power_and_correlation() -> None:
    rng = np.random.default_rng(4)
    n = 24
    a = rng.standard_normal((n, n, n))
    b = rng.standard_normal((n, n, n))
    # P_aa through cross_power equals the auto spectrum; P_a,2a = 2 P_aa; r(a, -3a) = -1
    _, paa, _ = power_spectrum(a, BOX)
    np.testing.assert_allclose(cross_power(a, a, BOX)[1], paa, rtol=1e-12)
    np.testing.assert_allclose(cross_power(a, 2 * a, BOX)[1], 2 * paa, rtol=1e-12)
    np.testing.assert_allclose(cross_correlation(a, -3 * a, BOX)[1], -1.0, rtol=1e-12)
    # independent fields: r scatters around 0 with sd sqrt(2 / n_modes); |r| stays within 5 sd
    _, r = cross_correlation(a, b, BOX)
    _, _, n_modes = power_spectrum(a, BOX)
    assert np.all(np.abs(r) < 5 * np.sqrt(2 / n_modes) + 1e-12)
    # the mean does not enter
    np.testing.assert_allclose(power_spectrum(a + 5.0, BOX)[1], paa, rtol=1e-9)


@pytest.mark.parametrize("shape", [(8,), (8, 9), (4, 4, 4, 4)], ids=["1d", "non-square", "4d"])
def test_rejects_bad_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="square 2-d or cubic 3-d"):
        power_spectrum(np.zeros(shape), BOX)


def test_rejects_bad_arguments() -> None:
    f = np.zeros((8, 8))
    with pytest.raises(ValueError, match="window"):
        power_spectrum(f, BOX, window="tsc")
    with pytest.raises(ValueError, match="box_size"):
        power_spectrum(f, -1.0)
    with pytest.raises(ValueError, match="same shape"):
        cross_power(f, np.zeros((4, 4)), BOX)
    with pytest.raises(ValueError, match="NaN"):
        power_spectrum(np.full((8, 8), np.nan), BOX)
