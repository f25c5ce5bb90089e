"""Calorimeter plots: average shower images per layer and high-level feature histograms.

Both functions write a PNG (matplotlib's Agg backend, no display needed) and return its path.
Histogram bins come from the reference sample (the first one given), so several samples —
Geant4-like reference, surrogate, ... — are compared on identical bins, with an optional ratio
panel to the reference; values outside the reference range are drawn in the end bins.

Example:
    >>> import numpy as np, simulators
    >>> from simulators.calorimeter import high_level_features
    >>> from surrogates.plots.calorimeter import plot_average_shower, plot_feature_histograms
    >>> sim = simulators.get("calorimeter")
    >>> theta = np.full((20, 1), 4096.0)
    >>> x = sim.simulate(theta, np.random.default_rng(0))
    >>> _ = plot_average_shower(x, sim.geometry, "/tmp/avg.png")
    >>> f = high_level_features(x, theta, sim.geometry)
    >>> _ = plot_feature_histograms({"sim": f}, "/tmp/hlf.png")
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

from simulators.calorimeter.geometry import Geometry

__all__ = [
    "draw_feature",
    "feature_bins",
    "plot_average_shower",
    "plot_feature_histograms",
]

_ANGULAR_SPLITS = 360  # azimuthal resolution of the polar images (a multiple of 10)


def plot_average_shower(
    showers: np.ndarray,
    geometry: Geometry,
    path: str | Path,
    *,
    title: str | None = None,
    log_radius: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Path:
    """Draws the mean energy per voxel, one polar (r, α) panel per layer.

    Args:
        showers: voxel energies in MeV, shape (N, n_voxels) (or one shower, (n_voxels,)).
        geometry: the readout geometry.
        path: output PNG.
        title: figure title.
        log_radius: radial axis as log(1 + r/mm), which shows both the core and the halo.
        vmin, vmax: colour range in MeV (default: 1e-4 of the maximum ... maximum).

    Returns:
        The path written.
    """
    mean = np.asarray(showers, dtype=np.float64).reshape(-1, geometry.n_voxels).mean(axis=0)
    top = float(mean.max()) if vmax is None else vmax
    top = top if top > 0 else 1.0
    low = top * 1e-4 if vmin is None else vmin
    n = geometry.n_layers
    fig = plt.figure(figsize=(2.6 * n, 3.4), dpi=120)
    r_max = max(e[-1] for e in geometry.r_edges)

    def radius(r: np.ndarray) -> np.ndarray:
        return np.log1p(r) if log_radius else r

    mesh = None
    for i, lid in enumerate(geometry.layers):
        ax = fig.add_subplot(1, n, i + 1, projection="polar")
        edges = np.asarray(geometry.r_edges[i])
        na, nr = geometry.n_alpha[i], geometry.n_radial[i]
        img = mean[geometry.layer_slices[i]].reshape(na, nr)
        per = _ANGULAR_SPLITS // na
        img = np.repeat(img, per, axis=0)  # smooth the α sectors on a fine angular grid
        theta = np.linspace(-math.pi, math.pi, _ANGULAR_SPLITS + 1)
        tt, rr = np.meshgrid(theta, radius(edges))
        mesh = ax.pcolormesh(
            tt, rr, np.clip(img.T, low, None), norm=LogNorm(vmin=low, vmax=top), cmap="viridis"
        )
        ax.set_ylim(0, radius(np.array(r_max)))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        ax.set_title(f"layer {lid}\n{img.sum() / per:.3g} MeV", fontsize=9)
    if mesh is not None:
        cax = fig.add_axes((0.3, 0.17, 0.4, 0.04))
        cb = fig.colorbar(mesh, cax=cax, orientation="horizontal")
        cb.set_label("mean energy per voxel (MeV)", fontsize=8)
    scale = "log(1 + r/mm)" if log_radius else "r (mm)"
    fig.suptitle(title or f"average of {len(showers)} showers (radius: {scale})", fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.78, bottom=0.3, wspace=0.1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def feature_bins(reference: np.ndarray, bins: int = 30, *, log: bool | None = None) -> np.ndarray:
    """Bin edges from the 0.5–99.5% range of the reference sample.

    ``log=None`` picks logarithmic bins for positive features spanning more than two decades.
    """
    ref = np.asarray(reference, dtype=np.float64)
    ref = ref[np.isfinite(ref)]
    if ref.size == 0:
        return np.linspace(0.0, 1.0, bins + 1)
    lo, hi = np.quantile(ref, [0.005, 0.995])
    if log is None:
        pos = ref[ref > 0]
        log = pos.size > 0.9 * ref.size and lo > 0 and hi / lo > 100
    if log and lo > 0:
        return np.geomspace(lo, hi, bins + 1)
    if hi <= lo:
        lo, hi = lo - 0.5 * max(abs(lo), 1e-6), hi + 0.5 * max(abs(hi), 1e-6)
    return np.linspace(lo, hi, bins + 1)


def draw_feature(
    ax: plt.Axes,
    values: Sequence[np.ndarray],
    labels: Sequence[str],
    *,
    bins: int | np.ndarray = 30,
    ratio_ax: plt.Axes | None = None,
    xlabel: str = "",
) -> np.ndarray:
    """Normalized step histograms of several samples on the reference's bins (the first sample).

    Returns:
        The bin edges used.
    """
    edges = feature_bins(values[0], bins) if np.isscalar(bins) else np.asarray(bins)
    hists = []
    for v, label in zip(values, labels, strict=True):
        v = np.clip(np.asarray(v, dtype=np.float64), edges[0], edges[-1])  # overflow in the ends
        h, _ = np.histogram(v, bins=edges, density=True)
        hists.append(h)
        ax.stairs(h, edges, label=label, linewidth=1.2)
    if (
        edges[0] > 0
        and edges[-1] / edges[0] > 100
        and np.allclose(np.diff(np.log(edges)), np.log(edges[1] / edges[0]))
    ):
        ax.set_xscale("log")
    ax.set_ylabel("density", fontsize=8)
    ax.tick_params(labelsize=7)
    if ratio_ax is not None:
        for h, label in zip(hists[1:], labels[1:], strict=True):
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio_ax.stairs(np.where(hists[0] > 0, h / hists[0], np.nan), edges, label=label)
        ratio_ax.axhline(1.0, color="grey", linewidth=0.8)
        ratio_ax.set_ylim(0.5, 1.5)
        ratio_ax.set_ylabel(f"/ {labels[0]}", fontsize=7)
        ratio_ax.set_xscale(ax.get_xscale())
        ratio_ax.tick_params(labelsize=7)
        ratio_ax.set_xlabel(xlabel, fontsize=8)
    else:
        ax.set_xlabel(xlabel, fontsize=8)
    return edges


def plot_feature_histograms(
    samples: Mapping[str, Mapping[str, np.ndarray]],
    path: str | Path,
    *,
    keys: Sequence[str] | None = None,
    bins: int = 30,
    ratio: bool | None = None,
    ncols: int = 5,
    title: str | None = None,
    bins_from: str = "reference",
) -> Path:
    """A grid of histograms of high-level features for one or several samples.

    Args:
        samples: label -> features (as from
            :func:`simulators.calorimeter.features.high_level_features`); the first is the
            reference that fixes the bins.
        path: output PNG.
        keys: features to draw (default: all features of the reference).
        bins: number of bins.
        ratio: draw ratio panels to the reference (default: when there are several samples).
        ncols: panels per row.
        title: figure title.
        bins_from: "reference" (the first sample's range, the usual choice when comparing a
            model to it) or "all" (the range of all samples pooled, e.g. for several energies).

    Returns:
        The path written.
    """
    labels = list(samples)
    if not labels:
        raise ValueError("plot_feature_histograms needs at least one sample")
    ref = samples[labels[0]]
    keys = list(ref) if keys is None else list(keys)
    ratio = len(labels) > 1 if ratio is None else ratio
    nrows = math.ceil(len(keys) / ncols)
    ncols = min(ncols, len(keys))
    fig = plt.figure(figsize=(3.0 * ncols, (3.2 if ratio else 2.5) * nrows), dpi=110)
    outer = fig.add_gridspec(nrows, ncols, hspace=0.55, wspace=0.35)
    for i, key in enumerate(keys):
        cell = outer[i // ncols, i % ncols]
        if ratio:
            inner = cell.subgridspec(2, 1, height_ratios=(3, 1), hspace=0.05)
            ax, rax = fig.add_subplot(inner[0]), fig.add_subplot(inner[1])
            ax.tick_params(labelbottom=False)
        else:
            ax, rax = fig.add_subplot(cell), None
        values = [np.asarray(samples[lb][key]) for lb in labels]
        if bins_from == "all":
            edges = feature_bins(np.concatenate(values), bins)
        elif bins_from == "reference":
            edges = feature_bins(values[0], bins)
        else:
            raise ValueError(f"bins_from must be 'reference' or 'all', got {bins_from!r}")
        draw_feature(ax, values, labels, bins=edges, ratio_ax=rax, xlabel=key)
        if i == 0:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
