"""The toy simulators against their definitions: moments, normalized likelihoods, analytic
posteriors, the Lotka–Volterra invariant, and the reference posterior samplers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.integrate import solve_ivp

import simulators
import simulators.toy.lotka_volterra as lv_module
from simulators.toy import (
    SLCP,
    GaussianLinear,
    LotkaVolterra,
    TwoMoons,
    reference_posterior,
    smc_posterior,
    solve_lotka_volterra,
)
from simulators.toy.two_moons import moon_shift

# ---------------------------------------------------------------- two moons


def test_two_moons_noise_moments() -> None:
    # p = x - shift(θ) = (r cos a + 0.25, r sin a): mean (0.25 + 0.1 · 2/π, 0) and
    # E|p - (0.25, 0)|² = 0.1² + 0.01².
    sim = TwoMoons()
    theta = np.tile([[0.3, -0.6]], (100_000, 1))
    p = sim.simulate(theta, np.random.default_rng(0)) - moon_shift(theta)
    se = 0.1 / math.sqrt(len(p))
    assert abs(p[:, 0].mean() - (0.25 + 0.2 / math.pi)) < 5 * se
    assert abs(p[:, 1].mean()) < 5 * se
    r2 = (p[:, 0] - 0.25) ** 2 + p[:, 1] ** 2
    assert abs(r2.mean() - (0.1**2 + 0.01**2)) < 5 * r2.std() / math.sqrt(len(p))
    assert np.all(p[:, 0] > 0.2)  # a half ring: cos a > 0


def test_two_moons_shift_matches_definition() -> None:
    theta = np.array([[0.5, -0.2], [-0.5, 0.2], [1.0, 1.0]])
    s = moon_shift(theta)
    want = np.array([[-0.3, -0.7], [-0.3, 0.7], [-2.0, 0.0]]) / math.sqrt(2)
    np.testing.assert_allclose(s, want, atol=1e-15)


def test_two_moons_likelihood_integrates_to_one() -> None:
    # A wrong Jacobian (dropping 1/(πρ)) would integrate to 0.1·π instead of 1.
    sim = TwoMoons()
    theta = np.array([[0.3, -0.5]])
    c = moon_shift(theta)[0] + np.array([0.25, 0.0])
    h = 5e-4
    g = np.arange(-0.16, 0.16, h) + h / 2
    gx, gy = np.meshgrid(c[0] + g, c[1] + g, indexing="ij")
    x = np.stack([gx.ravel(), gy.ravel()], axis=-1)
    dens = np.exp(sim.log_likelihood(np.repeat(theta, len(x), axis=0), x))
    assert abs(dens.sum() * h * h - 1.0) < 2e-3


def test_two_moons_likelihood_matches_histogram() -> None:
    sim = TwoMoons()
    theta = np.array([[-0.4, 0.1]])
    x = sim.simulate(np.repeat(theta, 200_000, axis=0), np.random.default_rng(1))
    edges_x = np.linspace(x[:, 0].min(), x[:, 0].max(), 9)
    edges_y = np.linspace(x[:, 1].min(), x[:, 1].max(), 9)
    counts, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=[edges_x, edges_y])
    # Expected counts from the density, integrated with a fine midpoint rule per bin.
    fx = np.linspace(edges_x[0], edges_x[-1], 801)
    fy = np.linspace(edges_y[0], edges_y[-1], 801)
    mx, my = (fx[1:] + fx[:-1]) / 2, (fy[1:] + fy[:-1]) / 2
    gx, gy = np.meshgrid(mx, my, indexing="ij")
    pts = np.stack([gx.ravel(), gy.ravel()], axis=-1)
    d = np.exp(sim.log_likelihood(np.repeat(theta, len(pts), axis=0), pts)).reshape(800, 800)
    cell = (fx[1] - fx[0]) * (fy[1] - fy[0])
    expected = d.reshape(8, 100, 8, 100).sum(axis=(1, 3)) * cell * len(x)
    big = expected > 100
    z = (counts[big] - expected[big]) / np.sqrt(expected[big])
    assert big.sum() >= 8
    assert np.max(np.abs(z)) < 5


def test_two_moons_reference_posterior_inverts_the_simulator() -> None:
    sim = TwoMoons()
    rng = np.random.default_rng(2)
    x_o = sim.simulate(np.array([[0.2, 0.4]]), rng)[0].astype(np.float64)
    post = reference_posterior(sim, x_o, 20_000, rng)
    assert post.shape == (20_000, 2)
    assert np.all(np.abs(post) <= 1)
    # Pushed back through the noiseless map, each sample must explain x_o by a point on the ring
    # with a ∈ (-π/2, π/2): p₁ - 0.25 ≥ 0, and radius ~ N(0.1, 0.01²).
    p = x_o - moon_shift(post)
    u, v = p[:, 0] - 0.25, p[:, 1]
    assert np.all(u >= 0)
    rho = np.hypot(u, v)
    assert abs(rho.mean() - 0.1) < 5 * 0.01 / math.sqrt(len(rho))
    assert abs(rho.std() - 0.01) < 5e-4
    # Both crescents (both signs of θ1 + θ2) carry half of the mass; here both lie in the prior.
    s = post.sum(axis=1)
    assert abs(np.mean(s > 0) - 0.5) < 0.02


def test_smc_matches_exact_two_moons_posterior() -> None:
    sim = TwoMoons()
    rng = np.random.default_rng(3)
    x_o = sim.simulate(np.array([[0.3, 0.5]]), rng)[0].astype(np.float64)
    exact = reference_posterior(sim, x_o, 20_000, rng)
    res = smc_posterior(lambda t: sim.log_likelihood(t, x_o), sim.prior, 4000, rng)
    smc = res.samples
    assert res.betas[-1] == 1.0 and smc.shape == (4000, 2)
    np.testing.assert_allclose(smc.mean(0), exact.mean(0), atol=0.03)
    np.testing.assert_allclose(smc.std(0), exact.std(0), rtol=0.05)
    assert abs(np.mean(smc.sum(1) > 0) - np.mean(exact.sum(1) > 0)) < 0.04
    # The log-evidence estimate against a direct quadrature of ∫ p(x_o|θ) p(θ) dθ.
    g = np.linspace(-1, 1, 1201)
    gx, gy = np.meshgrid(g, g, indexing="ij")
    th = np.stack([gx.ravel(), gy.ravel()], axis=-1)
    z = (
        np.trapezoid(np.trapezoid(np.exp(sim.log_likelihood(th, x_o)).reshape(1201, 1201), g), g)
        / 4
    )
    assert abs(res.log_evidence - math.log(z)) < 0.1


# ---------------------------------------------------------------- Gaussian linear


def test_gaussian_linear_noise_moments() -> None:
    sim = GaussianLinear(dim=3, noise_variance=0.05)
    theta = np.tile([[0.1, -0.2, 0.3]], (50_000, 1))
    x = sim.simulate(theta, np.random.default_rng(0)).astype(np.float64)
    np.testing.assert_allclose(x.mean(0), theta[0], atol=5 * math.sqrt(0.05 / len(x)))
    np.testing.assert_allclose(np.cov(x.T), 0.05 * np.eye(3), atol=0.002)


def test_gaussian_linear_defaults_are_sbibm() -> None:
    sim = GaussianLinear()
    assert sim.x_shape == (10,) and len(sim.param_names) == 10
    np.testing.assert_allclose(sim.prior.cov, 0.1 * np.eye(10))
    assert sim.noise_variance == 0.1


def test_gaussian_linear_posterior_matches_direct_bayes() -> None:
    # Different prior and noise variances, so that swapping them fails.
    sim = GaussianLinear(dim=4, prior_variance=0.3, noise_variance=0.05)
    x_o = np.array([0.2, -0.1, 0.5, 0.0])
    mean, cov = sim.posterior(x_o)
    sp, sn = 0.3 * np.eye(4), 0.05 * np.eye(4)
    gain = sp @ np.linalg.inv(sp + sn)
    np.testing.assert_allclose(mean, gain @ x_o, rtol=1e-12)
    np.testing.assert_allclose(cov, sp - gain @ sp, rtol=1e-12, atol=1e-15)
    samples = reference_posterior(sim, x_o, 50_000, np.random.default_rng(0))
    np.testing.assert_allclose(samples.mean(0), mean, atol=5 * math.sqrt(cov[0, 0] / 50_000))
    np.testing.assert_allclose(np.cov(samples.T), cov, atol=0.003)


def test_gaussian_linear_likelihood_is_the_normal_density() -> None:
    sim = GaussianLinear(dim=3, noise_variance=0.2)
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(5, 3))
    x = rng.normal(size=(5, 3))
    want = [
        stats.multivariate_normal(t, 0.2 * np.eye(3)).logpdf(xi)
        for t, xi in zip(theta, x, strict=True)
    ]
    np.testing.assert_allclose(sim.log_likelihood(theta, x), want, rtol=1e-12)
    # One shared observation broadcasts over the rows of θ.
    np.testing.assert_allclose(
        sim.log_likelihood(theta, x[0]), sim.log_likelihood(theta, x[[0] * 5])
    )


def test_smc_matches_analytic_gaussian_posterior() -> None:
    sim = GaussianLinear()
    rng = np.random.default_rng(4)
    x_o = sim.simulate(sim.prior.sample(1, rng), rng)[0].astype(np.float64)
    mean, cov = sim.posterior(x_o)
    res = smc_posterior(lambda t: sim.log_likelihood(t, x_o), sim.prior, 4000, rng)
    sd = math.sqrt(cov[0, 0])
    assert np.max(np.abs(res.samples.mean(0) - mean)) < 0.1 * sd
    np.testing.assert_allclose(res.samples.std(0), sd, rtol=0.08)
    # The exact evidence: x_o ~ N(0, (σp² + σn²) I).
    want = stats.multivariate_normal(np.zeros(10), 0.2 * np.eye(10)).logpdf(x_o)
    assert abs(res.log_evidence - want) < 0.1


# ---------------------------------------------------------------- SLCP


THETA_SLCP = np.array([[0.7, -1.2, 1.1, -0.8, 0.6]])


def test_slcp_draw_moments() -> None:
    sim = SLCP()
    n = 40_000
    x = sim.simulate(np.repeat(THETA_SLCP, n, axis=0), np.random.default_rng(0))
    draws = x.astype(np.float64).reshape(n, 4, 2)
    s1, s2, rho = 1.1**2, 0.8**2, math.tanh(0.6)  # standard deviations are θ3², θ4²
    want_cov = np.array([[s1**2, rho * s1 * s2], [rho * s1 * s2, s2**2]]) + 1e-6 * np.eye(2)
    for j in range(4):
        np.testing.assert_allclose(draws[:, j].mean(0), [0.7, -1.2], atol=5 * s1 / math.sqrt(n))
        np.testing.assert_allclose(np.cov(draws[:, j].T), want_cov, rtol=0.04, atol=0.005)
    # The four draws are independent.
    cross = np.cov(draws[:, 0, 0], draws[:, 1, 0])[0, 1]
    assert abs(cross) < 5 * s1**2 / math.sqrt(n)


def test_slcp_likelihood_is_four_normal_densities() -> None:
    sim = SLCP()
    rng = np.random.default_rng(1)
    theta = sim.prior.sample(6, rng)
    x = sim.simulate(theta, rng).astype(np.float64)
    for t, xi, ll in zip(theta, x, sim.log_likelihood(theta, x), strict=True):
        s1, s2, rho = t[2] ** 2, t[3] ** 2, math.tanh(t[4])
        cov = np.array([[s1**2 + 1e-6, rho * s1 * s2], [rho * s1 * s2, s2**2 + 1e-6]])
        want = stats.multivariate_normal(t[:2], cov).logpdf(xi.reshape(4, 2)).sum()
        assert ll == pytest.approx(want, rel=1e-10, abs=1e-8)


def test_slcp_likelihood_integrates_to_one_over_a_pair() -> None:
    # ∫ p(x₁, x₂, x₃, x₄ | θ) dx₁ = p(x₂ | θ) p(x₃ | θ) p(x₄ | θ), on a grid over the first draw.
    sim = SLCP()
    x_rest = np.array([0.9, -1.0, 0.2, -1.5, 1.5, -0.7])
    theta = THETA_SLCP
    h = 0.01
    g1 = np.arange(0.7 - 8 * 1.21, 0.7 + 8 * 1.21, h)
    g2 = np.arange(-1.2 - 8 * 0.64, -1.2 + 8 * 0.64, h)
    a, b = np.meshgrid(g1, g2, indexing="ij")
    xs = np.column_stack([a.ravel(), b.ravel(), np.tile(x_rest, (a.size, 1))])
    ll = sim.log_likelihood(np.repeat(theta, len(xs), axis=0), xs)
    rest = sim.log_likelihood(theta, np.concatenate([x_rest[:2], x_rest]))[0]
    one_pair = rest - sim.log_likelihood(theta, np.tile(x_rest[:2], 4))[0] / 4
    assert np.exp(ll).sum() * h * h / np.exp(one_pair) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow
def test_smc_slcp_modes_are_balanced() -> None:
    # Only θ3² and θ4² enter: the four sign combinations are equally probable a posteriori.
    sim = SLCP()
    x_o = sim.simulate(np.array([[0.7, -2.9, -1.0, -0.9, 0.6]]), np.random.default_rng(5))[0]
    post = reference_posterior(sim, x_o, 10_000, np.random.default_rng(6))
    assert np.all(sim.prior.contains(post))
    for i in (2, 3):
        assert abs(np.mean(post[:, i] > 0) - 0.5) < 0.03
    quad = np.mean((post[:, 2] > 0) & (post[:, 3] > 0))
    assert abs(quad - 0.25) < 0.03


# ---------------------------------------------------------------- Lotka–Volterra


def _scipy_lv(p: np.ndarray, times: np.ndarray) -> np.ndarray:
    def f(t: float, u: np.ndarray) -> list[float]:
        return [p[0] * u[0] - p[1] * u[0] * u[1], -p[2] * u[1] + p[3] * u[0] * u[1]]

    sol = solve_ivp(f, (0.0, times[-1]), [30.0, 1.0], t_eval=times, method="DOP853",
                    rtol=1e-12, atol=1e-12)  # fmt: skip
    return sol.y.T


def test_lv_definition_matches_sbibm() -> None:
    sim = LotkaVolterra()
    np.testing.assert_allclose(lv_module.OBS_TIMES, np.arange(0, 201, 21)[:10] * 0.1)
    np.testing.assert_allclose(sim.prior.loc, [-0.125, -3.0, -0.125, -3.0])
    np.testing.assert_allclose(sim.prior.scale, 0.5)
    assert sim.x_shape == (20,) and sim.allow_nan


def test_lv_solver_matches_solve_ivp() -> None:
    theta = LotkaVolterra().prior.sample(20, np.random.default_rng(0))
    ours = solve_lotka_volterra(theta)
    for i in range(len(theta)):
        ref = _scipy_lv(theta[i], lv_module.OBS_TIMES)
        rel = np.max(np.abs(ours[i] - ref) / np.abs(ref))
        assert rel < 1e-6, (i, rel)


def test_lv_conserves_invariant() -> None:
    # V = δx − γ ln x + βy − α ln y is constant along every exact trajectory.
    theta = LotkaVolterra().prior.sample(50, np.random.default_rng(1))
    times = np.linspace(0.0, 20.0, 81)
    sol = solve_lotka_volterra(theta, times)
    x, y = sol[..., 0], sol[..., 1]
    a, b, g, d = (theta[:, [i]] for i in range(4))
    v = d * x - g * np.log(x) + b * y - a * np.log(y)
    drift = np.max(np.abs(v - v[:, :1]) / np.abs(v[:, :1]), axis=1)
    assert np.max(drift) < 1e-6  # the solver's accuracy; a wrong term drifts by O(1)
    np.testing.assert_allclose(sol[:, 0], [[30.0, 1.0]] * 50, rtol=1e-15)


def test_lv_noise_is_lognormal_around_the_solution() -> None:
    sim = LotkaVolterra()
    theta = np.tile([[0.8, 0.05, 1.0, 0.05]], (5000, 1))
    x = sim.simulate(theta, np.random.default_rng(2)).astype(np.float64)
    mu = sim.log_mean(theta[:1])
    z = (np.log(x) - mu) / 0.1
    assert np.max(np.abs(z.mean(0))) < 5 / math.sqrt(5000)
    assert np.max(np.abs(z.std(0) - 1)) < 0.05
    # Prey first, then predators: the first values are the initial populations (30, 1).
    assert mu[0, 0] == pytest.approx(math.log(30)) and mu[0, 10] == pytest.approx(0.0, abs=1e-12)


def test_lv_likelihood_is_lognormal_density() -> None:
    sim = LotkaVolterra()
    rng = np.random.default_rng(3)
    theta = sim.prior.sample(4, rng)
    x = sim.simulate(theta, rng).astype(np.float64)
    mu = sim.log_mean(theta)
    want = stats.lognorm(s=0.1, scale=np.exp(mu)).logpdf(x).sum(axis=1)
    np.testing.assert_allclose(sim.log_likelihood(theta, x), want, rtol=1e-10)
    # Non-positive θ (outside the prior) has zero likelihood rather than an error.
    bad = theta.copy()
    bad[0, 1] = -0.1
    assert sim.log_likelihood(bad, x)[0] == -np.inf


def test_lv_failed_rows_are_nan_and_do_not_shift_other_rows(monkeypatch) -> None:
    sim = LotkaVolterra()
    theta = sim.prior.sample(5, np.random.default_rng(4))
    good = sim.simulate(theta, np.random.default_rng(9))
    original = lv_module.solve_lotka_volterra

    def failing(th: np.ndarray, *args, **kwargs) -> np.ndarray:
        out = original(th, *args, **kwargs)
        out[1] = np.nan
        return out

    monkeypatch.setattr(lv_module, "solve_lotka_volterra", failing)
    x = sim.simulate(theta, np.random.default_rng(9))
    assert np.all(np.isnan(x[1]))
    np.testing.assert_array_equal(np.delete(x, 1, 0), np.delete(good, 1, 0))


def test_lv_solver_reports_failure_as_nan() -> None:
    theta = LotkaVolterra().prior.sample(3, np.random.default_rng(5))
    out = solve_lotka_volterra(theta, max_steps=3)
    assert np.all(np.isnan(out[:, 1:]))


@pytest.mark.slow
def test_lv_reference_posterior_covers_truth() -> None:
    sim = simulators.get("lotka_volterra")
    theta_o = np.array([[0.83, 0.041, 1.08, 0.049]])
    x_o = sim.simulate(theta_o, np.random.default_rng(5))[0]
    post = reference_posterior(sim, x_o, 1000, np.random.default_rng(1), n_particles=1000)
    z = (post.mean(0) - theta_o[0]) / post.std(0)
    assert np.all(np.abs(z) < 4)
    assert np.all(post.std(0) < 0.1 * theta_o[0])  # 20 observations pin θ to a few percent
