"""Calibration diagnostics (surrogates.inference.diagnostics) on exact and broken posteriors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import simulators
from surrogates.inference.diagnostics import (
    coverage_from_ranks,
    expected_coverage,
    posterior_predictive_check,
    sbc,
)


class GaussianPosterior:
    """The analytic Gaussian-linear posterior with its covariance scaled by ``scale``: exact for
    1, over-confident below 1. Has the estimator interface (sample_batched, log_prob)."""

    def __init__(self, sim, scale: float = 1.0, seed: int = 0):
        self.sim, self.scale = sim, scale
        self.rng = np.random.default_rng(seed)
        _, cov = sim.posterior(np.zeros(sim.dim))
        self.var = cov[0, 0] * scale

    def sample_batched(self, shape, x, generator=None):
        x = np.asarray(x, dtype=np.float64)
        mean = np.stack([self.sim.posterior(xi)[0] for xi in x])
        return mean[None] + np.sqrt(self.var) * self.rng.standard_normal((*shape, *mean.shape))

    def log_prob(self, theta, x):
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.sim.dim)
        mean = x * (self.var / self.scale) / self.sim.noise_variance
        d = np.asarray(theta) - mean
        return -0.5 * np.sum(d**2, -1) / self.var - 0.5 * self.sim.dim * np.log(
            2 * np.pi * self.var
        )


@pytest.fixture(scope="module")
def joint():
    sim = simulators.get("gaussian_linear", dim=3)
    theta, x = sim.sample_joint(1000, np.random.default_rng(0))
    return sim, theta, x


def test_sbc_exact_posterior_is_uniform(joint):
    sim, theta, x = joint
    result = sbc(GaussianPosterior(sim), theta, x, n_samples=100)
    assert result.ranks.shape == (1000, 3) and result.ranks.min() >= 0 and result.ranks.max() <= 100
    assert result.uniform(0.01), result.ks_pvalue


def test_sbc_over_confident_posterior_is_not_uniform(joint):
    # standard deviation 0.7x the truth: ranks pile up at both ends
    sim, theta, x = joint
    result = sbc(GaussianPosterior(sim, scale=0.5), theta, x, n_samples=100)
    assert np.all(result.ks_pvalue < 0.01), result.ks_pvalue
    assert not result.uniform(0.01)


def test_sbc_shifted_posterior_is_not_uniform(joint):
    sim, theta, x = joint
    est = GaussianPosterior(sim)
    shifted = lambda n, xb: est.sample_batched((n,), xb) + 0.1  # noqa: E731  (0.45 posterior std)
    assert np.all(sbc(shifted, theta, x, n_samples=100).ks_pvalue < 0.01)


def test_sbc_drops_nan_simulations_with_a_count(joint):
    sim, theta, x = joint
    x = x.copy()
    x[:7, 1] = np.nan
    result = sbc(GaussianPosterior(sim), theta, x, n_samples=20)
    assert result.n_dropped == 7 and len(result.ranks) == 993


def test_expected_coverage_of_exact_and_over_confident_posteriors(joint):
    sim, theta, x = joint
    levels = np.array([0.2, 0.5, 0.8, 0.95])
    good = expected_coverage(
        GaussianPosterior(sim), theta[:500], x[:500], n_samples=200, levels=levels
    )
    # 500 observations: binomial standard error ≤ 0.023; 4 standard errors of slack
    np.testing.assert_allclose(good.coverage, levels, atol=0.09)
    np.testing.assert_allclose(good.marginal, np.repeat(levels[:, None], 3, 1), atol=0.09)
    bad = expected_coverage(
        GaussianPosterior(sim, 0.5), theta[:500], x[:500], n_samples=200, levels=levels
    )
    # the level-γ HPD ball of a covariance halved in 3-d, |z|² < q_γ / 2 in true units, holds
    # F(q_γ / 2) of the true mass, F the χ²₃ CDF: 0.08, 0.24, 0.49, 0.75
    expect = stats.chi2(3).cdf(stats.chi2(3).ppf(levels) / 2)
    np.testing.assert_allclose(bad.coverage, expect, atol=0.09)
    assert np.all(bad.coverage < levels - 0.1)


def test_coverage_from_ranks_of_uniform_ranks_is_the_diagonal():
    ranks = np.arange(101)[:, None]  # every rank once: a perfectly uniform histogram
    cov = coverage_from_ranks(ranks, 100, np.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(cov[:, 0], [0.0, 0.5, 1.0], atol=0.01)


def test_posterior_predictive_check_quantiles_and_nan_count():
    def sim(theta, rng):
        x = theta.copy()
        x[::4] = np.nan  # a quarter of the predictive simulations fail
        return x

    samples = np.linspace(0, 1, 400)[:, None]
    result = posterior_predictive_check(sim, samples, np.array([0.25]), np.random.default_rng(0))
    assert result.n_dropped == 100 and len(result.x_pred) == 300
    assert result.quantile[0] == pytest.approx(0.25, abs=0.01)
    assert result.pvalue[0] == pytest.approx(0.5, abs=0.02)


def test_plots_write_png_files(joint, tmp_path):
    from surrogates.plots.diagnostics import plot_coverage, plot_ppc, plot_sbc_ranks

    sim, theta, x = joint
    est = GaussianPosterior(sim)
    plot_sbc_ranks(sbc(est, theta[:200], x[:200], n_samples=50), tmp_path / "sbc.png")
    plot_coverage(expected_coverage(est, theta[:100], x[:100], n_samples=50), tmp_path / "cov.png")
    ppc = posterior_predictive_check(
        sim, est.sample_batched((200,), x[:1])[:, 0], x[0], np.random.default_rng(0)
    )
    plot_ppc(ppc, tmp_path / "ppc.png")
    for name in ("sbc.png", "cov.png", "ppc.png"):
        assert (tmp_path / name).stat().st_size > 5000
