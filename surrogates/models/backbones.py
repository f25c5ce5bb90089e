r"""The networks inside a :class:`~surrogates.models.VAE` and a :class:`~surrogates.models.GAN`,
chosen by the kind of data.

* **Vectors and calorimeter showers**: multilayer perceptrons on the concatenation
  :math:`[h, c]` of their input and the conditioning vector c (:class:`Joint`), and the MLP
  critic with minibatch standard deviation (:class:`Critic`).
* **Fields** (:class:`~surrogates.preprocessing.FieldPreprocessing`, chosen by
  :meth:`~surrogates.models.base.Surrogate.for_dataset` for ``nbody`` data, see
  :func:`is_field_data`): convolutional backbones on the periodic box (:mod:`surrogates.nn.conv`),
  as in the cosmological GANs of Rodriguez et al. (2018, arXiv:1801.09070) and Mustafa et al.
  (2019, *CosmoGAN*, arXiv:1706.02390), with circular padding because the box has no edges.
  The VAE's encoder is a :class:`~surrogates.nn.ConvEncoder` to the 2L numbers (mean,
  log-variance) of q(z | y, c); its decoder and the GAN's generator are a
  :class:`~surrogates.nn.ConvDecoder` from :math:`[z, c]` (widths in reverse order); the
  GAN's critic is :class:`FieldCritic`.

**Layout.** The nets of :mod:`~surrogates.models.vae` and :mod:`~surrogates.models.gan` work on
flat feature rows (N, F) whatever the data; for a field F = C·H·W in the row-major order of
(C, H, W), which the field backbones unflatten at their input and flatten at their output. The
sums of the ELBO over features, the gradient penalty's norm over a whole row and the validation
energy distance are then one code path for every kind of data.

**Channels.** A row of ``nbody`` slices, shape (n_slices, M, M), is one sample whose slices
are the channels (:class:`~surrogates.preprocessing.FieldPreprocessing` reads a 3-d sample as
(C, H, W)): the surrogate draws all slices of one box jointly given θ, so their correlations
(they cut one box) are modelled as the simulator makes them. A single map (M, M) is one
channel; a 3-d box (M, M, M) is read the same way, depth as channels, so it is periodic in the
two in-plane axes only. Rows with more axes (several redshifts) stay vectors (MLPs).

**Conditioning.** The standardized θ (c) modulates every convolution by FiLM (Perez et al.,
2018, arXiv:1709.07871); the decoder's / generator's first linear layer also sees c, and the
critic's head sees it beside its pooled features.

**Symmetry.** With k = ``len(conv_widths)``: every convolution is periodic, so the encoder's
and critic's feature maps commute with periodic shifts by multiples of :math:`2^k`, and the
decoder's stages after its first linear layer commute with every shift of their input grid
(:mod:`surrogates.nn.conv`). The field critic averages its last feature map over the grid
(``critic_pool``), so its score is exactly invariant under shifts of the field by multiples of
:math:`2^k`: a shifted box is as real as the original (the fields are statistically
homogeneous), and the critic cannot learn positions. The VAE's encoder keeps a linear head on
the whole grid (it encodes one particular field), and nothing maps a shift of z to a shift of
the field, so no symmetry is claimed for the encoder's output or for the generator as a whole.
The GAN generator's per-pixel noise maps (``pixel_noise``) shift along with its grid.

Example:
    >>> import torch
    >>> arch = {"latent": 8, "conv_widths": [4, 8], "upsample": "nearest",
    ...         "variance": "feature"}
    >>> enc, dec = vae_backbone((2, 16, 16), 2, arch, torch.nn.SiLU)
    >>> y, c = torch.randn(3, 2 * 16 * 16), torch.randn(3, 2)
    >>> enc(y, c).shape, dec(torch.randn(3, 8), c).shape
    (torch.Size([3, 16]), torch.Size([3, 512]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from simulators.errors import UserError

from ..nn import ConvDecoder, ConvEncoder, MinibatchStd, mlp
from ..preprocessing import Preprocessor, default_preprocessing

__all__ = [
    "CONV_SETTINGS",
    "FIELD_ROWS",
    "MLP_SETTINGS",
    "Critic",
    "FieldCapable",
    "FieldCritic",
    "FieldDecoder",
    "FieldEncoder",
    "Joint",
    "check_backbone_settings",
    "check_conv_settings",
    "gan_backbone",
    "is_field_data",
    "vae_backbone",
]

#: settings of the convolutional backbones (fields only)
CONV_SETTINGS = ("conv_widths", "upsample", "critic_pool")
#: settings of the MLP backbones (vectors and showers only)
MLP_SETTINGS = ("hidden", "critic_hidden")
#: rows per forward pass of a field model when none is given: the activations of one row of
#: 64×64 maps at 32 channels take 0.5 MB, and a pass of 10,000 rows (the vector default) 5 GB
FIELD_ROWS = 256


def is_field_data(meta: dict[str, Any], x_shape: Sequence[int]) -> bool:
    """Whether a VAE or GAN models these data as fields (C, H, W): ``nbody`` rows of shape
    (H, W) or (C, H, W) (see the module notes)."""
    return meta.get("simulator") == "nbody" and len(x_shape) in (2, 3)


def check_backbone_settings(arch: dict[str, Any], defaults: dict[str, Any], kind: str) -> None:
    """Refuses settings of the other backbone: a conv setting (:data:`CONV_SETTINGS`) changed
    from its default for vectors or showers, an MLP one (:data:`MLP_SETTINGS`) for fields.

    Args:
        arch: the settings, completed with the kind's defaults (JSON-ready), before the
            family fills in its derived ones (``latent``, ``critic_hidden``).
        defaults: those of the data kind (``Arch.for_data(kind).to_dict()``).
        kind: the data kind.
    """
    other = MLP_SETTINGS if kind == "fields" else CONV_SETTINGS
    wrong = [k for k in other if k in arch and arch[k] != defaults.get(k)]
    if wrong:
        applies = "vectors and showers" if kind == "fields" else "fields (nbody data)"
        raise UserError(f"{', '.join(wrong)} apply to {applies} only; these data are {kind}")


def check_conv_settings(conv_widths: Sequence[int], upsample: str) -> None:
    """The conv settings' own checks, for any family's architecture dataclass."""
    if not conv_widths or min(conv_widths) < 1:
        raise UserError(f"conv_widths must be positive (and at least one), "
                        f"got {list(conv_widths)}")  # fmt: skip
    if upsample not in ("nearest", "transposed"):
        raise UserError(f"upsample must be 'nearest' or 'transposed', got {upsample!r}")


class FieldCapable:
    """Mixin of a :class:`~surrogates.models.base.Surrogate` family with both backbones: the
    field preprocessing for ``nbody`` data, the other backbone's settings refused, and
    :data:`FIELD_ROWS` rows per pass for fields. Listed before ``Surrogate`` in the bases."""

    @classmethod
    def default_preprocessing(cls, meta: dict[str, Any], x: Any) -> Preprocessor:
        """The base class's choice, with fields for ``nbody`` data (:func:`is_field_data`)."""
        shape = x.shape[1:]
        return default_preprocessing(meta, shape, spatial=is_field_data(meta, shape))

    def _check_arch(self, arch: dict[str, Any]) -> dict[str, Any]:
        a = super()._check_arch(arch)  # type: ignore[misc]
        kind = self.data_kind  # type: ignore[attr-defined]
        check_backbone_settings(a, self.Arch.for_data(kind).to_dict(), kind)  # type: ignore[attr-defined]
        return a

    def default_batch_size(self) -> int:
        if self.data_kind == "fields":  # type: ignore[attr-defined]
            return FIELD_ROWS
        return super().default_batch_size()  # type: ignore[misc]


