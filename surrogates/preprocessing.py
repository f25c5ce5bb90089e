r"""The one preprocessing layer: invertible maps between data space and the flow's feature space.

A preprocessor is fitted once on training data, saved with the model (as JSON, see
:meth:`Preprocessor.to_dict`) and applied on the fly to every batch. It maps a batch
``(x, theta)`` to flow features ``y`` and a conditioning vector ``c``:

* :class:`Standardize` (generic data): optional elementwise ``log`` / ``logit``, then per-feature
  standardization :math:`y = (t(x) - \mu) / \sigma`. A bijection, so
  :math:`\log p(x|\theta) = \log p(y|c) + \log|\det \partial y / \partial x|` is exact.
* :class:`ShowerPreprocessing` (calorimeter showers): CaloFlow-style energy normalization
  (Krause & Shih, 2021, arXiv:2106.05285). With incident energy :math:`E` and layer energies
  :math:`E_0, \dots, E_{L-1}`:

  .. math::
      u_0 = \frac{\sum_k E_k}{s E}, \qquad
      u_k = \frac{E_{k-1}}{\sum_{j \ge k-1} E_j} \ (k = 1, \dots, L-1), \qquad
      v_{k,j} = \frac{x_{k,j}}{E_k},

  every fraction then mapped by :math:`\mathrm{logit}(\epsilon + (1 - 2\epsilon) f)` with
  :math:`\epsilon = 10^{-6}` and standardized. Voxels below the readout threshold
  :math:`\delta` (zeros) are first dequantized to :math:`0.999 \delta \cdot U(0, 1)`; on the way
  back everything below :math:`0.9995 \delta` is set to zero (margins for round-off), so
  ``inverse(forward(x)) == x`` exactly (in float64) for data whose non-zero voxels are all
  :math:`\ge \delta`. The feature vector holds :math:`L + n_\text{voxels}` numbers for
  :math:`n_\text{voxels}` data values (the voxel fractions of a layer sum to one), so it is *not*
  a bijection: ``log_prob`` of a shower model is the density of the normalized features, and
  samples renormalize each layer's fractions.

Conditions: every preprocessor standardizes θ (after ``log`` for showers, whose θ is an energy).

:class:`LinearAdjust` acts after a preprocessor, on the features given the conditioning vector:
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
from typing import Any, ClassVar

import torch
from torch import Tensor

__all__ = [
    "LOGIT_EPS",
    "LinearAdjust",
    "Preprocessor",
    "ShowerPreprocessing",
    "Standardize",
    "from_dict",
]

#: ε of the logit transform: fractions f are mapped by logit(ε + (1 - 2ε) f)
LOGIT_EPS = 1e-6


def _as(t: Tensor, like: Tensor) -> Tensor:
    return t.to(device=like.device, dtype=like.dtype)


def _logit(f: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """logit(ε + (1-2ε) f) and its elementwise log-derivative."""
    p = eps + (1 - 2 * eps) * f
    y = torch.log(p) - torch.log1p(-p)
    ladj = torch.log(torch.as_tensor(1 - 2 * eps, dtype=f.dtype)) - torch.log(p) - torch.log1p(-p)
    return y, ladj


def _unlogit(y: Tensor, eps: float) -> Tensor:
    return ((torch.sigmoid(y) - eps) / (1 - 2 * eps)).clamp(0.0, 1.0)


def _log_is_more_symmetric(t: Tensor) -> Tensor:
    """Per column: positive everywhere and less skewed after the log (a bool tensor)."""

    def skew(v: Tensor) -> Tensor:
        z = (v - v.mean(0)) / _std(v)
        return (z**3).mean(0).abs()

    positive = (t > 0).all(0)
    logged = torch.log(torch.where(positive, t, 1.0))
    return positive & (skew(logged) < skew(t))


def _std(t: Tensor) -> Tensor:
    s = t.std(dim=0)
    # constant features would divide by zero; leave them unscaled
    return torch.where(s > 1e-12, s, torch.ones_like(s))


class Preprocessor:
    """Base class: an invertible map ``(x, θ) -> (y, c)`` fitted on training data."""

    #: name used in saved configurations
    kind: ClassVar[str]
    #: whether ``forward`` is a bijection of x (so data-space log-densities are exact)
    bijective: ClassVar[bool] = True

    #: number of flow features per row
    features: int
    #: number of conditioning features per row
    context: int
    #: natural split for two-stage models (first ``split`` features form stage one), or None
    split: int | None = None

    def fit(
        self, x: Tensor, theta: Tensor, *, generator: torch.Generator | None = None
    ) -> Preprocessor:
        """Fits the statistics on a training sample; returns ``self``."""
        raise NotImplementedError

    def forward(
        self, x: Tensor, theta: Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Maps data to features.

        Returns:
            ``y`` of shape (N, features) and ``log|det ∂y/∂x|`` per row, shape (N,) (for a
            non-bijective map: the log-Jacobian of its invertible parts, see the class notes).
        """
        raise NotImplementedError

    def inverse(self, y: Tensor, theta: Tensor) -> Tensor:
        """Maps features back to data, shape (N, *x_shape)."""
        raise NotImplementedError

    def condition(self, theta: Tensor) -> Tensor:
        """The conditioning vector of each row, shape (N, context)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable state, read back by :func:`from_dict`."""
        raise NotImplementedError


