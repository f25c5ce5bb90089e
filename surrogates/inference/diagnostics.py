r"""Calibration diagnostics for posterior estimators: SBC, expected coverage, predictive checks.

An *estimator* here is anything with ``sample_batched(sample_shape, x, generator=...)`` returning
(n, B, P) samples for B observations (as :class:`~surrogates.inference.NPE` has), and, for
:func:`expected_coverage`, ``log_prob(theta, x)`` with one observation per row.

* **Simulation-based calibration** (Talts et al., 2018, arXiv:1804.06788): for
  :math:`(\theta_i, x_i)` from the joint and :math:`n` posterior draws given :math:`x_i`, the rank
  :math:`r_i = \#\{j : \theta^{(j)} < \theta_i\}` of each parameter is uniform on
  :math:`\{0, \dots, n\}` when the posterior is correct. Uniformity is tested per parameter by a
  Kolmogorov-Smirnov test on the randomized ranks :math:`(r_i + U_i) / (n + 1)`,
  :math:`U_i \sim \mathcal{U}(0, 1)`, which are exactly :math:`\mathcal{U}(0, 1)` under
  calibration (so the test has its nominal level despite the ties of discrete ranks).
* **Expected coverage** of highest-posterior-density regions (Hermans et al., 2022,
  arXiv:2110.06581): :math:`\theta_i` lies in the level-:math:`\gamma` HPD region iff the fraction
  :math:`\alpha_i` of posterior draws with a higher density than :math:`\theta_i` is below
  :math:`\gamma`; the coverage :math:`\frac{1}{N}\sum_i [\alpha_i < \gamma]` equals
  :math:`\gamma` for a calibrated estimator, lies below it for an over-confident one and above
  for a conservative one. Marginal central intervals come from the SBC ranks.
* **Posterior predictive checks**: simulate from posterior draws and locate the observation in
  the predictive distribution of every feature.

Simulations with NaN/inf are dropped and counted, never passed on (compare ``sbi`` #1345).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import stats

__all__ = [
    "CoverageResult",
    "PPCResult",
    "SBCResult",
    "coverage_from_ranks",
    "expected_coverage",
    "posterior_predictive_check",
    "sbc",
    "sbc_ranks",
    "sbc_uniformity",
]


def _np(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _finite_rows(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.isfinite(theta.reshape(len(theta), -1)).all(1) & np.isfinite(
        x.reshape(len(x), -1)
    ).all(1)


def _draw(estimator: Any, n: int, x: np.ndarray, generator: torch.Generator | None) -> np.ndarray:
    """(n, B, P) samples as numpy from an estimator or a callable ``f(n, x)``."""
    if hasattr(estimator, "sample_batched"):
        out = estimator.sample_batched(
            (n,), torch.as_tensor(x, dtype=torch.float32), generator=generator
        )
    else:
        out = estimator(n, x)
    return _np(out).astype(np.float64)


@dataclass
class SBCResult:
    """Output of :func:`sbc`.

    Attributes:
        ranks: rank of each true parameter among the posterior draws, shape (N, P), in [0, n].
        n_samples: posterior draws per observation (n).
        ks_statistic: Kolmogorov-Smirnov statistic per parameter, shape (P,).
        ks_pvalue: its p-value per parameter, shape (P,).
        n_dropped: (θ, x) pairs dropped for NaN/inf.
        param_names: parameter names, if known.
    """

    ranks: np.ndarray
    n_samples: int
    ks_statistic: np.ndarray
    ks_pvalue: np.ndarray
    n_dropped: int = 0
    param_names: list[str] | None = None

    def uniform(self, alpha: float = 0.01) -> bool:
        """Whether no parameter rejects uniformity at level ``alpha``."""
        return bool(np.all(self.ks_pvalue > alpha))


def sbc_ranks(
    estimator: Any,
    theta: Any,
    x: Any,
    n_samples: int = 100,
    *,
    generator: torch.Generator | None = None,
    chunk: int = 200,
) -> np.ndarray:
    """SBC ranks :math:`\\#\\{j: \\theta^{(j)}_k < \\theta_{i,k}\\}`, shape (N, P).

    Args:
        estimator: has ``sample_batched`` (see the module notes) or is a callable
            ``f(n, x) -> (n, B, P)``.
        theta: true parameters (N, P).
        x: their simulations (N, *x_shape), all finite.
        n_samples: posterior draws per observation.
        generator: seeds the estimator's draws.
        chunk: observations per call of the estimator.
    """
    theta, x = _np(theta).astype(np.float64), _np(x)
    theta = theta.reshape(len(theta), -1)
    ranks = np.empty(theta.shape, dtype=np.int64)
    for s in range(0, len(theta), chunk):
        draws = _draw(estimator, n_samples, x[s : s + chunk], generator)
        ranks[s : s + chunk] = np.sum(draws < theta[None, s : s + chunk], axis=0)
    return ranks


def sbc_uniformity(
    ranks: np.ndarray, n_samples: int, *, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-parameter KS test of randomized ranks against :math:`\\mathcal{U}(0, 1)`.

    Args:
        ranks: (N, P) ranks in [0, n_samples].
        n_samples: posterior draws per observation.
        rng: draws the randomization (default: seed 0, so the result is deterministic).

    Returns:
        ``(statistic, pvalue)``, each of shape (P,).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    ranks = np.asarray(ranks, dtype=np.float64)
    v = (ranks + rng.random(ranks.shape)) / (n_samples + 1)
    out = [stats.kstest(v[:, k], "uniform") for k in range(ranks.shape[1])]
    return np.array([o.statistic for o in out]), np.array([o.pvalue for o in out])


def sbc(
    estimator: Any,
    theta: Any,
    x: Any,
    n_samples: int = 100,
    *,
    generator: torch.Generator | None = None,
    rng: np.random.Generator | None = None,
    param_names: list[str] | None = None,
) -> SBCResult:
    """Simulation-based calibration: ranks and per-parameter uniformity tests.

    Pairs with NaN/inf in θ or x are dropped and counted in :attr:`SBCResult.n_dropped`.

    Args:
        estimator: see :func:`sbc_ranks`.
        theta: parameters drawn from the prior (N, P).
        x: one simulation per row (N, *x_shape).
        n_samples: posterior draws per observation.
        generator: seeds the posterior draws.
        rng: seeds the rank randomization of the KS test.
        param_names: names for plots.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> theta = rng.normal(size=(300, 1)); x = theta + rng.normal(size=(300, 1))
        >>> exact = lambda n, x: x / 2 + np.sqrt(0.5) * rng.normal(size=(n, len(x), 1))
        >>> sbc(exact, theta, x).uniform()
        True
    """
    theta, x = _np(theta), _np(x)
    ok = _finite_rows(theta, x)
    ranks = sbc_ranks(estimator, theta[ok], x[ok], n_samples, generator=generator)
    stat, p = sbc_uniformity(ranks, n_samples, rng=rng)
    return SBCResult(ranks, n_samples, stat, p, int((~ok).sum()), param_names)


@dataclass
class CoverageResult:
    """Output of :func:`expected_coverage`.

    Attributes:
        levels: credibility levels γ, shape (L,).
        coverage: empirical coverage of the HPD regions, shape (L,).
        alpha: per observation, the fraction of draws denser than the true θ, shape (N,).
        marginal: coverage of per-parameter central intervals, shape (L, P).
        n_samples: posterior draws per observation.
        n_dropped: pairs dropped for NaN/inf.
    """

    levels: np.ndarray
    coverage: np.ndarray
    alpha: np.ndarray
    marginal: np.ndarray
    n_samples: int
    n_dropped: int = 0
    param_names: list[str] | None = field(default=None)


def coverage_from_ranks(ranks: np.ndarray, n_samples: int, levels: np.ndarray) -> np.ndarray:
    """Coverage of central credible intervals per parameter from SBC ranks, shape (L, P).

    θ lies in the central level-γ interval iff its quantile :math:`r / n` is within
    :math:`\\gamma / 2` of one half.
    """
    q = (np.asarray(ranks, dtype=np.float64) + 0.5) / (n_samples + 1)
    return np.array([np.mean(np.abs(q - 0.5) < g / 2, axis=0) for g in levels])


def expected_coverage(
    estimator: Any,
    theta: Any,
    x: Any,
    n_samples: int = 200,
    *,
    levels: Any = None,
    generator: torch.Generator | None = None,
    chunk: int = 100,
) -> CoverageResult:
    """Expected coverage of the estimator's HPD regions (see the module notes).

    Args:
        estimator: has ``sample_batched`` and ``log_prob(theta, x)`` (one x per row).
        theta: parameters drawn from the prior (N, P).
        x: simulations (N, *x_shape).
        n_samples: posterior draws per observation.
        levels: credibility levels (default 0, 0.05, ..., 1).
        generator: seeds the posterior draws.
        chunk: observations per call of the estimator.
    """
    levels = np.linspace(0, 1, 21) if levels is None else np.asarray(levels, dtype=np.float64)
    theta, x = _np(theta), _np(x)
    ok = _finite_rows(theta, x)
    theta = theta[ok].astype(np.float64).reshape(int(ok.sum()), -1)
    x = x[ok]
    alpha = np.empty(len(theta))
    ranks = np.empty(theta.shape, dtype=np.int64)
    for s in range(0, len(theta), chunk):
        xb, tb = x[s : s + chunk], theta[s : s + chunk]
        draws = _draw(estimator, n_samples, xb, generator)  # (n, B, P)
        b = len(xb)
        ranks[s : s + chunk] = np.sum(draws < tb[None], axis=0)
        x_rep = np.broadcast_to(xb[None], (n_samples, *xb.shape)).reshape(
            n_samples * b, *xb.shape[1:]
        )
        lp_draws = _np(estimator.log_prob(draws.reshape(n_samples * b, -1), x_rep)).reshape(
            n_samples, b
        )
        lp_true = _np(estimator.log_prob(tb, xb))
        alpha[s : s + chunk] = np.mean(lp_draws > lp_true[None], axis=0)
    coverage = np.array([np.mean(alpha < g) for g in levels])
    marginal = coverage_from_ranks(ranks, n_samples, levels)
    return CoverageResult(levels, coverage, alpha, marginal, n_samples, int((~ok).sum()))


@dataclass
class PPCResult:
    """Output of :func:`posterior_predictive_check`.

    Attributes:
        x_o: the observation, shape x_shape.
        x_pred: finite predictive simulations, shape (M, *x_shape).
        quantile: per feature, the fraction of predictive draws below x_o (x_shape).
        pvalue: per feature, the two-sided predictive p-value ``2 min(q, 1 - q)`` (x_shape).
        n_dropped: predictive simulations dropped for NaN/inf.
    """

    x_o: np.ndarray
    x_pred: np.ndarray
    quantile: np.ndarray
    pvalue: np.ndarray
    n_dropped: int = 0


def posterior_predictive_check(
    simulator: Any,
    samples: Any,
    x_o: Any,
    rng: np.random.Generator,
) -> PPCResult:
    """Simulates one x per posterior draw and locates x_o in the predictive distribution.

    Args:
        simulator: a :class:`simulators.Simulator` (``simulate(theta, rng)``) or a callable
            ``f(theta, rng) -> x``.
        samples: posterior draws (M, P) given x_o.
        x_o: the observation (x_shape or (1, *x_shape)).
        rng: the simulator's randomness.
    """
    samples = _np(samples).astype(np.float64)
    simulate: Callable[..., Any] = getattr(simulator, "simulate", simulator)
    x_pred = np.asarray(simulate(samples, rng), dtype=np.float64)
    x_o = _np(x_o).astype(np.float64).reshape(x_pred.shape[1:])
    ok = np.isfinite(x_pred.reshape(len(x_pred), -1)).all(1)
    x_pred = x_pred[ok]
    if len(x_pred) == 0:
        raise ValueError("every predictive simulation was NaN/inf")
    below = np.mean(x_pred < x_o[None], axis=0) + 0.5 * np.mean(x_pred == x_o[None], axis=0)
    return PPCResult(x_o, x_pred, below, 2 * np.minimum(below, 1 - below), int((~ok).sum()))