def _check_field(shape: Sequence[int], widths: Sequence[int]) -> tuple[int, int, int]:
    c, h, w = (int(s) for s in shape)
    k = len(widths)
    if not widths or any(s < 2**k or s & (s - 1) for s in (h, w)):
        raise UserError(f"the convolutional backbone needs field sides that are powers of two, "
                        f"at least 2**len(conv_widths) = {2**k}, got {h}×{w}: change the "
                        f"simulator's output_mesh or conv_widths, or pass "
                        f"preprocessing=Standardize() for an MLP")  # fmt: skip
    return c, h, w


class Joint(nn.Sequential):
    """A sequential network on the concatenation :math:`[h, c]` of its two arguments (an
    :func:`~surrogates.nn.mlp` built as ``Joint(*mlp(...))`` keeps its state-dict keys)."""

    def forward(self, h: Tensor, c: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(torch.cat([h, c], dim=-1))


class FieldEncoder(nn.Module):
    """Flat field rows (N, C·H·W) and c (N, D) to (N, out_features): a FiLM-conditioned
    :class:`~surrogates.nn.ConvEncoder`.

    Args:
        shape: (C, H, W) of a row.
        widths: channels of the stride-2 stages.
        out_features: output features.
        context: D.
        activation: activation class.
        pool: average the last feature map over the grid (shift invariance; see the notes).
    """

    def __init__(
        self,
        shape: Sequence[int],
        widths: Sequence[int],
        out_features: int,
        context: int,
        activation: type[nn.Module],
        pool: bool = False,
    ):
        super().__init__()
        self.shape = _check_field(shape, widths)
        self.conv = ConvEncoder(self.shape[0], widths, out_features, image_size=self.shape[1:],
                                context=context, activation=activation, pool=pool)  # fmt: skip

    def forward(self, y: Tensor, c: Tensor) -> Tensor:
        return self.conv(y.unflatten(1, self.shape), c)


class FieldDecoder(nn.Module):
    """:math:`[z, c]` (N, L + D) to flat field rows (N, C·H·W): a FiLM-conditioned
    :class:`~surrogates.nn.ConvDecoder`.

    Args:
        in_features: L.
        shape: (C, H, W) of the output.
        widths: channels of the upsampling stages.
        context: D.
        activation: activation class.
        upsample: ``"nearest"`` or ``"transposed"``.
        noise: the decoder takes per-pixel noise maps, ``forward(z, c, noise)`` with flat
            noise rows (N, :attr:`noise_features`) (:class:`~surrogates.nn.ConvDecoder`).
    """

    def __init__(
        self,
        in_features: int,
        shape: Sequence[int],
        widths: Sequence[int],
        context: int,
        activation: type[nn.Module],
        upsample: str,
        noise: bool = False,
    ):
        super().__init__()
        c, h, w = _check_field(shape, widths)
        self.conv = ConvDecoder(int(in_features) + context, widths, c, image_size=(h, w),
                                context=context, upsample=upsample, activation=activation,
                                noise=noise)  # fmt: skip

    @property
    def noise_features(self) -> int:
        """Noise values per row (0 without ``noise``)."""
        return self.conv.noise_features

    def forward(self, z: Tensor, c: Tensor, noise: Tensor | None = None) -> Tensor:
        return self.conv(torch.cat([z, c], dim=-1), c, noise).flatten(1)


class Critic(nn.Module):
    """The MLP critic D(y, c): an MLP whose last hidden layer also sees the minibatch standard
    deviation of the layer before it.

    Args:
        features, context: input dimensions.
        hidden: hidden widths (at least two).
        activation: the activation class.
        group: rows per minibatch-std group (0: off).
        out_bias: a bias on the score. A Wasserstein critic has none: its loss and the gradient
            penalty do not depend on a constant offset, so the bias would never be trained.
    """

    def __init__(
        self,
        features: int,
        context: int,
        hidden: Sequence[int],
        activation: type[nn.Module],
        group: int,
        out_bias: bool = True,
    ):
        super().__init__()
        *body, penultimate, last = (int(h) for h in hidden)
        self.body = nn.Sequential(
            mlp(features + context, body, penultimate, activation=activation), activation()
        )
        self.mbstd = MinibatchStd(group) if group else None
        self.head = nn.Sequential(
            nn.Linear(penultimate + (1 if group else 0), last),
            activation(),
            nn.Linear(last, 1, bias=out_bias),
        )

    def forward(self, y: Tensor, c: Tensor) -> Tensor:
        h = self.body(torch.cat([y, c], dim=-1))
        if self.mbstd is not None:
            h = self.mbstd(h)
        return self.head(h).squeeze(-1)


class FieldCritic(nn.Module):
    """The field critic D(y, c): a FiLM-conditioned conv encoder to ``widths[-1]`` features
    (mean over the grid with ``pool``), the activation, the minibatch standard deviation, then
    a head of one hidden layer on :math:`[h, s, c]`.

    Args:
        shape: (C, H, W) of a row.
        widths: channels of the stride-2 stages.
        context: D.
        activation: activation class.
        group: rows per minibatch-std group (0: off).
        out_bias: a bias on the score (see :class:`Critic`).
        pool: average over the grid (shift-invariant score, see the module notes).
    """

    def __init__(
        self,
        shape: Sequence[int],
        widths: Sequence[int],
        context: int,
        activation: type[nn.Module],
        group: int,
        out_bias: bool = True,
        pool: bool = True,
    ):
        super().__init__()
        width = int(widths[-1])
        self.encoder = FieldEncoder(shape, widths, width, context, activation, pool=pool)
        self.act = activation()
        self.mbstd = MinibatchStd(group) if group else None
        self.head = nn.Sequential(
            nn.Linear(width + (1 if group else 0) + context, width),
            activation(),
            nn.Linear(width, 1, bias=out_bias),
        )

    def forward(self, y: Tensor, c: Tensor) -> Tensor:
        h = self.act(self.encoder(y, c))
        if self.mbstd is not None:
            h = self.mbstd(h)
        return self.head(torch.cat([h, c], dim=-1)).squeeze(-1)


def vae_backbone(
    shape: Sequence[int], context: int, arch: dict[str, Any], activation: type[nn.Module]
) -> tuple[nn.Module, nn.Module]:
    """The VAE's (encoder, decoder): ``encoder(y, c)`` -> (N, 2L), ``decoder(z, c)`` -> (N, F),
    (N, 2F) for ``variance="sample"`` or (N, 3KF) for K ``components``; convolutional for a
    field shape (C, H, W).

    Args:
        shape: the preprocessing's feature shape, (F,) or (C, H, W).
        context: conditioning features D.
        arch: completed :class:`~surrogates.models.vae.VAEArch` settings.
        activation: activation class.
    """
    latent, outs = int(arch["latent"]), 2 if arch["variance"] == "sample" else 1
    if int(arch.get("components", 1)) > 1:
        outs = 3 * int(arch["components"])
    if len(shape) == 3:
        widths = [int(w) for w in arch["conv_widths"]]
        c, h, w = _check_field(shape, widths)
        enc = FieldEncoder(shape, widths, 2 * latent, context, activation)
        dec = FieldDecoder(latent, (outs * c, h, w), widths[::-1], context, activation,
                           arch["upsample"])  # fmt: skip
        return enc, dec
    features, hidden = math.prod(shape), tuple(arch["hidden"])
    enc = Joint(*mlp(features + context, hidden, 2 * latent, activation=activation))
    dec = Joint(*mlp(latent + context, hidden[::-1], outs * features, activation=activation))
    return enc, dec


def gan_backbone(
    shape: Sequence[int], context: int, arch: dict[str, Any], activation: type[nn.Module]
) -> tuple[nn.Module, nn.Module]:
    """The GAN's (generator, critic): ``generator(z, c)`` -> (N, F) ((N, 2F), mean and
    raw scale, with ``feature_noise``; ``generator(z, c, noise)`` with ``pixel_noise``, see
    :class:`FieldDecoder`), ``critic(y, c)`` -> (N,); convolutional for a field shape (C, H, W).

    Args:
        shape: the preprocessing's feature shape, (F,) or (C, H, W).
        context: conditioning features D.
        arch: completed :class:`~surrogates.models.gan.GANArch` settings.
        activation: activation class.
    """
    latent, group = int(arch["latent"]), int(arch["minibatch_std"])
    out_bias = arch["loss"] != "wgan"
    if len(shape) == 3:
        widths = [int(w) for w in arch["conv_widths"]]
        # with feature_noise the channels are doubled: a mean and a raw scale per pixel
        out = (2 * shape[0], *shape[1:]) if arch.get("feature_noise") else shape
        gen = FieldDecoder(latent, out, widths[::-1], context, activation, arch["upsample"],
                           noise=bool(arch.get("pixel_noise")))  # fmt: skip
        critic = FieldCritic(shape, widths, context, activation, group, out_bias,
                             pool=bool(arch["critic_pool"]))  # fmt: skip
        return gen, critic
    features = math.prod(shape)
    outs = 2 * features if arch.get("feature_noise") else features
    gen = Joint(*mlp(latent + context, tuple(arch["hidden"]), outs, activation=activation))
    critic = Critic(features, context, arch["critic_hidden"], activation, group, out_bias)
    return gen, critic