class Standardize(Preprocessor):
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
        if isinstance(log_theta, str) and log_theta != "auto":
            raise ValueError(f"log_theta must be a bool, bools or 'auto', got {log_theta!r}")
        if not isinstance(log_theta, (bool, str)):
            log_theta = [bool(v) for v in log_theta]
        self.transform, self.eps, self.log_theta = transform, float(eps), log_theta
        self._log_mask: Tensor | None = None  # log_theta as a tensor, cached per device
        self.x_shape: tuple[int, ...] = ()
        self.mean = self.std = self.theta_mean = self.theta_std = torch.zeros(0)

    def _t(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.transform == "log":
            return torch.log(x + self.eps), -torch.log(x + self.eps)
        if self.transform == "logit":
            return _logit(x, self.eps)
        return x, torch.zeros_like(x)

    def _theta(self, theta: Tensor) -> Tensor:
        if self.log_theta == "auto":
            raise RuntimeError("Standardize(log_theta='auto') decides the columns in fit()")
        if isinstance(self.log_theta, list):
            if self._log_mask is None or self._log_mask.device != theta.device:
                self._log_mask = torch.tensor(self.log_theta, device=theta.device)
            mask = self._log_mask
            return torch.where(mask, torch.log(torch.where(mask, theta, 1.0)), theta)
        return torch.log(theta) if self.log_theta else theta

    def fit(self, x, theta, *, generator=None):
        self.x_shape = tuple(int(s) for s in x.shape[1:])
        x = x.double().flatten(1)
        t, _ = self._t(x)
        self.mean, self.std = t.mean(dim=0), _std(t)
        if self.log_theta == "auto":
            self.log_theta = _log_is_more_symmetric(theta.double()).tolist()
        th = self._theta(theta.double())
        self.theta_mean, self.theta_std = th.mean(dim=0), _std(th)
        self.features, self.context = t.shape[1], th.shape[1]
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

    def condition(self, theta):
        th = self._theta(theta)
        return (th - _as(self.theta_mean, th)) / _as(self.theta_std, th)

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
        self.theta_mean = torch.tensor(d["theta_mean"], dtype=f64)
        self.theta_std = torch.tensor(d["theta_std"], dtype=f64)
        self.features, self.context = len(self.mean), len(self.theta_mean)
        return self


class ShowerPreprocessing(Preprocessor):
    r"""CaloFlow-style normalization of calorimeter showers (see the module notes).

    Args:
        layer_sizes: voxels per layer, in the order of the shower vector.
        threshold: readout threshold δ in the units of x (MeV); ``None`` fits it as the smallest
            non-zero voxel value of the training data.
        eps: ε of the logit.
        energy_scale: s in :math:`u_0 = \sum_k E_k / (s E)`; ``None`` fits it as 1.5 times the
            largest deposited fraction seen in training, so :math:`u_0 < 1` leaves headroom.

    Features: ``[u_0, ..., u_{L-1}, v_{0,0}, ..., v_{L-1,n-1}]``; :attr:`split` = L, so a
    two-stage model learns the layer energies first and the voxels given them.
    """

    kind = "shower"
    bijective = False

    def __init__(
        self,
        layer_sizes: Sequence[int],
        threshold: float | None = None,
        eps: float = LOGIT_EPS,
        energy_scale: float | None = None,
    ):
        self.layer_sizes = [int(n) for n in layer_sizes]
        if not self.layer_sizes or min(self.layer_sizes) < 1:
            raise ValueError("layer_sizes must be a non-empty list of positive voxel counts")
        self.threshold, self.eps, self.energy_scale = threshold, float(eps), energy_scale
        self.n_layers, self.n_voxels = len(self.layer_sizes), sum(self.layer_sizes)
        self.features, self.context, self.split = self.n_layers + self.n_voxels, 1, self.n_layers
        self.mean = self.std = torch.zeros(0)
        self.theta_mean, self.theta_std = 0.0, 1.0
        # layer index of every voxel
        self._layer_of = torch.repeat_interleave(
            torch.arange(self.n_layers), torch.tensor(self.layer_sizes)
        )

    def _layer_sum(self, x: Tensor) -> Tensor:
        out = torch.zeros(len(x), self.n_layers, dtype=x.dtype, device=x.device)
        return out.index_add_(1, self._layer_of.to(x.device), x)

    def _dequantize(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype)
        # noise in [0, 0.999 δ) and the cut at 0.9995 δ leave margins for round-off both ways
        return torch.where(x > 0, x, 0.999 * self.threshold * u.to(x.device))

    def _fractions(self, x: Tensor, theta: Tensor) -> Tensor:
        """Energy fractions in [0, 1], shape (N, L + n_voxels), of dequantized showers."""
        e_layer = self._layer_sum(x)
        # E_k / sum_{j >= k} E_j: reverse cumulative sums
        tail = torch.flip(torch.cumsum(torch.flip(e_layer, [1]), 1), [1])
        u0 = tail[:, :1] / (self.energy_scale * theta[:, :1])
        u = e_layer[:, :-1] / tail[:, :-1]
        v = x / e_layer[:, self._layer_of.to(x.device)]
        return torch.cat([u0, u, v], dim=1)

    def fit(self, x, theta, *, generator=None):
        x, theta = x.double().flatten(1), theta.double()
        if x.shape[1] != self.n_voxels:
            raise ValueError(
                f"showers have {x.shape[1]} voxels, layer_sizes sum to {self.n_voxels}"
            )
        if self.threshold is None:
            pos = x[x > 0]
            self.threshold = float(pos.min()) if len(pos) else 1e-6
        xq = self._dequantize(x, generator)
        if self.energy_scale is None:
            ratio = xq.sum(dim=1) / theta[:, 0]
            self.energy_scale = float(1.5 * ratio.max())
        y, _ = _logit(self._fractions(xq, theta), self.eps)
        self.mean, self.std = y.mean(dim=0), _std(y)
        lt = torch.log(theta[:, 0])
        self.theta_mean, self.theta_std = float(lt.mean()), float(_std(lt[:, None])[0])
        return self

    def forward(self, x, theta, *, generator=None):
        x = self._dequantize(x.flatten(1), generator)
        f = self._fractions(x, theta)
        y, ladj = _logit(f, self.eps)
        std = _as(self.std, y)
        y = (y - _as(self.mean, y)) / std
        return y, (ladj - torch.log(std)).sum(dim=1)

    def inverse(self, y, theta):
        f = _unlogit(y * _as(self.std, y) + _as(self.mean, y), self.eps)
        L = self.n_layers
        e_tot = f[:, 0] * self.energy_scale * theta[:, 0]
        layers, rest = [], e_tot
        for k in range(L - 1):
            layers.append(f[:, 1 + k] * rest)
            rest = rest - layers[-1]
        layers.append(rest.clamp_min(0.0))
        e_layer = torch.stack(layers, dim=1)
        idx = self._layer_of.to(y.device)
        v = f[:, L:]
        norm = self._layer_sum(v)[:, idx]
        # the voxel fractions of a layer sum to one (exactly so for data); renormalize samples
        v = torch.where(norm > 0, v / norm.clamp_min(1e-300), 1.0 / _as(self._sizes(), v)[idx])
        x = v * e_layer[:, idx]
        return torch.where(x >= 0.9995 * self.threshold, x, torch.zeros_like(x))

    def _sizes(self) -> Tensor:
        return torch.tensor(self.layer_sizes, dtype=torch.float64)

    def condition(self, theta):
        return (torch.log(theta[:, :1]) - self.theta_mean) / self.theta_std

    def to_dict(self):
        return {
            "kind": self.kind,
            "layer_sizes": self.layer_sizes,
            "threshold": self.threshold,
            "eps": self.eps,
            "energy_scale": self.energy_scale,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "theta_mean": self.theta_mean,
            "theta_std": self.theta_std,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShowerPreprocessing:
        self = cls(d["layer_sizes"], d["threshold"], d["eps"], d["energy_scale"])
        self.mean = torch.tensor(d["mean"], dtype=torch.float64)
        self.std = torch.tensor(d["std"], dtype=torch.float64)
        self.theta_mean, self.theta_std = d["theta_mean"], d["theta_std"]
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


_KINDS: dict[str, Any] = {"standardize": Standardize, "shower": ShowerPreprocessing}


def from_dict(d: dict[str, Any]) -> Preprocessor:
    """Rebuilds a preprocessor saved by :meth:`Preprocessor.to_dict`."""
    kind = d.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"unknown preprocessing kind {kind!r}; known: {', '.join(_KINDS)}")
    return _KINDS[kind].from_dict(d)
