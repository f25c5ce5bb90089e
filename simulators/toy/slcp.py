"""SLCP: simple likelihood, complex posterior.

Four i.i.d. draws from a bivariate Gaussian whose mean and covariance are non-linear in θ:

.. math::
    m = (\\theta_1, \\theta_2), \\quad s_1 = \\theta_3^2, \\quad s_2 = \\theta_4^2, \\quad
    \\rho = \\tanh \\theta_5, \\quad
    S = \\begin{pmatrix} s_1^2 + \\epsilon & \\rho s_1 s_2 \\\\
                         \\rho s_1 s_2 & s_2^2 + \\epsilon \\end{pmatrix},
    \\quad x_{1..4} \\overset{iid}{\\sim} \\mathcal{N}(m, S),

with :math:`\\theta \\sim \\mathcal{U}([-3, 3]^5)` and :math:`\\epsilon = 10^{-6}` (the jitter
``sbibm`` adds so that :math:`S` stays positive definite). x is the 8-vector
:math:`(x_{1,1}, x_{1,2}, x_{2,1}, \\dots, x_{4,2})`. Since only :math:`\\theta_3^2`,
:math:`\\theta_4^2` enter, the posterior has four symmetric modes.

References:
    Papamakarios, Sterratt, Murray (2019). Sequential neural likelihood. AISTATS.

Example:
    >>> import numpy as np
    >>> from simulators.toy import SLCP
    >>> SLCP().simulate(np.full((2, 5), 0.5), np.random.default_rng(0)).shape
    (2, 8)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ..base import BoxUniform, Simulator, check_array
from .two_moons import observation_rows

__all__ = ["EPS", "N_DRAWS", "SLCP", "slcp_moments"]

N_DRAWS = 4
EPS = 1e-6


def slcp_moments(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (N, 2) and covariance (N, 2, 2) of each draw given θ of shape (N, 5)."""
    s1, s2 = theta[:, 2] ** 2, theta[:, 3] ** 2
    rho = np.tanh(theta[:, 4])
    cov = np.empty((len(theta), 2, 2))
    cov[:, 0, 0] = s1**2 + EPS
    cov[:, 1, 1] = s2**2 + EPS
    cov[:, 0, 1] = cov[:, 1, 0] = rho * s1 * s2
    return theta[:, :2].copy(), cov


class SLCP(Simulator):
    """The SLCP task: θ ∈ [-3, 3]⁵, x ∈ ℝ⁸ (four 2-d draws); no settings."""

    name = "slcp"
    version = 1
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **config: Any):
        super().__init__(**config)
        self.param_names = tuple(f"theta{i + 1}" for i in range(5))
        self.x_shape = (2 * N_DRAWS,)
        self.prior = BoxUniform([-3.0] * 5, [3.0] * 5)

    def _simulate(self, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        mean, cov = slcp_moments(theta)
        # Closed-form 2x2 Cholesky factor, vectorized over the batch.
        l11 = np.sqrt(cov[:, 0, 0])
        l21 = cov[:, 1, 0] / l11
        l22 = np.sqrt(cov[:, 1, 1] - l21**2)
        z = rng.standard_normal((len(theta), N_DRAWS, 2))
        x1 = mean[:, None, 0] + l11[:, None] * z[..., 0]
        x2 = mean[:, None, 1] + l21[:, None] * z[..., 0] + l22[:, None] * z[..., 1]
        return np.stack([x1, x2], axis=-1).reshape(len(theta), 2 * N_DRAWS)

    def log_likelihood(self, theta: Any, x: Any) -> np.ndarray:
        """:math:`\\sum_{j=1}^4 \\log \\mathcal{N}(x_j; m, S)` per row, shape (N,).

        Args:
            theta: parameters, shape (N, 5); not required to lie in the prior.
            x: observations, shape (N, 8), or (8,) / (1, 8) shared by all rows.
        """
        theta = check_array(theta, "theta", shape=(None, 5))
        x = observation_rows(x, len(theta), 2 * N_DRAWS).reshape(-1, N_DRAWS, 2)
        mean, cov = slcp_moments(theta)
        a, b, c = cov[:, 0, 0], cov[:, 0, 1], cov[:, 1, 1]
        det = a * c - b**2
        d = x - mean[:, None, :]
        quad = (c[:, None] * d[..., 0] ** 2 - 2 * b[:, None] * d[..., 0] * d[..., 1]) + a[
            :, None
        ] * d[..., 1] ** 2
        quad = np.sum(quad, axis=-1) / det
        return -0.5 * quad - 0.5 * N_DRAWS * np.log(det) - N_DRAWS * math.log(2 * math.pi)
