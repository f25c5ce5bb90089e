"""Figures for posterior diagnostics: SBC rank histograms, coverage curves, predictive checks.

Like the other modules of :mod:`surrogates.plots`, each function builds a
:class:`matplotlib.figure.Figure` directly (no pyplot, no global backend state), writes a PNG and
returns its path. Corner plots of posterior samples:
:func:`surrogates.plots.posterior.plot_corner`.

Example:
    >>> import numpy as np
    >>> from surrogates.inference.diagnostics import sbc
    >>> rng = np.random.default_rng(0)
    >>> theta = rng.normal(size=(200, 2)); x = theta + rng.normal(size=(200, 2))
    >>> result = sbc(lambda n, x: x / 2 + np.sqrt(0.5) * rng.normal(size=(n, len(x), 2)), theta, x)
    >>> plot_sbc_ranks(result, "/tmp/sbc.png").name
    'sbc.png'
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from scipy import stats

from .common import save_figure

__all__ = ["plot_coverage", "plot_ppc", "plot_sbc_ranks"]


def _names(names: list[str] | None, p: int) -> list[str]:
    return list(names) if names and len(names) == p else [f"θ{k + 1}" for k in range(p)]


def plot_sbc_ranks(
    result: Any, path: str | Path, *, bins: int | None = None, band: float = 0.99
) -> Path:
    """One rank histogram per parameter, with the ``band`` interval of a uniform histogram.

    Args:
        result: a :class:`~surrogates.inference.diagnostics.SBCResult`.
        bins: histogram bins (default: about N / 20, at most 30, dividing n + 1 ranks evenly).
        path: output PNG.
        band: probability of the shaded binomial band per bin under uniform ranks.
    """
    ranks, n = np.asarray(result.ranks), int(result.n_samples)
    count, p = ranks.shape
    bins = bins or int(max(4, min(30, count // 20)))
    names = _names(result.param_names, p)
    cols = min(p, 4)
    rows = math.ceil(p / cols)
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    edges = np.linspace(-0.5, n + 0.5, bins + 1)
    prob = 1.0 / bins
    lo, hi = stats.binom.interval(band, count, prob)
    for k in range(rows * cols):
        ax = axes.flat[k]
        if k >= p:
            ax.axis("off")
            continue
        ax.axhspan(lo, hi, color="0.85", label=f"{band:.0%} band (uniform)")
        ax.axhline(count * prob, color="0.5", lw=1)
        ax.hist(ranks[:, k], bins=edges, color="C0", alpha=0.8)
        ax.set_title(f"{names[k]}  KS p = {result.ks_pvalue[k]:.3g}", fontsize=9)
        ax.set_xlabel("rank")
        ax.set_xlim(edges[0], edges[-1])
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"SBC: {count} simulations, {n} posterior draws each", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_coverage(result: Any, path: str | Path) -> Path:
    """Expected coverage of HPD regions (and marginal central intervals) against credibility.

    Curves below the diagonal mean an over-confident estimator, above it a conservative one; the
    band is the 99 % binomial interval of a calibrated estimator's empirical coverage.
    """
    levels, cov = np.asarray(result.levels), np.asarray(result.coverage)
    count = len(result.alpha)
    fig = Figure(figsize=(4.2, 4.0))
    ax = fig.subplots()
    lo, hi = stats.binom.interval(0.99, count, levels)
    ax.fill_between(levels, lo / count, hi / count, color="0.85", label="99% band (calibrated)")
    ax.plot([0, 1], [0, 1], color="0.4", lw=1, ls="--")
    marginal = np.asarray(result.marginal)
    names = _names(result.param_names, marginal.shape[1])
    for k in range(marginal.shape[1]):
        ax.plot(
            levels,
            marginal[:, k],
            lw=0.8,
            alpha=0.6,
            label=f"{names[k]} (central)" if k < 6 else None,
        )
    ax.plot(levels, cov, color="k", lw=2, label="joint HPD")
    ax.set_xlabel("credibility level")
    ax.set_ylabel("empirical coverage")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"Expected coverage ({count} simulations)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_ppc(result: Any, path: str | Path, *, max_features: int = 64) -> Path:
    """Posterior predictive distribution of every feature (median, 50 % and 90 % bands) and the
    observation; features are the flattened x."""
    pred = np.asarray(result.x_pred).reshape(len(result.x_pred), -1)[:, :max_features]
    x_o = np.asarray(result.x_o).reshape(-1)[:max_features]
    idx = np.arange(len(x_o))
    q = np.quantile(pred, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
    fig = Figure(figsize=(max(4.0, 0.25 * len(idx) + 2), 3.2))
    ax = fig.subplots()
    width = max(2.0, min(12.0, 300 / max(len(idx), 1)))
    ax.vlines(idx, q[0], q[4], color="C0", alpha=0.3, lw=width, label="90% predictive")
    ax.vlines(idx, q[1], q[3], color="C0", alpha=0.6, lw=width, label="50% predictive")
    ax.plot(idx, q[2], "_", color="C0", ms=2 * width, mew=1.5, label="median")
    ax.plot(idx, x_o, "k.", ms=6, label="observed")
    ax.set_xlabel("feature")
    ax.set_xticks(idx if len(idx) <= 20 else ax.get_xticks())
    ax.set_ylabel("x")
    title = f"Posterior predictive check ({len(pred)} draws"
    title += f", {result.n_dropped} NaN dropped)" if result.n_dropped else ")"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
