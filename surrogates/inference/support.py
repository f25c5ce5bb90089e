r"""Bijections from :math:`\mathbb{R}^P` onto a prior's support, and priors as torch distributions.

The posterior flow lives in an unconstrained space :math:`u \in \mathbb{R}^P`; the map
:math:`\theta = T(u)` acts elementwise, chosen per parameter from the support's bounds
:math:`[l, h]`:

===================  ==============================  =============================================
support              :math:`\theta = T(u)`           :math:`\log |\mathrm{d}\theta/\mathrm{d}u|`
===================  ==============================  =============================================
:math:`[l, h]`       :math:`l + (h - l)\sigma(u)`     :math:`\log(h-l) + \log\sigma(u)\sigma(-u)`
:math:`(l, \infty)`  :math:`l + e^{u}`               :math:`u`
:math:`(-\infty, h)` :math:`h - e^{u}`               :math:`u`
:math:`\mathbb{R}`   :math:`u`                       :math:`0`
===================  ==============================  =============================================

so a density :math:`q(u)` gives the exactly normalized density
:math:`p(\theta) = q(T^{-1}(\theta))\,|\det \partial T^{-1} / \partial \theta|` on the support,
and every sample :math:`T(u)` lies inside it: no rejection (compare ``sbi`` issues #741, #1699).

Example:
    >>> import torch
    >>> from torch.distributions import Independent, Uniform
    >>> prior = Independent(Uniform(-torch.ones(2), torch.ones(2)), 1)
    >>> t = SupportTransform.for_prior(prior)
    >>> t.kinds
    ['interval', 'interval']
    >>> theta = t.forward(torch.tensor([[0.0, 30.0]], dtype=torch.float64))
    >>> theta.tolist()
    [[0.0, 1.0]]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.distributions import (
    Distribution,
    Independent,
    LogNormal,
    MultivariateNormal,
    Normal,
    TransformedDistribution,
    Uniform,
    constraints,
)
from torch.distributions.transforms import ExpTransform

__all__ = [
    "SupportTransform",
    "event_dim",
    "prior_from_dict",
    "prior_log_prob",
    "prior_to_dict",
    "support_bounds",
    "torch_prior",
]


def event_dim(prior: Distribution) -> int:
    """Number of parameters P of a prior: its event size, or its batch size for a scalar event
    (e.g. ``Uniform(low, high)`` with vector bounds and no ``Independent``)."""
    shape = tuple(prior.event_shape) or tuple(prior.batch_shape)
    return int(math.prod(shape)) if shape else 1


def prior_log_prob(prior: Distribution, theta: Tensor) -> Tensor:
    """``prior.log_prob`` per row of θ (N, P), summing per-parameter terms of a factorized prior.

    Values outside the support give ``-inf`` (never an exception or NaN).
    """
    theta = torch.as_tensor(theta)
    inside = SupportTransform.for_prior(prior).contains(theta)
    safe = torch.where(inside[:, None], theta, _interior(prior, theta))
    lp = prior.log_prob(safe.to(_dtype_of(prior)))
    if lp.dim() == 2:
        lp = lp.sum(-1)
    lp = lp.to(theta.dtype)
    return torch.where(inside, lp, torch.full_like(lp, -math.inf))


def _dtype_of(prior: Distribution) -> torch.dtype:
    for name in ("low", "loc", "mean"):
        try:
            return getattr(prior, name).dtype
        except (AttributeError, NotImplementedError):
            continue
    return torch.get_default_dtype()


def _interior(prior: Distribution, theta: Tensor) -> Tensor:
    """A point inside the support of the same shape as θ (to evaluate log_prob safely)."""
    low, high = support_bounds(prior)
    mid = torch.where(
        torch.isfinite(low) & torch.isfinite(high),
        (low + high) / 2,
        torch.where(torch.isfinite(low), low + 1, torch.where(torch.isfinite(high), high - 1, 0.0)),
    )
    return mid.to(theta.dtype).expand_as(theta)


def _unwrap(c: Any) -> Any:
    while isinstance(c, constraints.independent):
        c = c.base_constraint
    return c


def support_bounds(prior: Distribution) -> tuple[Tensor, Tensor]:
    """Lower and upper bounds (float64, shape (P,), ±inf where open) of ``prior.support``.

    Understands interval / half-open interval / unit interval, greater-than (incl. positive),
    less-than and real supports, optionally wrapped in ``constraints.independent`` (as for
    ``sbi``'s ``BoxUniform`` or ``Independent(Uniform(...), 1)``).

    Raises:
        ValueError: for any other support (e.g. discrete or simplex), naming it.
    """
    p = event_dim(prior)
    d = prior_to_dict(prior)
    if d is not None and d["type"] == "log_uniform":  # torch reports (0, inf) for exp(Uniform)
        return (torch.tensor(d["low"], dtype=torch.float64).expand(p).clone(),
                torch.tensor(d["high"], dtype=torch.float64).expand(p).clone())  # fmt: skip
    c = _unwrap(prior.support)
    inf = torch.full((p,), math.inf, dtype=torch.float64)
    lower = getattr(c, "lower_bound", None)
    upper = getattr(c, "upper_bound", None)
    if isinstance(c, (constraints.interval, constraints.half_open_interval)):
        low, high = lower, upper
    elif isinstance(c, (constraints.greater_than, constraints.greater_than_eq)):
        low, high = lower, inf
    elif isinstance(c, constraints.less_than):
        low, high = -inf, upper
    elif isinstance(c, constraints._Real):
        low, high = -inf, inf
    else:
        raise ValueError(
            f"NPE supports priors on intervals, half-lines or the real line; "
            f"got support {prior.support!r}"
        )

    def vec(b: Any) -> Tensor:
        return torch.as_tensor(b, dtype=torch.float64).reshape(-1).expand(p).clone()

    low, high = vec(low), vec(high)
    if torch.any(high <= low):
        raise ValueError("prior support has an upper bound at or below its lower bound")
    return low, high


class SupportTransform:
    r"""The elementwise bijection :math:`T: \mathbb{R}^P \to` support (see the module notes).

    Args:
        low: lower bounds, shape (P,), ``-inf`` where unbounded below.
        high: upper bounds, shape (P,), ``inf`` where unbounded above.

    All computations run in float64 and return the input's dtype; :meth:`forward` clamps its
    result to the closed support, so float32 round-off never takes a sample outside.
    """

    def __init__(self, low: Any, high: Any):
        self.low = torch.as_tensor(low, dtype=torch.float64).reshape(-1).clone()
        self.high = torch.as_tensor(high, dtype=torch.float64).reshape(-1).clone()
        if self.low.shape != self.high.shape or torch.any(self.high <= self.low):
            raise ValueError("SupportTransform needs low < high of equal length")
        lo, hi = torch.isfinite(self.low), torch.isfinite(self.high)
        self.both, self.lower_only, self.upper_only = lo & hi, lo & ~hi, ~lo & hi
        self.width = torch.where(self.both, self.high - self.low, torch.ones_like(self.low))
        # finite stand-ins for the infinite bounds keep every branch of torch.where NaN-free
        self._lo = torch.where(lo, self.low, torch.zeros_like(self.low))
        self._hi = torch.where(hi, self.high, torch.zeros_like(self.high))

    @classmethod
    def for_prior(cls, prior: Distribution) -> SupportTransform:
        """The transform onto ``prior.support`` (see :func:`support_bounds`)."""
        return cls(*support_bounds(prior))

    @property
    def dim(self) -> int:
        return len(self.low)

    @property
    def kinds(self) -> list[str]:
        """Per parameter: ``"interval"``, ``"lower"``, ``"upper"`` or ``"real"``."""
        out = []
        masks = (self.both.tolist(), self.lower_only.tolist(), self.upper_only.tolist())
        for b, lo, up in zip(*masks, strict=True):
            out.append("interval" if b else "lower" if lo else "upper" if up else "real")
        return out

    def contains(self, theta: Tensor) -> Tensor:
        """Whether each row of θ (N, P) lies in the closed support, shape (N,)."""
        t = torch.as_tensor(theta).double().cpu()
        return (
            ((t >= self.low) & (t <= self.high) & ~torch.isnan(t))
            .all(-1)
            .to(torch.as_tensor(theta).device)
        )

    def forward(self, u: Tensor) -> Tensor:
        """θ = T(u), shape of u; inside the closed support."""
        dt, dev = u.dtype, u.device
        u64 = u.double()
        lo, hi, w = (a.to(dev) for a in (self._lo, self._hi, self.width))
        theta = torch.where(
            self.both.to(dev),
            lo + w * torch.sigmoid(u64),
            torch.where(
                self.lower_only.to(dev),
                lo + torch.exp(u64),
                torch.where(self.upper_only.to(dev), hi - torch.exp(u64), u64),
            ),
        )
        out = theta.to(dt)
        # the cast may round a value just inside onto or past a bound: clamp to the closed support
        return torch.minimum(torch.maximum(out, self.low.to(dev, dt)), self.high.to(dev, dt))

    def inverse(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        r"""u = T^{-1}(θ) and :math:`\log|\det \partial T^{-1}/\partial\theta|` per row.

        Outside the open support u is ``±inf`` or NaN and the log-determinant is NaN; callers
        mask with :meth:`contains`.
        """
        dt, dev = theta.dtype, theta.device
        t = theta.double()
        lo, hi, w = (a.to(dev) for a in (self._lo, self._hi, self.width))
        both, lower, upper = (m.to(dev) for m in (self.both, self.lower_only, self.upper_only))
        a = torch.where(both | lower, t - lo, hi - t)  # distance to the finite bound
        b = torch.where(both, hi - t, torch.ones_like(t))
        log_a, log_b = torch.log(a), torch.log(b)
        u = torch.where(both, log_a - log_b, torch.where(lower | upper, log_a, t))
        # d u / d θ: w / ((θ - l)(h - θ)) on intervals, 1 / distance on half-lines, 1 on R
        ladj = torch.where(
            both,
            torch.log(w) - log_a - log_b,
            torch.where(lower | upper, -log_a, torch.zeros_like(t)),
        )
        return u.to(dt), ladj.sum(-1).to(dt)

    def log_abs_det_forward(self, u: Tensor) -> Tensor:
        r""":math:`\log|\det \partial T/\partial u|` per row."""
        u64 = u.double()
        w = self.width.to(u.device)
        ladj = torch.where(
            self.both.to(u.device),
            torch.log(w)
            + torch.nn.functional.logsigmoid(u64)
            + torch.nn.functional.logsigmoid(-u64),
            torch.where(
                (self.lower_only | self.upper_only).to(u.device), u64, torch.zeros_like(u64)
            ),
        )
        return ladj.sum(-1).to(u.dtype)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable bounds (``None`` for infinite)."""

        def enc(t: Tensor) -> list[float | None]:
            return [v if math.isfinite(v) else None for v in t.tolist()]

        return {"low": enc(self.low), "high": enc(self.high)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SupportTransform:
        low = [-math.inf if v is None else v for v in d["low"]]
        high = [math.inf if v is None else v for v in d["high"]]
        return cls(low, high)


# --------------------------------------------------------------------------- priors


def torch_prior(prior: Any) -> Distribution:
    """A torch distribution (float32) for a prior of :mod:`simulators.base` or its ``to_dict()``.

    ``box_uniform`` -> ``Independent(Uniform)``, ``normal`` -> ``MultivariateNormal``,
    ``log_normal`` -> ``Independent(LogNormal)``, ``log_uniform`` -> ``exp`` of an
    ``Independent(Uniform)`` on the log bounds. A torch distribution is returned unchanged.

    Raises:
        ValueError: for a prior type without a continuous torch equivalent (e.g. discrete).
    """
    if isinstance(prior, Distribution):
        return prior
    d = prior.to_dict() if hasattr(prior, "to_dict") else dict(prior)
    kind = d.get("type")

    def f(v: Any) -> Tensor:
        return torch.as_tensor(np.asarray(v, dtype=np.float64), dtype=torch.float32)

    if kind == "box_uniform":
        return Independent(Uniform(f(d["low"]), f(d["high"])), 1)
    if kind == "normal":
        return MultivariateNormal(f(d["loc"]), covariance_matrix=f(d["cov"]))
    if kind == "log_normal":
        return Independent(LogNormal(f(d["loc"]), f(d["scale"])), 1)
    if kind == "log_uniform":
        base = Uniform(torch.log(f(d["low"])), torch.log(f(d["high"])))
        return Independent(TransformedDistribution(base, [ExpTransform()]), 1)
    raise ValueError(f"no torch distribution for prior type {kind!r}")


def prior_to_dict(prior: Distribution) -> dict[str, Any] | None:
    """A JSON description of common torch priors (``None`` if unknown), read by
    :func:`prior_from_dict`: uniform boxes (incl. ``sbi``'s ``BoxUniform``), normals
    (``Normal``, ``Independent(Normal)``, ``MultivariateNormal``) and log-normals."""
    base = prior.base_dist if isinstance(prior, Independent) else prior
    if isinstance(base, Uniform):
        return {"type": "box_uniform", "low": base.low.reshape(-1).tolist(),
                "high": base.high.reshape(-1).tolist()}  # fmt: skip
    if isinstance(base, LogNormal):
        return {"type": "log_normal", "loc": base.loc.reshape(-1).tolist(),
                "scale": base.scale.reshape(-1).tolist()}  # fmt: skip
    if isinstance(base, Normal):
        return {"type": "normal", "loc": base.loc.reshape(-1).tolist(),
                "cov": (base.scale.reshape(-1) ** 2).tolist()}  # fmt: skip
    if isinstance(base, MultivariateNormal):
        return {"type": "normal", "loc": base.loc.tolist(), "cov": base.covariance_matrix.tolist()}
    if isinstance(base, TransformedDistribution) and isinstance(base.base_dist, Uniform):
        if len(base.transforms) == 1 and isinstance(base.transforms[0], ExpTransform):
            u = base.base_dist
            return {"type": "log_uniform", "low": torch.exp(u.low).reshape(-1).tolist(),
                    "high": torch.exp(u.high).reshape(-1).tolist()}  # fmt: skip
    return None


def prior_from_dict(d: dict[str, Any]) -> Distribution:
    """The torch prior of a :func:`prior_to_dict` description (a diagonal ``cov`` list is fine)."""
    if d.get("type") == "normal":
        cov = np.asarray(d["cov"], dtype=np.float64)
        cov = np.diag(cov) if cov.ndim == 1 else cov
        return torch_prior({"type": "normal", "loc": d["loc"], "cov": cov})
    return torch_prior(d)
