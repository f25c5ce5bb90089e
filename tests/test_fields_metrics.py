"""Tests of the field statistics: power spectrum of Gaussian random fields against their input
spectrum (within cosmic variance), peaks, pixel PDF, and the same/different behaviour of
:func:`compare_fields`."""

from __future__ import annotations

import numpy as np
import pytest

from surrogates.metrics.fields import (
    compare_fields,
    find_peaks,
    peak_counts,
    pixel_pdf,
    power_spectra,
    power_spectrum,
)


def _spectrum(k: np.ndarray, amplitude: float = 1.0) -> np.ndarray:
    # A smooth, decreasing spectrum with a turnover, in box units.
    return amplitude * 50.0 / (1.0 + (k / 0.3) ** 2)


def _grf(
    n: int,
    dim: int,
    box: float,
    rng: np.random.Generator,
    amplitude: float = 1.0,
    fixed_amplitude: bool = False,
) -> np.ndarray:
    """A Gaussian random field with P(k) = _spectrum(k) in the normalization of
    simulators.nbody.power: delta_k = FFT(delta) / N^d and P = V <|delta_k|^2>.

    With ``fixed_amplitude`` every mode has |delta_k|^2 = P/V exactly (random phases only), so
    its measured spectrum is the exact shell average of P over the modes of each bin."""
    white = rng.standard_normal((n,) * dim)
    wk = np.fft.fftn(white)
    if fixed_amplitude:
        wk = wk / np.abs(wk) * n ** (dim / 2)
    freqs = np.meshgrid(*[2 * np.pi * np.fft.fftfreq(n, d=box / n)] * dim, indexing="ij")
    kmag = np.sqrt(sum(f**2 for f in freqs))
    gain = np.sqrt(_spectrum(kmag, amplitude) * n**dim / box**dim)
    gain.flat[0] = 0.0
    return np.real(np.fft.ifftn(wk * gain))


@pytest.mark.parametrize(("dim", "n", "box"), [(2, 128, 100.0), (3, 32, 200.0)])
def test_power_spectrum_of_grf_matches_input_within_cosmic_variance(dim, n, box):
    rng = np.random.default_rng(dim)
    k, p, n_modes = power_spectrum(_grf(n, dim, box, rng), box)
    _, expected, _ = power_spectrum(_grf(n, dim, box, rng, fixed_amplitude=True), box)
    # Cosmic variance of a shell average: P * sqrt(2 / n_modes) (n_modes counts k and -k).
    sigma = expected * np.sqrt(2.0 / n_modes)
    z = (p - expected) / sigma
    assert np.all(np.abs(z) < 4.5)
    assert np.mean(z**2) < 1.6  # chi^2 per bin ≈ 1
    # The exact shell average is close to the input at the mean k of the shell.
    np.testing.assert_allclose(expected[2:], _spectrum(k[2:]), rtol=0.05)
    # The amplitude estimated from all modes (inverse-variance weights n_modes) has the error
    # sqrt(2 / sum n_modes) ≈ 1 %: 1 for the right field, 1.1 for a 10 % amplitude error.
    a_err = np.sqrt(2.0 / n_modes.sum())
    assert np.sum(n_modes * p / expected) / n_modes.sum() == pytest.approx(1.0, abs=4 * a_err)
    _, p_bad, _ = power_spectrum(_grf(n, dim, box, rng, amplitude=1.1), box)
    a_bad = np.sum(n_modes * p_bad / expected) / n_modes.sum()
    assert a_bad == pytest.approx(1.1, abs=4 * a_err)
    assert a_bad - 1.0 > 6 * a_err


def test_find_peaks_is_periodic_and_strict():
    f = np.zeros((6, 6))
    f[0, 0] = 5.0  # corner: its neighbours wrap around to the other corners
    f[5, 5] = 4.0  # neighbour of (0, 0) across the boundary: not a peak
    f[3, 2] = 1.0
    f[3, 3] = 1.0  # a plateau of two equal cells: neither is a strict maximum
    mask = find_peaks(f)
    assert [tuple(i) for i in np.argwhere(mask)] == [(0, 0)]
    g = np.zeros((4, 4, 4))
    g[1, 2, 3] = 2.0
    g[3, 0, 0] = 1.0
    assert find_peaks(g).sum() == 2


