"""Metrics that tell a good surrogate from a bad one.

Every metric compares a *reference* sample (the simulator) with a *candidate* (a surrogate, or a
second simulator run) and is tested both ways: "same" for two samples of one distribution,
"different" for a small known perturbation.

* :func:`c2st`: classifier two-sample test accuracy (0.5 = indistinguishable);
* :func:`classifier_auc`: the calorimeter challenge's classifier AUC and JSD;
* :func:`separation_power`, :func:`wasserstein_1d`, :func:`compare_features`: per-feature
  histogram comparisons on reference-based bins;
* :func:`frechet_distance`: Fréchet distance of Gaussian fits (e.g. on high-level features);
* :func:`mmd2`, :func:`mmd_permutation_test`: kernel maximum mean discrepancy;
* :mod:`surrogates.metrics.fields`: power spectra, cross-correlation, pixel PDF, peak counts.
"""

from __future__ import annotations

from .c2st import c2st, c2st_folds
from .classifier import (
    ClassifierResult,
    classifier_auc,
    isotonic_calibration,
    low_level_inputs,
    roc_auc,
    stack_features,
)
from .frechet import frechet_distance, frechet_distance_extrapolated, gaussian_frechet_distance
from .histograms import (
    compare_features,
    normalized_histogram,
    reference_bins,
    separation_power,
    wasserstein_1d,
)
from .mmd import median_heuristic, mmd2, mmd_permutation_test

__all__ = [
    "ClassifierResult",
    "c2st",
    "c2st_folds",
    "classifier_auc",
    "compare_features",
    "frechet_distance",
    "frechet_distance_extrapolated",
    "gaussian_frechet_distance",
    "isotonic_calibration",
    "low_level_inputs",
    "median_heuristic",
    "mmd2",
    "mmd_permutation_test",
    "normalized_histogram",
    "reference_bins",
    "roc_auc",
    "separation_power",
    "stack_features",
    "wasserstein_1d",
]
