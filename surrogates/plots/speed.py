"""The sampling speed-up of a surrogate over its simulator against the condition (e.g. energy).

Like the other modules of :mod:`surrogates.plots`, the figure is built on
:class:`matplotlib.figure.Figure` directly (no pyplot, no global backend state), written as PNG
and returned as a path. The speed dictionary comes from :func:`surrogates.speed.speed_table`.

Example:
    >>> from surrogates.plots.speed import plot_speedup
    >>> plot_speedup([256.0, 65536.0], [0.5, 3.0], "/tmp/speedup.png").name
    'speedup.png'
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from .common import COLORS, save_figure

__all__ = ["plot_speedup"]


def plot_speedup(
    theta: Sequence[float],
    speedup: Sequence[float],
    path: str | Path,
    *,
    xlabel: str = "incident energy [MeV]",
    spectrum: float | None = None,
) -> Path:
    """Speed-up (surrogate rows/s over simulator rows/s) against θ, both axes logarithmic.

    The line at 1 separates where the surrogate is faster (above) from where simulating is
    faster (below); ``spectrum``, the time-weighted speed-up over the whole spectrum, is drawn
    as a dashed line.
    """
    x, y = np.asarray(theta, dtype=np.float64), np.asarray(speedup, dtype=np.float64)
    fig = Figure(figsize=(4.8, 3.2))
    ax = fig.subplots()
    ax.axhline(1.0, color="0.4", lw=1, label="simulator")
    ax.plot(x, y, "o-", color=COLORS[1], ms=4, label="surrogate, per bin")
    if spectrum is not None:
        ax.axhline(spectrum, color=COLORS[0], ls="--", lw=1,
                   label=f"whole spectrum: {spectrum:.3g}×")  # fmt: skip
    if np.all(x > 0):
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("speed-up (surrogate / simulator)", fontsize=8)
    ax.tick_params(labelsize=7, which="both")
    for axis in (ax.xaxis, ax.yaxis):  # plain numbers, no 3×10² on every minor tick
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3, which="both", lw=0.5)
    ax.legend(fontsize=7, frameon=False)
    return save_figure(fig, path)
