r"""Neural posterior estimation (NPE) with the package's conditional spline flows.

A conditional spline flow is fitted to simulations :math:`(\theta_i, x_i)` by maximum likelihood,
which for draws from the prior makes it an estimate of the posterior (Papamakarios & Murray,
2016, arXiv:1605.06376; Greenberg et al., 2019, arXiv:1905.07488); :mod:`.network` gives the
parameterization. Samples are always inside the prior's support, and :meth:`NPE.log_prob` is
exactly normalized over it -- no rejection, no leakage.

Training is the shared :class:`~surrogates.training.Trainer` (early stopping on a validation split,
best weights restored); files are streamed from disk by :class:`~surrogates.data.H5Batches`;
simulations with NaN/inf are dropped and counted (:attr:`NPE.n_dropped`, logged); :meth:`NPE.save`
writes safetensors + JSON (:mod:`surrogates.checkpoint`).

The defaults (:mod:`.defaults`) were chosen by measurement with ``benchmarks/npe_vs_sbi.py``:
``docs/decisions/001``-``003`` and ``005``; figures measured before commit 4a9537f used a weaker
C2ST (``docs/decisions/004-c2st-protocol.md``).

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
from typing import Any, Self

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from simulators.dataset import array_fingerprint
from simulators.errors import UserError

from ..checkpoint import Persistent
from ..device import resolve_device
from ..models.flows import ACTIVATIONS
from ..nn import build_embedding
from ..preprocessing import LinearAdjust, Standardize, from_dict
from ..training import (
    ArrayBatches,
    TrainConfig,
    Trainer,
    TrainResult,
    split_indices,
    validation_batch_size,
)
from .defaults import default_hidden, default_train_config, default_transforms
from .network import NPENet
from .simulations import check_finite, fit_preprocessing, observations, scan_dataset, valid_arrays
from .support import (
    SupportTransform,
    prior_from_dict,
    prior_log_prob,
    prior_to_dict,
    torch_prior,
)

__all__ = ["NPE"]

log = logging.getLogger(__name__)


class NPE(Persistent):
    """Neural posterior estimator :math:`p(\\theta \\mid x)` on a conditional spline flow.

    Args:
        prior: a :class:`torch.distributions.Distribution` (e.g. ``sbi``'s ``BoxUniform``,
            ``Independent(Uniform)``, ``MultivariateNormal``, ``Independent(LogNormal)``) or a
            prior of :mod:`simulators.base`; its ``support`` fixes the bijection. ``None`` only
            with :meth:`fit` on a dataset file, which then supplies the prior.
        embedding: embedding of x: a name or spec for :func:`~surrogates.nn.build_embedding`
            (default: identity for vectors, ``"cnn"`` for fields).
        kind: ``"autoregressive"`` (MAF-style spline flow, the default: the best density) or
            ``"coupling"`` (faster sampling).
        transforms: spline transforms; ``None``: :func:`default_transforms` of the number of
            training simulations.
        hidden: hidden widths of each transform's conditioner; ``None``:
            :func:`default_hidden` of the number of training simulations.
        bins: spline bins.
        activation: the conditioners' activation (a key of
            :data:`~surrogates.models.flows.ACTIVATIONS`), SiLU by default
            (``docs/decisions/002-npe-architecture-defaults.md``).
        log_x: standardize x on the log scale: ``"auto"`` (default) per feature, where the
            feature is positive in every training simulation and less skewed after the log
            (:class:`~surrogates.preprocessing.Standardize`); ``True`` / ``False`` for all
            features.
            Chosen by measurement: ``docs/decisions/005-npe-log-scale-x.md``.
        adjust: fit the flow to the whitened residual of the parameters' linear regression on
            the standardized x (:class:`~surrogates.preprocessing.LinearAdjust`): ``"auto"``
            (default) where x reaches the flow as is (vector observations, identity embedding)
            and there are at least 10 training simulations per regression coefficient;
            ``True`` / ``False``. Chosen by measurement:
            ``docs/decisions/003-npe-linear-adjustment.md``.
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
            raise UserError(f"kind must be 'autoregressive' or 'coupling', got {kind!r}")
        if log_x not in (True, False, "auto"):
            raise UserError(f"log_x must be True, False or 'auto', got {log_x!r}")
        if adjust not in (True, False, "auto"):
            raise UserError(f"adjust must be True, False or 'auto', got {adjust!r}")
        if activation not in ACTIVATIONS:
            known = ", ".join(ACTIVATIONS)
            raise UserError(f"activation must be one of {known}, got {activation!r}")
        unknown = sorted(set(train) - set(TrainConfig.__dataclass_fields__))
        if unknown:
            raise UserError(f"unknown NPE option(s): {', '.join(unknown)}")
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
        self.n_dropped = self.n_train = 0
        self._data: dict[str, Any] | None = None  # the training data's record (resume checks)
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
        with torch.random.fork_rng(devices=[]):  # seeds the CPU generator only, restored
            torch.default_generator.manual_seed(self.seed)
            emb = build_embedding(self.embedding_spec, self.x_shape)
            self.net = NPENet(self.dim, emb, arch, self.support, pre, adjust)
        self.net.to(self.device)

    def _config(self, n_train: int, overrides: dict[str, Any]) -> TrainConfig:
        options = {**default_train_config(n_train), "seed": self.seed, "device": str(self.device),
                   **self.train_options, **overrides}  # fmt: skip
        return TrainConfig(**options)

    def _fit_pre(self, theta: Tensor, x: Tensor) -> tuple[Standardize, LinearAdjust | None]:
        use = self.adjust
        if use == "auto":  # x reaches the flow as is, and 10 rows per regression coefficient
            identity = self.embedding_spec in (None, "identity", {"type": "identity"})
            use = identity and x.dim() == 2 and len(x) >= 10 * (x.shape[1] + 1)
        return fit_preprocessing(theta, x, self.support, log_x=self.log_x, adjust=bool(use))

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
            UserError: a θ outside the prior's support, mismatched shapes, or no valid rows.
        """
        if x is None and (isinstance(theta, (str, os.PathLike)) or hasattr(theta, "iter_chunks")):
            train_b, val_b = self._dataset_batches(theta, val_fraction, split_seed, n_fit, train)
        else:
            if x is None:
                raise UserError("fit needs (theta, x) or a dataset path")
            train_b, val_b = self._array_batches(theta, x, val_fraction, split_seed, train)
        config = self._config(self.n_train, train)
        trainer = Trainer(self.net, config)
        self.device = trainer.device
        self.result = trainer.fit(train_b, val_b, run_dir=run_dir, resume=resume, data=self._data)
        self.net.eval()
        if run_dir is not None:
            self.save(run_dir)
        return self

    def _array_batches(
        self, theta: Any, x: Any, val_fraction: float, split_seed: int, train: dict[str, Any]
    ) -> tuple[ArrayBatches, ArrayBatches | None]:
        if self.support is None:
            raise UserError("NPE needs a prior to fit on arrays")
        n_total = len(theta)
        theta, x, self.n_dropped = valid_arrays(theta, x, self.support)
        self._data = {"path": None, **array_fingerprint(theta.numpy())}
        self._log_dropped(n_total)
        ti, vi = split_indices(len(theta), val_fraction, split_seed)
        self.n_train = len(ti)
        config = self._config(self.n_train, train)
        pre, adjust = self._fit_pre(theta[ti], x[ti])
        self._build(tuple(x.shape[1:]), pre, adjust)
        train_b = ArrayBatches(theta[ti], x[ti], batch_size=config.batch_size, seed=config.seed)
        val_b = None
        if len(vi):
            val_b = ArrayBatches(theta[vi], x[vi], batch_size=validation_batch_size(
                config.batch_size), shuffle=False)  # fmt: skip
        return train_b, val_b

    def _dataset_batches(
        self, data: Any, val_fraction: float, split_seed: int, n_fit: int, train: dict[str, Any]
    ) -> tuple[Any, Any]:
        import simulators

        from ..data import H5Batches

        path = os.fspath(getattr(data, "path", data))
        with simulators.open_dataset(path) as ds:
            meta = dict(ds.meta)
        if self.support is None:
            if "prior" not in meta:
                raise UserError(f"{path} names no prior; pass one to NPE(prior)")
            self._set_prior(prior_from_dict(meta["prior"]))
        scan = scan_dataset(path, self.support, val_fraction=val_fraction,
                            split_seed=split_seed, n_fit=n_fit)  # fmt: skip
        self.n_dropped, self.n_train, self._data = scan.n_dropped, scan.n_train, scan.fingerprint
        self.param_names = list(meta.get("param_names", [])) or self.param_names
        self._log_dropped(scan.n_total)
        self._build(scan.x_shape, *self._fit_pre(scan.fit_theta, scan.fit_x))
        config = self._config(scan.n_train, train)
        kw = {"val_fraction": val_fraction, "split_seed": split_seed, "drop_invalid": True}
        train_b = H5Batches(
            path, split="train", batch_size=config.batch_size, seed=config.seed, **kw
        )
        val_b = None
        if val_fraction > 0:
            val_b = H5Batches(path, split="val", batch_size=validation_batch_size(
                config.batch_size), shuffle=False, **kw)  # fmt: skip
        return train_b, val_b

    def _log_dropped(self, n_total: int) -> None:
        if self.n_dropped:
            log.warning("NPE: dropped %d of %d simulations with NaN/inf", self.n_dropped, n_total)

    # ------------------------------------------------------------------ inference
    def _require_net(self) -> NPENet:
        if self.net is None:
            raise RuntimeError("NPE is not trained: call fit() or NPE.load() first")
        return self.net

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
        xs, _ = observations(x, self.x_shape)
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
            out.append(net.draw(z.to(self.device), h[idx], c[idx]).float().cpu())
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
        xs, single = observations(x, self.x_shape)
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
        th = check_finite(th.double().reshape(-1, self.dim), "theta")
        xs, single = observations(x, self.x_shape)
        if not single and len(xs) != len(th):
            raise UserError(f"x has {len(xs)} observations for {len(th)} theta rows")
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
                out.append(net.log_density(tb, c, h))
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

    def to(self, device: str | torch.device) -> Self:
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

    def weights(self) -> nn.Module:
        return self._require_net()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Self:
        """An untrained estimator (on the CPU) of the configuration :meth:`config` returned.

        A prior that :func:`.support.prior_to_dict` could not describe comes back as ``None``
        (sampling and ``log_prob`` still work: they need only the saved support).
        """
        arch = config["arch"]
        npe = cls(None, embedding=config["embedding"], kind=arch["kind"],
                  transforms=arch["transforms"], hidden=arch["hidden"], bins=arch["bins"],
                  activation=arch.get("activation", "relu"), log_x=config.get("log_x", False),
                  adjust=bool(config.get("adjust")), seed=config["seed"], device="cpu",
                  **config["train_options"])  # fmt: skip
        if config["prior"] is not None:
            npe._set_prior(prior_from_dict(config["prior"]))
        npe.support = SupportTransform.from_dict(config["support"])
        pre = from_dict(config["preprocessing"])
        adjust = config.get("adjust")  # older checkpoints: none
        adjust = LinearAdjust.from_dict(adjust) if adjust else None
        npe._build(tuple(config["x_shape"]), pre, adjust)
        npe.param_names = config.get("param_names")
        npe.n_train, npe.n_dropped = config.get("n_train", 0), config.get("n_dropped", 0)
        npe.net.eval()
        return npe

    def __repr__(self) -> str:
        state = "trained" if self.net is not None else "untrained"
        return f"NPE(dim={self.dim if self.support else '?'}, arch={self.arch}, {state})"
