"""The :class:`Surrogate` base class: one interface for flows, VAEs and GANs.

A surrogate owns a fitted :class:`~surrogates.preprocessing.Preprocessor`, a torch module ``net``
(which provides ``loss(batch, *, generator)`` for the shared :class:`~surrogates.training.Trainer`
and ``sample_features(c, generator)``), the dataset's metadata and its architecture settings.
Subclasses set :attr:`Surrogate.model_type` and implement :meth:`Surrogate._build`.

Example:
    >>> import simulators  # doctest: +SKIP
    >>> from surrogates.models import Flow  # doctest: +SKIP
    >>> data = simulators.open_dataset("datasets/two_moons.h5")  # doctest: +SKIP
    >>> model = Flow.for_dataset(data).fit(data, max_epochs=20)  # doctest: +SKIP
    >>> x = model.sample(data.theta[:5])  # doctest: +SKIP
    >>> model.save("runs/moons"); model = Flow.load("runs/moons")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import Tensor, nn

import simulators
from simulators.base import Prior, check_array, check_theta, prior_from_dict
from simulators.dataset import DatasetCheck, check_arrays, check_dataset

from ..checkpoint import Persistent
from ..device import resolve_device
from ..preprocessing import (
    FieldPreprocessing,
    Preprocessor,
    ShowerPreprocessing,
    default_preprocessing,
    from_dict,
)
from ..training import (
    ArrayBatches,
    TrainConfig,
    Trainer,
    TrainResult,
    split_indices,
    validation_batch_size,
)
from ..training.resume import CHECKPOINT, check_data, merge_settings, read_run
from .arch import ArchConfig

__all__ = ["Surrogate", "SurrogateSimulator", "gate", "read_training_data", "training_prior"]

log = logging.getLogger(__name__)


def _meta_of(data: Any) -> dict[str, Any]:
    meta = getattr(data, "meta", None)
    return dict(meta) if meta else {}


def gate(data: Any, drop_nonfinite: bool = False) -> tuple[DatasetCheck, np.ndarray | None]:
    """The input gate for training data (:func:`simulators.dataset.check_dataset` for files,
    :func:`~simulators.dataset.check_arrays` for ``(theta, x)``): the check, and for arrays the
    mask of rows to keep."""
    policy = "drop" if drop_nonfinite else "refuse"
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise simulators.UserError("training data are a dataset file or arrays (theta, x)")
        keep, check = check_arrays(*(_numpy(a) for a in data), policy)
        return check, keep
    return check_dataset(getattr(data, "path", data), policy), None


def _numpy(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)


def read_training_data(
    data: Any,
    *,
    n: int | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    drop_nonfinite: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Up to ``n`` training rows ``(theta, x, meta)`` of a dataset path/object or ``(theta, x)``,
    after the input gate (:func:`gate`; rows with NaN/inf are refused, or skipped with
    ``drop_nonfinite``).

    For files, rows come from the training split of :mod:`surrogates.data` (in file order).
    """
    check, keep = gate(data, drop_nonfinite)
    if keep is not None:
        theta, x = (_numpy(a)[keep] for a in data)
        return theta[:n], x[:n], {}
    from ..data import H5Batches

    ds = H5Batches(check.path, split="train", val_fraction=val_fraction, split_seed=split_seed,
                   batch_size=8192, shuffle=False, drop_invalid=drop_nonfinite)  # fmt: skip
    thetas, xs, rows = [], [], 0
    for theta, x in ds:
        thetas.append(theta.numpy())
        xs.append(x.numpy())
        rows += len(theta)
        if n is not None and rows >= n:
            break
    if not thetas:
        raise simulators.UserError(f"{check.path}: the training split holds no rows")
    return np.concatenate(thetas)[:n], np.concatenate(xs)[:n], dict(ds.meta)


