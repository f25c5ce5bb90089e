"""Power spectra of periodic 2-d and 3-d density-contrast fields (shared with the metrics).

Normalization: for a field δ on N^d cells of a periodic box of side L (volume V = L^d),

.. math::
    δ_k = \\mathrm{FFT}(δ) / N^d, \\qquad \\hat P(k) = V \\langle |δ_k|^2 \\rangle_{\\rm shell},

so a continuous field with power spectrum P(k) gives P̂ ≈ P (k in h/Mpc, P in (Mpc/h)^d). Shells
have width k_f = 2π/L and are centred on multiples of k_f: bin i holds the modes with
(i - ½) k_f ≤ |k| < (i + ½) k_f, i = 1, 2, ...; the k = 0 mode never enters. The reported k is the
mean |k| of the modes in the bin and ``n_modes`` counts every mode of the full FFT grid (k and -k
separately, so the number of independent modes is about n_modes / 2 and the cosmic-variance error
of P̂ is P sqrt(2 / n_modes)). No shot noise is subtracted.

``window="cic"`` divides each mode by the cloud-in-cell assignment window
W(k) = Π_i sinc²(k_i H / 2), H = L/N, undoing the smoothing of a CIC-painted field (aliasing is
not corrected).

Example:
    >>> import numpy as np
    >>> from simulators.nbody.power import power_spectrum
    >>> delta = np.random.default_rng(0).standard_normal((32, 32, 32))
    >>> k, p, n = power_spectrum(delta, box_size=100.0)
    >>> bool(np.allclose(p.mean(), (100.0 / 32) ** 3, rtol=0.05))  # white noise: P = V / N^d
    True
"""

from __future__ import annotations

import numpy as np
import scipy.fft

__all__ = ["cross_correlation", "cross_power", "power_spectrum"]


