"""``examples/nbody_surrogates.py``: the symmetry augmentation and the comparison numbers.

The augmentation must produce boxes with the statistics of the originals (every slice's power
spectrum is kept, slices are only permuted) and must not be the identity; the comparison must
return a power ratio of exactly 1 and no response difference for identical inputs, and the
known ratio for a field scaled by a constant (so a surrogate 10% off in amplitude fails).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_example

from surrogates.metrics.fields import power_spectra


@pytest.fixture(scope="module")
def script():
    return load_example("nbody_surrogates")


def _fields(rng, n, c=4, m=16, amplitude=1.0):
    # smooth random fields: white noise filtered in Fourier space, periodic by construction
    k = np.fft.fftfreq(m)
    kk = np.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
    noise = np.fft.fft2(rng.standard_normal((n, c, m, m)))
    return amplitude * np.fft.ifft2(noise * np.exp(-((kk / 0.15) ** 2))).real


def test_augment_keeps_every_slice_spectrum_and_permutes_slices(script):
    rng = np.random.default_rng(0)
    x = _fields(rng, 5)
    theta = rng.uniform(size=(5, 2))
    t_aug, x_aug = script.augment(theta, x, 8, np.random.default_rng(1))
    assert x_aug.shape == (40, 4, 16, 16) and np.array_equal(t_aug, np.tile(theta, (8, 1)))
    assert np.array_equal(x_aug[:5], x)
    p = power_spectra(x.reshape(-1, 16, 16), 64.0)[1].reshape(5, 4, -1)
    for j in range(1, 8):
        copy = x_aug[5 * j : 5 * (j + 1)]
        assert not np.allclose(copy, x)
        q = power_spectra(copy.reshape(-1, 16, 16), 64.0)[1].reshape(5, 4, -1)
        for i in range(5):  # the same spectra, in some order of the slices
            assert np.allclose(np.sort(q[i], axis=0), np.sort(p[i], axis=0), rtol=1e-10)
        # the pixel values of a slice are only moved
        assert np.allclose(np.sort(copy.reshape(5, -1), 1), np.sort(x.reshape(5, -1), 1))


def test_compare_is_exact_for_identical_and_scaled_fields(script):
    rng = np.random.default_rng(2)
    amps = [0.6, 0.8, 1.0, 0.7, 0.9, 0.5]
    sim = [_fields(rng, 6, amplitude=a) for a in amps]
    same = script.compare(sim, [s.copy() for s in sim], 64.0)
    assert same["max_abs_power_ratio_deviation"] == pytest.approx(0, abs=1e-12)
    assert same["power_within_10_percent"]
    assert same["sigma8_response"]["relative_difference"] == pytest.approx(0, abs=1e-12)
    scaled = script.compare(sim, [1.1 * s for s in sim], 64.0)
    assert scaled["max_abs_power_ratio_deviation"] == pytest.approx(0.21, rel=1e-9)
    assert not scaled["power_within_10_percent"]
    # a cosmology-independent scale leaves the responses unchanged; one at σ_8 = 0.9 does not
    assert scaled["sigma8_response"]["relative_difference"] == pytest.approx(0, abs=1e-12)
    tilted = [s.copy() for s in sim]
    tilted[2] = 1.1 * tilted[2]
    r = script.compare(sim, tilted, 64.0)["sigma8_response"]["relative_difference"]
    assert r == pytest.approx(0.21, rel=1e-9)
