"""VAE: the ELBO and the IWAE bound against exact log-likelihoods, the training objective (KL
warm-up, free bits), and sampling with the decoder noise.

The exact tests (float64) set a linear VAE -- probabilistic PCA given c -- by hand, where
log p(x | θ) is a Gaussian in closed form; the statistical tests train on a linear-Gaussian
simulator x = Aθ + b + σ ⊙ ε. Save/load, resume and the shower path are in the contract test.
"""

from __future__ import annotations

import copy
import csv
import math

import numpy as np
import pytest
import torch
from scipy import stats

import simulators
from surrogates.models import VAE
from surrogates.training import METRICS, StepContext

D, P = 5, 2
RNG = np.random.default_rng(0)
A = RNG.normal(size=(D, P))
B = RNG.normal(size=D)
SIGMA = np.array([0.2, 0.3, 0.4, 0.5, 0.6])


def linear_gaussian(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    theta = rng.uniform(-1, 1, (n, P))
    return theta, theta @ A.T + B + SIGMA * rng.standard_normal((n, D))


def exact_log_prob(x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    z = (x - theta @ A.T - B) / SIGMA
    return (-0.5 * z**2 - np.log(SIGMA) - 0.5 * math.log(2 * math.pi)).sum(1)


# --------------------------------------------------------------------------- exact (float64)
def ppca_vae(posterior_exact: bool = True) -> tuple[VAE, dict[str, torch.Tensor]]:
    """A linear VAE set by hand: y | z, c ~ N(W z + M c + m, diag s²), z ~ N(0, I_2), with
    W^T S^-1 W diagonal so that the exact posterior has a diagonal covariance, and the encoder
    set to that posterior (or to a worse one)."""
    theta, x = linear_gaussian(500, 1)
    model = VAE.for_dataset((theta, x), hidden=[], latent=2, device="cpu", free_bits=0.0)
    net = model.net.double()
    g = torch.Generator().manual_seed(0)
    s = 0.3 + torch.rand(D, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(D, 2, generator=g, dtype=torch.float64))
    w = s[:, None] * q * torch.tensor([1.5, 0.7], dtype=torch.float64)
    m_c = torch.randn(D, P, generator=g, dtype=torch.float64)
    m0 = torch.randn(D, generator=g, dtype=torch.float64)
    prec = w.T / s**2  # W^T S^-1, (2, D)
    post_var = 1 / (1 + (prec @ w).diagonal())
    k = post_var[:, None] * prec  # posterior mean = K (y - M c - m)
    if not posterior_exact:
        k, post_var = 0.5 * k, 3.0 * post_var
    with torch.no_grad():
        enc, dec = net.encoder[0], net.decoder[0]
        enc.weight.zero_()
        enc.weight[:2] = torch.cat([k, -k @ m_c], dim=1)
        enc.bias.zero_()
        enc.bias[:2] = -k @ m0
        enc.bias[2:] = torch.log(post_var)
        dec.weight.copy_(torch.cat([w, m_c], dim=1))
        dec.bias.copy_(m0)
        net.log_scale.copy_(torch.log(s))
    return model, {"w": w, "m_c": m_c, "m0": m0, "s": s}


def ppca_log_prob(model: VAE, p: dict[str, torch.Tensor], x: np.ndarray, theta: np.ndarray):
    """The closed-form log p(x | θ): a Gaussian in feature space plus the standardization's
    log-determinant."""
    xt, th = torch.as_tensor(x), torch.as_tensor(theta)
    y, ladj = model.pre.forward(xt, th)
    c = model.pre.condition(th)
    cov = p["w"] @ p["w"].T + torch.diag(p["s"] ** 2)
    mvn = torch.distributions.MultivariateNormal(c @ p["m_c"].T + p["m0"], cov)
    return (mvn.log_prob(y) + ladj).numpy()


def test_elbo_equals_log_likelihood_when_q_is_the_posterior():
    model, p = ppca_vae()
    theta, x = linear_gaussian(200, 2)
    exact = ppca_log_prob(model, p, x, theta)
    for k in (1, 7):  # every importance weight equals p(y | c): every bound is exact
        got = model.log_prob(x, theta, k=k, generator=torch.Generator().manual_seed(k))
        np.testing.assert_allclose(got, exact, rtol=0, atol=1e-10)
    # the training terms (one draw of z, the KL in closed form) estimate the same ELBO without
    # bias: over 100 draws per row their mean is within 4 standard errors of log p(y | c)
    th, xt = torch.as_tensor(theta).repeat(100, 1), torch.as_tensor(x).repeat(100, 1)
    y, ladj = model.pre.forward(xt, th)
    recon, kl = model.net.terms(y, model.pre.condition(th), torch.Generator().manual_seed(0))
    err = (-(recon + kl.sum(1)) + ladj).detach().numpy() - np.tile(exact, 100)
    assert abs(err.mean()) < 4 * err.std() / math.sqrt(len(err)) + 1e-12


def test_iwae_bound_tightens_with_k_towards_the_log_likelihood():
    model, p = ppca_vae(posterior_exact=False)
    theta, x = linear_gaussian(2000, 3)
    exact = ppca_log_prob(model, p, x, theta).mean()
    bounds = [
        model.log_prob(x, theta, k=k, generator=torch.Generator().manual_seed(0)).mean()
        for k in (1, 8, 64, 512)
    ]
    gaps = [exact - b for b in bounds]
    print("exact", exact, "gaps for K = 1, 8, 64, 512", gaps)
    assert bounds == sorted(bounds) and min(gaps[:3]) > 0 and gaps[0] > 0.5
    assert abs(gaps[-1]) < 0.01 * gaps[0]  # at K = 512 the gap is below the Monte Carlo noise


def mixture_net(seed: int = 0, separated: bool = False):
    """A float64 decoder with 2 components per feature and random weights; ``separated``: the
    last layer's output is its bias, weights 0.2 / 0.8, means -2 / 3 apart, σ 0.5 / 1."""
    theta, x = linear_gaussian(200, seed)
    model = VAE.for_dataset((theta, x), hidden=[8], latent=2, components=2, device="cpu",
                            seed=seed)  # fmt: skip
    net = model.net.double()
    if separated:
        last = [m for m in net.decoder.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.copy_(torch.tensor([[math.log(0.2)] * D, [math.log(0.8)] * D,
                                          [-2.0] * D, [3.0] * D,
                                          [math.log(0.5)] * D, [0.0] * D]).flatten())  # fmt: skip
    return net


def test_mixture_likelihood_is_the_gaussian_mixture_density():
    net = mixture_net()
    g = torch.Generator().manual_seed(1)
    z, c = (
        torch.randn(50, 2, generator=g, dtype=torch.float64),
        torch.randn(50, P, generator=g, dtype=torch.float64),
    )
    y = 2 * torch.randn(50, D, generator=g, dtype=torch.float64)
    logw, mean, log_scale = net.mixture(z, c)  # (N, K, D)
    assert logw.shape == mean.shape == (50, 2, D)
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=logw.transpose(1, 2)),
        torch.distributions.Normal(mean.transpose(1, 2), log_scale.exp().transpose(1, 2)),
    )
    expected = mix.log_prob(y).sum(-1)
    torch.testing.assert_close(net.log_likelihood(y, z, c), expected, rtol=0, atol=1e-12)


def test_mixture_draws_follow_the_mixture():
    net = mixture_net(1, separated=True)
    n = 40_000
    z = torch.randn(1, 2, dtype=torch.float64).repeat(n, 1)
    c = torch.randn(1, P, dtype=torch.float64).repeat(n, 1)
    with torch.no_grad():
        y = net.draw(z, c, torch.Generator().manual_seed(0)).numpy()
        logw, mean, log_scale = (t[0].numpy() for t in net.mixture(z[:1], c[:1]))
    w, sd = np.exp(logw), np.exp(log_scale)
    np.testing.assert_allclose(w[:, 0], [0.2, 0.8])
    assert (np.abs(mean[1] - mean[0]) > 4).all()
    for j in range(D):  # the draws of each feature against the mixture's CDF

        def cdf(v, j=j):
            return (w[:, j] * stats.norm.cdf((v[:, None] - mean[:, j]) / sd[:, j])).sum(1)

        assert stats.kstest(y[:, j], cdf).pvalue > 1e-3
    net.noise = False  # without noise: the mixture's mean
    with torch.no_grad():
        np.testing.assert_allclose(net.draw(z[:1], c[:1]).numpy()[0], (w * mean).sum(0),
                                   rtol=1e-12)  # fmt: skip


def test_flow_prior_is_fitted_to_the_encoder_draws_without_moving_the_encoder():
    theta, x = linear_gaussian(200, 0)
    model = VAE.for_dataset((theta, x), hidden=[8], latent=3, prior="flow", device="cpu")
    net = model.net.double()
    th, xt = torch.as_tensor(theta), torch.as_tensor(x)
    y, _ = model.pre.forward(xt, th)
    c = model.pre.condition(th)
    _, _, z, _ = net._terms(y, c, torch.Generator().manual_seed(0))
    net._prior_nll(z, c).backward()
    assert all(p.grad is None for p in (*net.encoder.parameters(), *net.decoder.parameters()))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.prior.parameters())
    # the bound and the validation loss score the model's prior: exact when it is N(0, I)
    lp_flow = net.log_prior(z, c)
    net.prior = None
    normal = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(net.log_prior(z, c), normal, rtol=0, atol=1e-12)
    assert not torch.allclose(lp_flow, normal)


