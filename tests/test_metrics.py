"""Tests of the sample-comparison metrics: each says "same" for two samples of one distribution and
"different" for a small known perturbation, and each formula is checked against a direct
computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from surrogates.metrics import (
    c2st,
    c2st_folds,
    classifier_auc,
    compare_features,
    frechet_distance,
    frechet_distance_extrapolated,
    gaussian_frechet_distance,
    isotonic_calibration,
    low_level_inputs,
    mmd2,
    mmd_permutation_test,
    normalized_histogram,
    reference_bins,
    roc_auc,
    separation_power,
    stack_features,
    wasserstein_1d,
)
from surrogates.metrics.training import StackedMLP, fit_binary_classifier, predict_logits
from surrogates.nn import mlp

# ---------------------------------------------------------------------------------------------
# ROC AUC and calibration


def _auc_direct(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(score of a positive > score of a negative) + ½ P(tie), by enumerating all pairs."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    diff = pos[:, None] - neg[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def test_roc_auc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(size=300) + 0.7 * labels, 1)  # rounding makes many ties
    assert len(np.unique(scores)) < 100
    assert roc_auc(scores, labels) == pytest.approx(_auc_direct(scores, labels), abs=1e-12)


def test_roc_auc_extremes():
    labels = np.array([0, 0, 0, 1, 1])
    assert roc_auc(np.array([1, 2, 3, 4, 5.0]), labels) == 1.0
    assert roc_auc(np.array([5, 4, 3, 2, 1.0]), labels) == 0.0
    assert roc_auc(np.ones(5), labels) == 0.5
    with pytest.raises(ValueError, match="both labels"):
        roc_auc(np.ones(3), np.zeros(3))


def test_isotonic_calibration_pools_adjacent_violators():
    # Sorted labels 0,1,0,1 -> blocks {0}, {1,0}, {1}: means 0, 0.5, 0.5, 1.
    cal = isotonic_calibration(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 1, 0, 1]))
    np.testing.assert_allclose(cal(np.array([1.0, 2.0, 3.0, 4.0])), [0, 0.5, 0.5, 1])
    np.testing.assert_allclose(cal(np.array([-10.0, 2.5, 10.0])), [0, 0.5, 1])
    # A fully reversed sequence pools into one block at the mean.
    cal = isotonic_calibration(np.arange(4.0), np.array([1, 1, 0, 0]))
    np.testing.assert_allclose(cal(np.arange(4.0)), 0.5)


def test_isotonic_calibration_is_monotone_and_preserves_mean():
    rng = np.random.default_rng(1)
    s = rng.normal(size=500)
    y = (rng.uniform(size=500) < 1 / (1 + np.exp(-2 * s))).astype(float)
    fitted = isotonic_calibration(s, y)(np.sort(s))
    assert np.all(np.diff(fitted) >= 0)
    assert fitted.mean() == pytest.approx(y.mean(), abs=1e-12)  # PAV keeps the block sums


# ---------------------------------------------------------------------------------------------
# The shared training loop


def test_training_loop_keeps_best_epoch_and_is_seeded():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(400, 2)).astype(np.float32))
    y = (x[:, 0] > 0).float()

    def run(seed: int):
        gen = torch.Generator().manual_seed(seed)
        model = mlp(2, (8,), 1, generator=gen)
        fit = fit_binary_classifier(
            model, x[:300], y[:300], x[300:], y[300:], epochs=15, batch_size=64, lr=1e-2,
            generator=gen,
        )  # fmt: skip
        return fit, [p.detach().clone() for p in fit.model.parameters()]

    fit, w1 = run(3)
    _, w2 = run(3)
    assert all(torch.equal(a, b) for a, b in zip(w1, w2, strict=True))
    assert fit.best_epoch == int(np.argmin(fit.val_loss))
    assert fit.val_accuracy[fit.best_epoch] > 0.9  # a linear boundary is easy


def test_stacked_members_train_independently():
    # Member 0 learns a linear boundary; member 1 gets labels that carry nothing. Changing
    # member 1's labels must leave member 0's weights bit for bit unchanged, and each member
    # keeps its own best epoch under its own patience.
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(2, 400, 2)).astype(np.float32))
    y = torch.stack([(x[0, :, 0] > 0).float(), torch.from_numpy(rng.integers(0, 2, 400)).float()])

    def run(labels: torch.Tensor):
        gen = torch.Generator().manual_seed(0)
        model = StackedMLP(2, 2, (8,), generator=gen)
        fit = fit_binary_classifier(
            model, x[:, :300], labels[:, :300], x[:, 300:], labels[:, 300:], epochs=40,
            batch_size=64, lr=1e-2, patience=5, select="accuracy", generator=gen,
        )  # fmt: skip
        return fit

    fit = run(y)
    other = y.clone()
    other[1] = 1 - other[1]
    again = run(other)
    for w, v in zip(fit.model.parameters(), again.model.parameters(), strict=True):
        assert torch.equal(w[0], v[0])
    assert max(fit.val_accuracy[0]) > 0.9 and max(fit.val_accuracy[1]) < 0.7
    for member in range(2):  # the patience rule applied to the member's own history
        best, expected = -1.0, 0
        for epoch, acc in enumerate(fit.val_accuracy[member]):
            if acc > best:
                best, expected = acc, epoch
            elif epoch - expected >= 5:
                break
        assert fit.best_epoch[member] == expected
    assert fit.best_epoch[0] != fit.best_epoch[1]
    pred = predict_logits(fit.model, x[:, 300:])
    assert pred.shape == (2, 100)
    accuracy = ((pred > 0).float() == y[:, 300:]).float().mean(1)
    for member in range(2):  # the kept weights are the best epoch's
        assert accuracy[member] == fit.val_accuracy[member][fit.best_epoch[member]]


# ---------------------------------------------------------------------------------------------
# C2ST


def test_c2st_same_gaussian_is_chance():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3000, 2)), rng.normal(size=(3000, 2))
    assert abs(c2st(a, b, seed=0) - 0.5) < 0.03


def test_c2st_shifted_means_is_near_one():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2000, 2)), rng.normal(size=(2000, 2)) + 3.0
    # Bayes accuracy for a shift of 3 in each of 2 dims: Phi(3 * sqrt(2) / 2) = 0.983.
    assert c2st(a, b, seed=0) > 0.96


def test_c2st_reaches_bayes_accuracy_for_small_shift():
    # N(0, 1) vs N(0.4, 1) on the first axis: best accuracy Phi(0.2) = 0.579.
    rng = np.random.default_rng(2)
    a = rng.normal(size=(6000, 2))
    b = rng.normal(size=(6000, 2)) + np.array([0.4, 0.0])
    acc = c2st(a, b, seed=1)
    assert abs(acc - stats.norm.cdf(0.2)) < 0.02


def ring(n: int, width: float, rng: np.random.Generator) -> np.ndarray:
    """Points at radius 1 + width * N(0, 1), uniform in angle."""
    phi = rng.uniform(0, 2 * np.pi, n)
    r = 1 + width * rng.normal(size=n)
    return np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1)


def test_c2st_finds_a_thin_curved_structure():
    # The radius is N(1, 0.05²) against N(1, 0.1²): the Bayes rule |r - 1| < t with
    # t² = 2 s1² s2² ln(s2 / s1) / (s2² - s1²) has accuracy 0.661. A classifier stopped at a
    # validation-noise peak scores far below it (0.51 with a patience of 10 epochs).
    s1, s2 = 0.05, 0.1
    t = math.sqrt(2 * s1**2 * s2**2 * math.log(s2 / s1) / (s2**2 - s1**2))
    bayes = 0.5 * (2 * stats.norm.cdf(t / s1) - 1) + 0.5 * 2 * stats.norm.sf(t / s2)
    assert abs(bayes - 0.661) < 0.001
    rng = np.random.default_rng(5)
    a, b = ring(3000, s1, rng), ring(3000, s2, rng)
    assert c2st(a, b, seed=0) > bayes - 0.02


def test_c2st_z_scores_on_reference():
    # Features on wildly different scales: without z-scoring, Adam on raw inputs fails.
    rng = np.random.default_rng(3)
    scale = np.array([1e4, 1e-4])
    a = rng.normal(size=(2000, 2)) * scale
    b = (rng.normal(size=(2000, 2)) + np.array([0.0, 2.0])) * scale
    assert c2st(a, b, seed=0) > 0.8  # Bayes: Phi(1) = 0.84


def test_c2st_is_deterministic_and_balances_classes():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(500, 3)), rng.normal(size=(900, 3)) + 0.5
    f1 = c2st_folds(a, b, seed=7)
    f2 = c2st_folds(a, b, seed=7)
    np.testing.assert_array_equal(f1, f2)
    assert f1.shape == (5,)
    with pytest.raises(ValueError, match="features"):
        c2st(a, b[:, :2])


# ---------------------------------------------------------------------------------------------
# Classifier AUC on synthetic "shower-like" data


def _showers(n: int, rng: np.random.Generator, layer_scale: float = 1.0):
    """Three layers of ten radial voxels; E_inc log-uniform in [1, 100] GeV (in MeV);
    layer fractions Dirichlet, exponential radial profile with a random width, 5 % voxel noise.
    ``layer_scale`` multiplies the energy of the middle layer (the known perturbation)."""
    e = np.exp(rng.uniform(np.log(1e3), np.log(1e5), n))
    frac = rng.dirichlet(np.array([0.2, 0.5, 0.3]) * 50, size=n)
    width = rng.lognormal(np.log(2.0), 0.1, size=(n, 3, 1))
    prof = np.exp(-(np.arange(10) + 0.5) / width)
    prof /= prof.sum(-1, keepdims=True)
    x = e[:, None, None] * frac[:, :, None] * prof * rng.lognormal(0, 0.05, size=(n, 3, 10))
    x[:, 1] *= layer_scale
    return x.reshape(n, 30), e


def test_low_level_inputs():
    showers = np.array([[1.0, 3.0], [2.0, 0.0]])
    e = np.array([[10.0], [100.0]])
    np.testing.assert_allclose(low_level_inputs(showers, e), [[1, 0.1, 0.3], [2, 0.02, 0]])
    with pytest.raises(ValueError, match="positive"):
        low_level_inputs(showers, np.zeros(2))


@pytest.fixture(scope="module")
def shower_samples():
    rng = np.random.default_rng(10)
    return (
        low_level_inputs(*_showers(10_000, rng)),
        low_level_inputs(*_showers(10_000, rng)),
        low_level_inputs(*_showers(10_000, rng, layer_scale=1.05)),
    )


def test_classifier_auc_same_showers_is_half(shower_samples):
    ref, same, _ = shower_samples
    res = classifier_auc(ref, same, seed=0, hidden=(64, 64), lr=1e-3)
    assert res.n_train == 6000 and res.n_test == 4000  # 60/20/20 of 10,000 per class
    assert abs(res.auc - 0.5) < 0.03
    assert res.jsd < 0.02


def test_classifier_auc_detects_five_percent_layer_scale(shower_samples):
    ref, _, scaled = shower_samples
    res = classifier_auc(ref, scaled, seed=0, hidden=(64, 64), lr=1e-3)
    assert res.auc > 0.75
    assert res.jsd > 0.15
    # The AUC of a score is the rank statistic: flipping the labels mirrors it.
    assert 0.0 <= res.jsd <= 1.0


def test_stack_features_flattens_in_order():
    m, names = stack_features({"a": np.array([1.0, 2.0]), "b": np.array([[3.0, 4.0], [5, 6]])})
    np.testing.assert_array_equal(m, [[1, 3, 4], [2, 5, 6]])
    assert names == ["a", "b[0]", "b[1]"]


# ---------------------------------------------------------------------------------------------
# Separation power, Wasserstein


def test_separation_power_matches_direct_numpy():
    ref = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9, 0.95, 0.5])
    cand = np.array([0.15, 0.55, 0.65, 0.8, 1.5, -0.2])  # one overflow, one underflow
    bins = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    # By hand: reference counts [0] + [2, 1, 3, 2] + [0] over 8; candidate [1] + [1, 0, 2, 1] + [1]
    h1 = np.array([0, 2, 1, 3, 2, 0]) / 8
    h2 = np.array([1, 1, 0, 2, 1, 1]) / 6
    keep = h1 + h2 > 0
    expected = 0.5 * np.sum((h1[keep] - h2[keep]) ** 2 / (h1[keep] + h2[keep]))
    np.testing.assert_allclose(normalized_histogram(cand, bins), h2)
    assert separation_power(ref, cand, bins) == pytest.approx(expected, rel=1e-12)


def test_separation_power_limits():
    x = np.linspace(0, 1, 101)
    assert separation_power(x, x, 10) == 0.0
    assert separation_power(x, x + 10.0, 10) == pytest.approx(1.0)  # all in the overflow bin


def test_separation_power_same_and_wider():
    rng = np.random.default_rng(5)
    ref, same = rng.normal(size=50_000), rng.normal(size=50_000)
    bins = reference_bins(ref, 50)
    # Sampling noise alone: each occupied bin adds about 1/N, so S ≈ 0.5 * n_bins / N = 5e-4.
    assert separation_power(ref, same, bins) < 1e-3
    # Width 1.2 instead of 1: the exact binned value from the normal CDFs, plus the same noise.
    edges = np.concatenate([[-np.inf], bins, [np.inf]])
    p = np.diff(stats.norm.cdf(edges))
    q = np.diff(stats.norm.cdf(edges, scale=1.2))
    exact = 0.5 * np.sum((p - q) ** 2 / (p + q))
    assert exact > 0.01
    assert separation_power(ref, 1.2 * same, bins) == pytest.approx(exact, rel=0.1)


def test_separation_power_noise_estimate_matches_repeated_draws():
    # Two samples of one distribution: the mean S over many repeats is the noise floor that
    # compare_features predicts as B (1/N1 + 1/N2) / 4.
    rng = np.random.default_rng(13)
    ref = rng.gamma(2.0, size=3000)
    values, noise = [], []
    for _ in range(200):
        res = compare_features({"f": ref}, {"f": rng.gamma(2.0, size=2000)}, n_bins=30)["f"]
        values.append(res["separation_power"])
        noise.append(res["separation_power_noise"])
    assert np.mean(values) == pytest.approx(np.mean(noise), rel=0.15)


def test_reference_bins():
    edges = reference_bins(np.array([1.0, 2.0, 3.0]), 4)
    np.testing.assert_allclose(edges, [1, 1.5, 2, 2.5, 3])
    log_edges = reference_bins(np.array([1.0, 10.0, 100.0]), 2, log=True)
    np.testing.assert_allclose(log_edges, [1, 10, 100])
    assert np.ptp(reference_bins(np.full(5, 3.0), 2)) == 1.0  # constant feature gets a window


def test_wasserstein_matches_scipy_and_shift():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=700), rng.gamma(2.0, size=500)
    assert wasserstein_1d(a, b) == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-10)
    assert wasserstein_1d(a, a + 0.3) == pytest.approx(0.3, rel=1e-12)
    assert wasserstein_1d(a, a) == 0.0


def test_compare_features_same_vs_scaled():
    rng = np.random.default_rng(7)
    ref = {"e": rng.gamma(3.0, size=20_000), "w": rng.normal(size=(20_000, 2))}
    same = {"e": rng.gamma(3.0, size=20_000), "w": rng.normal(size=(20_000, 2))}
    bad = {"e": 1.1 * rng.gamma(3.0, size=20_000), "w": rng.normal(size=(20_000, 2))}
    res_same, res_bad = compare_features(ref, same), compare_features(ref, bad)
    assert set(res_same) == {"e", "w[0]", "w[1]"}
    assert res_same["e"]["wasserstein_over_std"] < 0.03
    assert res_bad["e"]["wasserstein_over_std"] > 0.1  # 10 % of a mean 3 / std 1.73 ≈ 0.17
    assert res_bad["e"]["separation_power"] > 3 * res_same["e"]["separation_power"]
    assert res_bad["w[0]"]["separation_power"] < 0.01


# ---------------------------------------------------------------------------------------------
# Fréchet distance


def test_gaussian_frechet_distance_closed_forms():
    # Commuting (diagonal) covariances: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
    mu1, mu2 = np.array([0.0, 1.0]), np.array([2.0, -1.0])
    c1, c2 = np.diag([1.0, 4.0]), np.diag([9.0, 1.0])
    expected = 8.0 + (1 - 3) ** 2 + (2 - 1) ** 2
    assert gaussian_frechet_distance(mu1, c1, mu2, c2) == pytest.approx(expected, rel=1e-12)
    # Non-commuting case against scipy's sqrtm of the (non-symmetric) product.
    from scipy.linalg import sqrtm

    a = np.array([[2.0, 0.8], [0.8, 1.0]])
    b = np.array([[1.0, -0.5], [-0.5, 3.0]])
    direct = np.trace(a + b - 2 * np.real(sqrtm(a @ b)))
    assert gaussian_frechet_distance(mu1, a, mu1, b) == pytest.approx(direct, rel=1e-10)
    assert gaussian_frechet_distance(mu1, a, mu1, a) == pytest.approx(0.0, abs=1e-12)


def test_frechet_distance_same_vs_shifted():
    rng = np.random.default_rng(8)
    cov = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 1.0]])
    a = rng.multivariate_normal(np.zeros(3), cov, size=20_000)
    b = rng.multivariate_normal(np.zeros(3), cov, size=20_000)
    assert frechet_distance(a, b) < 2e-3  # bias O(D / N) plus noise
    shifted = b + np.array([0.2, 0.0, 0.0])
    assert frechet_distance(a, shifted) == pytest.approx(0.04, abs=0.01)
    # Standardization: rescaling both samples by the same units changes nothing.
    units = np.array([1e3, 1.0, 1e-3])
    assert frechet_distance(a * units, shifted * units) == pytest.approx(
        frechet_distance(a, shifted), rel=1e-8
    )


def test_frechet_distance_extrapolated_removes_finite_sample_bias():
    rng = np.random.default_rng(14)
    d = 20
    a, b = rng.normal(size=(4000, d)), rng.normal(size=(4000, d))
    plain = frechet_distance(a, b)
    value, err = frechet_distance_extrapolated(a, b, rng=rng)
    assert plain > 0.04  # bias of roughly D^2 / (2 N) = 0.05
    assert abs(value) < max(4 * err, 0.01)
    shift = np.zeros(d)
    shift[0] = 0.3
    value, err = frechet_distance_extrapolated(a, b + shift, rng=rng)
    assert value == pytest.approx(0.09, abs=max(4 * err, 0.02))


# ---------------------------------------------------------------------------------------------
# MMD


def test_mmd2_matches_direct_sum():
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(7, 2)), rng.normal(size=(5, 2)) + 0.5
    s = 0.8

    def k(a, b):
        return np.exp(-np.sum((a - b) ** 2) / (2 * s**2))

    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / 42
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / 20
    xy = sum(k(x[i], y[j]) for i in range(7) for j in range(5)) / 35
    assert mmd2(x, y, bandwidth=s) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_mmd_same_vs_shifted():
    rng = np.random.default_rng(11)
    a, b = rng.normal(size=(1500, 3)), rng.normal(size=(1500, 3))
    value, p = mmd_permutation_test(a, b, rng=rng)
    assert abs(value) < 2e-3 and p > 0.05
    value, p = mmd_permutation_test(a, b + np.array([0.2, 0.0, 0.0]), rng=rng)
    assert value > 2e-3 and p < 0.01


def test_mmd_permutation_p_value_is_uniform_under_null():
    # Under H0 the p-value is (super-)uniform: about 10 % of tests reject at level 0.1.
    rng = np.random.default_rng(12)
    p = [
        mmd_permutation_test(
            rng.normal(size=(60, 2)), rng.normal(size=(60, 2)), n_permutations=99, rng=rng
        )[1]
        for _ in range(100)
    ]
    assert 0.02 <= np.mean(np.asarray(p) <= 0.1) <= 0.2


# ---------------------------------------------------------------------------------------------
# Hand-built showers: centres, widths and separation power against a direct computation


def test_hand_built_shower_centres_widths_and_separation_power():
    cal = pytest.importorskip("simulators.calorimeter")
    g = cal.load_geometry("ds1_photons")
    # A layer binned in α: voxel k of the layer has radial bin k % n_r and α bin k // n_r.
    j = next(i for i, lid in enumerate(g.layers) if lid in g.alpha_binned)
    lid, s = g.layers[j], g.layer_slices[j]
    edges = np.asarray(g.r_edges[j], dtype=np.float64)
    n_r, n_a = len(edges) - 1, g.n_alpha[j]

    def centre(k: int) -> tuple[float, float]:
        r = 0.5 * (edges[k % n_r] + edges[k % n_r + 1])
        a = -np.pi + (k // n_r + 0.5) * 2 * np.pi / n_a
        return r, a

    rng = np.random.default_rng(0)
    n = 400
    showers = np.zeros((n, g.n_voxels))
    k1, k2 = 1, n_r + 3  # two voxels in different radial and α bins
    e1, e2 = rng.uniform(1, 10, n), rng.uniform(1, 10, n)
    showers[:, s.start + k1], showers[:, s.start + k2] = e1, e2
    e_inc = np.full(n, 100.0)
    f = cal.high_level_features(showers, e_inc, g)
    (r1, a1), (r2, a2) = centre(k1), centre(k2)
    ec_r = (r1 * e1 + r2 * e2) / (e1 + e2)
    width_r = np.sqrt((r1**2 * e1 + r2**2 * e2) / (e1 + e2) - ec_r**2)
    ec_x = (r1 * np.cos(a1) * e1 + r2 * np.cos(a2) * e2) / (e1 + e2)
    np.testing.assert_allclose(f[f"ec_r_{lid}"], ec_r, rtol=1e-10)
    np.testing.assert_allclose(f[f"width_r_{lid}"], width_r, rtol=1e-8)
    np.testing.assert_allclose(f[f"ec_eta_{lid}"], ec_x, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(f[f"E_layer_{lid}"], e1 + e2, rtol=1e-12)

    # A second set with the energy shifted towards the outer voxel; S on reference bins, by hand.
    showers_b = showers.copy()
    showers_b[:, s.start + k2] *= 1.5
    fb = cal.high_level_features(showers_b, e_inc, g)
    bins = reference_bins(f[f"ec_r_{lid}"], 20)
    h1 = np.histogram(f[f"ec_r_{lid}"], bins)[0] / n
    h2 = np.histogram(fb[f"ec_r_{lid}"], bins)[0]
    over = np.sum(fb[f"ec_r_{lid}"] > bins[-1])
    h1 = np.concatenate([[0.0], h1, [0.0]])
    h2 = np.concatenate([[0.0], h2, [over]]) / n
    keep = h1 + h2 > 0
    direct = 0.5 * np.sum((h1[keep] - h2[keep]) ** 2 / (h1[keep] + h2[keep]))
    assert separation_power(f[f"ec_r_{lid}"], fb[f"ec_r_{lid}"], bins) == pytest.approx(direct)
    assert direct > 0.05
