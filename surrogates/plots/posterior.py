"""Corner plots: 1-d marginals on the diagonal and 2-d credible contours below it, for one or
several sets of samples (e.g. reference posterior vs neural posterior, or simulator vs surrogate).

The 2-d contours enclose 68 % and 95 % of the samples: the density histogram is thresholded at the
levels whose highest-density region holds that mass, after a light Gaussian smoothing.

Example:
    >>> import numpy as np
    >>> from surrogates.plots.posterior import plot_corner
    >>> rng = np.random.default_rng(0)
    >>> s = {"reference": rng.normal(size=(2000, 3)), "NPE": rng.normal(size=(2000, 3))}
    >>> plot_corner(s, "/tmp/corner.png", labels=["a", "b", "c"]).name
    'corner.png'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy.ndimage import gaussian_filter

from .common import COLORS, save_figure

__all__ = ["density_levels", "plot_corner"]

_MORE_COLORS = ("#2e8b57", "#8e44ad", "#b8860b")


def density_levels(hist: np.ndarray, masses: Sequence[float] = (0.95, 0.68)) -> list[float]:
    """Thresholds t such that the bins with ``hist >= t`` hold each given fraction of the total.

    Returned in increasing order of threshold (decreasing mass), as ``contour`` expects.
    """
    h = np.sort(np.asarray(hist, dtype=np.float64).reshape(-1))[::-1]
    total = h.sum()
    if total <= 0:
        return [0.0 for _ in masses]
    cum = np.cumsum(h) / total
    levels = [float(h[min(np.searchsorted(cum, m), len(h) - 1)]) for m in sorted(masses)[::-1]]
    # contour needs strictly increasing levels
    for i in range(1, len(levels)):
        if levels[i] <= levels[i - 1]:
            levels[i] = np.nextafter(levels[i - 1], np.inf)
    return levels


def plot_corner(
    samples: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    labels: Sequence[str] | None = None,
    truth: Sequence[float] | None = None,
    bins: int = 40,
    max_dims: int = 8,
    smooth: float = 1.0,
    title: str | None = None,
) -> Path:
    """A corner plot of one or several sample sets (N_i, D) sharing the same D parameters.

    Args:
        samples: legend label -> samples; the first set fixes the axis ranges (0.5–99.5 %).
        path: output PNG.
        labels: parameter names (default θ₀, θ₁, ...).
        truth: a true parameter value to mark (e.g. the θ that generated an observation).
        bins: histogram bins per axis.
        max_dims: draw at most this many leading dimensions (a corner plot of 30 dims is
            unreadable).
        smooth: width in bins of the Gaussian smoothing of the 2-d histograms (0: none).
        title: figure title.
    """
    names = list(samples)
    if not names:
        raise ValueError("plot_corner needs at least one sample set")
    arrays = [np.asarray(samples[n], dtype=np.float64) for n in names]
    arrays = [a.reshape(len(a), -1) for a in arrays]
    d = min(arrays[0].shape[1], max_dims)
    labels = list(labels) if labels is not None else [f"θ{i}" for i in range(d)]
    colors = list(COLORS) + list(_MORE_COLORS)
    first = arrays[0][np.all(np.isfinite(arrays[0][:, :d]), axis=1)]
    lo, hi = np.percentile(first[:, :d], [0.5, 99.5], axis=0)
    pad = 0.05 * (hi - lo) + 1e-12
    lo, hi = lo - pad, hi + pad
    size = max(1.6, min(2.4, 12.0 / d))
    fig = Figure(figsize=(size * d + 0.5, size * d + 0.3))
    axes = fig.subplots(d, d, squeeze=False)
    fig.subplots_adjust(hspace=0.06, wspace=0.06)
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if j > i:
                ax.set_visible(False)
                continue
            for a, color, name in zip(arrays, colors, names, strict=False):
                a = a[np.all(np.isfinite(a[:, :d]), axis=1)]
                if i == j:
                    ax.hist(a[:, i], bins=bins, range=(lo[i], hi[i]), density=True,
                            histtype="step", color=color, lw=1.2, label=name)  # fmt: skip
                else:
                    h, xe, ye = np.histogram2d(a[:, j], a[:, i], bins=bins,
                                               range=[[lo[j], hi[j]], [lo[i], hi[i]]])  # fmt: skip
                    h = gaussian_filter(h, smooth)  # contours of a raw 2-d histogram are ragged
                    xc, yc = (xe[1:] + xe[:-1]) / 2, (ye[1:] + ye[:-1]) / 2
                    if h.sum() > 0:
                        ax.contour(xc, yc, h.T, levels=density_levels(h), colors=[color],
                                   linewidths=(0.8, 1.3))  # fmt: skip
            if truth is not None:
                ax.axvline(truth[j], color="k", lw=0.8, ls=":")
                if i != j:
                    ax.axhline(truth[i], color="k", lw=0.8, ls=":")
            ax.set_xlim(lo[j], hi[j])
            if i != j:
                ax.set_ylim(lo[i], hi[i])
            ax.tick_params(labelsize=6)
            if i < d - 1:
                ax.tick_params(labelbottom=False)
            else:
                ax.set_xlabel(labels[j], fontsize=9)
            if j > 0 or i == 0:
                ax.tick_params(labelleft=False)
            else:
                ax.set_ylabel(labels[i], fontsize=9)
            if i == j:
                ax.set_yticks([])
    axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.05, 1.0), frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)
