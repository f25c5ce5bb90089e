r"""Fast sampling through the package's spline flows: compiled spline inverses, bfloat16
conditioners, rows along the fast memory axis.

Sampling is, per transform, conditioner passes (one for a coupling transform, one per feature
for an autoregressive one) and spline inverses. In float32 eager mode on a CPU core both cost
about the same at the shower flow's size: the last conditioner layer of a voxel transform
(256 -> 184 x 23 outputs) is a 2-GFLOP matrix product per 1,024 rows, and the spline set-up and
inverse make a dozen passes over the parameters. Here

* the conditioners run in ``precision`` (bfloat16 by default: AMX / AVX-512-BF16 matrix units on
  recent CPUs, tensor cores on GPUs);
* everything is computed feature-major, (features, rows): a layer is ``W @ h``, and the last
  layer's rows are reordered so that its output is (3K - 1, features, rows);
* :func:`rqs_inverse` is written bin by bin on contiguous (features, rows) slices, so that
  ``torch.compile`` fuses the whole spline (soft clamp, exp, cumulative sums, bin search,
  quadratic solve, the last layer's bias) into one loop vectorized over rows, which reads the
  parameters once; rows as the inner axis also keep it vectorized for the five-feature first
  stage of the shower flow (3.8x faster than features as the inner axis);
* an autoregressive transform computes the context's share of its first layer once, not once
  per pass.

The float operations are those of :class:`~surrogates.models.flows.transforms._PackedRQS` but
for the cumulative sums, which torch's CPU ``cumsum`` accumulates in float64 and
:func:`rqs_inverse` in the working precision (float64 accumulation made the compiled spline 2.1x
slower): in float64 the two agree to round-off, in float32 they differ by round-off times the
inverse slope (up to 1/s = 1000 where the spline is steepest). The bfloat16 conditioners
approximate the trained ones (parameters to ~3 significant digits); their effect on sample
quality is measured by ``examples/calo_flow.py --fast-sampling``. Without a working
``torch.compile`` back end (a C++ compiler on the CPU, Triton on a GPU) the spline runs eagerly,
with a warning."""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .spline import bin_inverse
from .transforms import RQSAutoregressiveTransform, RQSCouplingTransform

__all__ = ["PRECISIONS", "flow_inverse", "rqs_inverse", "supports"]

#: conditioner precisions by name
PRECISIONS: dict[str, torch.dtype] = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def rqs_inverse(
    phi: Tensor,
    y: Tensor,
    bins: int,
    bias: Tensor | None = None,
    bound: float = 5.0,
    slope: float = 1e-3,
) -> Tensor:
    """Inverse of the monotonic RQS of :class:`~surrogates.models.flows.transforms._PackedRQS`.

    Args:
        phi: packed parameters with the parameter axis first, (3K - 1, *shape): K width,
            K height and K - 1 derivative logits of each spline (any float dtype; computed in
            y's).
        y: spline outputs, ``shape``.
        bins: K.
        bias: added to phi (broadcast), e.g. the conditioner's last bias, fused here.
        bound: the spline's (co)domain bound B (identity outside [-B, B]).
        slope: the minimum slope s.

    Returns:
        x with s_φ(x) = y, elementwise.
    """
    lim = abs(math.log(slope))
    phi = phi.to(y.dtype)
    if bias is not None:
        phi = phi + bias.to(y.dtype)

    def e(i: int, scale: float) -> Tensor:
        p = phi[i]
        return torch.exp(p / (1 + (p * scale).abs()))

    cw, ch = [e(0, 2 / lim)], [e(bins, 2 / lim)]
    for i in range(1, bins):  # cumulative widths and heights
        cw.append(cw[-1] + e(i, 2 / lim))
        ch.append(ch[-1] + e(bins + i, 2 / lim))
    nw, nh = 2 * bound / cw[-1], 2 * bound / ch[-1]
    # the bin's two knot derivatives are selected as logits and exponentiated alone
    first, last = torch.ones_like(y, dtype=torch.bool), torch.zeros_like(y, dtype=torch.bool)
    x0 = y0 = torch.full_like(y, -bound)
    x1, y1 = cw[0] * nw - bound, ch[0] * nh - bound
    p0, p1 = phi[2 * bins], phi[2 * bins]
    for j in range(bins - 1):  # y above inner knot j + 1: y lies in bin j + 1 (knots rise)
        up = (ch[j] * nh - bound) < y
        x0 = torch.where(up, cw[j] * nw - bound, x0)
        y0 = torch.where(up, ch[j] * nh - bound, y0)
        x1 = torch.where(up, cw[j + 1] * nw - bound, x1)
        y1 = torch.where(up, ch[j + 1] * nh - bound, y1)
        first = first & ~up
        p0 = torch.where(up, phi[2 * bins + j], p0)
        if j + 1 < bins - 1:
            p1 = torch.where(up, phi[2 * bins + j + 1], p1)
        else:
            last = up
    one = torch.ones_like(y)

    def slope_of(p: Tensor) -> Tensor:
        return torch.exp(p / (1 + (p * (1 / lim)).abs()))

    d0 = torch.where(first, one, slope_of(p0))
    d1 = torch.where(last, one, slope_of(p1))
    return bin_inverse(y, x0, y0, x1, y1, d0, d1, bound)


