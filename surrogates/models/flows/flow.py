r"""Conditional neural spline flows (:class:`Flow`) on ``zuko``.

The flow models the preprocessed features y of x given the conditioning vector c of θ
(see :mod:`surrogates.preprocessing`), optionally through an MLP embedding h = e(c):

.. math::
    \log p(x \mid \theta) = \log \mathcal{N}(T(y; h)) + \log |\det \partial_y T(y; h)|
        + \log |\det \partial_x y|,

with T a stack of monotonic rational-quadratic spline transforms (Durkan et al., 2019,
arXiv:1906.04032) on [-5, 5] (identity outside). Three kinds:

* ``"coupling"`` (default) -- :func:`coupling_nsf`: each transform splits the features by a
  binary mask into an identity half a and a transformed half b,

  .. math:: T(y)_a = y_a, \qquad T(y)_b = s_{\phi(y_a, h)}(y_b),

  with one conditioner MLP φ per transform whose output is the spline parameters of the b half
  only. Density and sampling are one MLP pass per transform each, and the inverse is exact
  (spline inverses are closed form). Masks alternate as complementary pairs, so every feature is
  transformed once per pair of transforms (Dinh et al., 2017, arXiv:1605.08803).
* ``"autoregressive"`` -- zuko's ``NSF`` (MAF-style; :class:`RQSAutoregressiveTransform`):
  density in one pass, sampling in one pass per feature; the best density, the slowest sampling.
* ``"two_stage"`` -- p(y_{:s} | h) · p(y_{s:} | y_{:s}, h): an autoregressive flow over the first
  ``split`` features and a coupling flow over the rest. For showers ``split`` is the number of
  layers, i.e. layer energies | E_inc, then normalized voxels | layer energies, E_inc (CaloFlow,
  Krause & Shih, 2021, arXiv:2106.05285).

:meth:`Flow.fast_sampling` switches sampling to :mod:`surrogates.models.flows.fast_sampling`
(compiled spline inverses, conditioners in bfloat16): about 6x faster on the shower flow.

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

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from simulators.errors import UserError

from ..arch import ArchConfig
from ..base import Surrogate, _tensor
from .fast_sampling import PRECISIONS
from .net import FlowNet
from .transforms import ACTIVATIONS, KINDS

__all__ = ["Flow", "FlowArch"]


@dataclass(frozen=True)
class FlowArch(ArchConfig):
    """Architecture settings of a :class:`Flow` (keyword arguments of :meth:`Flow.for_dataset`,
    ``--arch KEY=VALUE`` on the command line).

    Attributes:
        kind: ``"coupling"``, ``"autoregressive"`` or ``"two_stage"`` (see the module notes).
        transforms: spline transforms per flow (at least 2 for coupling flows, so that every
            feature is transformed).
        hidden: hidden layer widths of each transform's conditioner.
        bins: spline bins (at least 2).
        activation: the conditioners' activation, a key of
            :data:`~surrogates.models.flows.transforms.ACTIVATIONS`.
        embedding: widths of an MLP embedding of the condition (None: the condition as is).
        split: features of stage one for ``"two_stage"`` (default: the preprocessing's split,
            e.g. the number of calorimeter layers).
    """

    kind: str = "coupling"
    transforms: int = 5
    hidden: tuple[int, ...] = (128, 128)
    bins: int = 8
    activation: str = "relu"
    embedding: tuple[int, ...] | None = None
    split: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        least = 1 if self.kind == "autoregressive" else 2
        if self.transforms < least:
            raise UserError(f"{self.kind} flows need transforms >= {least}, "
                            f"got {self.transforms}")  # fmt: skip
        if self.activation not in ACTIVATIONS:
            raise UserError(f"activation must be one of {', '.join(ACTIVATIONS)}, "
                            f"got {self.activation!r}")  # fmt: skip
        if self.bins < 2:
            raise UserError(f"bins must be >= 2, got {self.bins}")
        if min((*self.hidden, *(self.embedding or ())), default=1) < 1:
            raise UserError("hidden and embedding widths must be positive")

    @classmethod
    def for_data(cls, kind: str) -> FlowArch:
        """Showers: the two-stage flow (``docs/decisions/006-shower-flow-two-stage.md``); other
        data: a coupling flow."""
        if kind == "showers":
            return cls(kind="two_stage", transforms=6, hidden=(256, 256), embedding=(64, 64))
        return cls()


class Flow(Surrogate):
    """A conditional neural spline flow surrogate p(x | θ).

    Architecture settings are the fields of :class:`FlowArch` (keyword arguments of
    :meth:`for_dataset` / the constructor); unset ones take :meth:`FlowArch.for_data` of the
    data's kind (calorimeter showers or other data).
    """

    model_type: ClassVar[str] = "flow"
    Arch: ClassVar[type[FlowArch]] = FlowArch
    #: default rows per sampling pass on the CPU (see :meth:`sample`)
    CPU_BATCH: ClassVar[int] = 1024

    def _check_arch(self, arch: dict[str, Any]) -> dict[str, Any]:
        a = super()._check_arch(arch)
        if a["kind"] == "two_stage":
            split = a["split"] if a["split"] is not None else self.pre.split
            if split is None:
                split = 1 if self.pre.features > 1 else None
            if split is None or not 0 < split < self.pre.features:
                raise UserError(f"two_stage needs 0 < split < {self.pre.features}, got {split}")
            a["split"] = int(split)
        return a

    def _build(self) -> nn.Module:
        return FlowNet(self.pre.features, self.pre.context, self.arch)

    def log_prob(
        self, x: Any, theta: Any, *, batch_size: int = 10_000, stage: int | None = None
    ) -> Any:
        """log p(x | θ) per row (see the module notes for showers).

        Args:
            x: events (N, *x_shape).
            theta: their conditions (N, P).
            batch_size: rows per pass.
            stage: ``1`` for a ``two_stage`` flow: the marginal density of the first stage's
                features alone (for showers: the layer energies given E_inc), in feature space.

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
                lp = self.net.log_prob_features(y, self.pre.condition(tb), stage)
                out.append(lp + ladj if self.pre.bijective and stage is None else lp)
        lp = torch.cat(out) if out else torch.zeros(0, dtype=dt)
        return lp.detach().cpu().double().numpy() if as_numpy else lp

    def fast_sampling(self, precision: str | None = "bfloat16") -> Flow:
        """Switches :meth:`sample` (and :meth:`as_simulator`) to the fast path of
        :mod:`surrogates.models.flows.fast_sampling`, or back with ``None``; returns the model.

        The spline transforms then run their conditioners in ``precision`` and compiled spline
        inverses (compiled on the first draw, which takes tens of seconds; eager, with a
        warning, where ``torch.compile`` has no back end). ``"float32"`` gives the eager
        samples up to rounding; ``"bfloat16"`` approximates the trained conditioners to ~3
        significant digits, the default chosen by measurement
        (``docs/decisions/007-fast-sampling-bfloat16.md``). Densities (:meth:`log_prob`) and
        training are unaffected.
        """
        if precision is not None and precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)} or None, got {precision!r}"
            )
        self.net.fast = precision
        return self

    def sampling_options(self) -> dict[str, Any]:
        return {"fast": self.net.fast}

    def default_batch_size(self) -> int:
        """Rows per sampling pass: :attr:`CPU_BATCH` on the CPU, where the spline set-up is
        bound by memory traffic and runs fastest on cache-sized blocks; 65,536 on a GPU."""
        return self.CPU_BATCH if self.device.type == "cpu" else 65_536
