"""Gaussian linear: a conjugate Gaussian task with an analytic posterior.

.. math::
    \\theta \\sim \\mathcal{N}(0, \\sigma_p^2 I_D), \\qquad
    x \\mid \\theta \\sim \\mathcal{N}(\\theta, \\sigma_n^2 I_D),

with :math:`D = 10` and :math:`\\sigma_p^2 = \\sigma_n^2 = 0.1` as in ``sbibm`` (whose
``prior_scale`` and ``simulator_scale`` are these variances). The posterior given one observation
is :math:`\\mathcal{N}(\\mu, \\Sigma)` with
:math:`\\Sigma = (\\sigma_p^{-2} + \\sigma_n^{-2})^{-1} I` and
:math:`\\mu = \\Sigma x_o / \\sigma_n^2`.

Example:
    >>> import numpy as np
    >>> from simulators.toy import GaussianLinear
    >>> sim = GaussianLinear(dim=3)
    >>> mean, cov = sim.posterior(np.ones(3))
    >>> mean.round(3).tolist()
    [0.5, 0.5, 0.5]
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ..base import Normal, Simulator, SimulatorInputError, check_array
from .two_moons import observation_rows

__all__ = ["GaussianLinear"]


class GaussianLinear(Simulator):
    """The Gaussian linear task.

    Settings:
        dim: dimension D of θ and x (default 10).
        prior_variance: :math:`\\sigma_p^2`, the prior variance per coordinate (default 0.1).
        noise_variance: :math:`\\sigma_n^2`, the observation noise variance (default 0.1).
    """

    name = "gaussian_linear"
    version = 1
    defaults: ClassVar[dict[str, Any]] = {
        "dim": 10,
        "prior_variance": 0.1,
        "noise_variance": 0.1,
    }

    def __init__(self, **config: Any):
        super().__init__(**config)
        d = self._config["dim"]
        self.dim = d
        self.prior_variance = float(self._config["prior_variance"])
        self.noise_variance = float(self._config["noise_variance"])
        self.param_names = tuple(f"theta{i + 1}" for i in range(d))
        self.x_shape = (d,)
        self.prior = Normal(np.zeros(d), np.full(d, self.prior_variance))

    def _check_config(self, config: dict[str, Any]) -> None:
        d = config["dim"]
        if not isinstance(d, int) or isinstance(d, bool) or d < 1:
            raise SimulatorInputError(f"gaussian_linear: dim must be an integer >= 1, got {d!r}")
        for key in ("prior_variance", "noise_variance"):
            v = config[key]
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            if not ok or v <= 0:
                raise SimulatorInputError(
                    f"gaussian_linear: {key} must be a finite number > 0, got {v!r}"
                )

    def _simulate(self, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = rng.standard_normal(theta.shape)
        return theta + math.sqrt(self.noise_variance) * noise

    def log_likelihood(self, theta: Any, x: Any) -> np.ndarray:
        """:math:`\\log \\mathcal{N}(x; \\theta, \\sigma_n^2 I)` per row, shape (N,).

        Args:
            theta: parameters, shape (N, D).
            x: observations, shape (N, D), or (D,) / (1, D) shared by all rows.
        """
        theta = check_array(theta, "theta", shape=(None, self.dim))
        x = observation_rows(x, len(theta), self.dim)
        sq = np.sum((x - theta) ** 2, axis=-1)
        return -0.5 * sq / self.noise_variance - 0.5 * self.dim * math.log(
            2 * math.pi * self.noise_variance
        )

    def posterior(self, x_o: Any) -> tuple[np.ndarray, np.ndarray]:
        """The exact posterior :math:`p(\\theta \\mid x_o)` given one observation.

        Args:
            x_o: one observation, shape (D,) or (1, D).

        Returns:
            ``(mean, cov)`` of shapes (D,) and (D, D).
        """
        x_o = observation_rows(x_o, 1, self.dim)[0]
        var = 1.0 / (1.0 / self.prior_variance + 1.0 / self.noise_variance)
        return var * x_o / self.noise_variance, var * np.eye(self.dim)