def _check_field(field: np.ndarray, name: str) -> np.ndarray:
    field = np.asarray(field)
    if field.ndim not in (2, 3) or len(set(field.shape)) != 1:
        raise ValueError(f"{name} must be a square 2-d or cubic 3-d array, got shape {field.shape}")
    if field.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 cells per side")
    if not np.all(np.isfinite(field)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return field.astype(np.float64, copy=False)


def _rfft_grid(n: int, dim: int, box_size: float) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-axis wavenumbers (broadcastable) of an rfftn grid and each mode's multiplicity."""
    kf = 2.0 * np.pi / box_size
    ks = []
    for axis in range(dim):
        k1 = (np.fft.rfftfreq(n) if axis == dim - 1 else np.fft.fftfreq(n)) * n * kf
        shape = [1] * dim
        shape[axis] = len(k1)
        ks.append(k1.reshape(shape))
    # modes with 0 < k_last < Nyquist stand for themselves and their mirror image
    weight = np.full(n // 2 + 1, 2.0)
    weight[0] = 1.0
    if n % 2 == 0:
        weight[-1] = 1.0
    return ks, weight.reshape([1] * (dim - 1) + [-1])


def _cic_window(ks: list[np.ndarray], cell: float) -> np.ndarray:
    w = 1.0
    for k in ks:
        w = w * np.sinc(k * cell / (2.0 * np.pi)) ** 2  # np.sinc(x) = sin(πx)/(πx)
    return w


def cross_power(
    a: np.ndarray,
    b: np.ndarray,
    box_size: float,
    *,
    n_bins: int | None = None,
    k_max: float | None = None,
    window: str | None = None,
    mean_subtract: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shell-averaged cross power spectrum P_ab(k) = V ⟨Re(a_k b_k*)⟩ of two fields on one grid.

    Args:
        a, b: periodic real fields (density contrasts), same square/cubic shape.
        box_size: side of the periodic box in Mpc/h.
        n_bins: number of shells (default: up to the Nyquist wavenumber, N // 2).
        k_max: drop shells whose centre exceeds this wavenumber (h/Mpc).
        window: ``None`` or ``"cic"`` (deconvolve the CIC assignment window from both fields).
        mean_subtract: subtract each field's mean first (the k = 0 mode is never binned; this
            only protects float accuracy for fields far from zero mean).

    Returns:
        ``(k, P_ab, n_modes)``: mean |k| per shell (h/Mpc), power in (Mpc/h)^d, modes per shell.
        Empty shells are dropped.
    """
    same = a is b
    a = _check_field(a, "a")
    b = a if same else _check_field(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"fields must have the same shape, got {a.shape} and {b.shape}")
    if not box_size > 0:
        raise ValueError(f"box_size must be positive, got {box_size}")
    if window not in (None, "cic"):
        raise ValueError(f"window must be None or 'cic', got {window!r}")
    n, dim = a.shape[0], a.ndim
    if mean_subtract:
        a = a - a.mean()
        b = a if same else b - b.mean()
    fa = scipy.fft.rfftn(a)
    fb = fa if same else scipy.fft.rfftn(b)
    ks, weight = _rfft_grid(n, dim, box_size)
    kmag = np.sqrt(sum(k**2 for k in ks))
    cross = (fa * np.conj(fb)).real / float(n) ** (2 * dim)
    if window == "cic":
        cross = cross / _cic_window(ks, box_size / n) ** 2

    kf = 2.0 * np.pi / box_size
    n_bins = n // 2 if n_bins is None else int(n_bins)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    idx = np.floor(kmag / kf + 0.5).astype(np.int64)
    w = np.broadcast_to(weight, idx.shape)
    idx, w = idx.ravel(), w.ravel()
    counts = np.bincount(idx, weights=w, minlength=n_bins + 1)[1 : n_bins + 1]
    ksum = np.bincount(idx, weights=w * kmag.ravel(), minlength=n_bins + 1)[1 : n_bins + 1]
    psum = np.bincount(idx, weights=w * cross.ravel(), minlength=n_bins + 1)[1 : n_bins + 1]
    keep = counts > 0
    if k_max is not None:
        keep &= np.arange(1, n_bins + 1) * kf <= k_max * (1 + 1e-12)
    counts, ksum, psum = counts[keep], ksum[keep], psum[keep]
    volume = float(box_size) ** dim
    return ksum / counts, volume * psum / counts, counts.astype(np.int64)


def power_spectrum(
    field: np.ndarray,
    box_size: float,
    *,
    n_bins: int | None = None,
    k_max: float | None = None,
    window: str | None = None,
    mean_subtract: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shell-averaged power spectrum P(k) = V ⟨|δ_k|²⟩ of a 2-d or 3-d periodic field.

    Args:
        field: density contrast δ, square (2-d) or cubic (3-d).
        box_size, n_bins, k_max, window, mean_subtract: as in :func:`cross_power`.

    Returns:
        ``(k, P, n_modes)`` as in :func:`cross_power`.
    """
    field = _check_field(field, "field")
    return cross_power(
        field,
        field,
        box_size,
        n_bins=n_bins,
        k_max=k_max,
        window=window,
        mean_subtract=mean_subtract,
    )


def cross_correlation(
    a: np.ndarray,
    b: np.ndarray,
    box_size: float,
    *,
    n_bins: int | None = None,
    k_max: float | None = None,
    window: str | None = None,
    mean_subtract: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-correlation coefficient r(k) = P_ab / sqrt(P_aa P_bb), in [-1, 1] per shell.

    The window cancels in r, but is accepted for a uniform signature.

    Returns:
        ``(k, r)``.
    """
    kw = dict(n_bins=n_bins, k_max=k_max, window=window, mean_subtract=mean_subtract)
    k, pab, _ = cross_power(a, b, box_size, **kw)
    _, paa, _ = power_spectrum(a, box_size, **kw)
    _, pbb, _ = power_spectrum(b, box_size, **kw)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = pab / np.sqrt(paa * pbb)
    return k, r
