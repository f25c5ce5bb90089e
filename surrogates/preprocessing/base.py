r"""The preprocessing contract: invertible maps between data space and a model's feature space.

A :class:`Preprocessor` is fitted once on training data, saved with the model (as JSON, see
:meth:`Preprocessor.to_dict`, read back by :func:`from_dict`) and applied on the fly to every
batch. It maps a batch ``(x, theta)`` to features ``y`` and a conditioning vector ``c``; when the
map is a bijection of x,

.. math::
    \log p(x \mid \theta) = \log p(y \mid c)
    + \log\left|\det \frac{\partial y}{\partial x}\right|

is exact. This module holds the base class, the helpers its subclasses share and :func:`from_dict`;
the transforms live in :mod:`.vectors`, :mod:`.showers` and :mod:`.fields`.

Example:
    >>> import torch
    >>> from surrogates.preprocessing import Standardize
    >>> pre = Standardize().fit(torch.randn(100, 3).double() * 5, torch.rand(100, 2).double())
    >>> from_dict(pre.to_dict()).features
    3
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

__all__ = ["LOGIT_EPS", "Preprocessor", "ThetaStandardization", "from_dict"]

#: ε of the logit transform: fractions f are mapped by logit(ε + (1 - 2ε) f)
LOGIT_EPS = 1e-6

#: saved ``kind`` -> class, filled by :meth:`Preprocessor.__init_subclass__`
_KINDS: dict[str, type[Preprocessor]] = {}


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
    """Base class: an invertible map ``(x, θ) -> (y, c)`` fitted on training data.

    A subclass that sets :attr:`kind` in its body is registered under that name, so
    :func:`from_dict` rebuilds it.
    """

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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            _KINDS[cls.kind] = cls

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one row of features: ``(features,)``, or (C, H, W) for fields."""
        return (self.features,)

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
            ``y`` of shape (N, *shape), that is (N, features) for vectors, and
            ``log|det ∂y/∂x|`` per row, shape (N,) (for a non-bijective map: the log-Jacobian of
            its invertible parts, see the class notes).
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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        """Rebuilds a fitted instance from :meth:`to_dict`'s state."""
        raise NotImplementedError


class ThetaStandardization(Preprocessor):
    r"""Conditions by per-column standardization of θ, or of log θ for chosen columns.

    Shared by :class:`~.vectors.Standardize` and :class:`~.fields.FieldPreprocessing`:
    :math:`c = (t(\theta) - \mu_\theta) / \sigma_\theta` with t the log on the chosen columns.
    Subclasses call :meth:`_init_theta` in ``__init__`` and :meth:`_fit_theta` in ``fit``.
    """

    def _init_theta(self, log_theta: bool | str | Sequence[bool]) -> None:
        if isinstance(log_theta, str) and log_theta != "auto":
            raise ValueError(f"log_theta must be a bool, bools or 'auto', got {log_theta!r}")
        if not isinstance(log_theta, (bool, str)):
            log_theta = [bool(v) for v in log_theta]
        self.log_theta: bool | str | list[bool] = log_theta
        self._log_mask: Tensor | None = None  # log_theta as a tensor, cached per device
        self.theta_mean = self.theta_std = torch.zeros(0)

    def _theta(self, theta: Tensor) -> Tensor:
        if self.log_theta == "auto":
            raise RuntimeError(
                f"{type(self).__name__}(log_theta='auto') decides the columns in fit()"
            )
        if isinstance(self.log_theta, list):
            if self._log_mask is None or self._log_mask.device != theta.device:
                self._log_mask = torch.tensor(self.log_theta, device=theta.device)
            mask = self._log_mask
            return torch.where(mask, torch.log(torch.where(mask, theta, 1.0)), theta)
        return torch.log(theta) if self.log_theta else theta

    def _fit_theta(self, theta: Tensor) -> None:
        """Decides ``log_theta="auto"`` and fits the statistics (float64); sets :attr:`context`."""
        if self.log_theta == "auto":
            self.log_theta = _log_is_more_symmetric(theta.double()).tolist()
        th = self._theta(theta.double())
        self.theta_mean, self.theta_std = th.mean(dim=0), _std(th)
        self.context = th.shape[1]

    def _load_theta(self, d: dict[str, Any]) -> None:
        self.theta_mean = torch.tensor(d["theta_mean"], dtype=torch.float64)
        self.theta_std = torch.tensor(d["theta_std"], dtype=torch.float64)
        self.context = len(self.theta_mean)

    def condition(self, theta: Tensor) -> Tensor:
        th = self._theta(theta)
        return (th - _as(self.theta_mean, th)) / _as(self.theta_std, th)


def from_dict(d: dict[str, Any]) -> Preprocessor:
    """Rebuilds a preprocessor saved by :meth:`Preprocessor.to_dict`.

    Raises:
        ValueError: an unknown ``kind``.
    """
    kind = d.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"unknown preprocessing kind {kind!r}; known: {', '.join(_KINDS)}")
    return _KINDS[kind].from_dict(d)
