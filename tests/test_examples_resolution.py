"""The resolution fit of ``examples/calo_resolution.py`` recovers known terms.

The example's functions are imported from its file (examples are scripts, not a package). The
truth is the model itself: σ/E = a/√E ⊕ b, in quadrature; a linear sum, a missing square or a
wrong energy unit would miss the known a and b by far more than the tolerances.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_example

E_GEV = 2.0 ** np.arange(8, 23) / 1e3  # the 15 dataset-1 energies
A, B = 0.10, 0.007


@pytest.fixture(scope="module")
def example():
    return load_example("calo_resolution")


def test_model_is_quadrature_sum_in_gev(example):
    # at 1 GeV the two terms add in quadrature; at 100 GeV the stochastic term is a/10
    assert example.resolution_model(np.array([1.0]), 0.3, 0.4)[0] == pytest.approx(0.5)
    assert example.resolution_model(np.array([100.0]), 0.1, 0.0)[0] == pytest.approx(0.01)


def test_fit_recovers_noiseless_terms(example):
    y = np.sqrt(A**2 / E_GEV + B**2)
    a, b, cov, chi2 = example.fit_resolution(E_GEV, y, 0.02 * y)
    assert a == pytest.approx(A, rel=1e-6)
    assert b == pytest.approx(B, rel=1e-6)
    assert chi2 == pytest.approx(0.0, abs=1e-8)
    assert np.all(np.isfinite(cov))


@pytest.mark.parametrize("estimator", ["std", "iqr"])
def test_bootstrap_fit_on_gaussian_showers(example, estimator):
    # E_dep/E ~ N(R, (R σ/E)²) per energy: response R, relative width σ/E from the model
    n, response = 4000, 0.97
    rng = np.random.default_rng(0)
    width = np.sqrt(A**2 / E_GEV + B**2)
    ratio = response * (1 + width[:, None] * rng.standard_normal((len(E_GEV), n)))
    r = example.bootstrap(
        ratio, E_GEV, n_boot=30, rng=np.random.default_rng(1), estimator=estimator
    )
    # the width of σ/E per point is about 1/sqrt(2n) (std) relative: ~1 %; the fit pools 15
    assert r["a"] == pytest.approx(A, rel=0.04)
    assert r["b"] == pytest.approx(B, rel=0.04)
    assert abs(r["a"] - A) < 4 * r["sigma_a"]
    assert abs(r["b"] - B) < 4 * r["sigma_b"]
    # 5 standard errors of the mean at the lowest energy (the widest)
    np.testing.assert_allclose(r["response"], response, rtol=5 * width[0] / np.sqrt(n))
    np.testing.assert_allclose(r["resolution"], width, rtol=0.08)
    # bootstrap errors of the response match the analytic standard error of a mean
    np.testing.assert_allclose(r["response_err"], response * width / np.sqrt(n), rtol=0.5)
    assert r["ndf"] == 13


def test_compare_of_identical_sources_is_zero(example):
    e = E_GEV
    src = {
        "a": A,
        "b": B,
        "sigma_a": 0.001,
        "sigma_b": 0.0002,
        "response": np.ones(15),
        "response_err": np.full(15, 0.01),
        "resolution": np.sqrt(A**2 / e + B**2),
        "resolution_err": np.full(15, 0.001),
    }
    c = example.compare(src, dict(src, a=1.05 * A))
    assert c["a_rel"] == pytest.approx(0.05)
    assert c["a_pull_sim"] == pytest.approx(0.05 * A / 0.001)
    assert c["a_pull_combined"] == pytest.approx(0.05 * A / (0.001 * np.sqrt(2)))
    assert c["b_rel"] == 0.0 and c["within_tolerance"]
    assert not example.compare(src, dict(src, b=1.2 * B))["within_tolerance"]
