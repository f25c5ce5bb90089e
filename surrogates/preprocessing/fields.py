r"""Preprocessing of fields (C, H, W) that keeps their shape and their translation symmetry.

:class:`FieldPreprocessing` maps every pixel by one monotone function t, then standardizes each
channel by one scalar mean and standard deviation (over all pixels and rows of the training data):

.. math:: y_{c,i,j} = \frac{t(x_{c,i,j}) - \mu_c}{\sigma_c}.

Nothing depends on the pixel position, so a periodic shift of the field shifts its features the
same way and leaves the log-Jacobian unchanged, as a convolutional model on a periodic box
expects; per-pixel statistics (what :class:`~.vectors.Standardize` fits) would break that.
The maps t:

* ``"log"``: :math:`t(x) = \log(x + a_0)` with a shift :math:`a_0` (``shift``); for a density
  contrast :math:`\delta = \rho / \bar\rho - 1 > -1` the default :math:`a_0 = 1` gives the log
  density :math:`\log(\rho / \bar\rho)`, which is close to Gaussian for cosmological fields;
* ``"rodriguez"``: :math:`t(x) = \frac{2 u}{u + a} - 1` with :math:`u = x + a_0` (Rodriguez et al.,
  2018, *Fast cosmic web simulations with generative adversarial networks*, Computational
  Astrophysics and Cosmology 5:4, arXiv:1801.09070), which maps :math:`u \in [0, \infty)` onto
  :math:`[-1, 1)` and compresses the high-density tail;
* ``"identity"``: :math:`t(x) = x`.

The map is a bijection, so :math:`\log p(x|\theta) = \log p(y|c) + \log|\det \partial y / \partial
x|` is exact, with the log-determinant summed over all pixels:

.. math::
    \log\left|\det \frac{\partial y}{\partial x}\right|
    = \sum_{c,i,j} \log t'(x_{c,i,j}) - H W \sum_c \log \sigma_c.

Example:
    >>> import torch
    >>> x = torch.rand(8, 2, 16, 16, dtype=torch.float64) * 3 - 0.9  # a density contrast
    >>> theta = torch.rand(8, 2, dtype=torch.float64)
    >>> pre = FieldPreprocessing("log").fit(x, theta)
    >>> y, ladj = pre.forward(x, theta)
    >>> y.shape, pre.shape, pre.shift
    (torch.Size([8, 2, 16, 16]), (2, 16, 16), 1.0)
    >>> torch.allclose(pre.forward(x.roll(5, -1), theta)[0], y.roll(5, -1))
    True
    >>> torch.allclose(pre.inverse(y, theta), x)
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import ThetaStandardization, _as

__all__ = ["FieldPreprocessing"]

_TRANSFORMS = ("log", "rodriguez", "identity")


def _chw(x_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of a sample shape (H, W) or (C, H, W)."""
    c, h, w = (1, *x_shape) if len(x_shape) == 2 else x_shape
    return c, h, w


