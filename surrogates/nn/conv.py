r"""Two-dimensional convolutional blocks for fields (C, H, W) on a periodic box.

Fields from a periodic simulation box (N-body density slices) have no edges: a shift of the box
is the same field. :class:`PeriodicConv2d` pads circularly, so a stride-1 convolution commutes
with periodic shifts, :math:`\mathrm{conv}(\mathrm{roll}(x, s)) = \mathrm{roll}(\mathrm{conv}(x),
s)`, and a stride-2 one commutes with even shifts (halved). :class:`ConvEncoder` maps a field to a
vector (stride-2 periodic convolutions, then a linear head, optionally after a mean over the
grid); :class:`ConvDecoder` maps a vector back to a field (a linear layer to a small grid, then
upsampling and periodic convolutions). Both
can be conditioned on a context vector c (e.g. the standardized parameters θ) by feature-wise
linear modulation after every convolution (:class:`FiLM`; Perez et al., 2018, *FiLM: Visual
reasoning with a general conditioning layer*, AAAI, arXiv:1709.07871). With ``noise=True`` the
decoder also takes one standard-normal map per upsampling stage, added with a learned scale
per channel (the noise inputs of StyleGAN; Karras et al., 2019, arXiv:1812.04948).

Image sizes are powers of two, at least :math:`2^{\text{len(widths)}}` per side, so every
down- or upsampling halves or doubles a side exactly.

Example:
    >>> import torch
    >>> enc = ConvEncoder(1, (8, 16), 4, image_size=32, context=2)
    >>> dec = ConvDecoder(4, (16, 8), 1, image_size=32, context=2)
    >>> x, c = torch.randn(3, 1, 32, 32), torch.randn(3, 2)
    >>> dec(enc(x, c), c).shape
    torch.Size([3, 1, 32, 32])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["ConvDecoder", "ConvEncoder", "FiLM", "PeriodicConv2d"]


class PeriodicConv2d(nn.Conv2d):
    r"""A 2-d convolution with circular ("periodic") padding of ``kernel_size // 2``.

    With stride 1 the output has the input's size and commutes with periodic shifts
    (``torch.roll`` over the last two axes); with stride s it commutes with shifts by multiples
    of s (the output shifts by shift / s).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd side of the square kernel.
        stride: stride of the convolution.
        bias: whether to add a learned bias.

    Example:
        >>> import torch
        >>> conv = PeriodicConv2d(1, 2).double()
        >>> x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
        >>> torch.allclose(conv(x.roll(3, -1)), conv(x).roll(3, -1))
        True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        bias: bool = True,
    ) -> None:
        if kernel_size < 1 or kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
            padding_mode="circular", bias=bias,
        )  # fmt: skip


