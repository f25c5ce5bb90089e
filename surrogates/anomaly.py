r"""Anomaly scores from a flow's log-likelihood, with p-values against the training distribution.

The score of an event is :math:`s = -\log p(x \mid \theta)` under a trained :class:`Flow`. A
reference sample of normal events (held-out training-distribution data) calibrates it: the
p-value of a new event is the conformal tail fraction

.. math::
    p = \frac{1 + \#\{i : s_i \ge s\}}{1 + n},

which is exactly uniform (super-uniform with ties) for an exchangeable normal event, so
``p < α`` flags a fraction α of normal events. GANs assign no likelihood and have no score.

Example:
    >>> detector = AnomalyDetector(model).calibrate(x_ref, theta_ref)  # doctest: +SKIP
    >>> p = detector.p_values(x_new, theta_new)                       # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["AnomalyDetector", "anomaly_scores", "roc_auc"]


def anomaly_scores(model: Any, x: Any, theta: Any, *, batch_size: int = 10_000) -> np.ndarray:
    """Per-event scores ``-log p(x | θ)`` (higher = more anomalous), float64, shape (N,)."""
    lp = model.log_prob(np.asarray(x), np.asarray(theta), batch_size=batch_size)
    # an event the flow cannot map (NaN) is as anomalous as it gets
    return np.where(np.isfinite(lp), -lp, np.inf)


def roc_auc(scores_normal: np.ndarray, scores_anomalous: np.ndarray) -> float:
    """ROC AUC of separating anomalous from normal events by a higher score (ties count ½)."""
    from .metrics.classifier import roc_auc as auc

    a = np.asarray(scores_anomalous, dtype=np.float64).reshape(-1)
    b = np.asarray(scores_normal, dtype=np.float64).reshape(-1)
    return auc(np.concatenate([a, b]), np.r_[np.ones(len(a)), np.zeros(len(b))])


class AnomalyDetector:
    """Log-likelihood anomaly scores calibrated into p-values.

    Args:
        model: a trained model with ``log_prob(x, theta)`` (a :class:`~surrogates.models.Flow`).
    """

    def __init__(self, model: Any):
        if not hasattr(model, "log_prob"):
            raise ValueError(f"{type(model).__name__} has no likelihood, so no anomaly score")
        self.model = model
        self.reference: np.ndarray | None = None

    def score(self, x: Any, theta: Any) -> np.ndarray:
        """``-log p(x | θ)`` per event."""
        return anomaly_scores(self.model, x, theta)

    def calibrate(self, x: Any, theta: Any) -> AnomalyDetector:
        """Scores a reference sample of normal events (not used in training); returns ``self``."""
        self.reference = np.sort(self.score(x, theta))
        return self

    def p_values(self, x: Any, theta: Any) -> np.ndarray:
        """Conformal p-values of events against the reference (small = anomalous)."""
        if self.reference is None:
            raise ValueError("call calibrate() with normal reference events first")
        s = self.score(x, theta)
        n = len(self.reference)
        n_ge = n - np.searchsorted(self.reference, s, side="left")
        return (1.0 + n_ge) / (1.0 + n)

    def to_dict(self) -> dict[str, Any]:
        """The calibration (reference scores), JSON-serializable."""
        ref = [] if self.reference is None else self.reference.tolist()
        return {"reference_scores": ref}
