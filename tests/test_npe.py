"""Neural posterior estimation (surrogates.inference.NPE) against analytic posteriors."""

from __future__ import annotations

import json
import logging
import math
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch.distributions import Independent, LogNormal, MultivariateNormal, Uniform

import simulators
from simulators.base import BoxUniform, Simulator
from surrogates.checkpoint import CheckpointError
from surrogates.inference import NPE, sbc
from surrogates.inference.defaults import default_transforms
from surrogates.metrics import c2st

FAST = {"transforms": 2, "hidden": (32, 32)}


def gaussian_linear_data(dim: int, n: int, seed: int):
    sim = simulators.get("gaussian_linear", dim=dim)
    theta, x = sim.sample_joint(n, np.random.default_rng(seed))
    return sim, theta, x


@pytest.fixture(scope="module")
def gl2():
    """A default NPE on 2-d Gaussian linear with 3,000 simulations (trained once per module)."""
    sim, theta, x = gaussian_linear_data(2, 3000, seed=0)
    npe = NPE.for_simulator(sim, seed=0).fit(theta, x)
    return sim, npe


def test_gaussian_linear_2d_posterior_recovered(gl2):
    # Fast version of the acceptance test. With 3,000 simulations and 2,000 samples per class
    # the C2ST of an exact posterior is 0.5 ± 0.02 (two standard errors of 4,000 coin flips are
    # 0.016); 0.56 allows a small fitting error, while a posterior with the right mean but the
    # prior's width (about 1.4x too wide) scores above 0.6, as asserted below.
    sim, npe = gl2
    rng = np.random.default_rng(1)
    for seed in range(2):
        x_o = sim.simulate(sim.prior.sample(1, rng), rng)[0]
        mean, cov = sim.posterior(x_o)
        ref = rng.multivariate_normal(mean, cov, 2000)
        est = npe.sample((2000,), x_o, generator=torch.Generator().manual_seed(seed))
        assert c2st(ref, est, seed=seed) <= 0.56
        too_wide = rng.multivariate_normal(mean, 2 * cov, 2000)
        assert c2st(ref, too_wide, seed=seed) > 0.6


def test_log_prob_matches_the_analytic_posterior(gl2):
    # log p(θ|x_o) of the estimate vs the exact Gaussian at posterior draws. A missing
    # log-determinant shifts every value by a constant: that of the standardization is
    # -sum log s ≈ +2.3 nats here (s ≈ 0.32), so the mean offset must stay well below it; the
    # density's shape must also match (correlation over the posterior bulk).
    sim, npe = gl2
    x_o = np.array([0.3, -0.2])
    mean, cov = sim.posterior(x_o)
    theta = np.random.default_rng(2).multivariate_normal(mean, cov, 500)
    exact = MultivariateNormal(torch.as_tensor(mean), torch.as_tensor(cov)).log_prob(
        torch.as_tensor(theta)
    )
    got = npe.log_prob(theta, x_o)
    assert got.dtype == np.float64 and got.shape == (500,)
    assert abs(np.mean(got - exact.numpy())) < 0.2
    assert np.corrcoef(got, exact.numpy())[0, 1] > 0.95


def test_sbc_of_trained_estimator_is_uniform(gl2):
    sim, npe = gl2
    rng = np.random.default_rng(3)
    theta, x = sim.sample_joint(300, rng)
    result = sbc(npe, theta, x, n_samples=100, generator=torch.Generator().manual_seed(0))
    assert result.ranks.shape == (300, 2)
    assert result.uniform(0.01), result.ks_pvalue


def test_linear_adjustment_is_the_gaussian_linear_posterior(gl2):
    # Gaussian linear's posterior is N(M x + m, Σ): the linear-Gaussian model the adjustment
    # fits. The support map of a Gaussian prior is the identity, so θ is affine in the flow's
    # features y': y' = 0 gives the fitted posterior mean and the unit vectors its covariance
    # factor. Regression errors with 2,700 rows: ~0.005 in the mean (posterior sd 0.22), ~3%
    # in the variances.
    sim, npe = gl2
    net = npe.net
    assert net.adjust is not None
    for x_o in ([0.3, -0.2], [-1.0, 0.8]):
        mean, cov = sim.posterior(np.array(x_o))
        c = net.condition(torch.tensor([x_o]))
        y = torch.cat([torch.zeros(1, 2), torch.eye(2)]).double()
        theta = net.parameters_of(y, c.expand(3, -1))
        factor = (theta[1:] - theta[0]).T
        np.testing.assert_allclose(theta[0].numpy(), mean, atol=0.02)
        np.testing.assert_allclose((factor @ factor.T).numpy(), cov, atol=0.006)