class FiLM(nn.Module):
    r"""Feature-wise linear modulation of a feature map h (N, C, H, W) by a context c (N, D):

    .. math:: \mathrm{FiLM}(h, c) = (1 + \gamma(c)) \odot h + \beta(c),

    with :math:`(\gamma, \beta)` one linear map of c, broadcast over the pixels (Perez et al.,
    2018). Written as :math:`1 + \gamma` so a small γ leaves h almost unchanged.

    Args:
        context: context features D.
        channels: channels C of the modulated feature map.
    """

    def __init__(self, context: int, channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(context, 2 * channels)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        gamma, beta = self.linear(c)[:, :, None, None].chunk(2, dim=1)
        return (1 + gamma) * h + beta


def _grid(image_size: int | Sequence[int], stages: int, name: str) -> tuple[int, int]:
    """(H, W) after ``stages`` halvings; checks that both sides are powers of two."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or any(not isinstance(s, int) or s < 2**stages or s & (s - 1) for s in size):
        raise ValueError(f"{name}: image_size must be an int or (H, W) of powers of two, at "
                         f"least 2**len(widths) = {2**stages}; got {image_size!r}")  # fmt: skip
    return size[0] >> stages, size[1] >> stages


class _Conditioned(nn.Module):
    """Shared plumbing: per-stage FiLM layers and the check of the context argument."""

    def __init__(self, context: int, widths: Sequence[int]) -> None:
        super().__init__()
        self.context = int(context)
        self.films = nn.ModuleList(FiLM(self.context, int(w)) for w in widths) if context else None

    def _film(self, i: int, h: Tensor, c: Tensor | None) -> Tensor:
        if self.films is None:
            return h
        if c is None or c.shape != (len(h), self.context):
            shape = None if c is None else tuple(c.shape)
            raise ValueError(f"this block needs a context of shape (N, {self.context}) "
                             f"with N = {len(h)}, got {shape}")  # fmt: skip
        return self.films[i](h, c)


class ConvEncoder(_Conditioned):
    r"""A field (N, C, H, W) to a vector (N, out_features).

    Per entry of ``widths``: a stride-2 :class:`PeriodicConv2d` (3×3) to that many channels,
    :class:`FiLM` by the context (when ``context > 0``) and the activation (:meth:`features`);
    then a linear head on the flattened (widths[-1], H / 2^k, W / 2^k) grid, or with
    ``pool=True`` on its mean over the grid.

    Symmetry: :meth:`features` commutes with periodic shifts by multiples of :math:`2^k` (a shift
    by :math:`2^k s` of x shifts the final grid by s). With ``pool=True`` the output is therefore
    invariant under those shifts (up to rounding); the flattened head guarantees nothing.

    Args:
        in_channels: channels C of the input field.
        widths: output channels of each downsampling stage (k = len(widths) stages).
        out_features: output features.
        image_size: H = W, or (H, W); powers of two, at least 2^k.
        context: context features D (0: unconditioned, ``forward(x)``).
        activation: activation class after every convolution.
        pool: average the final grid over its pixels before the head (translation invariance).

    Example:
        >>> import torch
        >>> ConvEncoder(2, (8, 8, 8), 5, image_size=(16, 32))(torch.randn(4, 2, 16, 32)).shape
        torch.Size([4, 5])
    """

    def __init__(
        self,
        in_channels: int,
        widths: Sequence[int],
        out_features: int,
        *,
        image_size: int | Sequence[int],
        context: int = 0,
        activation: type[nn.Module] = nn.SiLU,
        pool: bool = False,
    ) -> None:
        widths = [int(w) for w in widths]
        h, w = _grid(image_size, len(widths), "ConvEncoder")
        if pool:
            h = w = 1
        super().__init__(context, widths)
        channels = [int(in_channels), *widths]
        self.convs = nn.ModuleList(
            PeriodicConv2d(a, b, 3, stride=2) for a, b in zip(channels, widths, strict=False)
        )
        self.act = activation()
        self.head = nn.Linear(channels[-1] * h * w, int(out_features))
        self.out_features = int(out_features)
        self.pool = bool(pool)

    def features(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """The final feature map (N, widths[-1], H / 2^k, W / 2^k), before the head."""
        for i, conv in enumerate(self.convs):
            x = self.act(self._film(i, conv(x), c))
        return x

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """Encodes ``x`` (N, C, H, W) given the context ``c`` (N, D)."""
        h = self.features(x, c)
        return self.head(h.mean(dim=(-2, -1)) if self.pool else h.flatten(1))


class ConvDecoder(_Conditioned):
    r"""A vector (N, in_features) to a field (N, out_channels, H, W).

    A linear layer to a (widths[0], H / 2^k, W / 2^k) grid; per entry of ``widths``: a doubling
    of the grid (``"nearest"`` upsampling then a 3×3 :class:`PeriodicConv2d`, or a 2×2 stride-2
    transposed convolution, which has no border either), :class:`FiLM` by the context and the
    activation; finally a 3×3 periodic convolution to ``out_channels``, with no activation.

    Noise inputs (``noise=True``; Karras et al., 2019, *A style-based generator architecture for
    generative adversarial networks*, arXiv:1812.04948, sections 2 and 3.2): stage i (0-based) also
    takes one single-channel map :math:`n_i` of :math:`H_i \times W_i = 2^{i+1} H / 2^k \times
    2^{i+1} W / 2^k` pixels (:attr:`noise_shapes`), meant to be standard normal, and its output
    :math:`u_i` of the doubling and convolution becomes

    .. math:: h_i = \mathrm{act}\big(\mathrm{FiLM}(u_i + s_i \otimes n_i, c)\big),

    with :math:`s_i` one learned factor per channel, zero at initialization (so a new decoder
    gives the same field with or without noise). StyleGAN adds the noise to the convolution's
    output before its bias and activation, and applies the style after them; here the noise
    follows the convolution's bias (both are additions, so their order does not matter) and
    precedes FiLM and the activation: FiLM keeps its place in every stage, and the context
    scales the noise's effect as StyleGAN's style does. The maps give every pixel randomness
    of its own, which a field decoded from a vector alone lacks (small-scale power). The
    decoder draws nothing itself: the caller passes the maps, drawn from its own generator.

    Symmetry: everything after the linear layer (:meth:`from_grid`) commutes with periodic
    shifts: a shift by s of the small grid shifts the output field by :math:`2^k s`, with either
    upsampling (nearest neighbours and the 2×2 stride-2 transposed convolution both map a pixel
    to its own 2×2 block); with noise maps, when each map :math:`n_i` is shifted along by
    :math:`2^{i+1} s`. The linear layer itself has no symmetry.

    Args:
        in_features: input features.
        widths: output channels of each upsampling stage (k = len(widths) stages).
        out_channels: channels of the output field.
        image_size: H = W, or (H, W); powers of two, at least 2^k.
        context: context features D (0: unconditioned, ``forward(z)``).
        upsample: ``"nearest"`` or ``"transposed"``.
        activation: activation class after every hidden convolution.
        noise: take a noise map per upsampling stage (learned scales :attr:`noise_scales`).

    Example:
        >>> import torch
        >>> dec = ConvDecoder(6, (16, 8), 3, image_size=64, upsample="transposed")
        >>> dec(torch.randn(2, 6)).shape
        torch.Size([2, 3, 64, 64])
        >>> noisy = ConvDecoder(6, (16, 8), 3, image_size=64, noise=True)
        >>> noisy.noise_shapes, noisy.noise_features
        ([(32, 32), (64, 64)], 5120)
        >>> noisy(torch.randn(2, 6), noise=torch.randn(2, 5120)).shape
        torch.Size([2, 3, 64, 64])
    """

    def __init__(
        self,
        in_features: int,
        widths: Sequence[int],
        out_channels: int,
        *,
        image_size: int | Sequence[int],
        context: int = 0,
        upsample: str = "nearest",
        activation: type[nn.Module] = nn.SiLU,
        noise: bool = False,
    ) -> None:
        widths = [int(w) for w in widths]
        if not widths:
            raise ValueError("ConvDecoder needs at least one entry in widths")
        if upsample not in ("nearest", "transposed"):
            raise ValueError(f"upsample must be 'nearest' or 'transposed', got {upsample!r}")
        grid = _grid(image_size, len(widths), "ConvDecoder")
        super().__init__(context, widths)
        self.grid = grid
        self.linear = nn.Linear(int(in_features), widths[0] * self.grid[0] * self.grid[1])
        channels = [widths[0], *widths]
        self.ups = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), PeriodicConv2d(a, b, 3))
            if upsample == "nearest"
            else nn.ConvTranspose2d(a, b, 2, stride=2)
            for a, b in zip(channels, widths, strict=False)
        )
        self.act = activation()
        self.out = PeriodicConv2d(widths[-1], int(out_channels), 3)
        #: (H_i, W_i) of the noise map of each upsampling stage (empty without ``noise``)
        self.noise_shapes: list[tuple[int, int]] = (
            [(grid[0] << i, grid[1] << i) for i in range(1, len(widths) + 1)] if noise else []
        )
        #: the learned scale per channel of each stage's noise map (zeros at initialization)
        self.noise_scales = (
            nn.ParameterList(nn.Parameter(torch.zeros(w)) for w in widths) if noise else None
        )

    @property
    def noise_features(self) -> int:
        r"""Noise values per row, :math:`\sum_i H_i W_i` (0 without ``noise``)."""
        return sum(h * w for h, w in self.noise_shapes)

    def split_noise(self, noise: Tensor) -> list[Tensor]:
        """Flat noise rows (N, :attr:`noise_features`) -> the maps (N, H_i, W_i) per stage."""
        if self.noise_scales is None:
            raise ValueError("this ConvDecoder takes no noise (built with noise=False)")
        if noise.ndim != 2 or noise.shape[1] != self.noise_features:
            raise ValueError(f"noise must have shape (N, {self.noise_features}), "
                             f"got {tuple(noise.shape)}")  # fmt: skip
        parts = noise.split([h * w for h, w in self.noise_shapes], dim=1)
        return [n.unflatten(1, s) for n, s in zip(parts, self.noise_shapes, strict=True)]

    def forward(
        self, z: Tensor, c: Tensor | None = None, noise: Tensor | Sequence[Tensor] | None = None
    ) -> Tensor:
        """Decodes ``z`` (N, in_features) given the context ``c`` (N, D) and, with ``noise``,
        the noise maps (see :meth:`from_grid`)."""
        return self.from_grid(self.linear(z).unflatten(1, (-1, *self.grid)), c, noise)

    def from_grid(
        self, h: Tensor, c: Tensor | None = None, noise: Tensor | Sequence[Tensor] | None = None
    ) -> Tensor:
        """The stages after the linear layer: (N, widths[0], H / 2^k, W / 2^k) -> the field.

        ``noise``: flat rows (N, :attr:`noise_features`) or the maps (N, H_i, W_i) of every
        stage; None: none (the field of all-zero maps).
        """
        maps: Sequence[Tensor | None] = [None] * len(self.ups)
        if noise is not None:
            if self.noise_scales is None:
                raise ValueError("this ConvDecoder takes no noise (built with noise=False)")
            maps = self.split_noise(noise) if isinstance(noise, Tensor) else list(noise)
            shapes = [tuple(m.shape) for m in maps]
            expected = [(len(h), *s) for s in self.noise_shapes]
            if shapes != expected:
                raise ValueError(f"noise maps must have shapes {expected}, got {shapes}")
        for i, (up, n) in enumerate(zip(self.ups, maps, strict=True)):
            u = up(h)
            if n is not None and self.noise_scales is not None:
                # one map for all channels, a learned scale per channel
                u = u + (self.noise_scales[i][:, None, None] * n[:, None]).to(u.dtype)
            h = self.act(self._film(i, u, c))
        return self.out(h)
