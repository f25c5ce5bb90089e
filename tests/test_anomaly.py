"""Anomaly scores: exact AUC, uniform null p-values, a trained flow flags shifted events."""

from __future__ import annotations

import numpy as np
import pytest

from surrogates.anomaly import AnomalyDetector, anomaly_auc, anomaly_scores
from surrogates.models import Flow


def test_roc_auc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 1, 300), rng.normal(0, 1, 200)
    a[:10] = b[:10]  # ties count one half
    pairwise = np.mean((a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :]))
    assert anomaly_auc(b, a) == pytest.approx(pairwise, abs=1e-12)
    assert anomaly_auc(b, b) == pytest.approx(0.5)
    assert anomaly_auc(np.zeros(5), np.full(5, np.inf)) == 1.0


class Gauss:
    """A 'model' with the exact standard-normal log-density."""

    def log_prob(self, x, theta, batch_size=None):
        x = np.asarray(x)
        return -0.5 * np.sum(x**2, 1) - 0.5 * x.shape[1] * np.log(2 * np.pi)


@pytest.mark.parametrize("neighbours", [None, 200])
def test_p_values_are_uniform_for_normal_events_and_small_for_outliers(neighbours):
    rng = np.random.default_rng(1)
    det = AnomalyDetector(Gauss(), neighbours=neighbours)
    det.calibrate(rng.standard_normal((4000, 2)), np.zeros((4000, 1)))
    p = det.p_values(rng.standard_normal((4000, 2)), np.zeros((4000, 1)))
    # conformal p-values: P(p <= a) = a for exchangeable normal events
    for a in (0.05, 0.25, 0.5):
        assert np.mean(p <= a) == pytest.approx(a, abs=0.025)
    far = det.p_values(np.full((3, 2), 6.0), np.zeros((3, 1)))
    assert np.all(far == 1 / 4001)  # equal conditions: all references are neighbours


class ScaledGauss:
    """x ~ N(0, θ² I): the score's level depends on θ through the normalization."""

    def log_prob(self, x, theta, batch_size=None):
        x, s = np.asarray(x), np.asarray(theta)[:, 0]
        d = x.shape[1]
        return -0.5 * np.sum(x**2, 1) / s**2 - d * np.log(s) - 0.5 * d * np.log(2 * np.pi)


def test_conditional_p_values_stay_uniform_and_see_what_global_ones_miss():
    rng = np.random.default_rng(2)

    def draw(n):
        theta = rng.choice([1e-4, 1.0, 1e4], (n, 1))
        return theta * rng.standard_normal((n, 3)), theta

    x_ref, t_ref = draw(15000)
    local = AnomalyDetector(ScaledGauss(), neighbours=2000).calibrate(x_ref, t_ref)
    pooled = AnomalyDetector(ScaledGauss(), neighbours=None).calibrate(x_ref, t_ref)
    x, t = draw(15000)  # per condition the fractions below scatter by ~0.01
    p = local.p_values(x, t)
    for a in (0.05, 0.25, 0.5):  # uniform within each condition, so overall
        assert np.mean(p <= a) == pytest.approx(a, abs=0.03)
        for v in (1e-4, 1.0, 1e4):
            assert np.mean(p[t[:, 0] == v] <= a) == pytest.approx(a, abs=0.04)
    # anomalies: events 4x wider than their label says
    bad = 4.0 * x
    auc_local = anomaly_auc(-np.log(local.p_values(x, t)), -np.log(local.p_values(bad, t)))
    auc_pooled = anomaly_auc(-np.log(pooled.p_values(x, t)), -np.log(pooled.p_values(bad, t)))
    assert auc_local > 0.95  # measured 0.977
    assert auc_pooled < auc_local - 0.15  # 0.733: the θ-dependent level swamps a global one


def test_neighbours_must_be_positive():
    with pytest.raises(ValueError, match="neighbours"):
        AnomalyDetector(Gauss(), neighbours=0)


def test_no_likelihood_no_score():
    with pytest.raises(ValueError, match="no likelihood"):
        AnomalyDetector(object())


def test_trained_flow_flags_events_with_a_wrong_condition():
    rng = np.random.default_rng(0)
    theta = rng.uniform(1, 4, (3000, 1))
    x = theta * (1 + 0.05 * rng.standard_normal((3000, 2)))  # x ≈ θ
    model = Flow.for_dataset((theta, x), transforms=2, hidden=[32], device="cpu")
    model.fit((theta, x), max_epochs=15, lr=3e-3, progress=False)
    t_te = rng.uniform(1, 2, (500, 1))
    x_te = t_te * (1 + 0.05 * rng.standard_normal((500, 2)))
    normal = anomaly_scores(model, x_te, t_te)
    wrong = anomaly_scores(model, x_te, 2 * t_te)  # the label off by a factor 2
    assert anomaly_auc(normal, wrong) > 0.95


def test_stage_one_scores_the_first_stage_of_a_two_stage_flow():
    rng = np.random.default_rng(3)
    theta = rng.uniform(1, 4, (2000, 1))
    x = np.column_stack([theta[:, 0] + 0.05 * rng.standard_normal(2000),
                         rng.standard_normal((2000, 3))])  # fmt: skip
    model = Flow.for_dataset((theta, x), kind="two_stage", split=1, transforms=2, hidden=[16],
                             device="cpu")  # fmt: skip
    model.fit((theta, x), max_epochs=2, progress=False)
    full = model.log_prob(x[:50], theta[:50])
    first = model.log_prob(x[:50], theta[:50], stage=1)
    # stage one is the marginal density of the first feature: it does not see the others
    x2 = x[:50].copy()
    x2[:, 1:] += 3.0
    assert np.allclose(model.log_prob(x2, theta[:50], stage=1), first)
    assert not np.allclose(model.log_prob(x2, theta[:50]), full)
    coupling = Flow.for_dataset((theta, x), transforms=2, hidden=[16], device="cpu")
    with pytest.raises(ValueError, match="two_stage"):
        coupling.log_prob(x[:5], theta[:5], stage=1)
