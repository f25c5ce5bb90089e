"""Initial conditions: Gaussian random fields and Lagrangian perturbation theory (ZA and 2LPT).

The linear field is built from white noise w (unit variance per cell) as

.. math::
    \\mathrm{FFT}(δ)(k) = \\mathrm{FFT}(w)(k) \\sqrt{P(k) N^d / V},

so that P̂(k) = V ⟨|FFT(δ)/N^d|²⟩ = P(k) (the normalization of :mod:`simulators.nbody.power`).
The white noise fixes the phases: the same noise at two cosmologies gives the same structures.
Paired-and-fixed fields (Angulo & Pontzen 2016) use ``fixed_amplitude=True`` (|FFT(w)| set to its
rms, only the phases random) and a second run with ``inverted=True`` (every phase shifted by π).

Displacements follow second-order Lagrangian perturbation theory with the sign conventions of
Scoccimarro (1998):

.. math::
    x = q - D_1 ∇φ^{(1)} + D_2 ∇φ^{(2)}, \\qquad ∇²φ^{(1)} = δ_L, \\qquad
    ∇²φ^{(2)} = \\sum_{i>j} \\left[φ^{(1)}_{,ii} φ^{(1)}_{,jj} - (φ^{(1)}_{,ij})^2\\right],

with D₂ ≈ -3/7 D₁² (see :meth:`Cosmology.growth2`), δ_L the linear field at z = 0 and D(1) = 1.
The canonical momentum p = a² dx/dt (units of H0 · Mpc/h) is
p = a² E(a) (D₁ f₁ s₁ + D₂ f₂ s₂), with s₁ = -∇φ⁽¹⁾ and s₂ = ∇φ⁽²⁾.

References:
    Scoccimarro (1998), MNRAS 299, 1097; Crocce, Pueblas & Scoccimarro (2006), MNRAS 373, 369.
    Angulo & Pontzen (2016), MNRAS 462, L1, "Cosmological N-body simulations with suppressed
    variance".
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.fft

from .cosmology import Cosmology

__all__ = [
    "gaussian_field",
    "lattice",
    "lpt_displacements",
    "lpt_particles",
    "white_noise",
]


def white_noise(n: int, rng: np.random.Generator, *, dim: int = 3) -> np.ndarray:
    """Unit-variance Gaussian white noise on n^dim cells; the only random input of a run."""
    return rng.standard_normal((n,) * dim)


def _kgrid(n: int, dim: int, box_size: float) -> list[np.ndarray]:
    kf = 2.0 * np.pi / box_size
    out = []
    for axis in range(dim):
        k1 = (np.fft.rfftfreq(n) if axis == dim - 1 else np.fft.fftfreq(n)) * n * kf
        shape = [1] * dim
        shape[axis] = len(k1)
        out.append(k1.reshape(shape))
    return out


def _grad_k(k: np.ndarray, n: int, box_size: float) -> np.ndarray:
    """i k for a gradient, zero on the Nyquist plane where the sign of k is ambiguous."""
    nyq = np.isclose(np.abs(k), np.pi * n / box_size) if n % 2 == 0 else np.zeros(k.shape, bool)
    return np.where(nyq, 0.0, k)


def gaussian_field(
    noise: np.ndarray,
    box_size: float,
    power: Callable[[np.ndarray], np.ndarray],
    *,
    fixed_amplitude: bool = False,
    inverted: bool = False,
) -> np.ndarray:
    """A Gaussian random field with power spectrum ``power`` from given white noise.

    Args:
        noise: white noise of unit variance, square or cubic (see :func:`white_noise`).
        box_size: side of the periodic box in Mpc/h.
        power: P(k) in (Mpc/h)^d for k in h/Mpc.
        fixed_amplitude: set every mode's amplitude to its expectation (a "fixed" field).
        inverted: shift every phase by π (δ → -δ), the partner of a "paired" run.

    Returns:
        δ on the same grid, float64, zero mean.
    """
    noise = np.asarray(noise, dtype=np.float64)
    n, dim = noise.shape[0], noise.ndim
    cells = float(n) ** dim
    wk = scipy.fft.rfftn(noise)
    if fixed_amplitude:
        amp = np.abs(wk)
        wk = np.where(amp > 0, wk / np.where(amp > 0, amp, 1.0), 0.0) * np.sqrt(cells)
    ks = _kgrid(n, dim, box_size)
    kmag = np.sqrt(sum(k**2 for k in ks))
    pk = np.asarray(power(np.where(kmag > 0, kmag, 1.0)), dtype=np.float64)
    pk = np.where(kmag > 0, pk, 0.0)
    dk = wk * np.sqrt(pk * cells / float(box_size) ** dim)
    if inverted:
        dk = -dk
    return scipy.fft.irfftn(dk, s=noise.shape)


def lpt_displacements(
    delta: np.ndarray, box_size: float, *, order: int = 2
) -> tuple[np.ndarray, np.ndarray | None]:
    """First- and second-order Lagrangian displacement fields of a linear density field.

    Args:
        delta: linear density contrast δ_L on an n³ grid (normalized at z = 0).
        box_size: side of the periodic box in Mpc/h.
        order: 1 (Zel'dovich) or 2 (2LPT).

    Returns:
        ``(s1, s2)`` of shape (3, n, n, n): s₁ = -∇φ⁽¹⁾ (so δ_L = -∇·s₁) and s₂ = ∇φ⁽²⁾ (``None``
        for order 1). Positions are q + D₁ s₁ + D₂ s₂.
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order}")
    delta = np.asarray(delta, dtype=np.float64)
    n = delta.shape[0]
    if delta.ndim != 3 or delta.shape != (n, n, n):
        raise ValueError(f"delta must be a cubic 3-d array, got shape {delta.shape}")
    ks = _kgrid(n, 3, box_size)
    k2 = sum(k**2 for k in ks)
    inv_k2 = np.where(k2 > 0, 1.0 / np.where(k2 > 0, k2, 1.0), 0.0)
    dk = scipy.fft.rfftn(delta)
    phi1 = -dk * inv_k2  # ∇²φ = δ  ->  φ_k = -δ_k / k²
    kg = [_grad_k(k, n, box_size) for k in ks]
    s1 = np.stack([scipy.fft.irfftn(-1j * kg[i] * phi1, s=delta.shape) for i in range(3)])
    if order == 1:
        return s1, None

    def d2(i: int, j: int) -> np.ndarray:  # φ,ij
        ki, kj = (ks[i], ks[j]) if i == j else (kg[i], kg[j])
        return scipy.fft.irfftn(-ki * kj * phi1, s=delta.shape)

    pxx, pyy, pzz = d2(0, 0), d2(1, 1), d2(2, 2)
    source = pxx * pyy + pxx * pzz + pyy * pzz
    del pxx, pyy, pzz
    for i, j in ((0, 1), (0, 2), (1, 2)):
        source -= d2(i, j) ** 2
    phi2 = -scipy.fft.rfftn(source) * inv_k2
    s2 = np.stack([scipy.fft.irfftn(1j * kg[i] * phi2, s=delta.shape) for i in range(3)])
    return s1, s2


