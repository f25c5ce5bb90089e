"""The torch module of a :class:`~surrogates.models.flows.Flow`: an embedding of the condition
and one spline flow, or two for the two-stage flow (see :mod:`surrogates.models.flows.flow`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ...nn import mlp
from .fast_sampling import flow_inverse, supports
from .transforms import spline_flow

__all__ = ["FlowNet"]


class FlowNet(nn.Module):
    """The torch module of a :class:`Flow`: embedding and one or two zuko flows.

    Args:
        features: flow features per row.
        context: conditioning features per row.
        arch: the completed architecture settings of :class:`Flow`.
    """

    def __init__(self, features: int, context: int, arch: dict[str, Any]):
        super().__init__()
        self.kind, self.split = arch["kind"], arch["split"]
        emb: Sequence[int] = arch["embedding"] or ()
        width = emb[-1] if emb else context
        self.embed = mlp(context, emb[:-1], width, activation=nn.ELU) if emb else nn.Identity()
        if self.kind == "two_stage":
            s = self.split
            self.flows = nn.ModuleList(
                [
                    spline_flow(s, width, True, arch),
                    spline_flow(features - s, width + s, False, arch),
                ]
            )
        else:
            self.flows = nn.ModuleList(
                [spline_flow(features, width, self.kind == "autoregressive", arch)]
            )
        self.features = features
        self.pre: Any = None  # the Flow's preprocessor, used by loss()
        #: conditioner precision of the fast sampling path (see :meth:`Flow.fast_sampling`)
        self.fast: str | None = None

    def _parts(self, h: Tensor, y1: Tensor | None) -> list[Any]:
        if self.kind != "two_stage":
            return [self.flows[0](h)]
        return [self.flows[0](h), self.flows[1](torch.cat([h, y1], dim=-1))]

    def log_prob_features(self, y: Tensor, c: Tensor, stage: int | None = None) -> Tensor:
        """log p(y | c) per row; ``stage=1``: the first stage's marginal log p(y_{:s} | c)."""
        h = self.embed(c)
        if stage is not None:
            if self.kind != "two_stage" or stage != 1:
                raise ValueError(f"stage={stage!r} needs a two_stage flow and stage 1; "
                                 f"this flow is {self.kind!r}")  # fmt: skip
            return self.flows[0](h).log_prob(y[:, : self.split])
        if self.kind != "two_stage":
            return self.flows[0](h).log_prob(y)
        y1, y2 = y[:, : self.split], y[:, self.split :]
        return self.flows[0](h).log_prob(y1) + self.flows[1](torch.cat([h, y1], -1)).log_prob(y2)

    def to_latent(self, y: Tensor, c: Tensor) -> Tensor:
        """The map T: features -> standard normal latents."""
        h = self.embed(c)
        if self.kind != "two_stage":
            return self.flows[0](h).transform(y)
        y1, y2 = y[:, : self.split], y[:, self.split :]
        z1 = self.flows[0](h).transform(y1)
        return torch.cat([z1, self.flows[1](torch.cat([h, y1], -1)).transform(y2)], dim=-1)

    def _inverse(self, i: int, z: Tensor, h: Tensor) -> Tensor:
        if self.fast is not None and supports(self.flows[i]):
            return flow_inverse(self.flows[i], z, h, self.fast)
        return self.flows[i](h).transform.inv(z)

    def from_latent(self, z: Tensor, c: Tensor) -> Tensor:
        """The inverse map T⁻¹: latents -> features."""
        h = self.embed(c)
        if self.kind != "two_stage":
            return self._inverse(0, z, h)
        y1 = self._inverse(0, z[:, : self.split], h)
        y2 = self._inverse(1, z[:, self.split :], torch.cat([h, y1], -1))
        return torch.cat([y1, y2], dim=-1)

    def sample_features(self, c: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One feature vector per row of c; latents drawn on the CPU from ``generator``."""
        z = torch.randn(len(c), self.features, generator=generator, dtype=c.dtype)
        return self.from_latent(z.to(c.device), c)

    def loss(self, batch: Sequence[Tensor], *, generator: torch.Generator | None = None) -> Tensor:
        """Mean negative log-likelihood of a ``(theta, x)`` batch in feature space."""
        theta, x = batch[0], batch[1]
        y, _ = self.pre.forward(x, theta, generator=generator)
        return -self.log_prob_features(y, self.pre.condition(theta)).mean()
