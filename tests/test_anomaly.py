"""Anomaly scores: exact AUC, uniform null p-values, a trained flow flags shifted events."""

from __future__ import annotations

import numpy as np
import pytest

from surrogates.anomaly import AnomalyDetector, anomaly_scores, roc_auc
from surrogates.models import Flow


def test_roc_auc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 1, 300), rng.normal(0, 1, 200)
    a[:10] = b[:10]  # ties count one half
    pairwise = np.mean((a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :]))
    assert roc_auc(b, a) == pytest.approx(pairwise, abs=1e-12)
    assert roc_auc(b, b) == pytest.approx(0.5)
    assert roc_auc(np.zeros(5), np.full(5, np.inf)) == 1.0


class Gauss:
    """A 'model' with the exact standard-normal log-density."""

    def log_prob(self, x, theta, batch_size=None):
        x = np.asarray(x)
        return -0.5 * np.sum(x**2, 1) - 0.5 * x.shape[1] * np.log(2 * np.pi)


def test_p_values_are_uniform_for_normal_events_and_small_for_outliers():
    rng = np.random.default_rng(1)
    det = AnomalyDetector(Gauss()).calibrate(rng.standard_normal((4000, 2)), np.zeros((4000, 1)))
    p = det.p_values(rng.standard_normal((4000, 2)), np.zeros((4000, 1)))
    # conformal p-values: P(p <= a) = a for exchangeable normal events
    for a in (0.05, 0.25, 0.5):
        assert np.mean(p <= a) == pytest.approx(a, abs=0.025)
    far = det.p_values(np.full((3, 2), 6.0), np.zeros((3, 1)))
    assert np.all(far == 1 / 4001)


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
    assert roc_auc(normal, wrong) > 0.95
