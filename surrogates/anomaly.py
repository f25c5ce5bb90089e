r"""Anomaly scores from a flow's log-likelihood, with p-values against the training distribution.

The score of an event is :math:`s = -\log p(x \mid \theta)` under a trained :class:`Flow` (or,
for a two-stage flow with ``stage=1``, of its first stage alone: for showers the layer energies
given the incident energy, where a miscalibrated energy shows up undiluted by the voxel noise).
A reference sample of normal events (held-out training-distribution data) calibrates it. The
level of :math:`s` depends strongly on θ (a 1 GeV shower and a 1 TeV shower differ by hundreds of
nats), so the p-value of an event with condition θ compares it with the k reference events whose
conditions are nearest to θ (in the model's standardized condition space; with every reference
tied with the k-th, so for discrete conditions all references of the same condition):

.. math::
    p = \frac{1 + \#\{i \in N_k(\theta) : s_i \ge s\}}{1 + k},

the conformal tail fraction within the neighbourhood :math:`N_k(\theta)` of size k, uniform
(super-uniform with ties) for a normal event whose neighbourhood is exchangeable with it -- exact
for discrete conditions with at least k references each, approximate for continuous ones.
``neighbours=None`` compares with all references (a global p-value). GANs assign no likelihood
and have no score.

Example:
    >>> detector = AnomalyDetector(model).calibrate(x_ref, theta_ref)  # doctest: +SKIP
    >>> p = detector.p_values(x_new, theta_new)                       # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["AnomalyDetector", "anomaly_auc", "anomaly_scores"]


def anomaly_scores(
    model: Any, x: Any, theta: Any, *, batch_size: int = 10_000, stage: int | None = None
) -> np.ndarray:
    """Per-event scores ``-log p(x | θ)`` (higher = more anomalous), float64, shape (N,).

    ``stage=1`` scores a two-stage flow's first stage alone (see the module notes).
    """
    options = {"batch_size": batch_size} if stage is None else {"batch_size": batch_size,
                                                                 "stage": stage}  # fmt: skip
    lp = model.log_prob(np.asarray(x), np.asarray(theta), **options)
    # an event the flow cannot map (NaN) is as anomalous as it gets
    return np.where(np.isfinite(lp), -lp, np.inf)


def anomaly_auc(scores_normal: np.ndarray, scores_anomalous: np.ndarray) -> float:
    """ROC AUC of separating anomalous from normal events by a higher score (ties count ½):
    :func:`surrogates.metrics.roc_auc` of the two samples."""
    from .metrics.classifier import roc_auc as auc

    a = np.asarray(scores_anomalous, dtype=np.float64).reshape(-1)
    b = np.asarray(scores_normal, dtype=np.float64).reshape(-1)
    return auc(np.concatenate([a, b]), np.r_[np.ones(len(a)), np.zeros(len(b))])


class AnomalyDetector:
    """Log-likelihood anomaly scores calibrated into p-values conditional on θ.

    Args:
        model: a trained model with ``log_prob(x, theta)`` (a :class:`~surrogates.models.Flow`).
        stage: ``1`` to score a two-stage flow's first stage alone.
        neighbours: reference events per p-value (the k nearest in condition space); ``None``:
            all references.
    """

    def __init__(self, model: Any, *, stage: int | None = None, neighbours: int | None = 200):
        if not hasattr(model, "log_prob"):
            raise ValueError(f"{type(model).__name__} has no likelihood, so no anomaly score")
        if neighbours is not None and neighbours < 1:
            raise ValueError(f"neighbours must be a positive count or None, got {neighbours}")
        self.model, self.stage, self.neighbours = model, stage, neighbours
        self.reference: np.ndarray | None = None
        self.reference_conditions: np.ndarray | None = None

    def score(self, x: Any, theta: Any) -> np.ndarray:
        """``-log p(x | θ)`` per event."""
        return anomaly_scores(self.model, x, theta, stage=self.stage)

    def _conditions(self, theta: Any) -> np.ndarray:
        """θ in the model's standardized condition space (as given for other models)."""
        theta = np.asarray(theta, dtype=np.float64).reshape(len(theta), -1)
        pre = getattr(self.model, "pre", None)
        if pre is None or not hasattr(pre, "condition"):
            return theta
        import torch

        return pre.condition(torch.as_tensor(theta)).double().cpu().numpy()

    def calibrate(self, x: Any, theta: Any) -> AnomalyDetector:
        """Scores a reference sample of normal events (not used in training); returns ``self``."""
        self.reference = self.score(x, theta)
        self.reference_conditions = self._conditions(theta)
        return self

    def p_values(self, x: Any, theta: Any, *, block: int = 1024) -> np.ndarray:
        """Conformal p-values of events against their reference neighbourhood (small =
        anomalous)."""
        if self.reference is None or self.reference_conditions is None:
            raise ValueError("call calibrate() with normal reference events first")
        s = self.score(x, theta)
        ref, n = self.reference, len(self.reference)
        k = n if self.neighbours is None else min(self.neighbours, n)
        if k == n:
            n_ge = n - np.searchsorted(np.sort(ref), s, side="left")
            return (1.0 + n_ge) / (1.0 + n)
        c, c_ref = self._conditions(theta), self.reference_conditions
        out = np.empty(len(s))
        for i in range(0, len(s), block):
            d = ((c[i : i + block, None, :] - c_ref[None, :, :]) ** 2).sum(-1)
            # every reference tied with the k-th nearest belongs: with discrete conditions the
            # neighbourhood is all references of the same condition, not an arbitrary subset
            near = d <= np.partition(d, k - 1, axis=1)[:, k - 1 : k]
            n_ge = (near & (ref[None, :] >= s[i : i + block, None])).sum(1)
            out[i : i + block] = (1.0 + n_ge) / (1.0 + near.sum(1))
        return out

    def to_dict(self) -> dict[str, Any]:
        """The calibration (reference scores and conditions), JSON-serializable."""
        ref = [] if self.reference is None else self.reference.tolist()
        cond = [] if self.reference_conditions is None else self.reference_conditions.tolist()
        return {"reference_scores": ref, "reference_conditions": cond, "stage": self.stage,
                "neighbours": self.neighbours}  # fmt: skip