# --------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained() -> VAE:
    theta, x = linear_gaussian(8000, 0)
    model = VAE.for_dataset((theta, x), hidden=[32, 32], latent=2, seed=0, device="cpu")
    return model.fit((theta, x), max_epochs=60, batch_size=256, lr=3e-3, progress=False)


def test_trained_elbo_is_below_and_close_to_the_exact_log_likelihood(trained):
    theta, x = linear_gaussian(20_000, 1)
    exact = exact_log_prob(x, theta).mean()
    elbo = trained.log_prob(x, theta, k=1).mean()
    iwae = trained.log_prob(x, theta, k=64).mean()
    print(f"exact {exact:.4f}  ELBO {elbo:.4f}  IWAE-64 {iwae:.4f}  "
          f"gap/dim {(exact - elbo) / D:.4f}")  # fmt: skip
    assert elbo <= iwae <= exact
    assert (exact - elbo) / D < 0.05


def test_iwae_k1_below_k64_on_a_trained_model_with_a_used_latent():
    rng = np.random.default_rng(0)
    theta = rng.uniform(-1, 1, (4000, 1))
    x1 = theta[:, 0] + 0.4 * rng.standard_normal(4000)
    x = np.stack([x1, 0.8 * x1**2 + 0.1 * rng.standard_normal(4000)], 1)
    model = VAE.for_dataset((theta, x), hidden=[32, 32], latent=2, device="cpu", warmup_steps=50)
    model.fit((theta, x), max_epochs=15, lr=3e-3, progress=False)
    k1 = model.log_prob(x[:2000], theta[:2000], k=1).mean()
    k64 = model.log_prob(x[:2000], theta[:2000], k=64).mean()
    print(f"IWAE K=1 {k1:.4f}  K=64 {k64:.4f}")
    assert k1 < k64 - 0.02


