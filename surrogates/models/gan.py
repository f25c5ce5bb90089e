r"""Conditional generative adversarial networks (:class:`GAN`).

A generator :math:`G(z, c)`, :math:`z \sim \mathcal{N}(0, I)`, maps latents to the
preprocessed features y of x given the conditioning vector c of θ (for showers the standardized
log E_inc, see :mod:`surrogates.preprocessing`); a critic :math:`D(y, c)` scores rows. Both see
c concatenated to their input. For fields (``nbody`` data) both are convolutional on the periodic
box and FiLM-conditioned on c, and the critic's score is invariant under periodic shifts by
multiples of :math:`2^k` (:mod:`~surrogates.models.backbones`: slices as channels, flat rows).

**Losses.** By default (``loss="wgan"``) the Wasserstein GAN with gradient penalty (Gulrajani
et al., 2017, arXiv:1704.00028):

.. math::
    L_D = \mathbb{E}[D(G(z, c), c)] - \mathbb{E}[D(y, c)]
          + \lambda\, \mathbb{E}\big[(\lVert \nabla_{\hat y} D(\hat y, c) \rVert_2 - 1)^2\big],
    \qquad L_G = -\mathbb{E}[D(G(z, c), c)],

with :math:`\hat y` uniform on segments between real and generated rows, λ = 10
(:func:`~surrogates.nn.adversarial.gradient_penalty`) and Adam with β = (0.5, 0.9).
``loss="ns"`` is the non-saturating GAN (Goodfellow et al., 2014, arXiv:1406.2661):
:math:`L_D = \mathbb{E}[\mathrm{softplus}(-D(y))] + \mathbb{E}[\mathrm{softplus}(D(G(z)))]`,
:math:`L_G = \mathbb{E}[\mathrm{softplus}(-D(G(z)))]`, with the same penalty (set
``gp_weight=0`` to drop it). Every training step is one critic update on a fresh batch; every
``n_critic``-th step is followed by one generator update (the WGAN-GP schedule: ``n_critic``
critic updates per generator update). The counter of critic steps is a buffer of the model, so
a resumed run continues the schedule exactly. On low-dimensional toy data these defaults learn
slowly; Gulrajani et al. used λ = 0.1 and ReLU for their 2-d experiments, and so does the
ring-of-Gaussians test (``tests/test_gan.py``, with ``n_critic=1``).

**Against mode collapse** the critic appends the minibatch standard deviation (Karras et al.,
2018, arXiv:1710.10196; :class:`~surrogates.nn.adversarial.MinibatchStd`) before its last hidden
layer: a batch of near-identical generated rows is then easy to tell from a real batch.
``minibatch_std=0`` turns it off (``tests/test_gan.py`` measures the mode masses of a ring of 8
Gaussians with and without it).

**Showers.** Generated in the feature space of
:class:`~surrogates.preprocessing.ShowerPreprocessing`, a shower automatically has non-negative
voxels and layers that sum to their energies after the inverse. The energy-consistency term of
CaloGAN (Paganini et al., 2018, arXiv:1712.10321) penalizes :math:`|\sum_k E_k - E_\text{inc}|`
per shower; applied literally it pulls every shower's response :math:`r = \sum_k E_k /
E_\text{inc}` to one value and shrinks the energy resolution, which the calorimeter analysis
measures. Here the generator loss gets instead ``energy_weight`` times the 1-d Wasserstein
distance (:func:`~surrogates.nn.adversarial.wasserstein_1d`) between the generated and the real
feature 0 of the batch, generated at the real rows' conditions. Feature 0 is the standardized
logit of :math:`r / s` (a monotone map of the response), so the term vanishes when the
response distribution is right and is computed in feature space without the inverse.
``metrics.csv`` gets ``loss_critic``, ``loss_gen``, ``gp`` (and ``energy`` for showers);
``train_loss`` is the critic's whole objective :math:`L_D`.

**Validation** cannot use the critic's loss: it measures the critic's current opinion, not the
samples. :meth:`GANNet.validation_metrics` returns instead ``energy_distance``
(:func:`~surrogates.nn.adversarial.energy_distance`) between generated and real rows
:math:`(y, c)` of the validation batch, in blocks of :data:`VAL_ROWS` rows, with the trainer's
fixed validation generator: a two-sample statistic with no tuning parameter, zero in
expectation exactly when the conditional distributions agree, and comparable across
validations. :attr:`GAN.TRAIN_DEFAULTS` monitor it (``monitor="val_energy_distance"``), keep the
best-scoring weights and do not stop early (``patience=None``): the statistic is noisy and a GAN's
quality is not monotone in training time. Fields are instead judged by ``power_error``
(:func:`~surrogates.nn.adversarial.power_spectrum_error` of the slices, in data space): in
pixel space the energy distance hardly sees small scales and kept an early, smooth generator
(``docs/decisions/009-field-gan-training-budget.md``).

**Noise per feature.** A generator maps L latent dimensions to F features, so its samples lie
on an L-dimensional surface. Data with independent noise in every feature (the energy of each
voxel fluctuates on its own, and the shower preprocessing dequantizes every empty voxel) fill
all F dimensions, and a critic tells the two apart however long the generator trains. With
``feature_noise`` the generator's last layer gives a mean μ(z, c) and a raw scale s(z, c) per
feature, and a feature is :math:`\mu + \mathrm{softplus}(s)\,\varepsilon` with its own
:math:`\varepsilon \sim \mathcal{N}(0, 1)`: the noise inputs of StyleGAN (Karras et al., 2019,
arXiv:1812.04948) placed at the output of an MLP. The latent z then carries what features share.
For fields, where every pixel carries shot noise of its own, ``feature_noise`` is the default:
the generator's output channels double into a mean map and a raw-scale map (decision 009: it
raised the small-scale power ten- to a hundredfold). StyleGAN's noise inputs inside the
generator (``pixel_noise``, :class:`~surrogates.nn.ConvDecoder`; one map per upsampling stage,
scaled per channel from zero) are the alternative; their scales stayed small on the N-body
slices. Either noise travels as columns of the latent row after z (:meth:`GANNet.draw_latent`),
drawn from the same generator and truncated alike, so a seed fixes a sample.

**Empty voxels.** A shower voxel below the readout threshold is empty, and in a given shower
many are. With ``floor`` (showers) the preprocessing keeps empty voxels exact (``zero_band=0``:
a GAN needs no density, so nothing is dequantized), which puts each at the smallest value its
feature can take (:meth:`~surrogates.preprocessing.ShowerPreprocessing.empty_value`), and the
generator's voxel features are bounded below by that value: :math:`\max(y, y_\text{empty})`,
the rectified output with which CaloGAN produces exact zeros (Paganini et al., 2018). With the
noise per feature a voxel is then empty with probability
:math:`\Phi((y_\text{empty} - \mu) / \sigma)`, drawn independently for each voxel given z.
Both are the shower defaults (``docs/decisions/013-shower-gan-noise-and-floor.md``).

**Standardized per energy.** A voxel's share of its layer varies between showers by ~66 % of
its spread over the spectrum at 256 MeV and by ~4 % at ≥ 1 TeV (dataset-1 photons), so the noise
per feature of globally standardized voxels would have to shrink twenty-fold with the energy.
For showers :meth:`GAN.default_preprocessing` standardizes the voxel features per incident
energy (``ShowerPreprocessing(voxel_knots=True)``), and the floor depends on the energy too
(``docs/decisions/013-shower-gan-noise-and-floor.md``).

**Averaging and truncation.** ``ema_modules()`` is the generator only, so the trainer's moving
average (``TrainConfig.ema``, 0.999 by default here, per critic step) averages the generator's
weights (Yazıcı et al., 2019, arXiv:1806.04498) and leaves the critic live. Sampling may draw
latents truncated to :math:`|z_j| \le t` (``truncation``; Brock et al., 2019, arXiv:1809.11096),
which trades diversity for typicality.

Example:
    >>> import numpy as np
    >>> from surrogates.models import GAN
    >>> rng = np.random.default_rng(0)
    >>> theta = rng.uniform(-1, 1, (512, 1)).astype(np.float32)
    >>> x = (theta + 0.1 * rng.standard_normal((512, 2))).astype(np.float32)
    >>> model = GAN.for_dataset((theta, x), hidden=[16, 16], device="cpu")
    >>> model = model.fit((theta, x), max_epochs=1, progress=False)
    >>> model.sample(theta[:3], truncation=1.0).shape
    (3, 2)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn.functional import softplus

from simulators.errors import UserError

from ..nn.adversarial import (
    LeakyReLU02,
    energy_distance,
    gradient_penalty,
    power_spectrum_error,
    truncated_normal,
    wasserstein_1d,
)
from ..preprocessing import Preprocessor, ShowerPreprocessing
from .arch import ArchConfig
from .backbones import Critic, FieldCapable, check_conv_settings, gan_backbone
from .base import Surrogate
from .flows import ACTIVATIONS as _FLOW_ACTIVATIONS
from .optim import adam

if TYPE_CHECKING:
    from ..training import StepContext, TrainConfig

__all__ = ["ACTIVATIONS", "GAN", "LOSSES", "VAL_ROWS", "Critic", "GANArch", "GANNet"]

#: the losses of :class:`GANArch`
LOSSES = ("wgan", "ns")
#: activations of the generator and critic
ACTIVATIONS: dict[str, type[nn.Module]] = {"leaky_relu": LeakyReLU02, **_FLOW_ACTIVATIONS}
#: rows per block of the validation energy distance
VAL_ROWS = 1024


@dataclass(frozen=True)
class GANArch(ArchConfig):
    """Architecture settings of a :class:`GAN` (keyword arguments of :meth:`GAN.for_dataset`,
    ``--arch KEY=VALUE`` on the command line).

    Attributes:
        loss: ``"wgan"`` (WGAN-GP) or ``"ns"`` (non-saturating); see the module notes.
        latent: latent dimensions (None: the number of features, between 8 and 128).
        hidden: the generator's hidden widths. Vectors and showers.
        critic_hidden: the critic's hidden widths, at least two (None: ``hidden``, or
            ``(hidden[0], hidden[0])`` for a single width). Vectors and showers.
        conv_widths: channels of the critic's stride-2 convolution stages; the generator's
            upsampling stages use them in reverse order. Fields only.
        upsample: the generator's doubling, ``"nearest"`` (then a 3×3 periodic convolution) or
            ``"transposed"`` (a 2×2 stride-2 transposed convolution). Fields only.
        critic_pool: the field critic averages its last feature map over the grid (a
            shift-invariant score) rather than reading it through a linear layer. Fields only.
        activation: a key of :data:`ACTIVATIONS`.
        n_critic: critic updates per generator update.
        gp_weight: λ of the gradient penalty (0: none).
        minibatch_std: rows per group of the critic's minibatch standard deviation (0: off).
        energy_weight: weight of the response term for showers (must be 0 for other data).
        betas: Adam's (β1, β2) for both networks.
        truncation: default latent truncation bound t of :meth:`GAN.sample` (None: none).
        feature_noise: the generator draws every feature with its own Gaussian noise around its
            output (see the module notes); for fields a mean and a scale map per channel.
        pixel_noise: the generator adds a per-pixel Gaussian noise map, with a learned scale per
            channel, after each upsampling stage (see the module notes). Fields only.
        floor: the generated voxel features are bounded below by an empty voxel's (see the
            module notes). Showers only.
    """

    loss: str = "wgan"
    latent: int | None = None
    hidden: tuple[int, ...] = (128, 128, 128)
    critic_hidden: tuple[int, ...] | None = None
    conv_widths: tuple[int, ...] = (32, 64, 128)
    upsample: str = "nearest"
    critic_pool: bool = True
    activation: str = "leaky_relu"
    n_critic: int = 5
    gp_weight: float = 10.0
    minibatch_std: int = 4
    energy_weight: float = 0.0
    betas: tuple[float, ...] = (0.5, 0.9)
    truncation: float | None = None
    feature_noise: bool = False
    pixel_noise: bool = False
    floor: bool = False

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise UserError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.latent is not None and self.latent < 1:
            raise UserError(f"latent must be positive, got {self.latent}")
        widths = (*self.hidden, *(self.critic_hidden or ()))
        if not self.hidden or min(widths) < 1:
            raise UserError("hidden widths must be positive (and at least one)")
        if self.critic_hidden is not None and len(self.critic_hidden) < 2:
            raise UserError("critic_hidden needs at least two widths")
        check_conv_settings(self.conv_widths, self.upsample)
        if self.activation not in ACTIVATIONS:
            raise UserError(f"activation must be one of {', '.join(ACTIVATIONS)}, "
                            f"got {self.activation!r}")  # fmt: skip
        if self.n_critic < 1:
            raise UserError(f"n_critic must be at least 1, got {self.n_critic}")
        if self.gp_weight < 0 or self.energy_weight < 0:
            raise UserError("gp_weight and energy_weight must be 0 or more")
        if self.minibatch_std < 0 or self.minibatch_std == 1:
            raise UserError(f"minibatch_std is a group size >= 2, or 0 (off), "
                            f"got {self.minibatch_std}")  # fmt: skip
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise UserError(f"betas must be two numbers in [0, 1), got {list(self.betas)}")
        if self.truncation is not None and not self.truncation > 0:
            raise UserError(f"truncation must be positive or None, got {self.truncation}")

    @classmethod
    def for_data(cls, kind: str) -> GANArch:
        """Showers: 64 latent dimensions, widths (512, 512, 512), the response term with
        weight 1, noise per feature and the floor (``docs/decisions/013-shower-gan-noise-and-
        floor.md``); fields: 128 latent dimensions, conv widths (32, 64, 128) and noise per
        pixel (decision 009); other data: the class defaults."""
        if kind == "showers":
            return cls(latent=64, hidden=(512, 512, 512), energy_weight=1.0, feature_noise=True,
                       floor=True)  # fmt: skip
        if kind == "fields":
            return cls(latent=128, feature_noise=True)
        return cls()


class GANNet(nn.Module):
    """The torch module of a :class:`GAN`: generator, critic and the critic-step counter.

    Features are flat rows (N, features) whatever the data (a field's in (C, H, W) order).

    Args:
        features: feature dimensions per row.
        context: conditioning dimensions per row.
        arch: the completed settings of :class:`GANArch`.
        shape: the preprocessing's feature shape: (features,) (default) for MLPs, (C, H, W)
            for the convolutional backbone (:func:`~surrogates.models.backbones.gan_backbone`).
        floor: per feature, the smallest value the generator may give, or a map of the
            conditions' first column (N,) to it per row (N, features) (None: none).
    """

    def __init__(
        self,
        features: int,
        context: int,
        arch: dict[str, Any],
        shape: Sequence[int] | None = None,
        floor: Tensor | Callable[[Tensor], Tensor] | None = None,
    ):
        super().__init__()
        act = ACTIVATIONS[arch["activation"]]
        self.features, self.latent = features, int(arch["latent"])
        self.loss_kind, self.n_critic = arch["loss"], int(arch["n_critic"])
        self.gp_weight, self.energy_weight = float(arch["gp_weight"]), float(arch["energy_weight"])
        self.betas = (float(arch["betas"][0]), float(arch["betas"][1]))
        #: latent truncation bound used by :meth:`sample_features` (None: none)
        self.truncation: float | None = arch["truncation"]
        self.feature_noise = bool(arch.get("feature_noise", False))
        self.pixel_noise = bool(arch.get("pixel_noise", False))
        self.generator, self.critic = gan_backbone(shape or (features,), context, arch, act)
        #: noise columns after the latent in a row of :meth:`draw_latent`
        self.noise_features = features if self.feature_noise else 0
        if self.pixel_noise:
            self.noise_features = int(self.generator.noise_features)
        #: critic updates taken (the generator's schedule), saved with the weights
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        #: the floor of the generated features (recomputed from the preprocessing, not saved)
        fixed = floor if isinstance(floor, Tensor) else None
        self.register_buffer("floor", None if fixed is None else fixed.float(), persistent=False)
        self.floor_of = None if isinstance(floor, Tensor) else floor
        self.pre: Any = None  # the GAN's preprocessor, used by the training step
        self.field_shape = tuple(shape) if shape and len(shape) == 3 else None  # (C, H, W)

    def generate(self, z: Tensor, c: Tensor) -> Tensor:
        r"""G(z, c): features (N, features) in z's dtype; with ``feature_noise`` the last
        ``features`` columns of z are the noise ε of :math:`\mu + \mathrm{softplus}(s) \odot
        \varepsilon`, with ``pixel_noise`` the field generator's flat noise maps."""
        if self.pixel_noise:
            y = self.generator(z[:, : self.latent], c, z[:, self.latent :]).to(z.dtype)
        elif not self.feature_noise:
            y = self.generator(z, c).to(z.dtype)
        else:
            z, eps = z[:, : self.latent], z[:, self.latent :]
            mean, raw = self.generator(z, c).to(eps.dtype).chunk(2, dim=-1)
            y = mean + softplus(raw) * eps
        if self.floor_of is not None:
            return torch.maximum(y, self.floor_of(c[:, 0]).to(y))
        return y if self.floor is None else torch.maximum(y, self.floor.to(y.dtype))

    def draw_latent(
        self, n: int, c: Tensor, generator: torch.Generator | None, truncation: float | None = None
    ) -> Tensor:
        """n standard-normal latents (truncated to ±``truncation``), drawn on the CPU; with
        ``feature_noise`` each row also holds the noise of every feature, with ``pixel_noise``
        the noise maps of every upsampling stage (:attr:`noise_features` columns, truncated
        alike)."""
        shape = (n, self.latent + self.noise_features)
        if truncation is None or math.isinf(truncation):
            z = torch.randn(shape, generator=generator, dtype=c.dtype)
        else:
            z = truncated_normal(shape, truncation, generator=generator, dtype=c.dtype)
        return z.to(c.device)

    def _features(self, batch: Sequence[Tensor], generator: torch.Generator | None) -> Any:
        theta, x = batch[0], batch[1]
        y, _ = self.pre.forward(x, theta, generator=generator)
        return y.detach().flatten(1), self.pre.condition(theta).to(y.dtype)

    def critic_loss(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        """:math:`L_D` without the penalty, from the critic's scores of real and fake rows."""
        if self.loss_kind == "ns":
            return softplus(-d_real).mean() + softplus(d_fake).mean()
        return d_fake.mean() - d_real.mean()

    def generator_loss(self, d_fake: Tensor) -> Tensor:
        """:math:`L_G` from the critic's scores of generated rows."""
        return softplus(-d_fake).mean() if self.loss_kind == "ns" else -d_fake.mean()

    # ------------------------------------------------------------------ training protocol
    def ema_modules(self) -> list[nn.Module]:
        """The generator: the moving average covers it alone."""
        return [self.generator]

    def configure_optimizers(self, config: TrainConfig) -> list[torch.optim.Optimizer]:
        """Adam for the critic, then for the generator, with :attr:`GANArch.betas`."""
        return [
            adam(self.critic.parameters(), config, betas=self.betas),
            adam(self.generator.parameters(), config, betas=self.betas),
        ]

    def train_step(self, batch: Sequence[Tensor], ctx: StepContext) -> None:
        """A critic update, and every ``n_critic``-th step a generator update (see the notes)."""
        opt_d, opt_g = ctx.optimizers
        g = ctx.generator
        with torch.no_grad():
            y, c = self._features(batch, g)
        with ctx.autocast():
            with torch.no_grad():
                fake = self.generate(self.draw_latent(len(c), c, g), c)
            # two passes: a minibatch-std group must hold real or generated rows only
            loss_d = self.critic_loss(self.critic(y, c).float(), self.critic(fake, c).float())
            gp = torch.zeros((), device=y.device)
            if self.gp_weight > 0:
                gp = gradient_penalty(self.critic, y, fake, c, generator=g).float()
            total = loss_d + self.gp_weight * gp
        if ctx.backward(total, opt_d):
            ctx.step(opt_d)
        self.steps += 1
        ctx.log_dict({"train_loss": total.detach(), "loss_critic": loss_d.detach(),
                      "gp": gp.detach()})  # fmt: skip
        if int(self.steps) % self.n_critic:
            return
        self.critic.requires_grad_(False)  # the generator's step needs no critic gradients
        try:
            with ctx.autocast():
                fake = self.generate(self.draw_latent(len(c), c, g), c)
                loss_g = self.generator_loss(self.critic(fake, c).float())
                total_g = loss_g
                if self.energy_weight > 0:
                    energy = wasserstein_1d(fake[:, 0].float(), y[:, 0].float())
                    total_g = loss_g + self.energy_weight * energy
                    ctx.log("energy", energy.detach())
            if ctx.backward(total_g, opt_g):
                ctx.step(opt_g)
        finally:
            self.critic.requires_grad_(True)
        ctx.log("loss_gen", loss_g.detach())

    def validation_metrics(
        self, batch: Sequence[Tensor], *, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """``energy_distance`` between generated and real (y, c) rows of ``batch`` (the mean
        over blocks of :data:`VAL_ROWS` rows; a last block of one row is left out)."""
        y, c = self._features(batch, generator)
        fake = self.generate(self.draw_latent(len(c), c, generator), c)
        real, gen = torch.cat([y, c], dim=-1), torch.cat([fake, c], dim=-1)
        total, rows = torch.zeros((), dtype=torch.float64, device=y.device), 0
        for s in range(0, len(y), VAL_ROWS):
            n = len(y[s : s + VAL_ROWS])
            if n >= 2:
                total = total + n * energy_distance(gen[s : s + n], real[s : s + n])
                rows += n
        out = {"energy_distance": total / max(rows, 1)}
        if self.field_shape is not None:  # the mean spectra of all slices, in data space
            slices = [f.reshape(-1, *self.field_shape[1:])
                      for f in (batch[1], self.pre.inverse(fake, batch[0]))]  # fmt: skip
            out["power_error"] = power_spectrum_error(*slices)
        return out

    def sample_features(self, c: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One feature vector per row of c (latents truncated at :attr:`truncation`)."""
        return self.generate(self.draw_latent(len(c), c, generator, self.truncation), c)


class GAN(FieldCapable, Surrogate):
    """A conditional GAN surrogate p(x | θ) (see the module notes).

    Architecture settings are the fields of :class:`GANArch`; unset ones take
    :meth:`GANArch.for_data` of the data's kind.
    """

    model_type: ClassVar[str] = "gan"
    Arch: ClassVar[type[GANArch]] = GANArch
    #: training settings of this family that differ from
    #: :class:`~surrogates.training.TrainConfig`'s: Adam at 1e-4 (Gulrajani et al.), the
    #: validation energy distance as the monitored quantity, no early stopping, and a moving
    #: average of the generator (see the module notes). Explicit settings take precedence.
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "lr": 1e-4,
        "monitor": "val_energy_distance",
        "mode": "min",
        "patience": None,
        "ema": 0.999,
    }

    def train_defaults(self) -> dict[str, Any]:
        """:attr:`TRAIN_DEFAULTS`; for fields the monitored quantity is ``val_power_error``
        (see the module notes)."""
        if self.data_kind == "fields":
            return {**self.TRAIN_DEFAULTS, "monitor": "val_power_error"}
        return dict(self.TRAIN_DEFAULTS)

    @classmethod
    def default_preprocessing(cls, meta: dict[str, Any], x: Any) -> Preprocessor:
        """The data's default (:meth:`Surrogate.default_preprocessing`); for showers with the
        voxel features standardized per incident energy (see the module notes)."""
        pre = super().default_preprocessing(meta, x)
        if isinstance(pre, ShowerPreprocessing):
            pre.voxel_knots = True
        return pre

    def _check_arch(self, arch: dict[str, Any]) -> dict[str, Any]:
        a = super()._check_arch(arch)
        if a["latent"] is None:
            a["latent"] = max(8, min(int(self.pre.features), 128))
        if a["critic_hidden"] is None and self.data_kind != "fields":
            h = a["hidden"]
            a["critic_hidden"] = list(h) if len(h) >= 2 else [h[0], h[0]]
        if a["floor"] and self.data_kind != "showers":
            raise UserError("floor applies to calorimeter showers only")
        if a["pixel_noise"] and self.data_kind != "fields":
            raise UserError("pixel_noise applies to fields (nbody data) only")
        if a["pixel_noise"] and a["feature_noise"]:  # feature_noise: the fields' default
            raise UserError("pixel_noise needs feature_noise=false (on by default for fields)")
        if a["energy_weight"] > 0 and self.data_kind != "showers":
            raise UserError("energy_weight applies to calorimeter showers only; set it to 0")
        return a

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GAN:
        # configs saved before these settings existed had neither
        arch = {"feature_noise": False, "floor": False, "pixel_noise": False, **config["arch"]}
        return super().from_config({**config, "arch": arch})

    def _build(self) -> nn.Module:
        floor = None
        if self.arch.get("floor"):
            # real empty voxels exactly at the floor: no dequantization (a GAN has no density)
            self.pre.zero_band = 0.0
            floor = self.pre.empty_value() if not self.pre.voxel_knots else self.pre.empty_value
        return GANNet(self.pre.features, self.pre.context, self.arch, self.pre.shape, floor)

    @torch.no_grad()
    def sample(
        self,
        theta: Any,
        *,
        generator: torch.Generator | None = None,
        batch_size: int | None = None,
        truncation: float | None = None,
    ) -> Any:
        """:meth:`Surrogate.sample`, with latents truncated to :math:`|z_j| \\le`
        ``truncation`` (None: the architecture's ``truncation``; ``math.inf``: none)."""
        if truncation is None:
            return super().sample(theta, generator=generator, batch_size=batch_size)
        if not truncation > 0:
            raise ValueError(f"truncation must be positive, got {truncation}")
        default, self.net.truncation = self.net.truncation, truncation
        try:
            return super().sample(theta, generator=generator, batch_size=batch_size)
        finally:
            self.net.truncation = default
