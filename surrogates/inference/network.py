r"""The torch module of :class:`~surrogates.inference.NPE`: an embedding of x and a spline flow
over the parameters, mapped onto the real line and standardized.

A conditional flow :math:`q_\phi(u \mid h)` is fitted to simulations :math:`(\theta_i, x_i)` by
maximum likelihood, which for draws from the prior makes :math:`q` an estimate of the posterior
(Papamakarios & Murray, 2016, arXiv:1605.06376; Greenberg et al., 2019, arXiv:1905.07488). Here

.. math::
    u = \frac{T^{-1}(\theta) - m}{s}, \qquad h = e_\psi\!\left(\frac{x - \mu_x}{\sigma_x}\right),
    \qquad
    \log p(\theta \mid x) = \log q_\phi(u \mid h) - \textstyle\sum_j \log s_j
        + \log\left|\det \frac{\partial T^{-1}}{\partial \theta}\right|,

with :math:`T` the bijection onto the prior's support (:mod:`surrogates.inference.support`),
:math:`(m, s)` and :math:`(\mu_x, \sigma_x)` the standardization of
:mod:`surrogates.preprocessing` (fitted on the training split) and :math:`e_\psi` an embedding
network (:mod:`surrogates.nn.embeddings`) trained jointly with the flow. For vector observations
u is by default replaced by the whitened residual :math:`L^{-1}(u - W^\top [c, 1])` of its
linear regression on the standardized x, c (:class:`~surrogates.preprocessing.LinearAdjust`, a
constant-Jacobian bijection of u given x), so the flow refines a linear-Gaussian posterior
instead of learning it from scratch. Samples are :math:`T(m + s\,u)` with u drawn through the
flow and the inverse adjustment: always inside the support, and :meth:`NPE.log_prob` is exactly
normalized over it -- no rejection, no leakage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..models.flows import FlowNet
from ..preprocessing import LinearAdjust, Standardize
from .support import SupportTransform

__all__ = ["U_CLAMP", "NPENet"]

#: |u| is clamped to this in training, so a θ stored exactly on a bound (float32 round-off)
#: gives a finite loss; σ(15) = 1 - 3e-7, i.e. within float32 resolution of the bound
U_CLAMP = 15.0


class NPENet(nn.Module):
    """The trained module: an embedding of x and a :class:`~surrogates.models.flows.FlowNet` over u.

    Args:
        dim: number of parameters P.
        embedding: maps standardized x (N, *x_shape) to (N, E); has ``out_features``.
        arch: :class:`~surrogates.models.flows.FlowNet` architecture settings.
        support: the bijection onto the prior's support.
        pre: fitted standardization (features: T⁻¹(θ); condition: x).
        adjust: fitted linear adjustment of the standardized features given the standardized
            x, or None.
    """

    def __init__(
        self,
        dim: int,
        embedding: nn.Module,
        arch: dict[str, Any],
        support: SupportTransform,
        pre: Standardize,
        adjust: LinearAdjust | None = None,
    ):
        super().__init__()
        self.embedding = embedding
        self.flow = FlowNet(dim, int(embedding.out_features), arch)
        self.arch = dict(arch)
        self.support, self.pre, self.adjust = support, pre, adjust

    def condition(self, x: Tensor) -> Tensor:
        """Standardized observations (N, *x_shape): the embedding's (and adjustment's) input."""
        return self.pre.condition(x)

    def context(self, x: Tensor) -> Tensor:
        """The embedding h of raw observations x (N, *x_shape)."""
        return self.embedding(self.condition(x))

    def features(self, theta: Tensor, c: Tensor, *, clamp: bool = False) -> tuple[Tensor, Tensor]:
        """The flow's features y of θ given standardized observations c, and log|det ∂y/∂θ|
        per row (float64). ``clamp``: |u| ≤ :data:`U_CLAMP` (training)."""
        u, ladj = self.support.inverse(theta.double())
        y, ladj_s = self.pre.forward(u.clamp(-U_CLAMP, U_CLAMP) if clamp else u, u)
        if self.adjust is not None:
            y, ladj_a = self.adjust.forward(y, c.double())
            ladj_s = ladj_s + ladj_a
        return y, ladj + ladj_s

    def parameters_of(self, y: Tensor, c: Tensor) -> Tensor:
        """θ of features y (float64) given standardized observations c: inside the support."""
        if self.adjust is not None:
            y = self.adjust.inverse(y, c.double())
        return self.support.forward(self.pre.inverse(y, y))

    def draw(self, z: Tensor, h: Tensor, c: Tensor) -> Tensor:
        """θ (float64, inside the support) of standard normal latents z given embeddings h of
        the standardized observations c."""
        y = self.flow.from_latent(z.to(h.dtype), h)
        return self.parameters_of(y.double(), c)

    def log_density(self, theta: Tensor, c: Tensor, h: Tensor) -> Tensor:
        """log p(θ | x) per row (float64), ``-inf`` outside the support; c and h as in
        :meth:`draw`."""
        inside = self.support.contains(theta)
        y, ladj = self.features(theta, c)
        y = torch.where(inside[:, None], y, torch.zeros_like(y))  # keep the flow finite
        lq = self.flow.log_prob_features(y.to(h.dtype), h).double() + ladj
        return torch.where(inside & torch.isfinite(lq), lq, torch.full_like(lq, -math.inf))

    def loss(self, batch: Sequence[Tensor], *, generator: torch.Generator | None = None) -> Tensor:
        """Mean negative log-density of the flow's features (the constant log-determinants are
        left out)."""
        c = self.condition(batch[1])
        y, _ = self.features(batch[0], c, clamp=True)
        h = self.embedding(c)
        return -self.flow.log_prob_features(y.to(h.dtype), h).mean()