def test_peak_counts_and_pixel_pdf():
    f = np.zeros((2, 8, 8))
    f[0, 1, 1], f[0, 5, 5], f[1, 2, 6] = 1.0, 3.0, 3.5
    counts = peak_counts(f, np.array([0.0, 2.0, 4.0]))
    np.testing.assert_array_equal(counts, [[1, 1], [0, 1]])
    rng = np.random.default_rng(0)
    bins = np.linspace(-6, 6, 61)
    dens = pixel_pdf(rng.normal(size=(8, 128, 128)), bins)  # ~10^4 per central bin
    assert np.sum(dens * np.diff(bins)) == pytest.approx(1.0)
    centres = (bins[1:] + bins[:-1]) / 2
    np.testing.assert_allclose(dens[25:35], np.exp(-(centres[25:35] ** 2) / 2) / np.sqrt(2 * np.pi),
                               rtol=0.05)  # fmt: skip


def test_power_spectra_batch_shape():
    rng = np.random.default_rng(1)
    k, p, n_modes = power_spectra(rng.normal(size=(3, 16, 16)), 10.0)
    assert p.shape == (3, len(k)) and n_modes.shape == k.shape
    with pytest.raises(ValueError, match="square or cubic"):
        power_spectra(rng.normal(size=(3, 16, 8)), 10.0)


@pytest.fixture(scope="module")
def field_batches():
    rng = np.random.default_rng(5)
    box, n = 100.0, 64

    def batch(m, **kw):
        return np.stack([_grf(n, 2, box, rng, **kw) for _ in range(m)])

    ref = batch(40)
    return box, ref, batch(40), batch(40, amplitude=1.1)


def test_compare_fields_same_distribution(field_batches):
    box, ref, same, _ = field_batches
    res = compare_fields(ref, same, box)
    assert res["power_chi2_per_bin"] < 2.0  # ≈ 1 for two samples of one spectrum
    assert res["power_ratio_mean_abs_dev"] < 0.1
    assert res["pixel_pdf_separation_power"] < 5e-3
    assert res["peak_separation_power"] < 0.02
    assert res["peaks_per_field_candidate"] == pytest.approx(res["peaks_per_field_reference"],
                                                             rel=0.05)  # fmt: skip


def test_compare_fields_detects_ten_percent_amplitude(field_batches):
    box, ref, _, bad = field_batches
    res = compare_fields(ref, bad, box)
    assert res["power_chi2_per_bin"] > 5.0
    np.testing.assert_allclose(np.median(res["power_ratio"]), 1.1, atol=0.04)
    # A Gaussian field 5 % wider in pixel values: detectable in the pixel PDF too.
    same_res = compare_fields(ref, field_batches[2], box)
    assert res["pixel_pdf_separation_power"] > 2 * same_res["pixel_pdf_separation_power"]


def test_compare_fields_cross_correlation_of_matched_pairs():
    rng = np.random.default_rng(7)
    a = np.stack([_grf(32, 2, 50.0, rng) for _ in range(3)])
    noise = 0.01 * rng.normal(size=a.shape)
    res = compare_fields(a, 2.0 * a + noise, 50.0, matched=True)
    assert np.all(np.asarray(res["cross_correlation_mean"])[:5] > 0.99)  # same phases: r ≈ 1
    other = np.stack([_grf(32, 2, 50.0, rng) for _ in range(3)])
    r = np.asarray(compare_fields(a, other, 50.0, matched=True)["cross_correlation_mean"])
    assert np.mean(np.abs(r)) < 0.3  # independent phases: r ≈ 0


def test_power_response_recovers_known_exponents():
    """Fields scaled by σ_8 (one base field per slice position) have A ∝ σ_8² exactly, with no
    dependence on Ω_m; a σ_8-independent amplitude gives exponent 0 (the fit can fail)."""
    from surrogates.metrics.fields import power_response

    rng = np.random.default_rng(3)
    base = rng.standard_normal((2, 16, 16))  # two slices per row
    theta = np.column_stack([rng.uniform(0.1, 0.5, 12), rng.uniform(0.6, 1.0, 12)])
    fields = np.concatenate([s8 * base for s8 in theta[:, 1]])
    res = power_response(theta, fields, 64.0, group_size=2, k_range=(0.1, 0.4))
    assert res["rows"] == 12
    assert np.allclose(res["exponents"], [0.0, 2.0], atol=1e-9)
    assert np.allclose(res["exponent_se"], 0.0, atol=1e-6)
    flat = power_response(theta, np.concatenate([base] * 12), 64.0, group_size=2,
                          k_range=(0.1, 0.4))  # fmt: skip
    assert np.allclose(flat["exponents"], [0.0, 0.0], atol=1e-9)
    # Ω_m-dependent: A ∝ Ω_m^1 (fields ∝ sqrt(Ω_m))
    om = np.concatenate([np.sqrt(o) * base for o in theta[:, 0]])
    assert np.allclose(power_response(theta, om, 64.0, group_size=2)["exponents"], [1, 0],
                       atol=1e-9)  # fmt: skip
    assert power_response(-theta, fields, 64.0, group_size=2) is None  # logs need θ > 0
