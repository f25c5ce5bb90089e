"""Bijections onto prior supports and prior conversions (surrogates.inference.support)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import (
    Categorical,
    Exponential,
    HalfNormal,
    Independent,
    LogNormal,
    MultivariateNormal,
    Normal,
    Uniform,
)

import simulators
from surrogates.inference.support import (
    SupportTransform,
    prior_from_dict,
    prior_log_prob,
    prior_to_dict,
    support_bounds,
    torch_prior,
)

INF = math.inf
T = torch.tensor

PRIORS = {
    "box": (Independent(Uniform(T([-1.0, 0.0]), T([1.0, 5.0])), 1), [-1, 0], [1, 5]),
    "uniform_batch": (Uniform(T([0.0, 2.0, 3.0]), T([1.0, 4.0, 9.0])), [0, 2, 3], [1, 4, 9]),
    "mvn": (MultivariateNormal(torch.zeros(3), torch.eye(3)), [-INF] * 3, [INF] * 3),
    "lognormal": (Independent(LogNormal(torch.zeros(2), torch.ones(2)), 1), [0, 0], [INF, INF]),
    "halfnormal": (HalfNormal(torch.ones(1)), [0], [INF]),
    "exponential": (Independent(Exponential(torch.ones(2)), 1), [0, 0], [INF, INF]),
    "normal_scalar": (Normal(0.0, 1.0), [-INF], [INF]),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_support_bounds_read_from_prior_support(name):
    prior, low, high = PRIORS[name]
    lo, hi = support_bounds(prior)
    assert lo.tolist() == [float(v) for v in low]
    assert hi.tolist() == [float(v) for v in high]


def test_sbi_box_uniform_is_understood():
    sbi_utils = pytest.importorskip("sbi.utils")
    prior = sbi_utils.BoxUniform(torch.tensor([-2.0, 0.5]), torch.tensor([3.0, 0.75]))
    lo, hi = support_bounds(prior)
    assert lo.tolist() == [-2.0, 0.5] and hi.tolist() == [3.0, 0.75]


def test_unsupported_support_is_rejected_with_its_name():
    with pytest.raises(ValueError, match="support"):
        support_bounds(Categorical(torch.ones(3)))


MIXED = SupportTransform([-1.0, 0.0, -INF, -INF], [2.0, INF, 3.0, INF])


def test_kinds_per_parameter():
    assert MIXED.kinds == ["interval", "lower", "upper", "real"]


def test_round_trip_is_exact_in_float64():
    g = torch.Generator().manual_seed(0)
    u = 3 * torch.randn(500, 4, generator=g, dtype=torch.float64)
    theta = MIXED.forward(u)
    assert bool(MIXED.contains(theta).all())
    back, _ = MIXED.inverse(theta)
    torch.testing.assert_close(back, u, rtol=1e-9, atol=1e-9)


def test_log_det_matches_autograd_jacobian():
    g = torch.Generator().manual_seed(1)
    u = 2 * torch.randn(20, 4, generator=g, dtype=torch.float64)
    for row in u:
        jac = torch.autograd.functional.jacobian(lambda v: MIXED.forward(v[None])[0], row)
        expect = torch.linalg.slogdet(jac).logabsdet
        got_fwd = MIXED.log_abs_det_forward(row[None])[0]
        _, ladj_inv = MIXED.inverse(MIXED.forward(row[None]))
        torch.testing.assert_close(got_fwd, expect, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(ladj_inv[0], -expect, rtol=1e-8, atol=1e-8)


def test_extreme_latents_stay_inside_the_closed_box_in_float32():
    t = SupportTransform([-1.0, 0.3], [1.0, 0.30001])
    u = torch.tensor([[1e4, -1e4], [-60.0, 60.0], [0.0, 17.0]], dtype=torch.float32)
    theta = t.forward(u)
    assert theta.dtype == torch.float32
    assert bool(((theta >= t.low.float()) & (theta <= t.high.float())).all())


def test_to_dict_round_trip_with_infinite_bounds():
    d = MIXED.to_dict()
    assert d["high"][1] is None and d["low"][3] is None
    back = SupportTransform.from_dict(d)
    assert back.low.tolist() == MIXED.low.tolist() and back.high.tolist() == MIXED.high.tolist()


@pytest.mark.parametrize(
    "prior",
    [
        simulators.BoxUniform([-1, 0], [1, 2]),
        simulators.Normal([0.5, -1.0], [[1.0, 0.3], [0.3, 2.0]]),
        simulators.LogNormal([0.0, -3.0], [0.5, 0.5]),
        simulators.LogUniform([0.1, 1.0], [10.0, 5.0]),
    ],
    ids=["box", "normal", "lognormal", "loguniform"],
)
def test_torch_prior_has_the_same_density_and_support(prior):
    rng = np.random.default_rng(0)
    theta = prior.sample(200, rng)
    tp = torch_prior(prior)
    lp = prior_log_prob(tp, torch.as_tensor(theta, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(lp, prior.log_prob(theta), rtol=1e-5, atol=1e-5)
    lo, hi = support_bounds(tp)
    np.testing.assert_allclose(lo.numpy(), prior.low, rtol=1e-6)  # float32 bounds
    np.testing.assert_allclose(hi.numpy(), prior.high, rtol=1e-6)
    # a JSON round trip gives the same distribution
    back = prior_from_dict(prior_to_dict(tp))
    lp2 = prior_log_prob(back, torch.as_tensor(theta, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(lp2, lp, rtol=1e-6)


def test_prior_log_prob_is_minus_inf_outside_not_an_error():
    prior = Independent(Uniform(-torch.ones(2), torch.ones(2)), 1)
    theta = torch.tensor([[0.0, 0.0], [2.0, 0.0], [float("nan"), 0.0]])
    lp = prior_log_prob(prior, theta)
    assert lp[0].item() == pytest.approx(-math.log(4.0))
    assert lp[1].item() == -math.inf and lp[2].item() == -math.inf
