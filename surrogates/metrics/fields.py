r"""Summary statistics of 2-d and 3-d periodic fields (cosmology maps and boxes).

* power spectrum and cross-correlation coefficient: from :mod:`simulators.nbody.power` (one
  implementation, shared with the simulator); :func:`power_spectra` applies it to a batch;
* pixel-value PDF: the distribution of all cell values of the fields;
* response of the low-k power to the parameters: :func:`power_response` fits
  :math:`\log A = a + \sum_j b_j \log \theta_j` over the rows of a file (for (Ω_m, σ_8), linear
  theory gives :math:`b_{\sigma_8} = 2`), so a surrogate's dependence on θ is compared with the
  simulator's on the same rows and not only its mean spectrum;
* peak counts: local maxima (periodic neighbourhood of :math:`3^d - 1` cells) histogrammed by
  height, a standard non-Gaussian statistic for weak-lensing and density maps (e.g. Kratochvil et
  al., *Probing cosmology with weak lensing peak counts*, Phys. Rev. D 81, 043519, 2010).

:func:`compare_fields` combines them into the numbers the evaluation report shows: mean power
spectrum ratio, a χ² of the mean spectra in units of their standard errors, separation powers of
the pixel PDF and of the peak-height distribution, and the mean cross-correlation of matched pairs.

Example:
    >>> import numpy as np
    >>> f = np.zeros((8, 8)); f[2, 3] = 1.0; f[6, 6] = 2.0
    >>> int(find_peaks(f).sum())
    2
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from simulators.nbody.power import cross_correlation, power_spectrum

from .histograms import reference_bins, separation_power

__all__ = [
    "compare_fields",
    "cross_correlation",
    "find_peaks",
    "peak_counts",
    "pixel_pdf",
    "power_response",
    "power_spectra",
    "power_spectrum",
]


def _batch(fields: np.ndarray, name: str) -> np.ndarray:
    f = np.asarray(fields, dtype=np.float64)
    if f.ndim not in (3, 4) or len(set(f.shape[1:])) != 1:
        raise ValueError(f"{name} must be a batch of square or cubic fields, got shape {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return f


def power_spectra(
    fields: np.ndarray, box_size: float, **kwargs: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Power spectrum of every field in a batch (N, n, n[, n]).

    Args:
        fields: the batch.
        box_size: side of the periodic box (e.g. Mpc/h).
        **kwargs: passed to :func:`simulators.nbody.power.power_spectrum`.

    Returns:
        ``(k, P, n_modes)`` with ``P`` of shape (N, n_k).
    """
    f = _batch(fields, "fields")
    spectra = [power_spectrum(field, box_size, **kwargs) for field in f]
    k, _, n_modes = spectra[0]
    return k, np.stack([p for _, p, _ in spectra]), n_modes