def lattice(n: int, box_size: float, offset: float = 0.0) -> np.ndarray:
    """Positions of an n³ particle lattice, (n³, 3), shifted by ``offset`` lattice spacings."""
    q1 = (np.arange(n) + offset) * (box_size / n)
    q = np.stack(np.meshgrid(q1, q1, q1, indexing="ij"), axis=-1)
    return q.reshape(-1, 3)


def lpt_particles(
    cosmo: Cosmology,
    delta: np.ndarray,
    box_size: float,
    a: float,
    *,
    order: int = 2,
    offset: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Particle positions and momenta at scale factor ``a`` from a z = 0 linear field.

    One particle per grid cell of ``delta``, on a lattice shifted by ``offset`` spacings.

    Returns:
        ``(x, p)``, each (n³, 3) float64: positions wrapped into [0, L) and canonical momenta
        p = a² dx/dt in units of H0 · Mpc/h.
    """
    n = np.asarray(delta).shape[0]
    s1, s2 = lpt_displacements(delta, box_size, order=order)
    d1 = float(cosmo.growth(a))
    vel = a**2 * float(cosmo.efunc(a))  # p = a² E dx/dln a
    disp = d1 * s1
    mom = vel * d1 * float(cosmo.growth_rate(a)) * s1
    if s2 is not None:
        d2 = float(cosmo.growth2(a))
        disp += d2 * s2
        mom += vel * d2 * float(cosmo.growth_rate2(a)) * s2
    x = lattice(n, box_size, offset) + disp.reshape(3, -1).T
    return np.mod(x, box_size), np.ascontiguousarray(mom.reshape(3, -1).T)
