"""Generic comparison figures: histograms of features with a ratio panel.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot, no global backend
state), written as PNG and returned as a path, like :mod:`surrogates.plots.calorimeter`. Bins come
from the reference sample; the ratio panel shows candidate / reference with the reference's Poisson
uncertainty as a grey band, so a deviation can be read against the statistical noise.

Example:
    >>> import numpy as np
    >>> from surrogates.plots.common import plot_histograms
    >>> rng = np.random.default_rng(0)
    >>> ref = {"x": rng.normal(size=1000)}
    >>> cand = {"x": rng.normal(size=1000)}
    >>> plot_histograms(ref, cand, "/tmp/hist.png").name
    'hist.png'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..metrics.histograms import reference_bins, separation_power

__all__ = ["COLORS", "draw_ratio_histogram", "plot_histograms", "save_figure"]

#: reference, candidate colours used in every figure of the report
COLORS = ("#1f4e79", "#d9541e")


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 110) -> Path:
    """Writes ``fig`` as PNG (creating folders) and returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def draw_ratio_histogram(
    ax: Axes,
    rax: Axes | None,
    reference: np.ndarray,
    candidate: np.ndarray,
    bins: np.ndarray,
    *,
    labels: tuple[str, str] = ("reference", "candidate"),
    xlabel: str = "",
) -> float:
    """Draws normalized histograms of two samples and their ratio; returns the separation power.

    Values outside the bins are clipped into the end bins so that no mass disappears from view.
    """
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    cand = np.asarray(candidate, dtype=np.float64).reshape(-1)
    ref, cand = ref[np.isfinite(ref)], cand[np.isfinite(cand)]
    width = np.diff(bins)
    counts = []
    for values, label, color in zip((ref, cand), labels, COLORS, strict=True):
        c = np.histogram(np.clip(values, bins[0], bins[-1]), bins=bins)[0].astype(np.float64)
        counts.append(c)
        ax.stairs(c / (max(len(values), 1) * width), bins, label=label, color=color, lw=1.3)
    sep = separation_power(ref, cand, bins)
    ax.text(0.97, 0.95, f"S = {sep:.2g}", transform=ax.transAxes, ha="right", va="top", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.set_ylabel("density", fontsize=8)
    if rax is None:
        ax.set_xlabel(xlabel, fontsize=8)
        return sep
    ax.tick_params(labelbottom=False)
    nr, nc = max(len(ref), 1), max(len(cand), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(counts[0] > 0, (counts[1] / nc) / (counts[0] / nr), np.nan)
        band = np.where(counts[0] > 0, 1 / np.sqrt(counts[0]), np.nan)
    rax.fill_between(bins, np.r_[1 - band, np.nan], np.r_[1 + band, np.nan], step="post",
                     color="0.85", lw=0)  # fmt: skip
    rax.stairs(ratio, bins, color=COLORS[1], lw=1.1)
    rax.axhline(1.0, color="0.4", lw=0.8)
    rax.set_ylim(0.5, 1.5)
    rax.set_ylabel("ratio", fontsize=7)
    rax.set_xlabel(xlabel, fontsize=8)
    rax.tick_params(labelsize=7)
    return sep


def plot_histograms(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    names: Sequence[str] | None = None,
    n_bins: int = 40,
    ncols: int = 4,
    labels: tuple[str, str] = ("reference", "candidate"),
    title: str | None = None,
) -> Path:
    """A grid of feature histograms (reference vs candidate), each with a ratio panel.

    Args:
        reference: name -> 1-d values; fixes the bins (0.1–99.9 % quantile range).
        candidate: name -> 1-d values (features missing here are skipped).
        path: output PNG.
        names: features to draw (default: all shared ones, in the reference's order).
        n_bins: bins per histogram.
        ncols: panels per row.
        labels: legend labels.
        title: figure title.

    Returns:
        The path written.
    """
    names = [n for n in (list(reference) if names is None else names) if n in candidate]
    if not names:
        raise ValueError("plot_histograms: no feature present in both samples")
    ncols = min(ncols, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(3.0 * ncols, 3.0 * nrows))
    outer = fig.add_gridspec(nrows, ncols, hspace=0.45, wspace=0.35)
    for i, name in enumerate(names):
        inner = outer[i // ncols, i % ncols].subgridspec(2, 1, height_ratios=(3, 1), hspace=0.05)
        ax, rax = fig.add_subplot(inner[0]), fig.add_subplot(inner[1])
        rax.sharex(ax)
        bins = reference_bins(reference[name], n_bins, quantiles=(0.001, 0.999))
        draw_ratio_histogram(
            ax, rax, reference[name], candidate[name], bins, labels=labels, xlabel=name
        )
        if i == 0:
            ax.legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)
