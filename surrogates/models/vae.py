r"""Conditional variational autoencoders (:class:`VAE`).

The model lives in the preprocessed feature space y of x, conditioned on c of θ (see
:mod:`surrogates.preprocessing`), with a latent :math:`z \in \mathbb{R}^L` (Kingma & Welling,
2014, arXiv:1312.6114; conditional: Sohn et al., 2015, NeurIPS):

.. math::
    p(z) = \mathcal{N}(0, I), \quad
    p(y \mid z, c) = \mathcal{N}(\mu_\psi(z, c), \operatorname{diag} \sigma^2), \quad
    q(z \mid y, c) = \mathcal{N}(m_\phi(y, c), \operatorname{diag} s_\phi^2(y, c)).

**Decoder variance.** By default (``variance="feature"``) :math:`\sigma_j` is one learned
number per feature, shared by all rows: the ELBO's optimum is then :math:`\sigma_j^2` = the mean
squared reconstruction error of feature j, a stable target, and the Gaussian noise of a
linear-Gaussian simulator is represented exactly. ``variance="sample"`` lets the decoder
output :math:`\log \sigma(z, c)` per row and feature (heteroscedastic), bounded below by
:data:`MIN_LOG_SCALE` because an unbounded per-row variance makes the likelihood unbounded
(Mattei & Frellsen, 2018, NeurIPS).

**Mixture decoder.** With ``components=K > 1`` each feature's :math:`p(y_j \mid z, c)` is a
mixture of K Gaussians whose weights, means and σ (bounded below by :data:`MIN_LOG_SCALE`) the
decoder gives per row, independent across features given z (as the mixtures of logistics of
PixelCNN++, Salimans et al., 2017, arXiv:1701.05517, per pixel). A shower voxel given the
shower's global shape is either below the readout threshold (the narrow dequantization band of
:class:`~surrogates.preprocessing.ShowerPreprocessing`) or hit: one Gaussian must cover both
modes, and its draws put empty voxels just above the threshold and blur the shower widths.

**Prior.** ``prior="normal"`` samples :math:`z \sim \mathcal{N}(0, I)`. With ``prior="flow"``
a coupling spline flow :math:`p_\psi(z \mid c)` (:data:`PRIOR_FLOW`) is fitted by maximum
likelihood to the encoder's draws :math:`z \sim q(z \mid y, c)` of every training batch, with
no gradient into the encoder: the aggregate posterior that the decoder was trained on, which
N(0, I) matches only in its first two moments (ex-post density estimation, Ghosh et al., 2020,
arXiv:1903.12436; the two-stage VAE of Dai & Wipf, 2019, arXiv:1903.05789, fitted alongside
rather than after). Encoder and decoder still train on the ELBO against N(0, I) below, so the
warm-up and the free bits act unchanged; sampling and :meth:`VAE.log_prob` then use
:math:`p_\psi`, and ``val_loss`` is the negative ELBO with :math:`p_\psi` (the KL by its
one-draw estimate), a bound for the model that :meth:`VAE.sample` draws from. The flow's NLL is
logged as ``prior_nll``.
Shower defaults: ``docs/decisions/012-shower-vae-mixture-and-flow-prior.md``.

**Training** minimizes, per row (:meth:`VAENet.train_step`),

.. math::
    -\mathbb{E}_q[\log p(y \mid z, c)]
    + \beta\, w_t \sum_{j=1}^{L} \max\!\left(\lambda,
      \overline{\mathrm{KL}}\big(q(z_j \mid y, c) \,\|\, \mathcal{N}(0, 1)\big)\right),

with one reparameterized draw of z, the KL in closed form, averaged over the batch per latent
dimension (the bar), :math:`w_t = \min(1, t / T)` a linear KL warm-up over ``warmup_steps`` T
(Bowman et al., 2016, arXiv:1511.06349) whose step counter t is a buffer of the model (so a
resumed run continues the warm-up exactly), and free bits λ (Kingma et al., 2016,
arXiv:1606.04934): below λ nats a latent dimension's KL costs nothing, which keeps the encoder
from collapsing onto the prior before the decoder learns to use z. ``metrics.csv`` gets
``recon`` and ``kl`` (per row) beside ``train_loss``; the validation loss ``val_loss`` is the
plain negative ELBO (β = 1, no warm-up, no free bits), a bound on the negative log-likelihood
comparable across steps and models (with the flow prior: see above).

**Density.** :meth:`VAE.log_prob` is the importance-weighted bound (Burda et al., 2016,
arXiv:1509.00519) with K draws from q,

.. math::
    \log p(y \mid c) \ge \mathbb{E}\left[\log \frac{1}{K} \sum_{k=1}^K
    \frac{p(y \mid z_k, c)\, p(z_k)}{q(z_k \mid y, c)}\right],

which tightens monotonically with K (K = 1 is the ELBO), plus the preprocessing's
:math:`\log|\det \partial y / \partial x|` where the preprocessing is a bijection (as
:meth:`~surrogates.models.flows.Flow.log_prob`); for showers it is the bound on the feature
density.

**Sampling** draws :math:`z \sim \mathcal{N}(0, I)` and returns
:math:`\mu_\psi(z, c) + \sigma \odot \epsilon` -- a draw of the model's distribution, not its
decoder mean: the mean alone has the variance of :math:`\mu_\psi(z, c)` only, which on a
linear-Gaussian simulator (where the optimum ignores z) is zero (``tests/test_vae.py`` measures
both). ``sample_noise=False`` returns the mean. For showers the draw is made in the feature space
of :class:`~surrogates.preprocessing.ShowerPreprocessing`, so after its inverse every voxel is
non-negative and each layer's voxels sum to that layer's energy.

**Fields** (``nbody`` data, :class:`~surrogates.preprocessing.FieldPreprocessing`): the encoder
and decoder are convolutional on the periodic box, FiLM-conditioned on c
(:mod:`~surrogates.models.backbones`: slices as channels, flat feature rows), and with
``variance="feature"`` σ is one learned number per channel, shared by all its pixels, as the
field's statistics are the same everywhere in the box.

Example:
    >>> import numpy as np
    >>> from surrogates.models import VAE
    >>> rng = np.random.default_rng(0)
    >>> theta = rng.uniform(-1, 1, (512, 1)).astype(np.float32)
    >>> x = (theta + 0.1 * rng.standard_normal((512, 2))).astype(np.float32)
    >>> model = VAE.for_dataset((theta, x), hidden=[16], device="cpu")
    >>> model = model.fit((theta, x), max_epochs=1, progress=False)
    >>> model.sample(theta[:3]).shape, model.log_prob(x[:3], theta[:3], k=8).shape
    ((3, 2), (3,))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn.functional import softplus

from simulators.errors import UserError

from .arch import ArchConfig
from .backbones import FIELD_ROWS, FieldCapable, check_conv_settings, vae_backbone
from .base import Surrogate, _tensor
from .flows import ACTIVATIONS
from .flows.transforms import spline_flow
from .optim import adam

if TYPE_CHECKING:
    from ..training import StepContext, TrainConfig

__all__ = ["MIN_LOG_SCALE", "PRIOR_FLOW", "VAE", "VAEArch", "VAENet"]

#: the coupling spline flow of ``prior="flow"`` (Durkan et al., 2019), over the L latents given c
PRIOR_FLOW: dict[str, Any] = {
    "transforms": 4,
    "hidden": (128, 128),
    "bins": 8,
    "activation": "relu",
}
#: lower bound of a per-row decoder log σ (``variance="sample"``), in standardized units
MIN_LOG_SCALE = -5.0
_LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class VAEArch(ArchConfig):
    """Architecture settings of a :class:`VAE` (keyword arguments of :meth:`VAE.for_dataset`,
    ``--arch KEY=VALUE`` on the command line).

    Attributes:
        latent: latent dimensions L (None: the number of features, between 2 and 32).
        hidden: the encoder's hidden widths; the decoder uses them in reverse order (empty:
            linear encoder and decoder, i.e. probabilistic PCA given c). Vectors and showers.
        conv_widths: channels of the encoder's stride-2 convolution stages; the decoder's
            upsampling stages use them in reverse order. Fields only.
        upsample: the decoder's doubling, ``"nearest"`` (then a 3×3 periodic convolution) or
            ``"transposed"`` (a 2×2 stride-2 transposed convolution). Fields only.
        activation: a key of :data:`~surrogates.models.flows.ACTIVATIONS`.
        variance: ``"feature"`` (one learned σ per feature; per channel for fields) or
            ``"sample"`` (σ(z, c) per row); see the module notes.
        beta: weight β of the KL term after warm-up (1: the ELBO).
        warmup_steps: optimizer steps of the linear KL warm-up (0: none).
        free_bits: λ, nats per latent dimension below which the KL is not penalized (0: none).
        sample_noise: sampling adds the decoder noise σ·ε to the decoder mean.
        components: K Gaussians per feature in p(y | z, c) (1: one Gaussian, ``variance``
            decides its σ; more: a mixture whose weights, means and σ the decoder gives per
            row, see the module notes).
        prior: the latent distribution of sampling and :meth:`VAE.log_prob`: ``"normal"``
            (N(0, I)) or ``"flow"`` (a spline flow p(z | c) fitted to the encoder's aggregate
            posterior, see the module notes).
    """

    latent: int | None = None
    hidden: tuple[int, ...] = (128, 128)
    conv_widths: tuple[int, ...] = (32, 64, 128)
    upsample: str = "nearest"
    activation: str = "silu"
    variance: str = "feature"
    beta: float = 1.0
    warmup_steps: int = 500
    free_bits: float = 0.02
    sample_noise: bool = True
    components: int = 1
    prior: str = "normal"

    def __post_init__(self) -> None:
        if self.latent is not None and self.latent < 1:
            raise UserError(f"latent must be positive, got {self.latent}")
        if min(self.hidden, default=1) < 1:
            raise UserError(f"hidden widths must be positive, got {list(self.hidden)}")
        check_conv_settings(self.conv_widths, self.upsample)
        if self.activation not in ACTIVATIONS:
            raise UserError(f"activation must be one of {', '.join(ACTIVATIONS)}, "
                            f"got {self.activation!r}")  # fmt: skip
        if self.variance not in ("feature", "sample"):
            raise UserError(f"variance must be 'feature' or 'sample', got {self.variance!r}")
        if not self.beta > 0:
            raise UserError(f"beta must be positive, got {self.beta}")
        if self.prior not in ("normal", "flow"):
            raise UserError(f"prior must be 'normal' or 'flow', got {self.prior!r}")
        if self.components < 1:
            raise UserError(f"components must be positive, got {self.components}")
        if self.warmup_steps < 0 or self.free_bits < 0:
            raise UserError("warmup_steps and free_bits must be 0 or more")

    @classmethod
    def for_data(cls, kind: str) -> VAEArch:
        """Showers: 32 latent dimensions, encoder widths (512, 256), 2,000 warm-up steps, a
        mixture of 2 Gaussians per feature and the flow prior
        (``docs/decisions/012-shower-vae-mixture-and-flow-prior.md``); fields: 64 latent
        dimensions and the class's conv widths (32, 64, 128), sized for 64×64 slices on a CPU;
        other data: the class defaults."""
        if kind == "showers":
            return cls(latent=32, hidden=(512, 256), warmup_steps=2000, components=2,
                       prior="flow")  # fmt: skip
        if kind == "fields":
            return cls(latent=64)
        return cls()


class VAENet(nn.Module):
    """The torch module of a :class:`VAE`: encoder, decoder, decoder scale, step counter.

    Features are flat rows (N, features) whatever the data (a field's in (C, H, W) order).

    Args:
        features: feature dimensions per row.
        context: conditioning dimensions per row.
        arch: the completed settings of :class:`VAEArch`.
        shape: the preprocessing's feature shape: (features,) (default) for MLPs, (C, H, W)
            for the convolutional backbone (:func:`~surrogates.models.backbones.vae_backbone`).
    """

    def __init__(
        self,
        features: int,
        context: int,
        arch: dict[str, Any],
        shape: Sequence[int] | None = None,
    ):
        super().__init__()
        act = ACTIVATIONS[arch["activation"]]
        shape = tuple(shape or (features,))
        self.features, self.latent = features, int(arch["latent"])
        self.per_sample = arch["variance"] == "sample"
        self.beta, self.warmup = float(arch["beta"]), int(arch["warmup_steps"])
        self.free_bits, self.noise = float(arch["free_bits"]), bool(arch["sample_noise"])
        self.components = int(arch.get("components", 1))
        #: the flow p(z | c) of ``prior="flow"``, else None (N(0, I))
        self.prior = (spline_flow(self.latent, context, False, PRIOR_FLOW)
                      if arch.get("prior", "normal") == "flow" else None)  # fmt: skip
        self.encoder, self.decoder = vae_backbone(shape, context, arch, act)
        # a field's σ is per channel, repeated over its H·W pixels
        self.pixels = math.prod(shape[1:]) if len(shape) == 3 else 1
        if not self.per_sample and self.components == 1:
            #: log σ_j of the decoder, one per feature (per channel for fields)
            self.log_scale = nn.Parameter(torch.zeros(features // self.pixels))
        #: optimizer steps taken (the KL warm-up's clock), saved with the weights
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.pre: Any = None  # the VAE's preprocessor, used by the training step

    # ------------------------------------------------------------------ the model
    def encode(self, y: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z | y, c), each (N, L), in y's dtype."""
        m, logvar = self.encoder(y, c).to(y.dtype).chunk(2, dim=-1)
        return m, logvar

    def decode(self, z: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log σ of p(y | z, c), (N, features) each (log σ broadcasts per feature)."""
        h = self.decoder(z, c).to(z.dtype)
        if self.per_sample:
            mean, raw = h.chunk(2, dim=-1)
            return mean, MIN_LOG_SCALE + softplus(raw - MIN_LOG_SCALE)
        log_scale = self.log_scale
        if self.pixels > 1:
            log_scale = log_scale.repeat_interleave(self.pixels)
        return h, log_scale.to(z.dtype).expand_as(h)

    def _mixture_raw(self, z: Tensor, c: Tensor) -> tuple[Tensor, ...]:
        h = self.decoder(z, c).to(z.dtype).unflatten(-1, (3, self.components, -1))
        return h.unbind(1)  # logits, means, raw log σ: (N, K, features) each

    def mixture(self, z: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Log-weights, means and log σ of the K Gaussians of p(y | z, c) per feature, each
        (N, K, features); ``components > 1`` only."""
        logits, mean, raw = self._mixture_raw(z, c)
        return logits.log_softmax(1), mean, MIN_LOG_SCALE + softplus(raw - MIN_LOG_SCALE)

    def log_likelihood(self, y: Tensor, z: Tensor, c: Tensor) -> Tensor:
        """log p(y | z, c) per row, (N,)."""
        if self.components == 1:
            return self._log_normal(y, *self.decode(z, c)).sum(-1)
        logw, mean, log_scale = self.mixture(z, c)
        lp = self._log_normal(y.unsqueeze(1), mean, log_scale)
        return torch.logsumexp(logw + lp, dim=1).sum(-1)

    def draw(self, z: Tensor, c: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """y ~ p(y | z, c), one row per row of z (its mean for ``sample_noise=False``); the
        noise (and the mixture component per feature) drawn on the CPU from ``generator``."""
        if self.components == 1:
            mean, log_scale = self.decode(z, c)
        else:
            logits, means, raw = self._mixture_raw(z, c)
            w = logits.softmax(1)
            if not self.noise:
                return (w * means).sum(1)
            # the component by inverse CDF: one uniform per feature; σ only for the chosen one
            u = torch.rand(means[:, 0].shape, generator=generator, dtype=z.dtype).to(z.device)
            k = (u.unsqueeze(1) > w[:, :-1].cumsum(1)).sum(1, keepdim=True)
            mean = means.gather(1, k)[:, 0]
            log_scale = MIN_LOG_SCALE + softplus(raw.gather(1, k)[:, 0] - MIN_LOG_SCALE)
        if not self.noise:
            return mean
        eps = torch.randn(mean.shape, generator=generator, dtype=z.dtype).to(z.device)
        return mean + torch.exp(log_scale) * eps

    @staticmethod
    def _log_normal(y: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
        return -0.5 * ((y - mean) * torch.exp(-log_scale)) ** 2 - log_scale - 0.5 * _LOG_2PI

    def _features(self, batch: Sequence[Tensor], generator: torch.Generator | None) -> Any:
        theta, x = batch[0], batch[1]
        y, _ = self.pre.forward(x, theta, generator=generator)
        return y.flatten(1), self.pre.condition(theta).to(y.dtype)

    def terms(
        self, y: Tensor, c: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """The reconstruction NLL per row (N,) and the KL to N(0, I) per row and latent
        dimension (N, L), with one reparameterized draw of z from ``generator``."""
        recon, kl, _, _ = self._terms(y, c, generator)
        return recon, kl

    def _terms(
        self, y: Tensor, c: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """:meth:`terms`, the draw z (N, L) and its log q(z | y, c) (N,)."""
        m, logvar = self.encode(y, c)
        eps = torch.randn(m.shape, generator=generator, dtype=m.dtype).to(m.device)
        z = m + torch.exp(0.5 * logvar) * eps
        recon = -self.log_likelihood(y, z, c)
        kl = 0.5 * (m**2 + torch.exp(logvar) - 1 - logvar)
        log_q = (-0.5 * eps**2 - 0.5 * logvar - 0.5 * _LOG_2PI).sum(-1)
        return recon, kl, z, log_q

    def log_prior(self, z: Tensor, c: Tensor) -> Tensor:
        """log p(z | c) per row of z (N, L): the flow's, or N(0, I)'s."""
        if self.prior is None:
            return (-0.5 * z**2 - 0.5 * _LOG_2PI).sum(-1)
        return self.prior(c).log_prob(z)

    def _prior_nll(self, z: Tensor, c: Tensor) -> Tensor:
        """The flow prior's mean NLL of the encoder's draws z; no gradient reaches the encoder."""
        return -self.log_prior(z.detach(), c).mean()

    def kl_weight(self) -> float:
        """β times the warm-up factor :math:`\\min(1, t / T)` at the current step t."""
        if self.warmup <= 0:
            return self.beta
        return self.beta * min(1.0, int(self.steps) / self.warmup)

    # ------------------------------------------------------------------ training protocol
    def loss(self, batch: Sequence[Tensor], *, generator: torch.Generator | None = None) -> Tensor:
        """The mean negative ELBO of a ``(theta, x)`` batch (β = 1, no warm-up, no free bits),
        with the model's prior (for the flow prior the KL is the one-draw estimate
        log q(z | y, c) - log p(z | c))."""
        y, c = self._features(batch, generator)
        recon, kl, z, log_q = self._terms(y, c, generator)
        if self.prior is None:
            return (recon + kl.sum(dim=-1)).mean()
        return (recon + log_q - self.log_prior(z, c)).mean()

    def configure_optimizers(self, config: TrainConfig) -> list[torch.optim.Optimizer]:
        return [adam(self.parameters(), config)]

    def train_step(self, batch: Sequence[Tensor], ctx: StepContext) -> None:
        """One step on the objective of the module notes; logs ``train_loss``, ``recon``,
        ``kl`` and ``kl_weight``."""
        (opt,) = ctx.optimizers
        w = self.kl_weight()
        with ctx.autocast():
            y, c = self._features(batch, ctx.generator)
            recon, kl, z, _ = self._terms(y, c, ctx.generator)
            kl_dims = kl.mean(dim=0)
            penalized = kl_dims.clamp_min(self.free_bits) if self.free_bits > 0 else kl_dims
            loss = recon.mean() + w * penalized.sum()
        logs = {"train_loss": loss.detach(), "recon": recon.detach().mean(),
                "kl": kl_dims.detach().sum(), "kl_weight": w}  # fmt: skip
        if self.prior is not None:  # outside autocast: the flow in the model's precision
            prior_nll = self._prior_nll(z, c)
            loss = loss + prior_nll
            logs["prior_nll"] = prior_nll.detach()
        if ctx.backward(loss, opt):
            ctx.step(opt)
        self.steps += 1
        ctx.log_dict(logs)

    def validation_metrics(
        self, batch: Sequence[Tensor], *, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """``recon`` and ``kl`` (to N(0, I)) per row on a validation batch (``val_recon``,
        ``val_kl``; and ``val_prior_nll`` for the flow prior)."""
        y, c = self._features(batch, generator)
        recon, kl, z, _ = self._terms(y, c, generator)
        out = {"recon": recon.mean(), "kl": kl.sum(dim=-1).mean()}
        if self.prior is not None:
            out["prior_nll"] = self._prior_nll(z, c)
        return out

    # ------------------------------------------------------------------ density and sampling
    def log_prob_features(
        self, y: Tensor, c: Tensor, k: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """The IWAE bound on log p(y | c) with ``k`` draws per row, shape (N,)."""
        y = y.flatten(1)
        m, logvar = self.encode(y, c)
        std = torch.exp(0.5 * logvar)
        eps = torch.randn((k, *m.shape), generator=generator, dtype=m.dtype).to(m.device)
        z = m + std * eps  # (k, N, L)
        log_q = (-0.5 * eps**2 - torch.log(std) - 0.5 * _LOG_2PI).sum(-1)
        n = len(y)
        log_prior = self.log_prior(z.reshape(k * n, -1), c.repeat(k, 1)).reshape(k, n)
        log_lik = self.log_likelihood(y.repeat(k, 1), z.reshape(k * n, -1), c.repeat(k, 1))
        log_lik = log_lik.reshape(k, n)
        return torch.logsumexp(log_lik + log_prior - log_q, dim=0) - math.log(k)

    def sample_features(self, c: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One feature vector per row of c: z and the decoder noise drawn on the CPU."""
        z = torch.randn(len(c), self.latent, generator=generator, dtype=c.dtype).to(c.device)
        if self.prior is not None:
            z = self.prior(c).transform.inv(z)
        return self.draw(z, c, generator)


class VAE(FieldCapable, Surrogate):
    """A conditional VAE surrogate p(x | θ) (see the module notes).

    Architecture settings are the fields of :class:`VAEArch`; unset ones take
    :meth:`VAEArch.for_data` of the data's kind.
    """

    model_type: ClassVar[str] = "vae"
    Arch: ClassVar[type[VAEArch]] = VAEArch
    #: training settings of this family that differ from :class:`~surrogates.training.
    #: TrainConfig`'s defaults (none: the trainer's Adam at 1e-3 on ``val_loss``, the negative ELBO)
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {}

    def _check_arch(self, arch: dict[str, Any]) -> dict[str, Any]:
        a = super()._check_arch(arch)
        if a["latent"] is None:
            a["latent"] = max(2, min(int(self.pre.features), 32))
        return a

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> VAE:
        # configs saved before these settings existed had one Gaussian and N(0, I)
        arch = {"components": 1, "prior": "normal", **config["arch"]}
        return super().from_config({**config, "arch": arch})

    def _build(self) -> nn.Module:
        return VAENet(self.pre.features, self.pre.context, self.arch, self.pre.shape)

    def log_prob(
        self,
        x: Any,
        theta: Any,
        *,
        k: int = 64,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Any:
        """The importance-weighted lower bound on log p(x | θ) per row (see the module notes).

        Args:
            x: events (N, *x_shape).
            theta: their conditions (N, P).
            k: importance samples K per row (1: the ELBO).
            batch_size: rows per pass (default: 65,536 / K; for fields
                :data:`~surrogates.models.backbones.FIELD_ROWS` / K).
            generator: source of the draws of z (default: a fixed seed, so the bound is a
                deterministic function of x and θ), and of the shower dequantization noise.

        Returns:
            shape (N,): numpy float64 for numpy input, else a tensor (differentiable in x).
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        as_numpy = not isinstance(x, Tensor)
        dt = self.dtype
        x_t, th = _tensor(x, dt), _tensor(theta, dt).reshape(len(theta), -1)
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        rows = batch_size or max(1, (FIELD_ROWS if self.data_kind == "fields" else 65_536) // k)
        self.net.eval()
        out = []
        with torch.set_grad_enabled(not as_numpy and torch.is_grad_enabled()):
            for s in range(0, len(x_t), rows):
                xb, tb = x_t[s : s + rows].to(self.device), th[s : s + rows].to(self.device)
                y, ladj = self.pre.forward(xb, tb, generator=g)
                lp = self.net.log_prob_features(y, self.pre.condition(tb).to(dt), k, g)
                out.append(lp + ladj if self.pre.bijective else lp)
        lp = torch.cat(out) if out else torch.zeros(0, dtype=dt)
        return lp.detach().cpu().double().numpy() if as_numpy else lp