def test_linear_adjustment_rules_and_checkpoints(tmp_path):
    prior, theta, x = box_data(600)
    npe = NPE(prior, **FAST).fit(theta, x, max_epochs=1)
    assert npe.net.adjust is not None  # vector x, 540 rows for 3 coefficients
    assert NPE(prior, adjust=False, **FAST).fit(theta, x, max_epochs=1).net.adjust is None
    # a learned embedding sees x, not a fixed regression; too few rows per coefficient
    assert NPE(prior, embedding="mlp", **FAST).fit(theta, x, max_epochs=1).net.adjust is None
    assert NPE(prior, **FAST).fit(theta[:30], x[:30], max_epochs=1).net.adjust is None
    assert NPE(prior, adjust=True, **FAST).fit(theta[:30], x[:30], max_epochs=1).net.adjust
    npe.save(tmp_path / "npe")
    loaded = NPE.load(tmp_path / "npe")
    assert torch.equal(loaded.net.adjust.weight, npe.net.adjust.weight)
    assert torch.equal(loaded.net.adjust.chol, npe.net.adjust.chol)
    # a checkpoint written before the adjustment existed (no "adjust" entry) loads without it
    old = NPE(prior, adjust=False, **FAST).fit(theta, x, max_epochs=1)
    old.save(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "model.json").read_text())
    del meta["config"]["adjust"]
    (tmp_path / "old" / "model.json").write_text(json.dumps(meta))
    again = NPE.load(tmp_path / "old")
    x_o = torch.tensor([0.2, 0.1])
    g = torch.Generator
    assert again.net.adjust is None
    assert torch.equal(again.sample((50,), x_o, generator=g().manual_seed(0)),
                       old.sample((50,), x_o, generator=g().manual_seed(0)))  # fmt: skip
    with pytest.raises(ValueError, match="adjust"):
        NPE(prior, adjust="sometimes")


@pytest.mark.slow
def test_gaussian_linear_10d_c2st_at_10k_simulations():
    # The acceptance criterion of the issue: C2ST ≤ 0.55 against the analytic posterior
    # (mean over observations, as in the benchmark and sbibm).
    sim, theta, x = gaussian_linear_data(10, 10_000, seed=0)
    npe = NPE.for_simulator(sim, seed=0).fit(theta, x)
    rng = np.random.default_rng(7)
    scores = []
    for seed in range(3):
        x_o = sim.simulate(sim.prior.sample(1, rng), rng)[0]
        mean, cov = sim.posterior(x_o)
        ref = rng.multivariate_normal(mean, cov, 5000)
        est = npe.sample((5000,), x_o, generator=torch.Generator().manual_seed(seed))
        scores.append(c2st(ref, est, seed=seed))
    assert np.mean(scores) <= 0.55, scores


# ------------------------------------------------------------------------ support


def box_data(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    prior = Independent(Uniform(torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 0.5])), 1)
    theta = torch.stack([2 * torch.rand(n, generator=g) - 1, 0.5 * torch.rand(n, generator=g)], 1)
    x = theta + 0.3 * torch.randn(n, 2, generator=g)  # wide likelihood: mass piles up at the bounds
    return prior, theta, x


@pytest.fixture(scope="module")
def box_npe():
    prior, theta, x = box_data(1500)
    return NPE(prior, **FAST).fit(theta, x, max_epochs=3)


def test_samples_never_leave_a_box_prior(box_npe):
    # x far outside the data pushes the flow to the bounds; sbi would leak or reject here.
    x = torch.tensor([[0.0, 0.25], [5.0, -5.0], [-40.0, 40.0]])
    s = box_npe.sample_batched((20_000,), x, generator=torch.Generator().manual_seed(0))
    assert s.shape == (20_000, 3, 2)
    assert bool((s[..., 0] >= -1).all() and (s[..., 0] <= 1).all())
    assert bool((s[..., 1] >= 0).all() and (s[..., 1] <= 0.5).all())


def test_log_prob_integrates_to_one_over_the_box(box_npe):
    # midpoint rule on a 300x300 grid: the density is smooth and vanishes at the bounds
    k = 300
    a = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    g0, g1 = torch.meshgrid(-1 + 2 * a, 0.5 * a, indexing="ij")
    grid = torch.stack([g0.flatten(), g1.flatten()], 1)
    cell = (2 / k) * (0.5 / k)
    for x_o in ([0.0, 0.25], [0.9, 0.05]):
        lp = box_npe.log_prob(grid, torch.tensor(x_o))
        total = float(torch.exp(lp).sum() * cell)
        assert total == pytest.approx(1.0, abs=0.01)


def test_log_prob_outside_the_support_is_minus_inf(box_npe):
    lp = box_npe.log_prob(np.array([[0.0, 0.6], [1.5, 0.2], [0.0, 0.2]]), np.zeros(2))
    assert lp[0] == -math.inf and lp[1] == -math.inf and np.isfinite(lp[2])


