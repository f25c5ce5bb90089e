"""Two moons: a 2-d task whose posterior is two crescents.

A point on a half ring of radius :math:`r \\sim \\mathcal{N}(0.1, 0.01^2)` at angle
:math:`a \\sim \\mathcal{U}(-\\pi/2, \\pi/2)`, offset by 0.25 along the first axis, is shifted by a
function of θ that forgets the sign of :math:`\\theta_1 + \\theta_2`:

.. math::
    x = \\begin{pmatrix} r \\cos a + 0.25 \\\\ r \\sin a \\end{pmatrix}
      + \\begin{pmatrix} -|\\theta_1 + \\theta_2| / \\sqrt{2} \\\\
                         (-\\theta_1 + \\theta_2) / \\sqrt{2} \\end{pmatrix},
    \\qquad \\theta \\sim \\mathcal{U}([-1, 1]^2).

References:
    Greenberg, Nonnenmacher, Macke (2019). Automatic posterior transformation for
    likelihood-free inference. ICML. (Task as defined in ``sbibm``.)

Example:
    >>> import numpy as np
    >>> from simulators.toy import TwoMoons
    >>> sim = TwoMoons()
    >>> sim.simulate(np.zeros((3, 2)), np.random.default_rng(0)).shape
    (3, 2)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ..base import BoxUniform, Simulator, SimulatorInputError, check_array

__all__ = [
    "A_HIGH",
    "A_LOW",
    "OFFSET",
    "R_LOC",
    "R_SCALE",
    "TwoMoons",
    "moon_shift",
    "observation_rows",
]

A_LOW, A_HIGH = -math.pi / 2, math.pi / 2
R_LOC, R_SCALE = 0.1, 0.01
OFFSET = 0.25


def moon_shift(theta: np.ndarray) -> np.ndarray:
    """The parameter-dependent shift of the moon.

    .. math:: \\mathrm{shift}(\\theta) = (-|\\theta_1+\\theta_2|, -\\theta_1+\\theta_2)/\\sqrt{2}

    Args:
        theta: parameters, shape (N, 2).

    Returns:
        The shift, shape (N, 2).
    """
    z0 = (theta[:, 0] + theta[:, 1]) / math.sqrt(2)
    z1 = (-theta[:, 0] + theta[:, 1]) / math.sqrt(2)
    return np.stack([-np.abs(z0), z1], axis=-1)


def observation_rows(x: Any, n: int, dim: int) -> np.ndarray:
    """Validates observations for a likelihood: shape (dim,), (1, dim) or (n, dim), finite."""
    x = check_array(x, "x")
    x = x.reshape(1, -1) if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[1] != dim or len(x) not in (1, n):
        raise SimulatorInputError(
            f"x must have shape ({dim},), (1, {dim}) or ({n}, {dim}), got {x.shape}"
        )
    return x


class TwoMoons(Simulator):
    """The two-moons task: θ ∈ [-1, 1]², x ∈ ℝ²; no settings."""

    name = "two_moons"
    version = 1
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **config: Any):
        super().__init__(**config)
        self.param_names = ("theta1", "theta2")
        self.x_shape = (2,)
        self.prior = BoxUniform([-1.0, -1.0], [1.0, 1.0])

    def _simulate(self, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = len(theta)
        a = rng.uniform(A_LOW, A_HIGH, size=n)
        r = rng.normal(R_LOC, R_SCALE, size=n)
        p = np.stack([r * np.cos(a) + OFFSET, r * np.sin(a)], axis=-1)
        return p + moon_shift(theta)

    def log_likelihood(self, theta: Any, x: Any) -> np.ndarray:
        """Exact :math:`\\log p(x \\mid \\theta)`, shape (N,).

        With :math:`p = x - \\mathrm{shift}(\\theta) - (0.25, 0)` in polar coordinates
        :math:`(\\rho, \\varphi)`, the change of variables :math:`(r, a) \\to p` has Jacobian
        :math:`\\rho`, so
        :math:`p(x \\mid \\theta) = \\mathcal{N}(\\pm\\rho; 0.1, 0.01^2) / (\\pi \\rho)`.
        The sign is that of :math:`p_1`: a point with :math:`p_1 < 0` can only come from a (very
        improbable) negative radius. This integrates to one over the plane exactly.

        Args:
            theta: parameters, shape (N, 2); not required to lie in the prior.
            x: observations, shape (N, 2), or (2,) / (1, 2) shared by all rows.
        """
        theta = check_array(theta, "theta", shape=(None, 2))
        x = observation_rows(x, len(theta), 2)
        p = x - moon_shift(theta)
        u, v = p[:, 0] - OFFSET, p[:, 1]
        rho = np.hypot(u, v)
        r = np.where(u >= 0, rho, -rho)
        with np.errstate(divide="ignore"):
            return (
                -0.5 * ((r - R_LOC) / R_SCALE) ** 2
                - math.log(math.sqrt(2 * math.pi) * R_SCALE)
                - math.log(A_HIGH - A_LOW)
                - np.log(rho)
            )
