"""Figures for 2-d and 3-d fields: power spectra with a ratio panel, example fields side by side.

Pixel PDFs and peak heights are 1-d distributions: draw them with
:func:`surrogates.plots.common.plot_histograms`.

Example:
    >>> import numpy as np
    >>> from surrogates.plots.fields import plot_fields
    >>> rng = np.random.default_rng(0)
    >>> plot_fields(rng.normal(size=(3, 32, 32)), rng.normal(size=(3, 32, 32)), "/tmp/f.png").name
    'f.png'
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from .common import COLORS, save_figure

__all__ = ["plot_fields", "plot_power_spectra"]


def plot_power_spectra(
    k: np.ndarray,
    p_reference: np.ndarray,
    p_candidate: np.ndarray,
    path: str | Path,
    *,
    se_reference: np.ndarray | None = None,
    se_candidate: np.ndarray | None = None,
    labels: tuple[str, str] = ("reference", "candidate"),
    k_unit: str = "h/Mpc",
    title: str | None = None,
) -> Path:
    """Mean power spectra on log axes with a candidate/reference ratio panel.

    Args:
        k: wavenumbers (n_k,).
        p_reference: mean reference spectrum (n_k,).
        p_candidate: mean candidate spectrum (n_k,).
        path: output PNG.
        se_reference: standard error of the reference mean; drawn as a band here and, relative,
            around 1 in the ratio panel.
        se_candidate: standard error of the candidate mean; drawn as error bars on the ratio.
        labels: legend labels.
        k_unit: unit of k for the axis label.
        title: figure title.
    """
    k, pr, pc = (np.asarray(a, dtype=np.float64) for a in (k, p_reference, p_candidate))
    fig = Figure(figsize=(5.5, 5.0))
    gs = fig.add_gridspec(2, 1, height_ratios=(3, 1.3), hspace=0.05)
    ax, rax = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    rax.sharex(ax)
    ax.loglog(k, pr, color=COLORS[0], label=labels[0])
    ax.loglog(k, pc, color=COLORS[1], ls="--", label=labels[1])
    ratio = pc / pr
    if se_reference is not None:
        se = np.asarray(se_reference, dtype=np.float64)
        ax.fill_between(k, pr - se, pr + se, color=COLORS[0], alpha=0.2, lw=0)
        rax.fill_between(k, 1 - se / pr, 1 + se / pr, color="0.85", lw=0)
    if se_candidate is not None:
        rax.errorbar(k, ratio, yerr=np.asarray(se_candidate) / pr, fmt="none", ecolor=COLORS[1],
                     elinewidth=0.8, alpha=0.7)  # fmt: skip
    rax.semilogx(k, ratio, color=COLORS[1])
    rax.xaxis.set_minor_formatter(NullFormatter())  # minor log labels collide
    rax.axhline(1.0, color="0.4", lw=0.8)
    dev = np.nanmax(np.abs(ratio - 1)) if len(ratio) else 0.1
    lim = min(max(0.1, 1.2 * dev), 1.0)
    rax.set_ylim(1 - lim, 1 + lim)
    ax.set_ylabel("P(k)")
    ax.tick_params(labelbottom=False)
    rax.set_xlabel(f"k [{k_unit}]")
    rax.set_ylabel("ratio")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def _image(field: np.ndarray) -> np.ndarray:
    # A 3-d box is shown as the mean over its last axis (a projected map).
    f = np.asarray(field, dtype=np.float64)
    return f.mean(axis=-1) if f.ndim == 3 else f


def plot_fields(
    reference: np.ndarray,
    candidate: np.ndarray,
    path: str | Path,
    *,
    n: int = 4,
    labels: tuple[str, str] = ("reference", "candidate"),
    titles: list[str] | None = None,
    cmap: str = "magma",
) -> Path:
    """The first ``n`` fields of each batch side by side (top row reference, bottom candidate).

    Both rows share one colour scale (1st–99th percentile of the shown reference fields), so
    differences in contrast are visible. 3-d fields are projected along their last axis.

    Args:
        reference: fields (N, n, n[, n]).
        candidate: fields (M, n, n[, n]).
        path: output PNG.
        n: number of columns.
        labels: row labels.
        titles: column titles (e.g. the conditions θ of each pair).
        cmap: colour map.
    """
    n = max(1, min(n, len(reference), len(candidate)))
    imgs = [[_image(f) for f in batch[:n]] for batch in (reference, candidate)]
    lo, hi = np.percentile(np.stack(imgs[0]), [1, 99])
    fig = Figure(figsize=(2.4 * n, 5.0))
    axes = fig.subplots(2, n, squeeze=False)
    im = None
    for row in range(2):
        for col in range(n):
            ax = axes[row, col]
            im = ax.imshow(imgs[row][col], cmap=cmap, vmin=lo, vmax=hi, origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(labels[row])
            if row == 0 and titles is not None and col < len(titles):
                ax.set_title(titles[col], fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.8, pad=0.02)
    return save_figure(fig, path)
