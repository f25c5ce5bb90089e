"""Particle-mesh gravity and FastPM kick-drift-kick time stepping.

Equations of motion in comoving coordinates x (Mpc/h) with canonical momentum p = a² dx/dt
(units H0 · Mpc/h, time in 1/H0):

.. math::
    \\frac{dx}{da} = \\frac{p}{a^3 E(a)}, \\qquad
    \\frac{dp}{da} = \\frac{3 Ω_m}{2}\\,\\frac{F}{a^2 E(a)}, \\qquad F = -∇ψ,\\; ∇²ψ = δ.

Forces: particles are painted with cloud-in-cell (CIC) on an N_m³ mesh, ψ_k = -δ_k / k², and the
gradient uses the fourth-order finite-difference kernel
i (8 sin(kH) - sin(2kH)) / (6H), H = L/N_m; the force mesh is read back at the particles with the
same CIC kernel (so momentum is conserved). The Green's function is divided once by the CIC window
W(k) = Π_i sinc²(k_i H/2) (``compensation=1``). Measured in the linear regime on a 32³ lattice
(B = 2, same seed), the growth of P(k) then matches linear theory to 0.1% at the fundamental mode,
5% at half the particle Nyquist wavenumber and 8% up to it; without compensation it falls short by
0.6% at the fundamental and 12% at half Nyquist, and dividing by W² overshoots (+0.7%, +37%).
(Painting a cold lattice offset half a cell from the nodes smooths less than the W² of a
random particle distribution.) FastPM (Feng et al. 2016) integrates the kicks and
drifts with the linear-theory time dependence of F and p, which makes linear growth exact for any
number of steps:

.. math::
    Δp = F(a_c) \\frac{G_p(a_1) - G_p(a_0)}{D(a_c)}, \\qquad
    Δx = p(a_c) \\frac{D(a_1) - D(a_0)}{G_p(a_c)}, \\qquad G_p = a^3 E\\, dD/da.

References:
    Feng, Chu, Seljak & McDonald (2016), MNRAS 463, 2273, "FastPM: a new scheme for fast
    simulations of dark matter and haloes".
    Hockney & Eastwood (1988), "Computer Simulation Using Particles" (CIC, momentum conservation).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import scipy.fft

from .cosmology import Cosmology

__all__ = [
    "CIC",
    "density_contrast",
    "evolve",
    "force_mesh",
    "gravity",
    "paint_cic",
    "readout_cic",
    "time_steps",
]


class CIC:
    """Cloud-in-cell indices and weights of particles on a periodic n³ mesh.

    Mesh values sit at the nodes x_j = j H. The eight (index, weight) pairs per particle are
    computed once, so that one force evaluation paints and reads out with exactly the same kernel.
    Memory: 128 bytes per particle.

    Args:
        pos: positions (N, 3) in [0, L) (values outside are wrapped).
        n: mesh cells per side.
        box_size: side of the periodic box.
    """

    def __init__(self, pos: np.ndarray, n: int, box_size: float):
        pos = np.asarray(pos, dtype=np.float64)
        if pos.ndim != 2 or pos.shape[1] != 3:
            raise ValueError(f"pos must have shape (N, 3), got {pos.shape}")
        self.n = n = int(n)
        u = pos.T * (n / box_size)  # (3, N), contiguous per axis
        base = np.floor(u)
        frac = u - base
        i0 = base.astype(np.intp)
        i0 %= n
        i1 = i0 + 1
        i1[i1 == n] = 0
        stride = np.array([[n * n], [n], [1]], dtype=np.intp)
        idx = (i0 * stride, i1 * stride)
        wts = (1.0 - frac, frac)
        self.index = np.empty((8, len(pos)), dtype=np.intp)
        self.weight = np.empty((8, len(pos)), dtype=np.float64)
        c = 0
        for cx in (0, 1):
            for cy in (0, 1):
                ixy = idx[cx][0] + idx[cy][1]
                wxy = wts[cx][0] * wts[cy][1]
                for cz in (0, 1):
                    np.add(ixy, idx[cz][2], out=self.index[c])
                    np.multiply(wxy, wts[cz][2], out=self.weight[c])
                    c += 1

    def paint(self, mass: np.ndarray | float = 1.0) -> np.ndarray:
        """Mass assigned to each mesh node, float64 (n, n, n); the total mass is conserved."""
        w = self.weight * mass if np.ndim(mass) else self.weight * float(mass)
        out = np.bincount(self.index.ravel(), weights=w.ravel(), minlength=self.n**3)
        return out.reshape((self.n,) * 3)

    def readout(self, mesh: np.ndarray) -> np.ndarray:
        """Interpolates an (n, n, n) mesh or a (c, n, n, n) stack at the particles: (N,) or (N, c).

        The sum runs in the mesh's float type (float32 meshes read out in float32).
        """
        mesh = np.asarray(mesh)
        flat = mesh.reshape(-1, self.n**3)
        w = self.weight.astype(flat.dtype, copy=False)
        out = np.stack([np.einsum("ij,ij->j", np.take(f, self.index), w) for f in flat], axis=-1)
        return out[:, 0] if mesh.ndim == 3 else out


def paint_cic(
    pos: np.ndarray, n: int, box_size: float, mass: np.ndarray | float = 1.0
) -> np.ndarray:
    """Cloud-in-cell mass assignment of particles onto a periodic n³ mesh (float64)."""
    return CIC(pos, n, box_size).paint(mass)


def readout_cic(mesh: np.ndarray, pos: np.ndarray, box_size: float) -> np.ndarray:
    """Cloud-in-cell interpolation of an (n, n, n) mesh or (c, n, n, n) stack at the particles."""
    return CIC(pos, np.asarray(mesh).shape[-1], box_size).readout(mesh)


def density_contrast(pos: np.ndarray, n: int, box_size: float) -> np.ndarray:
    """δ = ρ/ρ̄ - 1 of equal-mass particles painted with CIC on an n³ mesh (float64)."""
    rho = paint_cic(pos, n, box_size)
    return rho * (n**3 / len(pos)) - 1.0


def _force_kernels(
    n: int, box_size: float, compensation: int = 1
) -> tuple[list[np.ndarray], np.ndarray]:
    h = box_size / n
    kf = 2.0 * np.pi / box_size
    ks, grads = [], []
    for axis in range(3):
        k1 = (np.fft.rfftfreq(n) if axis == 2 else np.fft.fftfreq(n)) * n * kf
        shape = [1, 1, 1]
        shape[axis] = len(k1)
        ks.append(k1.reshape(shape))
        grads.append(
            ((8 * np.sin(k1 * h) - np.sin(2 * k1 * h)) / (6 * h)).astype(np.float32).reshape(shape)
        )
    k2 = sum(k**2 for k in ks)
    inv_k2 = np.where(k2 > 0, 1.0 / np.where(k2 > 0, k2, 1.0), 0.0)
    for k in ks:  # divide by W(k)^compensation, W = Π sinc²(k_i H / 2)
        inv_k2 = inv_k2 / np.sinc(k * h / (2.0 * np.pi)) ** (2 * compensation)
    return grads, inv_k2.astype(np.float32)


def gravity(
    pos: np.ndarray,
    n_mesh: int,
    box_size: float,
    *,
    compensation: int = 1,
    kernels: tuple | None = None,
) -> np.ndarray:
    """PM force F = -∇ψ with ∇²ψ = δ at each particle, (N, 3) float64.

    δ is the CIC density contrast of the particles on an ``n_mesh``³ mesh; the FFTs run in float32.
    Multiply by 3/2 Ω_m for the peculiar gravitational acceleration in the units of this module.
    ``compensation`` is the power of the CIC window W(k) divided out of the Green's function
    (0, 1 or 2; see the module docstring).
    """
    cic = CIC(pos, n_mesh, box_size)
    delta = cic.paint() * (n_mesh**3 / len(pos)) - 1.0
    if kernels is None:
        kernels = _force_kernels(n_mesh, box_size, compensation)
    return cic.readout(_force_mesh(delta, kernels)).astype(np.float64)


def _force_mesh(delta: np.ndarray, kernels: tuple) -> np.ndarray:
    grads, inv_k2 = kernels
    dk = scipy.fft.rfftn(delta.astype(np.float32))
    dk *= inv_k2
    # F_k = -i g(k) ψ_k = i g(k) δ_k / k²
    force = np.empty((3, *delta.shape), dtype=np.float32)
    for i in range(3):
        force[i] = scipy.fft.irfftn(1j * grads[i] * dk, s=delta.shape)
    return force


def force_mesh(delta: np.ndarray, box_size: float, *, compensation: int = 1) -> np.ndarray:
    """The force field F = -∇ψ, ∇²ψ = δ, of a density contrast on a periodic n³ mesh.

    Returns:
        (3, n, n, n) float32: F_k = i g(k) δ_k / (k² W(k)^compensation) per component, with the
        finite-difference gradient g of the module docstring.
    """
    delta = np.asarray(delta)
    n = delta.shape[0]
    return _force_mesh(delta, _force_kernels(n, box_size, compensation))


def time_steps(a_start: float, a_end: float, n_steps: int) -> np.ndarray:
    """Step boundaries linear in a: n_steps + 1 values from ``a_start`` to ``a_end``."""
    if not 0 < a_start < a_end <= 1.0:
        raise ValueError(f"need 0 < a_start < a_end <= 1, got {a_start}, {a_end}")
    if n_steps < 1:
        raise ValueError(f"n_steps must be at least 1, got {n_steps}")
    return np.linspace(a_start, a_end, n_steps + 1)


def evolve(
    x: np.ndarray,
    p: np.ndarray,
    cosmo: Cosmology,
    steps: Sequence[float],
    n_mesh: int,
    box_size: float,
    *,
    outputs: Sequence[float] = (),
    compensation: int = 1,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Integrates particles with FastPM kick-drift-kick steps between the scale factors ``steps``.

    Args:
        x, p: positions (N, 3) in Mpc/h and canonical momenta at ``steps[0]``; not modified.
        cosmo: the background and growth.
        steps: increasing scale factors; one KDK step per interval, n_steps + 1 force evaluations.
        n_mesh: force mesh cells per side.
        box_size: side of the periodic box in Mpc/h.
        outputs: scale factors in (steps[0], steps[-1]] at which to report positions; those inside a
            step are drifted there from the step's start with the FastPM drift factor.
        compensation: power of the CIC window divided out of the Green's function (see
            :func:`gravity`).

    Returns:
        ``(x, p, snapshots)``: final positions and momenta at ``steps[-1]`` and the positions at
        each requested output, in the order given.
    """
    steps = np.asarray(steps, dtype=np.float64)
    if steps.ndim != 1 or len(steps) < 2 or np.any(np.diff(steps) <= 0):
        raise ValueError("steps must be an increasing sequence of at least two scale factors")
    outs = np.asarray(outputs, dtype=np.float64).reshape(-1)
    if np.any(outs <= steps[0]) or np.any(outs > steps[-1] * (1 + 1e-12)):
        raise ValueError("outputs must lie in (steps[0], steps[-1]]")
    x = np.array(x, dtype=np.float64)
    p = np.array(p, dtype=np.float64)
    kernels = _force_kernels(n_mesh, box_size, compensation)
    snapshots: list[np.ndarray | None] = [None] * len(outs)

    def growth(a: float) -> float:
        return float(cosmo.growth(a))

    def gp(a: float) -> float:
        return float(cosmo.momentum_factor(min(a, 1.0)))

    force = gravity(x, n_mesh, box_size, kernels=kernels)
    for a0, a1 in itertools.pairwise(steps):
        ac = 0.5 * (a0 + a1)
        p += force * ((gp(ac) - gp(a0)) / growth(a0))
        drift = 1.0 / gp(ac)
        for j, ao in enumerate(outs):
            if a0 < ao <= a1 * (1 + 1e-12) and snapshots[j] is None:
                xo = x + p * ((growth(min(ao, a1)) - growth(a0)) * drift)
                snapshots[j] = np.mod(xo, box_size)
        x += p * ((growth(a1) - growth(a0)) * drift)
        np.mod(x, box_size, out=x)
        force = gravity(x, n_mesh, box_size, kernels=kernels)
        p += force * ((gp(a1) - gp(ac)) / growth(a1))
    return x, p, snapshots  # type: ignore[return-value]
