r"""Conditional neural spline flows (:class:`Flow`) on ``zuko``.

The flow models the preprocessed features y of x given the conditioning vector c of θ
(see :mod:`surrogates.preprocessing`), optionally through an MLP embedding h = e(c):

.. math::
    \log p(x \mid \theta) = \log \mathcal{N}(T(y; h)) + \log |\det \partial_y T(y; h)|
        + \log |\det \partial_x y|,

with T a stack of monotonic rational-quadratic spline transforms (Durkan et al., 2019,
arXiv:1906.04032). Three kinds:

* ``"coupling"`` -- zuko ``NSF(passes=2)``: sampling and density in one pass each (fast).
* ``"autoregressive"`` -- zuko ``NSF`` (MAF-style): density in one pass, sampling in one pass per
  feature; the best density, the slowest sampling.
* ``"two_stage"`` -- p(y_{:s} | h) · p(y_{s:} | y_{:s}, h): an autoregressive flow over the first
  ``split`` features and a coupling flow over the rest. For showers ``split`` is the number of
  layers, i.e. layer energies | E_inc, then normalized voxels | layer energies, E_inc (CaloFlow).

For generic (standardized) data the preprocessing is a bijection and :meth:`Flow.log_prob` is the
exact data-space density. For showers it is not (see :class:`~surrogates.preprocessing.
ShowerPreprocessing`): :meth:`Flow.log_prob` then returns the density of the standardized
features, with dequantization noise drawn from a fixed seed so the score is deterministic.

Example:
    >>> import numpy as np
    >>> from surrogates.models import Flow
    >>> rng = np.random.default_rng(0)
    >>> theta = rng.uniform(-1, 1, (512, 1)).astype(np.float32)
    >>> x = (theta + 0.1 * rng.standard_normal((512, 2))).astype(np.float32)
    >>> model = Flow.for_dataset((theta, x), transforms=2, hidden=[16])
    >>> model = model.fit((theta, x), max_epochs=1, progress=False, device="cpu")
    >>> model.sample(theta[:3]).shape
    (3, 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import zuko
from torch import Tensor, nn

from .base import Surrogate, _tensor

__all__ = ["KINDS", "Flow", "FlowNet"]

KINDS = ("coupling", "autoregressive", "two_stage")


def _nsf(
    features: int, context: int, autoregressive: bool, arch: dict[str, Any]
) -> zuko.flows.Flow:
    return zuko.flows.NSF(
        features,
        context,
        bins=arch["bins"],
        transforms=arch["transforms"],
        passes=None if autoregressive else 2,
        hidden_features=tuple(arch["hidden"]),
    )


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
        layers: list[nn.Module] = []
        width = context
        for w in emb:
            layers += [nn.Linear(width, w), nn.ELU()]
            width = w
        self.embed = nn.Sequential(*layers[:-1]) if layers else nn.Identity()
        if self.kind == "two_stage":
            s = self.split
            self.flows = nn.ModuleList(
                [_nsf(s, width, True, arch), _nsf(features - s, width + s, False, arch)]
            )
        else:
            self.flows = nn.ModuleList([_nsf(features, width, self.kind == "autoregressive", arch)])
        self.features = features
        self.pre: Any = None  # the Flow's preprocessor, used by loss()

    def _parts(self, h: Tensor, y1: Tensor | None) -> list[Any]:
        if self.kind != "two_stage":
            return [self.flows[0](h)]
        return [self.flows[0](h), self.flows[1](torch.cat([h, y1], dim=-1))]

    def log_prob_features(self, y: Tensor, c: Tensor) -> Tensor:
        """log p(y | c) per row."""
        h = self.embed(c)
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

    def from_latent(self, z: Tensor, c: Tensor) -> Tensor:
        """The inverse map T⁻¹: latents -> features."""
        h = self.embed(c)
        if self.kind != "two_stage":
            return self.flows[0](h).transform.inv(z)
        y1 = self.flows[0](h).transform.inv(z[:, : self.split])
        y2 = self.flows[1](torch.cat([h, y1], -1)).transform.inv(z[:, self.split :])
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


class Flow(Surrogate):
    """A conditional neural spline flow surrogate p(x | θ).

    Architecture settings (keyword arguments of :meth:`for_dataset` / the constructor):

    Args:
        kind: ``"coupling"``, ``"autoregressive"`` or ``"two_stage"`` (see the module notes).
        transforms: spline transforms per flow.
        hidden: hidden layer widths of each transform's conditioner.
        bins: spline bins.
        embedding: widths of an MLP embedding of the condition (None: the condition as is).
        split: features of stage one for ``"two_stage"`` (default: the preprocessing's split,
            e.g. the number of calorimeter layers).
    """

    model_type: ClassVar[str] = "flow"

    def _check_arch(self, arch: dict[str, Any]) -> dict[str, Any]:
        defaults = {"kind": "coupling", "transforms": 5, "hidden": [128, 128], "bins": 8,
                    "embedding": None, "split": None}  # fmt: skip
        unknown = sorted(set(arch) - set(defaults))
        if unknown:
            raise ValueError(
                f"unknown Flow setting(s): {', '.join(unknown)}; known: {', '.join(defaults)}"
            )
        arch = {**defaults, **arch}
        if arch["kind"] not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {arch['kind']!r}")
        arch["hidden"] = [int(h) for h in arch["hidden"]]
        arch["embedding"] = [int(h) for h in arch["embedding"]] if arch["embedding"] else None
        if arch["kind"] == "two_stage":
            split = arch["split"] if arch["split"] is not None else self.pre.split
            if split is None:
                split = 1 if self.pre.features > 1 else None
            if split is None or not 0 < split < self.pre.features:
                raise ValueError(f"two_stage needs 0 < split < {self.pre.features}, got {split}")
            arch["split"] = int(split)
        return arch

    def _build(self) -> nn.Module:
        net = FlowNet(self.pre.features, self.pre.context, self.arch)
        net.pre = self.pre
        return net

    @property
    def dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    def log_prob(self, x: Any, theta: Any, *, batch_size: int = 10_000) -> Any:
        """log p(x | θ) per row (see the module notes for showers).

        Returns:
            shape (N,): numpy float64 for numpy input, else a tensor (differentiable in x).
        """
        as_numpy = not isinstance(x, Tensor)
        dt = self.dtype
        x_t, th = _tensor(x, dt), _tensor(theta, dt).reshape(len(theta), -1)
        g = torch.Generator().manual_seed(0)  # fixed dequantization noise: a deterministic score
        out = []
        with torch.set_grad_enabled(not as_numpy and torch.is_grad_enabled()):
            for s in range(0, len(x_t), batch_size):
                xb, tb = (
                    x_t[s : s + batch_size].to(self.device),
                    th[s : s + batch_size].to(self.device),
                )
                y, ladj = self.pre.forward(xb, tb, generator=g)
                lp = self.net.log_prob_features(y, self.pre.condition(tb))
                out.append(lp + ladj if self.pre.bijective else lp)
        lp = torch.cat(out) if out else torch.zeros(0, dtype=dt)
        return lp.detach().cpu().double().numpy() if as_numpy else lp

    def sample(
        self, theta: Any, *, generator: torch.Generator | None = None, batch_size: int = 10_000
    ) -> Any:
        """Draws one x per row of ``theta``; see :meth:`Surrogate.sample`."""
        dt = self.dtype
        if dt != torch.float32:
            theta = (
                _tensor(theta, dt) if isinstance(theta, Tensor) else np.asarray(theta, np.float64)
            )
        return self._sample(theta, generator, batch_size, dt)

    @torch.no_grad()
    def _sample(
        self, theta: Any, generator: torch.Generator | None, batch_size: int, dt: torch.dtype
    ) -> Any:
        as_numpy = not isinstance(theta, Tensor)
        th = _tensor(theta, dt).reshape(len(theta), -1)
        if generator is None:
            generator = torch.Generator()
            generator.seed()
        self.net.eval()
        out = []
        for s in range(0, len(th), batch_size):
            t = th[s : s + batch_size].to(self.device)
            y = self.net.sample_features(self.pre.condition(t), generator)
            out.append(self.pre.inverse(y, t).cpu())
        shape = tuple(self.meta.get("x_shape") or ())
        x = torch.cat(out).reshape(len(th), *shape) if out else torch.zeros(0, *shape, dtype=dt)
        if as_numpy:
            return x.numpy().astype(np.float32 if dt == torch.float32 else np.float64)
        return x
