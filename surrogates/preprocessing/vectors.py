r"""Preprocessing of generic vectors: per-feature standardization and the linear adjustment.

* :class:`Standardize` (generic data): optional elementwise ``log`` / ``logit``, then per-feature
  standardization :math:`y = (t(x) - \mu) / \sigma`. A bijection, so
  :math:`\log p(x|\theta) = \log p(y|c) + \log|\det \partial y / \partial x|` is exact.
* :class:`LinearAdjust` acts after a preprocessor, on the features given the conditioning vector:
  it subtracts their least-squares linear regression on c and whitens the residual, so the flow
  only has to learn what a linear-Gaussian model leaves over (neural posterior estimation uses
  it on the standardized parameters given the standardized observation).

Example:
    >>> import torch
    >>> pre = Standardize().fit(torch.randn(100, 3).double() * 5, torch.rand(100, 2).double())
    >>> x, theta = torch.randn(4, 3).double(), torch.rand(4, 2).double()
    >>> y, ladj = pre.forward(x, theta)
    >>> torch.allclose(pre.inverse(y, theta), x)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import LOGIT_EPS, ThetaStandardization, _as, _logit, _std, _unlogit

__all__ = ["LinearAdjust", "Standardize"]


class Standardize(ThetaStandardization):
    r"""Per-feature standardization after an optional elementwise ``log`` or ``logit``.

    Args:
        transform: ``"identity"``, ``"log"`` (:math:`t = \log(x + \epsilon)`, for x ≥ 0) or
            ``"logit"`` (:math:`t = \mathrm{logit}(\epsilon + (1-2\epsilon)x)`, for x in [0, 1]).
        eps: the ε above.
        log_theta: standardize ``log θ`` instead of θ (for positive, scale-like parameters):
            ``True`` for every column, one bool per column, or ``"auto"``: decided per column in
            :meth:`fit` -- the log for a column that is positive in every row and less skewed on
            the log scale than on the linear one (e.g. population counts with multiplicative
            noise, which span many decades).
    """

    kind = "standardize"

    def __init__(
        self,
        transform: str = "identity",
        eps: float = LOGIT_EPS,
        log_theta: bool | str | Sequence[bool] = False,
    ):
        if transform not in ("identity", "log", "logit"):
            raise ValueError(f"transform must be identity, log or logit, got {transform!r}")
        self._init_theta(log_theta)
        self.transform, self.eps = transform, float(eps)
        self.x_shape: tuple[int, ...] = ()
        self.mean = self.std = torch.zeros(0)

    def _t(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.transform == "log":
            return torch.log(x + self.eps), -torch.log(x + self.eps)
        if self.transform == "logit":
            return _logit(x, self.eps)
        return x, torch.zeros_like(x)

    def fit(self, x, theta, *, generator=None):
        self.x_shape = tuple(int(s) for s in x.shape[1:])
        x = x.double().flatten(1)
        t, _ = self._t(x)
        self.mean, self.std = t.mean(dim=0), _std(t)
        self._fit_theta(theta)
        self.features = t.shape[1]
        return self

    def forward(self, x, theta, *, generator=None):
        x = x.flatten(1)
        t, ladj = self._t(x)
        std = _as(self.std, x)
        y = (t - _as(self.mean, x)) / std
        return y, (ladj - torch.log(std)).sum(dim=1)

    def inverse(self, y, theta):
        t = y * _as(self.std, y) + _as(self.mean, y)
        if self.transform == "log":
            x = (torch.exp(t) - self.eps).clamp_min(0.0)
        elif self.transform == "logit":
            x = _unlogit(t, self.eps)
        else:
            x = t
        return x.reshape(len(y), *self.x_shape)

    def to_dict(self):
        return {
            "kind": self.kind,
            "transform": self.transform,
            "eps": self.eps,
            "log_theta": self.log_theta,
            "x_shape": list(self.x_shape),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "theta_mean": self.theta_mean.tolist(),
            "theta_std": self.theta_std.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Standardize:
        self = cls(d["transform"], d["eps"], d["log_theta"])
        self.x_shape = tuple(d["x_shape"])
        f64 = torch.float64
        self.mean, self.std = torch.tensor(d["mean"], dtype=f64), torch.tensor(d["std"], dtype=f64)
        self._load_theta(d)
        self.features = len(self.mean)
        return self


class LinearAdjust:
    r"""The linear regression adjustment of features y on a condition c, as a bijection of y:

    .. math::
        y' = L^{-1} \left(y - W^\top \begin{bmatrix} c \\ 1 \end{bmatrix}\right), \qquad
        \log\left|\det \frac{\partial y'}{\partial y}\right| = -\sum_j \log L_{jj},

    with W the ridge least-squares fit of y on [c, 1] (penalty ``ridge`` · N on the coefficients
    of c, which are standardized) and :math:`L L^\top` the residual covariance (Cholesky, with
    N - D - 1 degrees of freedom). This is the regression adjustment of approximate Bayesian
    computation (Beaumont, Zhang & Balding, 2002, Genetics 162:2025) made exact by a flow on
    the residual: where the features depend on c linearly with Gaussian noise (the Gaussian-
    linear task) :math:`y' \mid c` is standard normal and the flow has nothing left to learn;
    elsewhere it starts from the linear-Gaussian approximation. The map is fitted on the
    training split only, in float64.

    Args:
        ridge: relative ridge penalty.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> c = torch.randn(1000, 3, generator=g, dtype=torch.float64)
        >>> y = c @ torch.ones(3, 2, dtype=torch.float64) + 0.1 * torch.randn(1000, 2, generator=g)
        >>> adj = LinearAdjust().fit(y, c)
        >>> r, ladj = adj.forward(y, c)
        >>> bool(abs(r.std(0) - 1).max() < 0.01), torch.allclose(adj.inverse(r, c), y)
        (True, True)
    """

    kind = "linear_adjust"

    def __init__(self, ridge: float = 1e-3):
        self.ridge = float(ridge)
        self.weight = self.chol = torch.zeros(0)

    @staticmethod
    def _design(c: Tensor) -> Tensor:
        c = c.flatten(1)
        return torch.cat([c, torch.ones(len(c), 1, dtype=c.dtype, device=c.device)], dim=1)

    def fit(self, y: Tensor, c: Tensor) -> LinearAdjust:
        """Fits W and L on training rows y (N, P) and c (N, D); returns ``self``."""
        y, a = y.double(), self._design(c.double())
        n, d = a.shape
        if n <= d:
            raise ValueError(f"LinearAdjust needs more rows than condition features + 1, "
                             f"got {n} rows for {d - 1} features")  # fmt: skip
        penalty = torch.full((d,), self.ridge * n, dtype=y.dtype, device=y.device)
        penalty[-1] = 0.0  # the intercept is not shrunk
        self.weight = torch.linalg.solve(a.T @ a + torch.diag(penalty), a.T @ y)
        r = y - a @ self.weight
        cov = r.T @ r / (n - d)
        jitter = 1e-12 * cov.diagonal().mean().clamp_min(1e-300)
        eye = torch.eye(len(cov), dtype=cov.dtype, device=cov.device)
        self.chol = torch.linalg.cholesky(cov + jitter * eye)
        return self

    def forward(self, y: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """y' and log|det ∂y'/∂y| per row, in y's dtype."""
        w, chol = _as(self.weight, y), _as(self.chol, y)
        r = y - self._design(c.to(y.dtype)) @ w
        out = torch.linalg.solve_triangular(chol, r.T, upper=False).T
        ladj = -torch.log(chol.diagonal()).sum()
        return out, ladj.expand(len(y))

    def inverse(self, out: Tensor, c: Tensor) -> Tensor:
        """y of features y' given c."""
        w, chol = _as(self.weight, out), _as(self.chol, out)
        return out @ chol.T + self._design(c.to(out.dtype)) @ w

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "ridge": self.ridge, "weight": self.weight.tolist(),
                "chol": self.chol.tolist()}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LinearAdjust:
        self = cls(d["ridge"])
        self.weight = torch.tensor(d["weight"], dtype=torch.float64)
        self.chol = torch.tensor(d["chol"], dtype=torch.float64)
        return self
