"""Lotka–Volterra predator–prey model with log-normal observation noise.

.. math::
    \\dot x = \\alpha x - \\beta x y, \\qquad \\dot y = -\\gamma y + \\delta x y,
    \\qquad (x, y)(0) = (30, 1),

observed at the ten times :math:`t_k = 2.1 k`, :math:`k = 0, \\dots, 9` (``sbibm`` saves the
solution every 0.1 on :math:`[0, 20]` and keeps every 21st point). Each of the 20 values is
observed with log-normal noise,

.. math::
    \\log x_{obs} \\sim \\mathcal{N}(\\log \\operatorname{clip}(x, 10^{-10}, 10^4), 0.1^2),

where the clip is ``sbibm``'s. The output is (prey at the ten times, predators at the ten times).
The prior is log-normal with log-means :math:`(-0.125, -3, -0.125, -3)` and scale 0.5.

The ODE is integrated in log coordinates :math:`(u, w) = (\\log x, \\log y)`,

.. math::
    \\dot u = \\alpha - \\beta e^{w}, \\qquad \\dot w = -\\gamma + \\delta e^{u},

where populations can neither turn negative nor underflow, and a local error tolerance is a
relative tolerance on the populations. The whole batch is advanced at once by an embedded
Dormand–Prince 5(4) Runge–Kutta method with a step size per row, so one stiff row does not slow
or degrade the others. A row whose solve fails (step size underflow, non-finite state, or more
than ``max_steps`` steps) is NaN; it never raises.

References:
    Lueckmann et al. (2021). Benchmarking simulation-based inference. AISTATS.
    Dormand, Prince (1980). A family of embedded Runge-Kutta formulae. J. Comput. Appl. Math. 6.

Example:
    >>> import numpy as np
    >>> from simulators.toy import LotkaVolterra
    >>> sim = LotkaVolterra()
    >>> rng = np.random.default_rng(0)
    >>> sim.simulate(sim.prior.sample(3, rng), rng).shape
    (3, 20)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ..base import LogNormal, Simulator, SimulatorInputError, check_array
from .two_moons import observation_rows

__all__ = ["CLIP", "OBS_TIMES", "X0", "LotkaVolterra", "solve_lotka_volterra"]

X0 = (30.0, 1.0)
OBS_TIMES = 2.1 * np.arange(10)
CLIP = (1e-10, 1e4)

# Dormand–Prince 5(4) tableau: stages, 5th-order weights, and 5th-minus-4th-order error weights.
_C = np.array([0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0])
_A = [
    [],
    [1 / 5],
    [3 / 40, 9 / 40],
    [44 / 45, -56 / 15, 32 / 9],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
]
_B = np.array([35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84])
_E = np.array([71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40])


def _rhs(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    # y = (log prey, log predators), p = (alpha, beta, gamma, delta); rows independent.
    with np.errstate(over="ignore"):
        du = p[:, 0] - p[:, 1] * np.exp(y[:, 1])
        dw = -p[:, 2] + p[:, 3] * np.exp(y[:, 0])
    return np.stack([du, dw], axis=-1)


def _dopri_step(
    y: np.ndarray, p: np.ndarray, h: np.ndarray, k1: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One Dormand–Prince step per row; returns the new state, its derivative, the error."""
    ks = [k1]
    hh = h[:, None]
    with np.errstate(invalid="ignore", over="ignore"):
        for i in range(1, 6):
            incr = sum(a * k for a, k in zip(_A[i], ks, strict=True) if a != 0.0)
            ks.append(_rhs(y + hh * incr, p))
        y_new = y + hh * sum(b * k for b, k in zip(_B, ks, strict=True) if b != 0.0)
        k7 = _rhs(y_new, p)
        ks.append(k7)
        err = hh * sum(e * k for e, k in zip(_E, ks, strict=True) if e != 0.0)
    return y_new, k7, err