class FieldPreprocessing(ThetaStandardization):
    r"""A pointwise monotone map, then per-channel scalar standardization (see the module notes).

    Fields have shape (N, C, H, W), or (N, H, W), read as one channel. Features always have shape
    (N, C, H, W) (:attr:`shape` is (C, H, W)); :meth:`inverse` gives back the data's shape.

    Args:
        transform: ``"log"``, ``"rodriguez"`` or ``"identity"``.
        shift: :math:`a_0` added before the map. ``None`` fits it on the training data: for
            ``"log"`` the smallest positive integer with :math:`x + a_0 > 0` everywhere (1 for a
            density contrast :math:`\delta > -1` or for non-negative data; 2 if some pixel is
            empty, :math:`\delta = -1`); for ``"rodriguez"`` the smallest non-negative integer
            with :math:`x + a_0 \ge 0` (1 for a density contrast, 0 for non-negative data).
            Ignored by ``"identity"``.
        a: the scale a of ``"rodriguez"`` (> 0); ``None`` fits it as the mean of
            :math:`x + a_0` (1 for :math:`\rho / \bar\rho`, which maps the mean density to 0;
            Rodriguez et al. used a = 4 on their density maps).
        log_theta: condition on ``log θ`` for all (``True``), chosen (a bool per column) or
            automatically chosen (``"auto"``) columns, as :class:`~.vectors.Standardize` does.
    """

    kind = "field"

    def __init__(
        self,
        transform: str = "log",
        shift: float | None = None,
        a: float | None = None,
        log_theta: bool | str | Sequence[bool] = False,
    ):
        if transform not in _TRANSFORMS:
            raise ValueError(f"transform must be log, rodriguez or identity, got {transform!r}")
        if a is not None and not a > 0:
            raise ValueError(f"a must be positive, got {a}")
        self._init_theta(log_theta)
        self.transform = transform
        self.shift = None if shift is None else float(shift)
        self.a = None if a is None else float(a)
        self.x_shape: tuple[int, ...] = ()
        self._shape: tuple[int, int, int] = (0, 0, 0)
        self.mean = self.std = torch.zeros(0)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one row of features."""
        return self._shape

    # ------------------------------------------------------------------ the pointwise map
    def _t(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """t(x) and log t'(x), elementwise."""
        if self.transform == "identity":
            return x, torch.zeros_like(x)
        u = x + self.shift
        if self.transform == "log":
            t = torch.log(u)
            return t, -t
        a = self.a
        return (u - a) / (u + a), math.log(2 * a) - 2 * torch.log(u + a)

    def _t_inverse(self, t: Tensor) -> Tensor:
        if self.transform == "identity":
            return t
        if self.transform == "log":
            return torch.exp(t) - self.shift
        # t < 1 is the map's range; a sample at or above 1 is mapped to the largest finite u
        s = t.clamp(max=1 - torch.finfo(t.dtype).eps)
        return self.a * (1 + s) / (1 - s) - self.shift

    def _fit_map(self, x: Tensor) -> None:
        """Chooses (or checks) the shift and a on the training fields."""
        if self.transform == "identity":
            self.shift = 0.0
            return
        low = float(x.min())
        if self.transform == "log":
            if self.shift is None:
                self.shift = float(max(1, math.floor(-low) + 1))
            if low + self.shift <= 0:
                raise ValueError(f"the log map needs x + shift > 0; min(x) = {low:g} with "
                                 f"shift = {self.shift:g}")  # fmt: skip
            return
        if self.shift is None:
            self.shift = float(max(0, math.ceil(-low)))
        if low + self.shift < 0:
            raise ValueError(f"the rodriguez map needs x + shift >= 0; min(x) = {low:g} with "
                             f"shift = {self.shift:g}")  # fmt: skip
        if self.a is None:
            mean = float((x + self.shift).mean())
            self.a = mean if mean > 0 else 1.0

    # ------------------------------------------------------------------ Preprocessor API
    def _as_fields(self, x: Tensor) -> Tensor:
        return x.reshape(len(x), *self._shape)

    def fit(self, x, theta, *, generator=None):
        if x.dim() not in (3, 4):
            raise ValueError(f"FieldPreprocessing needs fields of shape (N, H, W) or "
                             f"(N, C, H, W), got {tuple(x.shape)}")  # fmt: skip
        self.x_shape = tuple(int(s) for s in x.shape[1:])
        self._shape = _chw(self.x_shape)
        x = self._as_fields(x.double())
        self._fit_map(x)
        t, _ = self._t(x)
        per_channel = t.transpose(0, 1).flatten(1)
        self.mean = per_channel.mean(dim=1)
        std = per_channel.std(dim=1)
        # a constant channel would divide by zero; leave it unscaled
        self.std = torch.where(std > 1e-12, std, torch.ones_like(std))
        self._fit_theta(theta)
        self.features = math.prod(self._shape)
        return self

    def forward(self, x, theta, *, generator=None):
        x = self._as_fields(x)
        t, log_dt = self._t(x)
        mean, std = _as(self.mean, x)[:, None, None], _as(self.std, x)[:, None, None]
        y = (t - mean) / std
        pixels = self._shape[1] * self._shape[2]
        return y, log_dt.flatten(1).sum(dim=1) - pixels * torch.log(std).sum()

    def inverse(self, y, theta):
        y = self._as_fields(y)
        t = y * _as(self.std, y)[:, None, None] + _as(self.mean, y)[:, None, None]
        return self._t_inverse(t).reshape(len(y), *self.x_shape)

    def to_dict(self):
        return {
            "kind": self.kind,
            "transform": self.transform,
            "shift": self.shift,
            "a": self.a,
            "log_theta": self.log_theta,
            "x_shape": list(self.x_shape),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "theta_mean": self.theta_mean.tolist(),
            "theta_std": self.theta_std.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FieldPreprocessing:
        self = cls(d["transform"], d["shift"], d["a"], d["log_theta"])
        self.x_shape = tuple(int(s) for s in d["x_shape"])
        self._shape = _chw(self.x_shape)
        self.mean = torch.tensor(d["mean"], dtype=torch.float64)
        self.std = torch.tensor(d["std"], dtype=torch.float64)
        self._load_theta(d)
        self.features = math.prod(self._shape)
        return self
