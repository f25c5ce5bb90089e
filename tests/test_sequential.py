"""Truncated sequential NPE: the truncated prior stays in the region, rounds add simulations
and the multi-round estimate recovers the analytic Gaussian-linear posterior."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import simulators
from surrogates.inference import NPE
from surrogates.inference.sequential import truncated_prior_sample, tsnpe


@pytest.fixture(scope="module")
def gl():
    sim = simulators.get("gaussian_linear", dim=2)
    rng = np.random.default_rng(0)
    x_o = sim.simulate(sim.prior.sample(1, rng), rng)[0]
    return sim, x_o


def test_truncated_prior_sample_stays_in_the_region(gl):
    sim, x_o = gl
    theta, x = sim.sample_joint(2000, np.random.default_rng(1))
    npe = NPE.for_simulator(sim, seed=0, max_epochs=20).fit(theta, x)
    q = npe.sample((5000,), x_o, generator=torch.Generator().manual_seed(0))
    tau = float(np.quantile(npe.log_prob(q, x_o), 0.01))
    draws, rate = truncated_prior_sample(sim.prior, npe, x_o, 3000, np.random.default_rng(2),
                                         log_threshold=tau, batch=10_000)  # fmt: skip
    assert draws.shape == (3000, 2)
    assert np.all(npe.log_prob(draws, x_o) >= tau)
    # the acceptance rate is the prior mass of the region: check it against fresh prior draws
    fresh = sim.prior.sample(200_000, np.random.default_rng(3))
    mass = np.mean(npe.log_prob(fresh, x_o) >= tau)
    assert 0 < rate < 1 and rate == pytest.approx(mass, rel=0.1)
    with pytest.raises(RuntimeError, match="too small"):
        truncated_prior_sample(sim.prior, npe, x_o, 10, np.random.default_rng(4),
                               log_threshold=1e9, batch=1000, max_draws=3000)  # fmt: skip


def test_tsnpe_rounds_recover_the_analytic_posterior(gl):
    sim, x_o = gl
    res = tsnpe(sim, x_o, rounds=2, simulations=[1500, 1000], seed=0,
                npe_options={"max_epochs": 40})  # fmt: skip
    assert res.theta.shape == (2500, 2) and res.x.shape == (2500, 2)
    first, second = res.rounds
    assert first.log_threshold is None and first.acceptance == 1.0
    assert second.log_threshold is not None and 0 < second.acceptance < 1
    mean, cov = sim.posterior(x_o)
    sd = np.sqrt(np.diag(cov))
    est = res.npe.sample((20_000,), x_o, generator=torch.Generator().manual_seed(1))
    assert np.all(np.abs(est.mean(0) - mean) < 0.25 * sd)
    assert np.all(np.abs(est.std(0) / sd - 1) < 0.2)


def test_tsnpe_rejects_bad_settings(gl):
    sim, x_o = gl
    with pytest.raises(ValueError, match="rounds"):
        tsnpe(sim, x_o, rounds=0)
    with pytest.raises(ValueError, match="epsilon"):
        tsnpe(sim, x_o, epsilon=1.5)
    with pytest.raises(ValueError, match="simulations"):
        tsnpe(sim, x_o, rounds=2, simulations=[100])
