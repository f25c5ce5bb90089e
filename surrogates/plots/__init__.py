"""Matplotlib figures comparing reference and candidate samples; every function writes a PNG and
returns its path.

* :mod:`~surrogates.plots.common`: feature histograms with ratio panels;
* :mod:`~surrogates.plots.fields`: power spectra with a ratio panel, fields side by side;
* :mod:`~surrogates.plots.posterior`: corner plots;
* :mod:`~surrogates.plots.calorimeter`: average shower per layer, high-level feature histograms.
"""

from __future__ import annotations

from .common import plot_histograms
from .fields import plot_fields, plot_power_spectra
from .posterior import plot_corner

__all__ = ["plot_corner", "plot_fields", "plot_histograms", "plot_power_spectra"]