def test_samples_need_the_decoder_noise(trained):
    theta0 = np.array([[0.3, -0.2]])
    theta = np.repeat(theta0, 4000, 0)
    x = trained.sample(theta, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(x.mean(0), (theta0 @ A.T + B)[0], atol=0.05)
    np.testing.assert_allclose(x.std(0), SIGMA, rtol=0.1)
    trained.net.noise = False
    try:
        mean_only = trained.sample(theta, generator=torch.Generator().manual_seed(0))
    finally:
        trained.net.noise = True
    print("std with noise", x.std(0).round(3), "decoder mean only", mean_only.std(0).round(3))
    # the decoder mean moves on the 2-d image of z only: 3 directions carry no noise at all
    eig = np.linalg.eigvalsh(np.cov(mean_only.T))
    print("covariance eigenvalues of the decoder mean", eig)
    assert (eig[: D - 2] < (0.5 * SIGMA.min()) ** 2).all()


@pytest.mark.parametrize("free_bits", [0.0, 1e3])
def test_step_minimizes_recon_plus_kl_above_free_bits(free_bits):
    theta, x = linear_gaussian(64, 4)
    model = VAE.for_dataset((theta, x), hidden=[8], latent=3, device="cpu", warmup_steps=0,
                            free_bits=free_bits, beta=0.7)  # fmt: skip
    net = model.net.double()
    batch = (torch.as_tensor(theta), torch.as_tensor(x))
    ref = copy.deepcopy(net)
    y, c = ref._features(batch, None)
    recon, kl = ref.terms(y, c, torch.Generator().manual_seed(5))
    kl_dims = kl.mean(0)
    want = recon.mean() + 0.7 * (kl_dims.sum() if free_bits == 0 else 0.0)
    grads = torch.autograd.grad(want, list(ref.parameters()))
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    ctx = StepContext([opt], torch.Generator().manual_seed(5), torch.device("cpu"))
    net.train_step(batch, ctx)
    for (name, p), p0, gr in zip(net.named_parameters(), ref.parameters(), grads, strict=True):
        torch.testing.assert_close(p0 - p, gr, rtol=1e-9, atol=1e-12, msg=name)
    assert int(net.steps) == 1


def test_kl_warmup_is_linear_and_logged(tmp_path):
    theta, x = linear_gaussian(600, 5)
    model = VAE.for_dataset((theta, x), hidden=[8], device="cpu", warmup_steps=4, beta=2.0)
    model.fit((theta, x), run_dir=tmp_path, max_steps=6, val_every=1, batch_size=64,
              progress=False)  # fmt: skip
    with open(tmp_path / METRICS) as f:
        rows = list(csv.DictReader(f))
    for col in ("train_loss", "recon", "kl", "kl_weight", "val_loss", "val_recon", "val_kl"):
        assert col in rows[0], col
    assert [float(r["kl_weight"]) for r in rows] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    for r in rows:  # the validation loss is the plain negative ELBO (up to its draws of z)
        want = float(r["val_recon"]) + float(r["val_kl"])
        assert float(r["val_loss"]) == pytest.approx(want, rel=0.01)


def test_showers_respect_the_preprocessing_and_have_a_feature_bound(tmp_path):
    calo = simulators.get("calorimeter", particle="photon", e_max_mev=4096.0)
    simulators.generate(calo, 300, tmp_path / "s.h5", seed=0, chunk_size=100)
    model = VAE.for_dataset(tmp_path / "s.h5", hidden=[16], latent=4, device="cpu")
    model.fit(tmp_path / "s.h5", max_steps=4, progress=False)
    with simulators.open_dataset(tmp_path / "s.h5") as ds:
        e, x_data = ds.theta[:50], ds.x[:50]
    x = model.sample(e, generator=torch.Generator().manual_seed(0))
    # generated in the shower preprocessing's feature space: no negative voxel, at most s E
    assert np.isfinite(x).all() and (x >= 0).all()
    assert (x.sum(1) <= model.pre.energy_scale * e[:, 0] * (1 + 1e-5)).all()
    lp = model.log_prob(x_data, e, k=4)  # the bound on the feature density (not bijective)
    assert lp.shape == (50,) and np.isfinite(lp).all()
    assert np.array_equal(lp, model.log_prob(x_data, e, k=4))  # a fixed seed by default
