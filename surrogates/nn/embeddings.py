r"""Embedding networks: summaries h = e(x) of observations, trained jointly with a conditional flow.

Every embedding is an :class:`torch.nn.Module` mapping a batch of standardized observations
(N, *x_shape) to (N, :attr:`out_features`), built from a JSON-serializable spec by
:func:`build_embedding` (so a saved estimator is rebuilt without pickle):

* ``"identity"`` -- the flattened observation (the right choice for a few informative numbers);
* ``"mlp"`` -- :class:`MLPEmbedding`, a fully connected network on the flattened observation;
* ``"cnn"`` -- :class:`CNNEmbedding`, convolutions for 2-d fields (optionally with channels);
* ``"power_spectrum"`` -- :class:`PowerSpectrumEmbedding`, the radially binned log power spectrum
  of a 2-d or 3-d field followed by an MLP: a fixed, translation-invariant summary of Gaussian-ish
  fields (cosmology);
* ``"deepset"`` -- :class:`DeepSetEmbedding`, :math:`\rho(\frac{1}{M}\sum_{m} \phi(x_m))` over a set
  of M i.i.d. observations (x of shape (M, d)): invariant to their order (Zaheer et al., 2017,
  *Deep sets*, NeurIPS).

Example:
    >>> import torch
    >>> e = build_embedding({"type": "deepset", "out": 8}, (5, 2))
    >>> x = torch.randn(3, 5, 2)
    >>> torch.allclose(e(x), e(x[:, torch.randperm(5)]), atol=1e-6)
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .mlp import mlp

__all__ = [
    "CNNEmbedding",
    "DeepSetEmbedding",
    "IdentityEmbedding",
    "MLPEmbedding",
    "PowerSpectrumEmbedding",
    "build_embedding",
    "power_spectrum",
]


class IdentityEmbedding(nn.Module):
    """The flattened observation, h = x."""

    def __init__(self, x_shape: Sequence[int]):
        super().__init__()
        self.out_features = int(math.prod(x_shape))
        self.config: dict[str, Any] = {"type": "identity"}

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1)


class MLPEmbedding(nn.Module):
    """A fully connected network (GELU) on the flattened observation.

    Args:
        x_shape: shape of one observation.
        hidden: hidden layer widths.
        out: output features.
    """

    def __init__(self, x_shape: Sequence[int], hidden: Sequence[int] = (64, 64), out: int = 32):
        super().__init__()
        self.net = mlp(math.prod(x_shape), hidden, out, activation=nn.GELU)
        self.out_features = int(out)
        self.config = {"type": "mlp", "hidden": [int(h) for h in hidden], "out": int(out)}

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))


class CNNEmbedding(nn.Module):
    """Convolutions for 2-d fields: per stage a 3×3 convolution, ReLU and 2×2 max-pooling, then an
    adaptive average pool to 4×4 and a linear layer.

    Args:
        x_shape: (H, W) or (C, H, W).
        channels: output channels of each stage.
        out: output features.
    """

    def __init__(
        self, x_shape: Sequence[int], channels: Sequence[int] = (16, 32, 64), out: int = 32
    ):
        super().__init__()
        if len(x_shape) not in (2, 3):
            raise ValueError(
                f"CNNEmbedding needs x_shape (H, W) or (C, H, W), got {tuple(x_shape)}"
            )
        self.channels_first = len(x_shape) == 3
        c = int(x_shape[0]) if self.channels_first else 1
        layers: list[nn.Module] = []
        for ch in channels:
            layers += [
                nn.Conv2d(c, int(ch), 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            c = int(ch)
        layers += [nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(16 * c, int(out))]
        self.net = nn.Sequential(*layers)
        self.out_features = int(out)
        self.config = {"type": "cnn", "channels": [int(ch) for ch in channels], "out": int(out)}

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x if self.channels_first else x.unsqueeze(1))


def power_spectrum(x: Tensor, n_bins: int, ndim: int) -> Tensor:
    r"""Radially binned power spectrum of the last ``ndim`` axes of x.

    :math:`P(k_b) = \langle |\hat x(\mathbf{k})|^2 \rangle_{\lfloor |\mathbf{k}| \rfloor \in b}`
    with :math:`|\mathbf{k}|` in units of the fundamental mode, bins of equal width up to the
    Nyquist frequency of the smallest axis, and the zero mode left out (it is the field's mean).

    Args:
        x: fields, shape (N, *spatial) with ``ndim`` spatial axes.
        n_bins: number of radial bins.
        ndim: 2 or 3.

    Returns:
        Shape (N, n_bins); empty bins are zero.
    """
    dims = tuple(range(-ndim, 0))
    f = torch.fft.rfftn(x, dim=dims, norm="ortho")
    power = (f.real**2 + f.imag**2).flatten(1)
    idx, count = _bins(tuple(x.shape[-ndim:]), n_bins, x.device)
    out = torch.zeros(len(x), n_bins + 1, dtype=power.dtype, device=x.device)
    out.index_add_(1, idx, power)
    return out[:, :n_bins] / count[:n_bins].clamp_min(1).to(power.dtype)


def _bins(shape: tuple[int, ...], n_bins: int, device: torch.device) -> tuple[Tensor, Tensor]:
    freqs = [torch.fft.fftfreq(n, d=1.0 / n) for n in shape[:-1]]
    freqs.append(torch.fft.rfftfreq(shape[-1], d=1.0 / shape[-1]))
    grids = torch.meshgrid(*freqs, indexing="ij")
    k = torch.sqrt(sum(g**2 for g in grids)).flatten()
    k_max = min(shape) / 2
    idx = torch.floor(k / k_max * n_bins).long()
    idx = torch.where(
        (k > 0) & (idx < n_bins), idx, torch.full_like(idx, n_bins)
    )  # n_bins: dropped
    count = torch.bincount(idx, minlength=n_bins + 1).double()
    return idx.to(device), count.to(device)


class PowerSpectrumEmbedding(nn.Module):
    """The log power spectrum of a 2-d or 3-d field (see :func:`power_spectrum`), normalized by
    running batch statistics, then an MLP.

    Args:
        x_shape: (H, W) or (D, H, W).
        n_bins: radial bins.
        hidden: hidden widths of the MLP.
        out: output features.
    """

    def __init__(
        self, x_shape: Sequence[int], n_bins: int = 16, hidden: Sequence[int] = (64,), out: int = 32
    ):
        super().__init__()
        if len(x_shape) not in (2, 3):
            raise ValueError(
                f"PowerSpectrumEmbedding needs a 2-d or 3-d field, got {tuple(x_shape)}"
            )
        self.ndim, self.n_bins = len(x_shape), int(n_bins)
        # log power spans decades; batch statistics put it on the MLP's scale (saved as buffers)
        self.norm = nn.BatchNorm1d(self.n_bins, affine=False)
        self.mlp = mlp(self.n_bins, hidden, out, activation=nn.GELU)
        self.out_features = int(out)
        self.config = {"type": "power_spectrum", "n_bins": self.n_bins,
                       "hidden": [int(h) for h in hidden], "out": int(out)}  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        p = power_spectrum(x, self.n_bins, self.ndim)
        return self.mlp(self.norm(torch.log(p + 1e-12)))


class DeepSetEmbedding(nn.Module):
    r"""A permutation-invariant network on a set of M i.i.d. observations (x of shape (M, d)):
    :math:`h = \rho\big(\frac{1}{M} \sum_m \phi(x_m)\big)`.

    Args:
        x_shape: (M, d) (or (M,) for scalar observations).
        phi: hidden widths of φ (its output has the last width).
        rho: hidden widths of ρ.
        out: output features.
    """

    def __init__(
        self,
        x_shape: Sequence[int],
        phi: Sequence[int] = (64, 64),
        rho: Sequence[int] = (64,),
        out: int = 32,
    ):
        super().__init__()
        if len(x_shape) not in (1, 2):
            raise ValueError(f"DeepSetEmbedding needs x_shape (M, d) or (M,), got {tuple(x_shape)}")
        self.scalar = len(x_shape) == 1
        d = 1 if self.scalar else int(x_shape[1])
        phi = [int(h) for h in phi]
        self.phi = nn.Sequential(mlp(d, phi[:-1], phi[-1], activation=nn.GELU), nn.GELU())
        self.rho = mlp(phi[-1], rho, out, activation=nn.GELU)
        self.out_features = int(out)
        self.config = {"type": "deepset", "phi": phi, "rho": [int(h) for h in rho], "out": int(out)}

    def forward(self, x: Tensor) -> Tensor:
        if self.scalar:
            x = x.unsqueeze(-1)
        return self.rho(self.phi(x).mean(dim=1))


_TYPES: dict[str, type[nn.Module]] = {
    "identity": IdentityEmbedding,
    "mlp": MLPEmbedding,
    "cnn": CNNEmbedding,
    "power_spectrum": PowerSpectrumEmbedding,
    "deepset": DeepSetEmbedding,
}


def build_embedding(spec: str | dict[str, Any] | None, x_shape: Sequence[int]) -> nn.Module:
    """Builds an embedding from a type name or a spec ``{"type": ..., **options}``.

    Args:
        spec: ``"identity"``, ``"mlp"``, ``"cnn"``, ``"power_spectrum"``, ``"deepset"``, a dict
            with ``"type"`` and constructor options, or ``None`` (identity for vectors, ``"cnn"``
            for 2-d/3-d observations).
        x_shape: shape of one observation.

    Returns:
        A module with ``out_features`` and a JSON ``config`` that rebuilds it.
    """
    x_shape = tuple(int(s) for s in x_shape)
    if spec is None:
        spec = "identity" if len(x_shape) <= 1 else "cnn"
    d = {"type": spec} if isinstance(spec, str) else dict(spec)
    kind = d.pop("type", None)
    if kind not in _TYPES:
        raise ValueError(f"unknown embedding {kind!r}; known: {', '.join(_TYPES)}")
    try:
        return _TYPES[kind](x_shape, **d)
    except TypeError as exc:
        raise ValueError(f"bad options for embedding {kind!r}: {exc}") from None