def pixel_pdf(fields: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Probability density of the cell values of all fields, on the given bin edges.

    Values outside the edges are left out of the density but count in its normalization, so
    ``sum(density * diff(bins)) <= 1``.
    """
    v = np.asarray(fields, dtype=np.float64).reshape(-1)
    counts = np.histogram(v, bins=bins)[0]
    return counts / (len(v) * np.diff(bins))


def find_peaks(field: np.ndarray) -> np.ndarray:
    """Boolean mask of the strict local maxima of one periodic field (2-d or 3-d).

    A cell is a peak when it is larger than each of its :math:`3^d - 1` neighbours, the box
    wrapping around at the edges.
    """
    f = np.asarray(field, dtype=np.float64)
    mask = np.ones(f.shape, dtype=bool)
    for shift in itertools.product((-1, 0, 1), repeat=f.ndim):
        if any(shift):
            mask &= f > np.roll(f, shift, axis=tuple(range(f.ndim)))
    return mask


def peak_counts(fields: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Number of peaks per field in each height bin.

    Returns:
        Array (N, len(bins) - 1).
    """
    f = _batch(fields, "fields")
    return np.stack([np.histogram(x[find_peaks(x)], bins=bins)[0] for x in f])


def power_response(
    theta: np.ndarray,
    fields: np.ndarray,
    box_size: float,
    *,
    group_size: int = 1,
    k_range: tuple[float, float] = (0.05, 0.15),
) -> dict[str, Any] | None:
    r"""Power-law response of the low-k power amplitude to the parameters.

    The amplitude :math:`A_i` of row i is its mean power over ``k_range`` (averaged over the
    row's ``group_size`` fields); the least-squares fit of
    :math:`\log A_i = a + \sum_j b_j \log \theta_{ij}` gives the exponents :math:`b_j` with their
    standard errors from the residual scatter (cosmic variance of each row's box).

    Args:
        theta: parameters (N, P) of the rows, all positive.
        fields: (N · group_size, n, n[, n]), the fields of row i at ``i * group_size + j``.
        box_size: side of the periodic box.
        group_size: fields per row.
        k_range: the band (same unit as ``2π / box_size``).

    Returns:
        ``k_range``, ``exponents``, ``exponent_se`` (one per parameter) and ``rows``; None when
        a parameter is not positive, the band holds no k-bin, or there are fewer rows than
        P + 2.
    """
    t = np.asarray(theta, dtype=np.float64)
    if t.ndim != 2 or len(t) < t.shape[1] + 2 or not np.all(t > 0):
        return None
    k, p, _ = power_spectra(fields, box_size)
    sel = (k > k_range[0]) & (k < k_range[1])
    if not sel.any() or len(p) != len(t) * group_size:
        return None
    amp = p[:, sel].mean(axis=1).reshape(len(t), group_size).mean(axis=1)
    design = np.column_stack([np.ones(len(t)), np.log(t)])
    coef, *_ = np.linalg.lstsq(design, np.log(amp), rcond=None)
    resid = np.log(amp) - design @ coef
    dof = len(t) - design.shape[1]
    cov = resid @ resid / dof * np.linalg.inv(design.T @ design)
    return {
        "k_range": list(k_range),
        "exponents": coef[1:].tolist(),
        "exponent_se": np.sqrt(np.diag(cov))[1:].tolist(),
        "rows": len(t),
    }


def compare_fields(
    reference: np.ndarray,
    candidate: np.ndarray,
    box_size: float,
    *,
    n_bins: int = 40,
    matched: bool = False,
    window: str | None = None,
    group_size: int = 1,
) -> dict[str, Any]:
    """Field statistics of a candidate batch against a reference batch.

    Args:
        reference: fields (N, n, n[, n]).
        candidate: fields (M, n, n[, n]) on the same grid.
        box_size: side of the periodic box.
        n_bins: bins of the pixel PDF and of the peak heights (edges from the reference).
        matched: the rows correspond (same conditions, same order); enables the mean
            cross-correlation coefficient of the pairs.
        window: mass-assignment window passed to the power spectrum (``None`` or ``"cic"``).
        group_size: consecutive fields that share one simulation (e.g. slices of one box) and are
            therefore correlated; their spectra are averaged before the standard errors.

    Returns:
        A JSON-ready dict: ``k``, mean spectra and their standard errors, the ratio, the χ² per
        k-bin of the difference of the means, pixel-PDF and peak separation powers, mean peaks per
        field, and (if ``matched``) the mean r(k).
    """
    ref = _batch(reference, "reference")
    cand = _batch(candidate, "candidate")
    if ref.shape[1:] != cand.shape[1:]:
        raise ValueError(f"reference fields {ref.shape[1:]} and candidate {cand.shape[1:]} differ")
    k, p_ref, n_modes = power_spectra(ref, box_size, window=window)
    _, p_cand, _ = power_spectra(cand, box_size, window=window)
    m_ref, m_cand = p_ref.mean(axis=0), p_cand.mean(axis=0)
    if group_size > 1:
        p_ref = p_ref[: len(p_ref) // group_size * group_size]
        p_ref = p_ref.reshape(-1, group_size, len(k)).mean(axis=1)
        p_cand = p_cand[: len(p_cand) // group_size * group_size]
        p_cand = p_cand.reshape(-1, group_size, len(k)).mean(axis=1)
    # Standard errors of the means from the sample scatter (cosmic variance plus parameter spread).
    se_ref = p_ref.std(axis=0, ddof=1) / np.sqrt(len(p_ref)) if len(p_ref) > 1 else 0 * m_ref
    se_cand = p_cand.std(axis=0, ddof=1) / np.sqrt(len(p_cand)) if len(p_cand) > 1 else 0 * m_ref
    var = se_ref**2 + se_cand**2
    ok = var > 0
    chi2 = float(np.sum((m_ref - m_cand)[ok] ** 2 / var[ok]) / max(int(ok.sum()), 1))

    pix_bins = reference_bins(ref, n_bins, quantiles=(0.001, 0.999))
    peak_ref = np.concatenate([x[find_peaks(x)] for x in ref])
    peak_cand = np.concatenate([x[find_peaks(x)] for x in cand])
    peak_bins = reference_bins(peak_ref, n_bins, quantiles=(0.001, 0.999))
    out: dict[str, Any] = {
        "k": k.tolist(),
        "n_modes": n_modes.tolist(),
        "power_reference": m_ref.tolist(),
        "power_candidate": m_cand.tolist(),
        "power_reference_se": se_ref.tolist(),
        "power_candidate_se": se_cand.tolist(),
        "power_ratio": (m_cand / m_ref).tolist(),
        "power_ratio_mean_abs_dev": float(np.mean(np.abs(m_cand / m_ref - 1))),
        "power_chi2_per_bin": chi2,
        "pixel_pdf_separation_power": separation_power(ref, cand, pix_bins),
        "peak_separation_power": separation_power(peak_ref, peak_cand, peak_bins),
        "peaks_per_field_reference": len(peak_ref) / len(ref),
        "peaks_per_field_candidate": len(peak_cand) / len(cand),
    }
    if matched:
        n = min(len(ref), len(cand))
        r = np.stack(
            [cross_correlation(a, b, box_size)[1] for a, b in zip(ref[:n], cand[:n], strict=True)]
        )
        out["cross_correlation_mean"] = np.nanmean(r, axis=0).tolist()
    return out