#: conditioner activations (the modules of :data:`~surrogates.models.flows.transforms.ACTIVATIONS`)
_ACTIVATIONS: dict[type, Callable[[Tensor], Tensor]] = {
    nn.ReLU: torch.relu,
    nn.ELU: F.elu,
    nn.SiLU: F.silu,
    nn.Tanh: torch.tanh,
}


def _params(
    x: Tensor,
    ctx: Tensor,
    w_x: Tensor,
    w_h: list[Tensor],
    b_h: list[Tensor],
    w_out: Tensor,
    act: Callable[[Tensor], Tensor],
    total: int,
) -> Tensor:
    """The conditioner, feature-major: spline parameters (3K - 1, F, rows) from x (n_x, rows)
    and the context's share ``ctx`` (hidden, rows) of the first layer."""
    h = act(torch.addmm(ctx, w_x, x.to(w_x.dtype)))
    for w, b in zip(w_h, b_h, strict=True):
        h = act(torch.addmm(b, w, h))
    return torch.mm(w_out, h).view(total, w_out.shape[0] // total, -1)


def _autoregressive_steps(y: Tensor, ctx: Tensor, w_x: Tensor, w_h: list[Tensor],
                          b_h: list[Tensor], w_out: Tensor, b_out: Tensor,
                          act: Callable[[Tensor], Tensor], total: int, bins: int,
                          passes: int) -> Tensor:  # fmt: skip
    """x of an autoregressive transform: pass k fixes the features of order k, as zuko's."""
    x = torch.zeros_like(y)
    for _ in range(passes):
        x = rqs_inverse(_params(x, ctx, w_x, w_h, b_h, w_out, act, total), y, bins, b_out)
    return x


_COMPILED: dict[tuple[str, str], Callable[..., Tensor]] = {}


def _compiled(fn: Callable[..., Tensor], device: torch.device) -> Callable[..., Tensor]:
    """``fn`` compiled per device type, for any number of rows (the last axis of its tensor
    arguments; other sizes are compiled in); eager if compilation fails."""
    key = (fn.__name__, device.type)
    if key not in _COMPILED:
        compiled = torch.compile(fn)

        def run(*args: Any) -> Tensor:
            rows = args[0].shape[-1]  # feature counts stay static (26% faster spline kernels
            for a in args:  # than all-dynamic ones); rows vary without recompiling
                if isinstance(a, Tensor) and a.ndim > 1 and a.shape[-1] == rows:
                    torch._dynamo.maybe_mark_dynamic(a, a.ndim - 1)
            try:
                return compiled(*args)
            except Exception as err:  # no C++ compiler / Triton: the same function, eager
                warnings.warn(
                    f"torch.compile failed on {device.type} ({type(err).__name__}); fast "
                    "sampling runs eagerly",
                    RuntimeWarning,
                    stacklevel=3,
                )
                _COMPILED[key] = fn
                return fn(*args)

        _COMPILED[key] = run
    return _COMPILED[key]


class _Conditioner:
    """A conditioner MLP prepared for feature-major evaluation in ``dtype``: masked weights
    applied, the first layer split into the columns of x and of the context, biases as columns,
    the last layer's output rows (feature f, parameter k) reordered to (k, f) and its bias kept
    in float32 as (3K - 1, F, 1) for the spline kernel."""

    def __init__(self, hyper: nn.Sequential, n_x: int, n_out: int, total: int, dtype: torch.dtype):
        def weight(m: nn.Module) -> Tensor:
            w = m.weight * m.mask if hasattr(m, "mask") else m.weight
            return w.detach()

        layers = list(hyper)
        first, last = layers[0], layers[-1]
        acts = {type(m) for m in layers if not isinstance(getattr(m, "weight", None), Tensor)}
        if len(acts) > 1 or not acts <= set(_ACTIVATIONS):
            raise ValueError(f"fast sampling supports the activations {list(_ACTIVATIONS)}")
        self.act = _ACTIVATIONS[acts.pop()] if acts else torch.nn.Identity()
        w1 = weight(first)
        self.w_x, self.w_c = w1[:, :n_x].to(dtype), w1[:, n_x:].to(dtype)
        self.b_1 = first.bias.detach().to(dtype)[:, None]
        inner = [m for m in layers[1:-1] if isinstance(getattr(m, "weight", None), Tensor)]
        self.w_h = [weight(m).to(dtype) for m in inner]
        self.b_h = [m.bias.detach().to(dtype)[:, None] for m in inner]
        w = weight(last).view(n_out, total, -1).transpose(0, 1).reshape(n_out * total, -1)
        self.w_out = w.to(dtype).contiguous()
        self.b_out = last.bias.detach().view(n_out, total).t().contiguous()[..., None]
        self.dtype, self.total = dtype, total

    def context(self, c: Tensor | None, rows: int) -> Tensor:
        """The context's share of the first layer plus its bias, (hidden, rows)."""
        if c is None or self.w_c.shape[1] == 0:
            return self.b_1.expand(-1, rows).contiguous()
        return torch.addmm(self.b_1, self.w_c, c.to(self.dtype))

    def args(self) -> tuple[Any, ...]:
        return self.w_x, self.w_h, self.b_h, self.w_out, self.b_out, self.act, self.total


#: transform -> (weights' identity, its _Conditioner); outside the modules, so that pickling or
#: copying a model carries no cache
_CONDITIONERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _conditioner(t: nn.Module, dtype: torch.dtype) -> _Conditioner:
    """Transform ``t``'s :class:`_Conditioner`, cached until its weights change (in-place
    updates bump ``_version``) or move."""

    key = (dtype, tuple((p.device, p.data_ptr(), p._version) for p in t.hyper.parameters()))
    cached = _CONDITIONERS.get(t)
    if cached is None or cached[0] != key:
        if isinstance(t, RQSCouplingTransform):
            n_x, n_out = int(t.mask.sum()), int((~t.mask).sum())
        else:
            n_x = n_out = len(t.order)
        cached = _CONDITIONERS[t] = (key, _Conditioner(t.hyper, n_x, n_out, int(t.total), dtype))
    return cached[1]


def _inverse(t: nn.Module, y: Tensor, c: Tensor | None, dtype: torch.dtype) -> Tensor:
    """x = T⁻¹(y; c) of one transform, feature-major: y (F, rows), c (C, rows) or None."""

    net = _conditioner(t, dtype)
    ctx = net.context(c, y.shape[1])
    if isinstance(t, RQSCouplingTransform):
        idx_a, idx_b = t.mask.nonzero().squeeze(-1), (~t.mask).nonzero().squeeze(-1)
        y_a = y[idx_a]
        x = torch.empty_like(y)
        x[idx_a] = y_a
        # the conditioner eagerly (compiled with it, the spline ran slower), the spline compiled
        w_x, w_h, b_h, w_out, b_out, act, total = net.args()
        phi = _params(y_a, ctx, w_x, w_h, b_h, w_out, act, total)
        x[idx_b] = _compiled(rqs_inverse, y.device)(phi, y[idx_b], int(t.bins), b_out)
        return x
    steps = _compiled(_autoregressive_steps, y.device)
    return steps(y, ctx, *net.args(), int(t.bins), int(t.passes))


def supports(flow: nn.Module) -> bool:
    """Whether zuko flow ``flow`` is made of the package's spline transforms only (others are
    sampled eagerly)."""

    def ok(t: nn.Module) -> bool:  # a spline transform whose conditioner has a hidden layer
        linear = [m for m in t.hyper if isinstance(getattr(m, "weight", None), Tensor)]
        return isinstance(t, (RQSCouplingTransform, RQSAutoregressiveTransform)) and len(linear) > 1

    transforms = getattr(getattr(flow, "transform", None), "transforms", None)
    return bool(transforms) and all(ok(t) for t in transforms)


def flow_inverse(flow: nn.Module, z: Tensor, c: Tensor | None, precision: str) -> Tensor:
    """The inverse (latents (N, F) -> features (N, F)) of a flow that :func:`supports`, with
    context c (N, C) or None."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dtype = PRECISIONS[precision]
    with torch.no_grad():
        y = z.t().contiguous()
        ct = None if c is None else c.expand(len(z), -1).t().contiguous()
        for t in reversed(flow.transform.transforms):
            y = _inverse(t, y, ct, dtype)
    return y.t().contiguous()