# ------------------------------------------------------------------------ api


def test_save_load_gives_identical_samples_and_densities(box_npe, tmp_path):
    box_npe.save(tmp_path / "npe")
    loaded = NPE.load(tmp_path / "npe", device="cpu")
    x_o = torch.tensor([0.2, 0.1])
    a = box_npe.sample((500,), x_o, generator=torch.Generator().manual_seed(5))
    b = loaded.sample((500,), x_o, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert torch.equal(box_npe.log_prob(a, x_o), loaded.log_prob(a, x_o))
    assert loaded.prior is not None and loaded.support.kinds == ["interval", "interval"]
    assert not list(tmp_path.glob("npe/*.pkl"))


def test_load_rejects_a_surrogate_checkpoint(tmp_path):
    from surrogates.checkpoint import save_model

    save_model(tmp_path, model_type="flow", config={}, state_dict={"w": torch.ones(1)})
    with pytest.raises(CheckpointError, match="flow"):
        NPE.load(tmp_path)


def test_sample_shapes_and_numpy_in_numpy_out(box_npe):
    g = torch.Generator().manual_seed(0)
    assert box_npe.sample((7,), torch.zeros(2), generator=g).shape == (7, 2)
    assert box_npe.sample((7,), torch.zeros(1, 2), generator=g).shape == (7, 2)
    out = box_npe.sample((3, 4), np.zeros(2), generator=g)
    assert isinstance(out, np.ndarray) and out.shape == (3, 4, 2)
    assert box_npe.sample((5,), torch.zeros(3, 2), generator=g).shape == (5, 3, 2)
    with pytest.raises(ValueError, match="shape"):
        box_npe.sample((5,), torch.zeros(3))


def test_nan_simulations_are_dropped_and_counted(caplog):
    prior, theta, x = box_data(600)
    x[::10, 1] = float("nan")
    x[5, 0] = float("inf")
    with caplog.at_level(logging.WARNING, logger="surrogates.inference.npe"):
        npe = NPE(prior, **FAST).fit(theta, x, max_epochs=1)
    assert npe.n_dropped == 61
    assert npe.n_train + round(0.1 * 539) == 539
    assert "dropped 61 of 600" in caplog.text
    assert np.isfinite(npe.result.best_val_loss)


def test_log_scale_x_is_chosen_per_feature_and_saved(tmp_path):
    # x_0 = exp(4 θ + 0.2 ε) spans 3.5 decades; on the log scale the posterior is a Gaussian of
    # sd 0.0499 (x_1 adds little). Without the log the same estimator is 2-3x too wide.
    g = torch.Generator().manual_seed(0)
    prior = Independent(Uniform(-torch.ones(1), torch.ones(1)), 1)
    theta = 2 * torch.rand(3000, 1, generator=g) - 1  # the prior's draws, from a seeded generator
    noise = torch.randn(3000, 2, generator=g)
    x = torch.cat([torch.exp(4 * theta + 0.2 * noise[:, :1]), theta + noise[:, 1:]], dim=1)
    # The sd bounds were set on the estimator without the linear adjustment, which is left out
    # here so that this test measures the log scale alone. Measured sd at (0.3, -0.7) over
    # seeds 0-2: without it 0.060-0.065 / 0.063-0.070; with it 0.051-0.053 / 0.063-0.0654.
    npe = NPE(prior, seed=0, adjust=False).fit(theta, x)
    assert npe.net.pre.log_theta == [True, False]
    for t in (0.3, -0.7):
        x_o = torch.tensor([math.exp(4 * t), t])
        s = npe.sample((4000,), x_o, generator=torch.Generator().manual_seed(1))
        assert abs(float(s.mean()) - t) < 0.02 and 0.04 < float(s.std()) < 0.065
    npe.save(tmp_path / "npe")
    assert NPE.load(tmp_path / "npe").net.pre.log_theta == [True, False]
    with pytest.raises(ValueError, match="log_x"):
        NPE(prior, log_x="sometimes")


def test_default_widths_grow_with_the_training_set(tmp_path):
    prior, theta, x = box_data(6000)
    small = NPE(prior, transforms=1).fit(theta[:600], x[:600], max_epochs=1)
    large = NPE(prior, transforms=1).fit(theta, x, max_epochs=1)
    assert small.net.arch["hidden"] == [64, 64] and large.net.arch["hidden"] == [128, 128]
    large.save(tmp_path / "npe")
    assert NPE.load(tmp_path / "npe").net.arch["hidden"] == [128, 128]
    assert NPE(prior, hidden=(8,)).fit(theta, x, max_epochs=1).net.arch["hidden"] == [8]


def test_default_and_explicit_depth_are_built_and_saved(tmp_path):
    prior, theta, x = box_data(600)
    default = NPE(prior, hidden=(8,)).fit(theta, x, max_epochs=1)
    deep = NPE(prior, hidden=(8,), transforms=4).fit(theta, x, max_epochs=1)
    assert default.net.arch["transforms"] == default_transforms(len(theta)) == 3
    assert len(default.net.flow.flows[0].transform.transforms) == 3
    assert len(deep.net.flow.flows[0].transform.transforms) == 4
    deep.save(tmp_path / "npe")
    assert NPE.load(tmp_path / "npe").net.arch["transforms"] == 4


def test_theta_outside_the_prior_is_an_error():
    prior, theta, x = box_data(100)
    theta[3, 1] = 0.7
    with pytest.raises(ValueError, match="1 theta row"):
        NPE(prior, **FAST).fit(theta, x, max_epochs=1)


@pytest.mark.parametrize("kind", ["sbi_box", "mvn", "lognormal"])
def test_any_torch_prior(kind):
    g = torch.Generator().manual_seed(0)
    if kind == "sbi_box":
        sbi_utils = pytest.importorskip("sbi.utils")
        prior = sbi_utils.BoxUniform(torch.zeros(2), torch.ones(2))
        theta = torch.rand(400, 2, generator=g)
    elif kind == "mvn":
        prior = MultivariateNormal(torch.zeros(2), torch.eye(2))
        theta = torch.randn(400, 2, generator=g)
    else:
        prior = Independent(LogNormal(torch.zeros(2), 0.5 * torch.ones(2)), 1)
        theta = torch.exp(0.5 * torch.randn(400, 2, generator=g))
    x = theta + 0.1 * torch.randn(400, 2, generator=g)
    npe = NPE(prior, kind="coupling", **FAST).fit(theta, x, max_epochs=1)
    s = npe.sample((1000,), x[0], generator=g)
    assert torch.isfinite(s).all()
    if kind == "lognormal":
        assert bool((s > 0).all())
    if kind == "sbi_box":
        assert bool(((s >= 0) & (s <= 1)).all())


def test_one_parameter_prior_works():
    prior = Uniform(torch.tensor([0.0]), torch.tensor([2.0]))
    g = torch.Generator().manual_seed(0)
    theta = 2 * torch.rand(300, 1, generator=g)
    x = theta + 0.1 * torch.randn(300, 3, generator=g)
    npe = NPE(prior, **FAST).fit(theta, x, max_epochs=1)
    assert npe.sample((10,), x[0], generator=g).shape == (10, 1)


def test_training_is_deterministic_under_a_seed():
    prior, theta, x = box_data(400)
    a = NPE(prior, seed=3, **FAST).fit(theta, x, max_epochs=2)
    b = NPE(prior, seed=3, **FAST).fit(theta, x, max_epochs=2)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(a.sample((50,), x[0], generator=g()), b.sample((50,), x[0], generator=g()))


# ------------------------------------------------------------------------ datasets


class NaNToy(Simulator):
    """θ ~ U([0, 1]²), x = θ + noise, NaN where θ₁ > 0.9 (a failing solver)."""

    name = "nan_toy"
    allow_nan = True
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **config: Any):
        super().__init__(**config)
        self.param_names = ("a", "b")
        self.x_shape = (2,)
        self.prior = BoxUniform([0, 0], [1, 1])

    def _simulate(self, theta, rng):
        x = theta + 0.1 * rng.standard_normal(theta.shape)
        x[theta[:, 0] > 0.9] = np.nan
        return x


def test_fit_streams_an_hdf5_dataset_and_drops_nan_rows(tmp_path, caplog):
    pytest.importorskip("h5py")
    path = tmp_path / "toy.h5"
    simulators.generate(NaNToy(), 2000, path, seed=0, chunk_size=500)
    with simulators.open_dataset(path) as ds:
        x = ds.x[:]
    n_nan = int(np.isnan(x).any(1).sum())
    assert 100 < n_nan < 300
    with caplog.at_level(logging.WARNING, logger="surrogates.inference.npe"):
        npe = NPE(None, **FAST).fit(path, max_epochs=2)  # the prior comes from the file
    assert npe.n_dropped == n_nan and f"dropped {n_nan} of 2000" in caplog.text
    assert npe.support.kinds == ["interval", "interval"]
    assert npe.param_names == ["a", "b"]
    assert 0.85 * (2000 - n_nan) < npe.n_train < 0.95 * (2000 - n_nan)
    s = npe.sample((100,), x[0] if np.isfinite(x[0]).all() else np.array([0.5, 0.5]))
    assert ((s >= 0) & (s <= 1)).all()
