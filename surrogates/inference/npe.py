r"""Neural posterior estimation (NPE) with the package's conditional spline flows.

A conditional flow :math:`q_\phi(u \mid h)` is fitted to simulations :math:`(\theta_i, x_i)` by
maximum likelihood, which for draws from the prior makes :math:`q` an estimate of the posterior
(Papamakarios & Murray, 2016, arXiv:1605.06376; Greenberg et al., 2019, arXiv:1905.07488). Here

.. math::
    u = \frac{T^{-1}(\theta) - m}{s}, \qquad h = e_\psi\!\left(\frac{x - \mu_x}{\sigma_x}\right),
    \qquad
    \log p(\theta \mid x) = \log q_\phi(u \mid h) - \textstyle\sum_j \log s_j
        + \log\left|\det \frac{\partial T^{-1}}{\partial \theta}\right|,

with :math:`T` the bijection onto the prior's support (:mod:`.support`), :math:`(m, s)` and
:math:`(\mu_x, \sigma_x)` the standardization of :mod:`surrogates.preprocessing` (fitted on the
training split) and :math:`e_\psi` an embedding network (:mod:`.embeddings`) trained jointly
with the flow. For vector observations u is by default replaced by the whitened residual
:math:`L^{-1}(u - W^\top [c, 1])` of its linear regression on the standardized x, c
(:class:`~surrogates.preprocessing.LinearAdjust`, a constant-Jacobian bijection of u given x),
so the flow refines a linear-Gaussian posterior instead of learning it from scratch. Samples
are :math:`T(m + s\,u)` with u drawn through the flow and the inverse adjustment: always
inside the support, and :meth:`NPE.log_prob` is exactly normalized over it -- no rejection,
no leakage.

Training is the shared :class:`~surrogates.training.Trainer` (early stopping on a validation split,
best weights restored); files are streamed from disk by :class:`~surrogates.data.H5Batches`;
simulations with NaN/inf are dropped and counted (:attr:`NPE.n_dropped`, logged); :meth:`NPE.save`
writes safetensors + JSON (:mod:`surrogates.checkpoint`).

The defaults were chosen with ``benchmarks/npe_vs_sbi.py``; the C2ST figures quoted in the
docstrings below were measured with the C2ST protocol of that time, whose classifier stopped 10
epochs after its best validation accuracy. It had less power than the current one
(``benchmarks/c2st_power.py``), so those figures rank settings against one another; the
README's table is the current protocol's.

Example:
    >>> import torch
    >>> from torch.distributions import Independent, Uniform
    >>> prior = Independent(Uniform(-torch.ones(2), torch.ones(2)), 1)
    >>> g = torch.Generator().manual_seed(0)
    >>> theta = prior.sample((2000,))
    >>> x = theta + 0.1 * torch.randn(theta.shape, generator=g)
    >>> npe = NPE(prior, transforms=2, hidden=(32, 32)).fit(theta, x, max_epochs=5)
    >>> s = npe.sample((100,), x[0], generator=g)
    >>> s.shape, bool(((s >= -1) & (s <= 1)).all())
    (torch.Size([100, 2]), True)
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ..checkpoint import CheckpointError, load_model, read_meta, save_model
from ..models.flow import ACTIVATIONS, FlowNet
from ..preprocessing import LinearAdjust, Standardize, from_dict
from ..training import ArrayBatches, TrainConfig, Trainer, TrainResult, resolve_device
from .embeddings import build_embedding
from .support import (
    SupportTransform,
    prior_from_dict,
    prior_log_prob,
    prior_to_dict,
    torch_prior,
)

__all__ = ["NPE", "NPENet", "default_hidden", "default_train_config", "default_transforms"]

log = logging.getLogger(__name__)

#: |u| is clamped to this in training, so a θ stored exactly on a bound (float32 round-off)
#: gives a finite loss; σ(15) = 1 - 3e-7, i.e. within float32 resolution of the bound
U_CLAMP = 15.0


def default_train_config(n_train: int) -> dict[str, Any]:
    """The default training settings for ``n_train`` training simulations.

    Tuned on the toy tasks of ``benchmarks/npe_vs_sbi.py``: Adam at 4·10⁻³, halved after 5
    epochs without validation improvement, early stopping after 10 (or when the rate would be
    halved below 1/32 of its start), and batches of a quarter of the data, 64 to 256 rows.
    Against ``sbi``'s defaults (batch 200, learning rate 5·10⁻⁴, patience 20 epochs) this takes
    a fraction of the steps.

    Below 2,048 training simulations (fewer than 8 batches an epoch) validation and the final
    weights use a moving average of the weights (decay 0.99), at 1.2·10⁻², halved after 3 epochs
    without improvement, stopping after 6 or below 1/4 of the rate. There the validation loss
    of the raw weights jumps by 0.1-0.2 nats from one epoch to the next (two moons at 10³), so
    the plateau rules reacted to noise and stopped early.

    Measured with ``--methods ours --seeds 0 1 2`` (mean C2ST over 10 observations and three
    training seeds), with the linear adjustment of :class:`NPE`:

    - Batch cap, at 10⁴ simulations, 256 against 1,024 rows: SLCP 0.806 against 0.846,
      Lotka-Volterra 0.881 against 0.906, two moons 0.518 against 0.524, Gaussian linear 0.534
      against 0.527, in about the same time (the plateau schedule ends in fewer epochs). 512
      fell in between (SLCP 0.828, Lotka-Volterra 0.891), 128 gained nothing more (SLCP 0.804).
      At 10³, 128 against 256 moved no task by more than 0.003 except Gaussian linear (0.604
      against 0.590) and took Lotka-Volterra 1.5 times as long.
    - Rate, 4·10⁻³ against 2·10⁻³ (batches of 256): at 10⁴ Lotka-Volterra 0.858 against 0.881
      in 0.8 of the time, SLCP 0.802 against 0.806, two moons 0.518 both, Gaussian linear 0.538
      against 0.534 (0.541 against 0.537 on the 10-parameter test, bound 0.55); at 10³ two moons
      0.591 against 0.603, SLCP 0.904 against 0.909, Lotka-Volterra 0.975 against 0.979 in 0.87
      of the time, Gaussian linear 0.606 against 0.590. Gaussian linear, where the adjustment
      leaves the flow almost nothing to learn, is the one task that prefers the slower rate.
      Without the adjustment the faster rate had made its SBC ranks on 3,000 two-parameter
      simulations over-confident (smallest KS p-value over three seeds 0.003); with it and 3
      transforms the smallest is 0.017 (0.023 at 2·10⁻³ with 4; the test's level is 0.01).
    - The average, at 10³ simulations (900 to train), at 8·10⁻³ (three seeds): two moons 0.571
      against 0.589, SLCP 0.905 both, Gaussian linear 0.614 against 0.615, Lotka-Volterra 0.969
      against 0.974 in 1.1 times the time. The average with the other settings unchanged scored
      0.555, 0.903, 0.609 and 0.971 but trained Lotka-Volterra 1.4-1.7 times as long (the
      averaged loss keeps falling); the average used only to pick the best weights, with the
      raw loss deciding the schedule, gave two moons 0.595: the gain is the longer training the
      smooth loss allows. At 10⁴ the average (decay 0.99) improved every task (two moons 0.515,
      SLCP 0.793, Gaussian linear 0.528, Lotka-Volterra 0.838) but doubled the time of two
      moons and Lotka-Volterra; with the small-data settings Lotka-Volterra still took 1.3 times
      as long (0.851). Pass ``ema=0.99`` to trade that time for accuracy. At 3,000 two-parameter
      Gaussian-linear simulations the small-data settings lowered the smallest SBC KS p-value
      over three seeds from 0.017 to 0.011, hence the bound at 2,048.
    - The small-data rate, with ``--seeds 0 1 2 3 4 5`` (six training seeds; three had hidden
      a spread of 0.06 in two moons between seeds): 1.2·10⁻² against 10⁻², 9·10⁻³ and 8·10⁻³
      gave two moons 0.576 against 0.584, 0.593 and 0.586, SLCP 0.896 against 0.898, 0.901 and
      0.901, Gaussian linear 0.601 against 0.601, 0.605 and 0.607, Lotka-Volterra 0.971 against
      0.971, 0.970 and 0.970, training Lotka-Volterra in 1.2 s against 1.3, 1.4 and 1.6 s.
      (``sbi``'s NSF on the same six seeds: two moons 0.585.) With the current C2ST (seed 0,
      ``--budgets 1000 --seeds 0 --methods ours --npe lr=0.008`` against the README's run),
      1.2·10⁻² against 8·10⁻³: two moons 0.713 against 0.763, SLCP 0.930 against 0.935,
      Gaussian linear 0.596 against 0.628, Lotka-Volterra 0.972 both. Multi-round inference
      prefers the slower rate: on two moons two rounds of 1,000 score 0.571 against 0.664
      (``benchmarks/tsnpe.py --tasks two_moons --npe lr=0.008`` against its default run).
    - The 1/32 floor: on Lotka-Volterra at 10⁴ simulations the last third of the steps, at rates
      down to 2·10⁻⁷, had moved the validation loss by 0.07 nats and the C2ST not at all (0.899
      with them, 0.895 without).
    """
    batch = int(min(256, max(64, 2 ** round(math.log2(max(n_train, 1) / 4)))))
    config = {"lr": 4e-3, "batch_size": batch, "schedule": "plateau", "patience": 10,
              "min_lr_factor": 1 / 32, "max_epochs": 1000, "clip_grad": 5.0,
              "progress": False}  # fmt: skip
    if n_train < 2048:  # fewer than 8 batches an epoch
        config.update(lr=1.2e-2, ema=0.99, patience=6, min_lr_factor=1 / 4)
    return config


def default_hidden(n_train: int) -> list[int]:
    """The default conditioner widths: 64 x 64 below 5,000 training simulations, 128 x 128 from
    there on.

    Measured with ``benchmarks/npe_vs_sbi.py`` (mean C2ST over 5 observations): at 10⁴
    simulations 128 x 128 beat 64 x 64 on two moons (0.515 against 0.522), SLCP (0.823 against
    0.842) and Lotka-Volterra (0.899 against 0.901), and lost on Gaussian linear (0.547 against
    0.535); at 10³ it was worse on SLCP (0.917 against 0.887) and Gaussian linear, and on 3,000
    Gaussian-linear simulations its SBC ranks were no longer uniform (over-confident).
    """
    return [128, 128] if n_train >= 5000 else [64, 64]


def default_transforms(n_train: int) -> int:
    """The default number of spline transforms: 3.

    Measured with ``benchmarks/npe_vs_sbi.py`` (10 observations, three training seeds, rate
    4·10⁻³) at 10³ simulations, 3 against 4 transforms: two moons 0.589 against 0.591, SLCP
    0.905 against 0.904, Lotka-Volterra 0.974 against 0.975, Gaussian linear 0.615 against
    0.606, in 0.87 of the time on Lotka-Volterra (1.67 s against 1.92 s). At 10⁴ (128-wide
    conditioners) 5 transforms had given mixed changes for more time (SLCP 0.846 against
    0.842, Gaussian linear 0.550 against 0.557, before the batch cap and the adjustment).
    """
    return 3


class NPENet(nn.Module):
    """The trained module: an embedding of x and a :class:`~surrogates.models.flow.FlowNet` over u.

    Args:
        dim: number of parameters P.
        embedding: maps standardized x (N, *x_shape) to (N, E); has ``out_features``.
        arch: :class:`~surrogates.models.flow.FlowNet` architecture settings.
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

    def loss(self, batch: Sequence[Tensor], *, generator: torch.Generator | None = None) -> Tensor:
        """Mean negative log-density of the flow's features (the constant log-determinants are
        left out)."""
        c = self.condition(batch[1])
        y, _ = self.features(batch[0], c, clamp=True)
        h = self.embedding(c)
        return -self.flow.log_prob_features(y.to(h.dtype), h).mean()


def _is_dataset(data: Any) -> bool:
    return isinstance(data, (str, os.PathLike)) or hasattr(data, "iter_chunks")


class NPE:
    """Neural posterior estimator :math:`p(\\theta \\mid x)` on a conditional spline flow.

    Args:
        prior: a :class:`torch.distributions.Distribution` (e.g. ``sbi``'s ``BoxUniform``,
            ``Independent(Uniform)``, ``MultivariateNormal``, ``Independent(LogNormal)``) or a
            prior of :mod:`simulators.base`; its ``support`` fixes the bijection. ``None`` only
            with :meth:`fit` on a dataset file, which then supplies the prior.
        embedding: embedding of x: a name or spec for :func:`.embeddings.build_embedding`
            (default: identity for vectors, ``"cnn"`` for fields).
        kind: ``"autoregressive"`` (MAF-style spline flow, the default: the best density) or
            ``"coupling"`` (faster sampling).
        transforms: spline transforms; ``None``: :func:`default_transforms` of the number of
            training simulations.
        hidden: hidden widths of each transform's conditioner; ``None``:
            :func:`default_hidden` of the number of training simulations.
        bins: spline bins.
        activation: the conditioners' activation (a key of
            :data:`~surrogates.models.flow.ACTIVATIONS`). SiLU by default: on the benchmark
            tasks it about matched ReLU where the posterior has sharp structure (SLCP) and beat
            it where it is smooth (Gaussian linear: C2ST 0.555 against 0.587 at 10⁴
            simulations, batches of 512).
        log_x: standardize x on the log scale: ``"auto"`` (default) per feature, where the
            feature is positive in every training simulation and less skewed after the log
            (:class:`~surrogates.preprocessing.Standardize`); ``True`` / ``False`` for all
            features. On Lotka-Volterra (counts with multiplicative noise spanning many
            decades) this took the C2ST at 10⁴ simulations from 0.975 to 0.898.
        adjust: fit the flow to the whitened residual of the parameters' linear regression on
            the standardized x (:class:`~surrogates.preprocessing.LinearAdjust`): ``"auto"``
            (default) where x reaches the flow as is (vector observations, identity embedding)
            and there are at least 10 training simulations per regression coefficient;
            ``True`` / ``False``. With ``benchmarks/npe_vs_sbi.py`` (10 observations, means
            over three training seeds, the current defaults; ``--methods ours --npe
            adjust=false`` for the figures without it) it took
            Gaussian linear's C2ST from 0.625 / 0.595 to 0.615 / 0.538 (10³ / 10⁴ simulations),
            two moons' from 0.612 / 0.520 to 0.589 / 0.518 and SLCP's at 10⁴ from 0.806 to
            0.802; it cost SLCP at 10³ (0.898 to 0.905) and Lotka-Volterra (0.965 / 0.845 to
            0.974 / 0.858).
        seed: seeds the weight initialization (without touching the global generator) and the
            trainer.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        **train: :class:`~surrogates.training.TrainConfig` fields overriding
            :func:`default_train_config` (they can also be given to :meth:`fit`).

    Attributes:
        n_dropped: simulations dropped by the last :meth:`fit` for NaN/inf.
        n_train: training simulations used by the last :meth:`fit`.
        result: the :class:`~surrogates.training.TrainResult` of the last :meth:`fit`.
    """

    model_type = "npe"

    def __init__(
        self,
        prior: Distribution | Any = None,
        *,
        embedding: str | dict[str, Any] | None = None,
        kind: str = "autoregressive",
        transforms: int | None = None,
        hidden: Sequence[int] | None = None,
        bins: int = 8,
        activation: str = "silu",
        log_x: bool | str = "auto",
        adjust: bool | str = "auto",
        seed: int = 0,
        device: str | torch.device = "auto",
        **train: Any,
    ):
        if kind not in ("autoregressive", "coupling"):
            raise ValueError(f"kind must be 'autoregressive' or 'coupling', got {kind!r}")
        if log_x not in (True, False, "auto"):
            raise ValueError(f"log_x must be True, False or 'auto', got {log_x!r}")
        if adjust not in (True, False, "auto"):
            raise ValueError(f"adjust must be True, False or 'auto', got {adjust!r}")
        if activation not in ACTIVATIONS:
            known = ", ".join(ACTIVATIONS)
            raise ValueError(f"activation must be one of {known}, got {activation!r}")
        unknown = sorted(set(train) - set(TrainConfig.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown NPE option(s): {', '.join(unknown)}")
        self.prior: Distribution | None = None
        self.support: SupportTransform | None = None
        if prior is not None:
            self._set_prior(torch_prior(prior))
        self.embedding_spec = embedding
        self.arch = {
            "kind": kind,
            "transforms": None if transforms is None else int(transforms),
            "hidden": None if hidden is None else [int(h) for h in hidden],
            "bins": int(bins),
            "activation": activation,
            "embedding": None,
            "split": None,
        }
        self.log_x = log_x
        self.adjust = adjust
        self.seed = int(seed)
        self.device = resolve_device(device)
        self.train_options = dict(train)
        self.net: NPENet | None = None
        self.x_shape: tuple[int, ...] | None = None
        self.param_names: list[str] | None = None
        self.n_dropped = 0
        self.n_train = 0
        self.result: TrainResult | None = None

    def _set_prior(self, prior: Distribution) -> None:
        self.prior = prior
        self.support = SupportTransform.for_prior(prior)

    @classmethod
    def for_simulator(cls, sim: Any, **options: Any) -> NPE:
        """An estimator with the simulator's prior (converted by :func:`.support.torch_prior`)."""
        npe = cls(torch_prior(sim.prior), **options)
        npe.param_names = list(sim.param_names)
        return npe

    @property
    def dim(self) -> int:
        """Number of parameters P."""
        if self.support is None:
            raise RuntimeError("NPE has no prior yet")
        return self.support.dim

    # ------------------------------------------------------------------ training
    def _build(
        self, x_shape: tuple[int, ...], pre: Standardize, adjust: LinearAdjust | None
    ) -> None:
        self.x_shape = tuple(int(s) for s in x_shape)
        arch = dict(self.arch)
        if arch["hidden"] is None:
            arch["hidden"] = default_hidden(self.n_train)
        if arch["transforms"] is None:
            arch["transforms"] = default_transforms(self.n_train)
        if self.dim == 1:
            arch["kind"] = "autoregressive"  # a coupling layer needs two features
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            emb = build_embedding(self.embedding_spec, self.x_shape)
            self.net = NPENet(self.dim, emb, arch, self.support, pre, adjust)
        self.net.to(self.device)

    def _config(self, n_train: int, overrides: dict[str, Any]) -> TrainConfig:
        options = {**default_train_config(n_train), "seed": self.seed, "device": str(self.device),
                   **self.train_options, **overrides}  # fmt: skip
        return TrainConfig(**options)

    def _fit_pre(self, theta: Tensor, x: Tensor) -> tuple[Standardize, LinearAdjust | None]:
        u, _ = self.support.inverse(theta.double())
        u = u.clamp(-U_CLAMP, U_CLAMP)
        pre = Standardize(log_theta=self.log_x).fit(u, x.double())
        c = pre.condition(x.double()).flatten(1)
        use = self.adjust
        if use == "auto":
            identity = self.embedding_spec in (None, "identity", {"type": "identity"})
            use = identity and x.dim() == 2 and len(x) >= 10 * (c.shape[1] + 1)
        if not use:
            return pre, None
        return pre, LinearAdjust().fit(pre.forward(u, u)[0], c)

    def fit(
        self,
        theta: Any,
        x: Any = None,
        *,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        run_dir: str | os.PathLike | None = None,
        resume: bool = False,
        n_fit: int = 100_000,
        **train: Any,
    ) -> NPE:
        """Trains on simulations; returns ``self``.

        Args:
            theta: parameters (N, P) -- numpy or torch -- with ``x``; or, without ``x``, a dataset
                path or :func:`simulators.open_dataset` object, streamed from disk.
            x: simulations (N, *x_shape) for ``theta``.
            val_fraction: fraction held out for early stopping.
            split_seed: fixes the validation split.
            run_dir: trainer checkpoints and ``metrics.csv`` go here (and the final estimator).
            resume: continue from ``run_dir``'s trainer checkpoint.
            n_fit: rows of a dataset file used to fit the standardization.
            **train: :class:`~surrogates.training.TrainConfig` fields.

        Raises:
            ValueError: a θ outside the prior's support, mismatched shapes, or no valid rows.
        """
        if x is None and _is_dataset(theta):
            train_b, val_b = self._dataset_batches(theta, val_fraction, split_seed, n_fit, train)
        else:
            if x is None:
                raise ValueError("fit needs (theta, x) or a dataset path")
            train_b, val_b = self._array_batches(theta, x, val_fraction, split_seed, train)
        config = self._config(self.n_train, train)
        trainer = Trainer(self.net, config)
        self.device = trainer.device
        self.result = trainer.fit(train_b, val_b, run_dir=run_dir, resume=resume)
        self.net.eval()
        if run_dir is not None:
            self.save(run_dir)
        return self

    def _check_theta(self, theta: Tensor) -> None:
        outside = int((~self.support.contains(theta)).sum())
        if outside:
            raise ValueError(
                f"{outside} theta row(s) lie outside the prior's support "
                f"(low {self.support.low.tolist()}, high {self.support.high.tolist()})"
            )

    def _log_dropped(self, n_total: int) -> None:
        if self.n_dropped:
            log.warning("NPE: dropped %d of %d simulations with NaN/inf", self.n_dropped, n_total)

    def _array_batches(
        self, theta: Any, x: Any, val_fraction: float, split_seed: int, train: dict[str, Any]
    ) -> tuple[ArrayBatches, ArrayBatches | None]:
        if self.support is None:
            raise ValueError("NPE needs a prior to fit on arrays")
        theta = torch.as_tensor(np.asarray(theta) if not isinstance(theta, Tensor) else theta)
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
        theta = theta.float().reshape(len(theta), -1).cpu()
        x = x.float().cpu()
        if len(theta) != len(x):
            raise ValueError(f"theta has {len(theta)} rows, x has {len(x)}")
        if theta.shape[1] != self.dim:
            raise ValueError(f"theta must have {self.dim} columns, got {theta.shape[1]}")
        ok = torch.isfinite(theta).all(1) & torch.isfinite(x.reshape(len(x), -1)).all(1)
        self.n_dropped = int((~ok).sum())
        self._log_dropped(len(theta))
        theta, x = theta[ok], x[ok]
        self._check_theta(theta)
        if len(theta) < 2:
            raise ValueError(f"fit needs at least 2 valid simulations, got {len(theta)}")
        g = torch.Generator().manual_seed(split_seed)
        perm = torch.randperm(len(theta), generator=g)
        n_val = round(val_fraction * len(theta)) if val_fraction > 0 else 0
        n_val = max(1, n_val) if val_fraction > 0 else 0
        vi, ti = perm[:n_val], perm[n_val:]
        self.n_train = len(ti)
        config = self._config(self.n_train, train)
        pre, adjust = self._fit_pre(theta[ti], x[ti])
        self._build(tuple(x.shape[1:]), pre, adjust)
        train_b = ArrayBatches(theta[ti], x[ti], batch_size=config.batch_size, seed=config.seed)
        val_b = None
        if n_val:
            val_b = ArrayBatches(
                theta[vi], x[vi], batch_size=max(config.batch_size, 4096), shuffle=False
            )
        return train_b, val_b

    def _dataset_batches(
        self, data: Any, val_fraction: float, split_seed: int, n_fit: int, train: dict[str, Any]
    ) -> tuple[Any, Any]:
        import simulators

        from ..data import H5Batches, split_mask

        path = os.fspath(getattr(data, "path", data))
        # one streaming pass: count invalid rows, check the support, collect rows for the scaler
        fit_t, fit_x, rows, n_train, dropped, n_total = [], [], 0, 0, 0, 0
        with simulators.open_dataset(path) as ds:
            meta = dict(ds.meta)
            x_shape = ds.x_shape
            if self.support is None:
                if "prior" not in meta:
                    raise ValueError(f"{path} names no prior; pass one to NPE(prior)")
                self._set_prior(prior_from_dict(meta["prior"]))
            for i, (t, xx) in enumerate(ds.iter_chunks()):
                ok = np.isfinite(t).all(1) & np.isfinite(xx.reshape(len(xx), -1)).all(1)
                dropped += int((~ok).sum())
                n_total += len(t)
                self._check_theta(torch.as_tensor(t[ok]))
                keep = ok & split_mask(i, len(t), "train", val_fraction, split_seed)
                n_train += int(keep.sum())
                if rows < n_fit:
                    fit_t.append(t[keep][: n_fit - rows])
                    fit_x.append(xx[keep][: n_fit - rows])
                    rows += len(fit_t[-1])
        self.n_dropped, self.n_train = dropped, n_train
        self.param_names = list(meta.get("param_names", [])) or self.param_names
        self._log_dropped(n_total)
        if n_train < 1 or rows < 2:
            raise ValueError(f"{path}: fewer than 2 valid training simulations")
        pre, adjust = self._fit_pre(
            torch.as_tensor(np.concatenate(fit_t)), torch.as_tensor(np.concatenate(fit_x))
        )
        self._build(tuple(x_shape), pre, adjust)
        config = self._config(n_train, train)
        kw = {"val_fraction": val_fraction, "split_seed": split_seed, "drop_invalid": True}
        train_b = H5Batches(
            path, split="train", batch_size=config.batch_size, seed=config.seed, **kw
        )
        val_b = None
        if val_fraction > 0:
            val_b = H5Batches(
                path, split="val", batch_size=max(config.batch_size, 4096), shuffle=False, **kw
            )
        return train_b, val_b

    # ------------------------------------------------------------------ inference
    def _require_net(self) -> NPENet:
        if self.net is None:
            raise RuntimeError("NPE is not trained: call fit() or NPE.load() first")
        return self.net

    def _observations(self, x: Any) -> tuple[Tensor, bool]:
        """Observations as (B, *x_shape) float32 on the CPU, and whether one was given."""
        xt = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float32))
        xt = xt.detach().float().cpu()
        shape = self.x_shape
        if tuple(xt.shape) == shape:
            return xt.unsqueeze(0), True
        if xt.dim() == len(shape) + 1 and tuple(xt.shape[1:]) == shape:
            return xt, len(xt) == 1
        if xt.numel() == math.prod(shape) and len(shape) == 1:
            return xt.reshape(1, *shape), True
        raise ValueError(f"x must have shape {shape} or (B, *{shape}), got {tuple(xt.shape)}")

    @torch.no_grad()
    def sample_batched(
        self,
        sample_shape: Sequence[int] | int,
        x: Any,
        *,
        generator: torch.Generator | None = None,
        batch_size: int = 100_000,
    ) -> Any:
        """Draws ``sample_shape`` samples for each of B observations.

        Args:
            sample_shape: e.g. ``(n,)``.
            x: observations (B, *x_shape).
            generator: a CPU :class:`torch.Generator` for reproducible draws.
            batch_size: flow evaluations per forward pass.

        Returns:
            Shape (*sample_shape, B, P); numpy for numpy ``x``, else a CPU tensor.
        """
        net = self._require_net()
        shape = (sample_shape,) if isinstance(sample_shape, int) else tuple(sample_shape)
        n = math.prod(shape)
        xs, _ = self._observations(x)
        b = len(xs)
        if generator is None:
            generator = torch.Generator()
            generator.seed()
        net.eval()
        c = net.condition(xs.to(self.device))
        h = net.embedding(c)
        out = []
        total = n * b
        for s in range(0, total, batch_size):
            idx = torch.arange(s, min(s + batch_size, total), device=self.device) % b
            z = torch.randn(len(idx), self.dim, generator=generator)
            y = net.flow.from_latent(z.to(self.device, h.dtype), h[idx])
            out.append(net.parameters_of(y.double(), c[idx]).float().cpu())
        theta = torch.cat(out).reshape(*shape, b, self.dim)
        return theta if isinstance(x, Tensor) else theta.numpy()

    def sample(
        self,
        sample_shape: Sequence[int] | int,
        x: Any,
        *,
        generator: torch.Generator | None = None,
        batch_size: int = 100_000,
    ) -> Any:
        """Posterior samples given one observation (shape ``x_shape`` or (1, *x_shape)).

        Every sample lies inside the prior's support. Several observations (B, *x_shape) are
        passed on to :meth:`sample_batched` (result (*sample_shape, B, P)).

        Returns:
            Shape (*sample_shape, P); numpy for numpy ``x``, else a CPU tensor.
        """
        self._require_net()
        xs, single = self._observations(x)
        if not single:
            return self.sample_batched(sample_shape, x, generator=generator, batch_size=batch_size)
        theta = self.sample_batched(sample_shape, xs, generator=generator, batch_size=batch_size)
        theta = theta.squeeze(-2)
        return theta if isinstance(x, Tensor) else theta.numpy()

    def log_prob(self, theta: Any, x: Any, *, batch_size: int = 100_000) -> Any:
        """log p(θ | x), exactly normalized over the prior's support (``-inf`` outside).

        Args:
            theta: parameters (N, P) or (P,).
            x: one observation (shared by all rows) or one per row (N, *x_shape).
            batch_size: rows per forward pass.

        Returns:
            Shape (N,): numpy float64 for numpy θ, else a float64 tensor (differentiable in θ
            when gradients are enabled).
        """
        net = self._require_net()
        as_numpy = not isinstance(theta, Tensor)
        th = torch.as_tensor(np.asarray(theta)) if as_numpy else theta
        th = th.double().reshape(-1, self.dim)
        xs, single = self._observations(x)
        if not single and len(xs) != len(th):
            raise ValueError(f"x has {len(xs)} observations for {len(th)} theta rows")
        net.eval()
        out = []
        grad = torch.is_grad_enabled() and not as_numpy and th.requires_grad
        with torch.set_grad_enabled(grad):
            c_all = net.condition(xs.to(self.device)) if single else None
            h_all = net.embedding(c_all) if single else None
            for s in range(0, len(th), batch_size):
                tb = th[s : s + batch_size].to(self.device)
                if single:
                    c = c_all.expand(len(tb), *c_all.shape[1:])
                    h = h_all.expand(len(tb), -1)
                else:
                    c = net.condition(xs[s : s + batch_size].to(self.device))
                    h = net.embedding(c)
                inside = self.support.contains(tb)
                y, ladj = net.features(tb, c)
                y = torch.where(inside[:, None], y, torch.zeros_like(y))  # keep the flow finite
                lq = net.flow.log_prob_features(y.to(h.dtype), h).double() + ladj
                lq = torch.where(inside & torch.isfinite(lq), lq, torch.full_like(lq, -math.inf))
                out.append(lq)
        lp = torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)
        return lp.detach().cpu().numpy() if as_numpy else lp

    def prior_log_prob(self, theta: Any) -> Any:
        """The prior's log-density per row (``-inf`` outside its support)."""
        if self.prior is None:
            raise RuntimeError("this estimator was saved with a prior that could not be described")
        as_numpy = not isinstance(theta, Tensor)
        th = torch.as_tensor(np.asarray(theta)) if as_numpy else theta
        lp = prior_log_prob(self.prior, th.reshape(-1, self.dim))
        return lp.double().numpy() if as_numpy else lp

    def to(self, device: str | torch.device) -> NPE:
        """Moves the estimator to ``device``; returns ``self``."""
        self.device = resolve_device(device)
        if self.net is not None:
            self.net.to(self.device)
        return self

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict[str, Any]:
        """Everything but the weights needed to rebuild the estimator (JSON-serializable)."""
        net = self._require_net()
        result = None
        if self.result is not None:
            result = {k: v for k, v in asdict(self.result).items() if k != "history"}
        return {
            "prior": prior_to_dict(self.prior) if self.prior is not None else None,
            "support": self.support.to_dict(),
            "preprocessing": net.pre.to_dict(),
            "log_x": self.log_x,
            "adjust": net.adjust.to_dict() if net.adjust is not None else None,
            "arch": net.arch,
            "embedding": net.embedding.config,
            "x_shape": list(self.x_shape),
            "param_names": self.param_names,
            "seed": self.seed,
            "train_options": self.train_options,
            "n_train": self.n_train,
            "n_dropped": self.n_dropped,
            "result": result,
        }

    def save(self, directory: str | os.PathLike) -> str:
        """Writes ``model.safetensors`` and ``model.json`` atomically (no pickle).

        Returns:
            The SHA-256 of the weights file.
        """
        net = self._require_net()
        return save_model(directory, model_type=self.model_type, config=self.config(),
                          state_dict=net.state_dict())  # fmt: skip

    @classmethod
    def load(cls, directory: str | os.PathLike, *, device: str | torch.device = "auto") -> NPE:
        """Loads an estimator written by :meth:`save`.

        A prior that :func:`.support.prior_to_dict` could not describe comes back as ``None``
        (sampling and ``log_prob`` still work: they need only the saved support).

        Raises:
            CheckpointError: missing/truncated files, another model type or format version.
        """
        config, state = load_model(directory, model_type=cls.model_type)
        try:
            arch = config["arch"]
            npe = cls(None, embedding=config["embedding"], kind=arch["kind"],
                      transforms=arch["transforms"], hidden=arch["hidden"], bins=arch["bins"],
                      activation=arch.get("activation", "relu"),
                      log_x=config.get("log_x", False), adjust=bool(config.get("adjust")),
                      seed=config["seed"],
                      device="cpu", **config["train_options"])  # fmt: skip
            if config["prior"] is not None:
                npe._set_prior(prior_from_dict(config["prior"]))
            npe.support = SupportTransform.from_dict(config["support"])
            pre = from_dict(config["preprocessing"])
            adjust = config.get("adjust")  # older checkpoints: none
            adjust = LinearAdjust.from_dict(adjust) if adjust else None
            npe._build(tuple(config["x_shape"]), pre, adjust)
            npe.net.load_state_dict(state)
        except (KeyError, TypeError, RuntimeError, ValueError) as exc:
            msg = str(exc).splitlines()[0]
            raise CheckpointError(f"{directory}: checkpoint does not match NPE ({msg})") from None
        npe.param_names = config.get("param_names")
        npe.n_train, npe.n_dropped = config.get("n_train", 0), config.get("n_dropped", 0)
        npe.checkpoint_hash = read_meta(directory)["weights_sha256"]
        npe.run_dir = str(Path(directory).resolve())
        npe.net.eval()
        return npe.to(device)

    def __repr__(self) -> str:
        state = "trained" if self.net is not None else "untrained"
        return f"NPE(dim={self.dim if self.support else '?'}, arch={self.arch}, {state})"