def training_prior(meta: dict[str, Any]) -> Prior | None:
    """The prior of the training data: the dataset's ``prior`` attribute, else that of its
    simulator when it can be built here; None when neither is known (no support to check)."""
    if isinstance(meta.get("prior"), dict):
        try:
            return prior_from_dict(meta["prior"])
        except simulators.UserError:
            pass
    if meta.get("simulator"):
        try:
            return simulators.get(meta["simulator"], **meta.get("simulator_config", {})).prior
        except Exception:  # the training simulator may be unavailable here
            return None
    return None


def _tensor(a: Any, dtype: torch.dtype = torch.float32) -> Tensor:
    return a.to(dtype) if isinstance(a, Tensor) else torch.as_tensor(np.asarray(a), dtype=dtype)


class Surrogate(Persistent):
    """Base class of conditional generative surrogates p(x | θ).

    Args:
        preprocessing: a fitted preprocessor.
        meta: metadata of the training dataset (simulator name and config, param_names, x_shape).
        seed: seeds the weight initialization (inside :func:`torch.random.fork_rng`, so the global
            generator is left untouched).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        **arch: architecture settings of the subclass.
    """

    #: saved in checkpoints; loading a checkpoint of another type is an error
    model_type: ClassVar[str] = "surrogate"
    #: the family's architecture settings (a dataclass with defaults per kind of data)
    Arch: ClassVar[type[ArchConfig]] = ArchConfig
    #: the family's training settings under those given to :meth:`fit` (a fresh run only)
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        preprocessing: Preprocessor,
        *,
        meta: dict[str, Any] | None = None,
        seed: int = 0,
        device: str | torch.device = "auto",
        **arch: Any,
    ):
        self.pre = preprocessing
        self.meta = dict(meta or {})
        self.seed = int(seed)
        self.arch = self._check_arch(arch)
        # the CPU generator only, restored on exit: no device's global generator is touched
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(self.seed)
            self.net = self._build()
        self.net.pre = self.pre  # the net's loss and step read the data through it
        self.device = resolve_device(device)
        self.net.to(self.device)
        self.result: TrainResult | None = None
        self.checkpoint_hash: str | None = None
        self.run_dir: str | None = None
        self.n_dropped = 0
        self._prior: tuple[Prior | None] | None = None

    # --------------------------------------------------------------- subclass API
    @property
    def data_kind(self) -> str:
        """``"showers"``, ``"fields"`` or ``"vectors"``, from the preprocessing."""
        if isinstance(self.pre, ShowerPreprocessing):
            return "showers"
        if isinstance(self.pre, FieldPreprocessing):
            return "fields"
        return "vectors"

    def _check_arch(self, arch: dict[str, Any]) -> dict[str, Any]:
        """Validates and completes the architecture settings against :attr:`Arch` (the
        defaults of :attr:`data_kind`); returns them JSON-ready."""
        return self.Arch.for_data(self.data_kind).replace(**arch).to_dict()

    def _build(self) -> nn.Module:
        """Builds ``net`` from ``self.pre`` and ``self.arch`` (the base then sets ``net.pre``)."""
        raise NotImplementedError

    # --------------------------------------------------------------- construction
    @classmethod
    def default_preprocessing(cls, meta: dict[str, Any], x: np.ndarray) -> Preprocessor:
        """The preprocessing for this family and data (see
        :func:`~surrogates.preprocessing.default_preprocessing`)."""
        return default_preprocessing(meta, x.shape[1:])

    @classmethod
    def for_dataset(
        cls,
        data: Any,
        *,
        preprocessing: Preprocessor | None = None,
        meta: dict[str, Any] | None = None,
        n_fit: int = 100_000,
        seed: int = 0,
        device: str | torch.device = "auto",
        drop_nonfinite: bool = False,
        **arch: Any,
    ) -> Surrogate:
        """Builds an untrained model whose preprocessing is fitted on ``data``.

        Args:
            data: a dataset path, a :func:`simulators.open_dataset` object or ``(theta, x)``.
            preprocessing: an unfitted preprocessor; default from the dataset's simulator.
            meta: for arrays taken from a file (e.g. selected or augmented rows), its metadata:
                the model takes that file's defaults (preprocessing, backbone).
            n_fit: training rows used to fit the preprocessing.
            seed: weight initialization (and the preprocessing's dequantization noise).
            device: where the model lives.
            drop_nonfinite: skip rows with NaN/inf instead of refusing the data.
            **arch: architecture settings.

        Raises:
            UserError: data that fail the input gate (:func:`gate`), naming the file or argument.
        """
        theta, x, file_meta = read_training_data(data, n=n_fit, drop_nonfinite=drop_nonfinite)
        names = [f"theta{i}" for i in range(theta.shape[1])]
        meta = file_meta or dict(meta or {}) or {"x_shape": list(x.shape[1:]), "param_names": names}
        pre = preprocessing or cls.default_preprocessing(meta, x)
        f64 = torch.float64
        pre.fit(torch.as_tensor(x, dtype=f64), torch.as_tensor(theta, dtype=f64),
                generator=torch.Generator().manual_seed(seed))  # fmt: skip
        return cls(pre, meta=meta, seed=seed, device=device, **arch)

    # --------------------------------------------------------------- training
    def fit(
        self,
        data: Any,
        val_data: Any = None,
        *,
        run_dir: str | os.PathLike | None = None,
        resume: bool = False,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        drop_nonfinite: bool = False,
        **train_kwargs: Any,
    ) -> Surrogate:
        """Trains with the shared :class:`~surrogates.training.Trainer`; returns ``self``.

        The data pass the input gate first (:func:`gate`): rows holding NaN/inf are refused with
        their count and the first row index, or skipped (and counted in :attr:`n_dropped`)
        with ``drop_nonfinite``.

        Args:
            data: a dataset path / object (streamed from HDF5, validation split from
                :mod:`surrogates.data`) or arrays ``(theta, x)``.
            val_data: validation arrays ``(theta, x)``; default: ``val_fraction`` of ``data``.
            run_dir: checkpoints, ``metrics.csv`` and the final model go here.
            resume: continue from ``run_dir``'s checkpoint: on the same data (else an error),
                with its stored training settings where none are given again (a given one that
                disagrees is an error).
            val_fraction, split_seed: the validation split.
            drop_nonfinite: skip rows with NaN/inf instead of refusing the data.
            **train_kwargs: :class:`~surrogates.training.TrainConfig` fields.

        Raises:
            UserError: data that fail the gate; on resume, another dataset or other settings.
        """
        check, _ = gate(data, drop_nonfinite)
        if val_data is not None:
            gate(val_data, drop_nonfinite)
        self.n_dropped = check.n_dropped
        if check.n_dropped:
            log.warning("%s: skipped %d of %d rows holding NaN/inf (drop_nonfinite)",
                        check.path, check.n_dropped, check.n)  # fmt: skip
        record = {"path": check.path, **check.fingerprint, "drop_nonfinite": bool(drop_nonfinite),
                  "val_fraction": val_fraction, "split_seed": split_seed}  # fmt: skip
        resuming = resume and run_dir is not None and (Path(run_dir) / CHECKPOINT).is_file()
        # a resumed run's checkpoint holds the settings it started with, family defaults included
        defaults = {} if resuming else self.train_defaults()
        settings = {**defaults, "device": str(self.device), **train_kwargs}
        if resuming:
            stored = read_run(run_dir)
            check_data(stored.data, record, source=str(run_dir))
            fields = TrainConfig.__dataclass_fields__
            settings = merge_settings({k: v for k, v in stored.settings.items() if k in fields},
                                      settings, source=str(run_dir))  # fmt: skip
        config = TrainConfig(**settings)
        train, val = self._batches(data, val_data, config, val_fraction, split_seed,
                                   drop_nonfinite)  # fmt: skip
        trainer = Trainer(self.net, config)
        self.device = trainer.device
        self.result = trainer.fit(train, val, run_dir=run_dir, resume=resume, data=record)
        if run_dir is not None and trainer.is_main:  # one writer under torchrun
            self.save(run_dir)
        return self

    def _batches(
        self,
        data: Any,
        val_data: Any,
        config: TrainConfig,
        val_fraction: float,
        split_seed: int,
        drop_nonfinite: bool = False,
    ) -> tuple[Any, Any]:
        bs, vbs = config.batch_size, validation_batch_size(config.batch_size)
        if val_data is not None and drop_nonfinite:
            keep = gate(val_data, True)[1]
            val_data = tuple(_numpy(a)[keep] for a in val_data)
        if isinstance(data, (tuple, list)):
            keep = gate(data, drop_nonfinite)[1]
            theta, x = _tensor(_numpy(data[0])[keep]), _tensor(_numpy(data[1])[keep])
            if val_data is None and val_fraction > 0:
                ti, vi = split_indices(len(theta), val_fraction, split_seed)
                val_data = (theta[vi], x[vi])
                theta, x = theta[ti], x[ti]
            train = ArrayBatches(theta, x, batch_size=bs, seed=config.seed)
            val = None
            if val_data is not None:
                val = ArrayBatches(_tensor(val_data[0]), _tensor(val_data[1]), batch_size=vbs,
                                   shuffle=False)  # fmt: skip
            return train, val
        from ..data import H5Batches

        path = getattr(data, "path", data)
        kw = {"val_fraction": val_fraction, "split_seed": split_seed,
              "drop_invalid": drop_nonfinite}  # fmt: skip
        train = H5Batches(path, split="train", batch_size=bs, seed=config.seed, **kw)
        val = H5Batches(path, split="val", batch_size=vbs, shuffle=False, **kw)
        if val_data is not None:
            val = ArrayBatches(_tensor(val_data[0]), _tensor(val_data[1]), batch_size=vbs,
                               shuffle=False)  # fmt: skip
        return train, (val if val_fraction > 0 or val_data is not None else None)

    # --------------------------------------------------------------- inference
    def to(self, device: str | torch.device) -> Self:
        """Moves the model to ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``); returns ``self``."""
        self.device = resolve_device(device)
        self.net.to(self.device)
        return self

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights (float32 unless the model was cast, e.g. for float64 tests)."""
        return next(self.net.parameters()).dtype

    def train_defaults(self) -> dict[str, Any]:
        """Settings :meth:`fit` takes where none are given (a family may vary them by data)."""
        return dict(self.TRAIN_DEFAULTS)

    def default_batch_size(self) -> int:
        """Rows per sampling pass when :meth:`sample` is given none."""
        return 10_000

    @torch.no_grad()
    def sample(
        self, theta: Any, *, generator: torch.Generator | None = None, batch_size: int | None = None
    ) -> Any:
        """Draws one x per row of ``theta`` (N, P).

        Args:
            theta: conditions, numpy or torch.
            generator: a CPU :class:`torch.Generator` for reproducible draws (default: a fresh
                one seeded from the OS, i.e. not reproducible). Latents are drawn block by
                block, so a seeded draw is reproduced with the same ``batch_size`` and device.
            batch_size: rows per forward pass (default :meth:`default_batch_size`).

        Returns:
            x of shape (N, *x_shape): numpy for numpy input (float32, or float64 for a float64
            model), else a CPU tensor.
        """
        batch_size = batch_size or self.default_batch_size()
        dt = self.dtype
        as_numpy = not isinstance(theta, Tensor)
        self.check_theta(theta)
        th = _tensor(theta if not as_numpy else np.asarray(theta, np.float64), dt)
        th = th.reshape(len(th), -1)
        if generator is None:
            generator = torch.Generator()
            generator.seed()
        self.net.eval()
        out = []
        for s in range(0, len(th), batch_size):
            t = th[s : s + batch_size].to(self.device)
            y = self.net.sample_features(self.pre.condition(t), generator)
            out.append(self.pre.inverse(y, t).cpu())
        shape = tuple(self.meta.get("x_shape") or (out[0].shape[1:] if out else ()))
        x = torch.cat(out).reshape(len(th), *shape) if out else torch.zeros(0, *shape, dtype=dt)
        if as_numpy:
            return x.numpy().astype(np.float32 if dt == torch.float32 else np.float64)
        return x

    def check_theta(self, theta: Any, name: str = "theta") -> None:
        """Refuses conditions that are not finite, of the wrong width, or outside the support
        of the training data's prior (:func:`training_prior`), as :meth:`as_simulator` does.

        Raises:
            SimulatorInputError: a ``UserError`` (a ``ValueError``) naming ``name``.
        """
        if self._prior is None:
            self._prior = (training_prior(self.meta),)
        t = _numpy(theta)
        t = t.reshape(len(t), -1) if t.ndim else t
        p = len(self.meta["param_names"]) if self.meta.get("param_names") else None
        if self._prior[0] is None:
            check_array(t, name, shape=(None, p) if p else None)
        else:
            check_theta(t, self._prior[0], p, name)

    # --------------------------------------------------------------- persistence
    def config(self) -> dict[str, Any]:
        """Everything but the weights needed to rebuild the model (JSON-serializable)."""
        return {"arch": self.arch, "seed": self.seed, "meta": self.meta,
                "preprocessing": self.pre.to_dict()}  # fmt: skip

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Self:
        """An untrained model (on the CPU) of the configuration :meth:`config` returned."""
        pre = from_dict(config["preprocessing"])
        return cls(pre, meta=config["meta"], seed=config["seed"], device="cpu", **config["arch"])

    def weights(self) -> nn.Module:
        return self.net

    def sampling_options(self) -> dict[str, Any]:
        """Settings that change what :meth:`sample` draws beyond the weights (recorded in
        :meth:`as_simulator`'s config, so a resumed file cannot mix them)."""
        return {}

    def as_simulator(self) -> SurrogateSimulator:
        """This model behind the :class:`simulators.Simulator` interface (see
        :class:`SurrogateSimulator`), e.g. for :func:`simulators.generate`."""
        return SurrogateSimulator(self)


class SurrogateSimulator(simulators.Simulator):
    """A trained surrogate behind the simulator interface (a drop-in replacement).

    ``name`` is ``"surrogate:<training simulator>"``; ``param_names``, ``x_shape``, the prior
    and HDF5 aliases are those of the training simulator; ``config`` names the model's run
    directory and checkpoint hash. ``simulate(theta, rng)`` seeds a CPU :class:`torch.Generator`
    from ``rng`` and samples the model on the CPU in batches, so it is pure given ``rng``.
    """

    name = "surrogate"
    defaults: ClassVar[dict[str, Any]] = {
        "model_type": "",
        "run_dir": None,
        "checkpoint": None,
        "base": None,
        "base_config": {},
        "sampling": {},
    }

    def __init__(self, model: Surrogate):
        meta = model.meta
        super().__init__(
            model_type=model.model_type,
            run_dir=model.run_dir,
            checkpoint=model.checkpoint_hash,
            base=meta.get("simulator"),
            base_config=meta.get("simulator_config", {}),
            sampling=model.sampling_options(),
        )
        self.model = model
        self.name = f"surrogate:{meta.get('simulator') or 'unknown'}"
        self.param_names = tuple(meta.get("param_names", ()))
        self.x_shape = tuple(meta.get("x_shape", ()))
        base = None
        if meta.get("simulator"):
            try:
                base = simulators.get(meta["simulator"], **meta.get("simulator_config", {}))
            except Exception:  # the training simulator may be unavailable here
                base = None
        prior = training_prior(meta) if base is None else base.prior
        if base is not None:
            self.h5_aliases = dict(getattr(base, "h5_aliases", {}))
        if prior is not None:
            self.prior = prior
        else:  # no support to check against: an improper flat prior
            k = len(self.param_names)
            self.prior = simulators.Normal(np.zeros(k), np.ones(k))
            self.prior.low, self.prior.high = np.full(k, -np.inf), np.full(k, np.inf)

    def _simulate(self, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        g = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
        device = self.model.device
        self.model.to("cpu")
        try:
            return self.model.sample(theta.astype(np.float32), generator=g)
        finally:
            self.model.to(device)