def solve_lotka_volterra(
    theta: np.ndarray,
    times: np.ndarray = OBS_TIMES,
    *,
    x0: tuple[float, float] = X0,
    rtol: float = 1e-9,
    max_steps: int = 100_000,
) -> np.ndarray:
    """Noiseless Lotka–Volterra populations at ``times``, for a batch of parameters.

    Args:
        theta: positive parameters (α, β, γ, δ), shape (N, 4).
        times: increasing output times ≥ 0, shape (T,).
        x0: initial (prey, predator) populations at t = 0.
        rtol: local error tolerance on log-populations (i.e. relative on populations).
        max_steps: accepted plus rejected steps allowed per row before it is declared failed.

    Returns:
        Populations, shape (N, T, 2); rows whose solve failed are NaN.
    """
    theta = np.asarray(theta, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    n, n_t = len(theta), len(times)
    out = np.full((n, n_t, 2), np.nan)
    y = np.tile(np.log(np.asarray(x0, dtype=np.float64)), (n, 1))
    t = np.zeros(n)
    k = np.zeros(n, dtype=np.int64)  # index of the next output time per row
    h = np.full(n, 1e-3)
    steps = np.zeros(n, dtype=np.int64)
    f = _rhs(y, theta)
    active = np.ones(n, dtype=bool)

    # Outputs at t = 0 (and repeated times) need no step.
    def record(rows: np.ndarray) -> None:
        while rows.size:
            hit = t[rows] >= times[k[rows]]
            rows = rows[hit]
            out[rows, k[rows]] = np.exp(y[rows])
            k[rows] += 1
            done = k[rows] == n_t
            active[rows[done]] = False
            rows = rows[~done]

    record(np.arange(n))
    while True:
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        target = times[k[idx]]
        gap = target - t[idx]
        hs = np.minimum(h[idx], gap)
        y_new, f_new, err = _dopri_step(y[idx], theta[idx], hs, f[idx])
        scale = rtol * (1.0 + np.maximum(np.abs(y[idx]), np.abs(y_new)))
        with np.errstate(invalid="ignore", over="ignore"):
            norm = np.sqrt(np.mean((err / scale) ** 2, axis=-1))
        finite = np.isfinite(norm) & np.all(np.isfinite(y_new), axis=-1)
        ok = finite & (norm <= 1.0)
        acc = idx[ok]
        y[acc], f[acc] = y_new[ok], f_new[ok]
        # Land exactly on the output time when the step was cut to reach it.
        t[acc] = np.where(hs[ok] >= gap[ok], target[ok], t[acc] + hs[ok])
        with np.errstate(divide="ignore"):
            factor = np.clip(0.9 * norm ** (-0.2), 0.2, 5.0)
        factor = np.where(finite, factor, 0.1)
        h[idx] = np.maximum(hs * factor, np.where(ok & (hs >= gap), h[idx], 0.0))
        steps[idx] += 1
        failed = idx[(steps[idx] >= max_steps) | (h[idx] < 1e-12 * (1.0 + t[idx]))]
        active[failed] = False
        out[failed] = np.nan
        record(acc[active[acc]])
    return out


class LotkaVolterra(Simulator):
    """The Lotka–Volterra task: θ = (α, β, γ, δ) > 0, x ∈ ℝ²⁰ (prey then predators).

    Settings:
        noise_scale: standard deviation of the log-normal observation noise (default 0.1).
    """

    name = "lotka_volterra"
    version = 1
    defaults: ClassVar[dict[str, Any]] = {"noise_scale": 0.1}
    allow_nan = True

    def __init__(self, **config: Any):
        super().__init__(**config)
        self.noise_scale = float(self._config["noise_scale"])
        self.param_names = ("alpha", "beta", "gamma", "delta")
        self.x_shape = (2 * len(OBS_TIMES),)
        self.prior = LogNormal([-0.125, -3.0, -0.125, -3.0], [0.5] * 4)

    def _check_config(self, config: dict[str, Any]) -> None:
        v = config["noise_scale"]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or v <= 0:
            raise SimulatorInputError(
                f"lotka_volterra: noise_scale must be a finite number > 0, got {v!r}"
            )

    def log_mean(self, theta: np.ndarray) -> np.ndarray:
        """Log of the clipped noiseless observations, shape (N, 20); NaN where the solve failed."""
        sol = solve_lotka_volterra(theta)  # (N, 10, 2)
        sol = np.concatenate([sol[:, :, 0], sol[:, :, 1]], axis=-1)
        return np.log(np.clip(sol, *CLIP))

    def _simulate(self, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        mu = self.log_mean(theta)
        # Noise is drawn for every row, failed or not, so rows never shift each other's draws.
        z = rng.standard_normal(mu.shape)
        return np.exp(mu + self.noise_scale * z)

    def log_likelihood(self, theta: Any, x: Any) -> np.ndarray:
        """Log-normal :math:`\\log p(x \\mid \\theta)` given the ODE solution, shape (N,).

        Rows of θ whose ODE solve fails, or with a non-positive entry, get :math:`-\\infty`.

        Args:
            theta: parameters, shape (N, 4).
            x: positive observations, shape (N, 20), or (20,) / (1, 20) shared by all rows.
        """
        theta = check_array(theta, "theta", shape=(None, 4))
        x = observation_rows(x, len(theta), self.x_shape[0])
        if np.any(x <= 0):
            raise SimulatorInputError("x must be positive (log-normal observations)")
        good = np.all(theta > 0, axis=-1)
        mu = np.full((len(theta), self.x_shape[0]), np.nan)
        if np.any(good):
            mu[good] = self.log_mean(theta[good])
        lx = np.log(x)
        s = self.noise_scale
        ll = np.sum(
            -0.5 * ((lx - mu) / s) ** 2 - lx - math.log(s) - 0.5 * math.log(2 * math.pi), axis=-1
        )
        return np.where(np.isfinite(ll), ll, -np.inf)
