"""The one trainer shared by every model (flows, VAEs, GANs, neural posterior estimation).

A model is a :class:`torch.nn.Module` that declares what it provides with the protocols of
:mod:`surrogates.training.protocols`: a ``loss`` (the trainer's default step), or its own
optimizers and ``train_step(batch, ctx)``; optionally ``validation_metrics`` and
``ema_modules``. Every step goes through one :class:`~surrogates.training.StepContext`.

The trainer handles devices, mixed precision (CUDA only), learning-rate warmup and schedules,
gradient clipping and the non-finite skip (through the context), an optional moving average of
the weights (``ema``), validation with early stopping on a chosen quantity (``monitor``; best
weights restored), tracking (``metrics.csv``, TensorBoard when installed, a progress bar when
stderr is a terminal) and atomic checkpoints every N steps that resume bit-for-bit on the CPU:
the checkpoint holds the weights, optimizer and schedule state, the step, epoch and position in
the epoch, the generator state, the logging accumulators, the best weights and the average.
Batches come from any iterable of tuples of tensors; if it has ``set_epoch`` (as
:class:`surrogates.data.H5Batches` and :class:`~surrogates.training.ArrayBatches` do) its order
is a function of the epoch, which is what makes resuming exact.

Distributed training plugs in at :meth:`Trainer.wrap` (the modules a step runs through),
:meth:`Trainer.reduce` (validation quantities, so every process takes the same decision) and
:attr:`Trainer.is_main` (the one process that writes checkpoints, metrics and output); on one
process they are the identity and True. Under torchrun they are those of
:class:`~surrogates.training.distributed.Seam` (DDP, sharded batches, per-rank generators).

Example:
    >>> import torch
    >>> class Mean(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.m = torch.nn.Parameter(torch.zeros(1))
    ...     def loss(self, batch, *, generator=None):
    ...         return ((batch[0] - self.m) ** 2).mean()
    >>> data = ArrayBatches(torch.full((64, 1), 3.0), batch_size=16)
    >>> result = Trainer(Mean(), TrainConfig(lr=0.1, max_epochs=50, progress=False)).fit(data)
    >>> result.steps, round(float(result.last_train_loss), 2)
    (200, 0.0)
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from simulators.errors import UserError

from ..checkpoint import FORMAT_VERSION, CheckpointError, load_state
from ..device import resolve_device
from .batches import ArrayBatches, to_device
from .config import TrainConfig, TrainResult
from .context import default_step
from .distributed import Seam
from .protocols import AveragedModel, LossModel, OptimizerModel, StepModel, ValidationModel
from .resume import CHECKPOINT, check_data, merge_settings, stored_run
from .tracking import MetricsLog, is_tty

__all__ = ["CHECKPOINT", "ArrayBatches", "Trainer", "copy_state"]

_COUNTERS = ("step", "epoch", "pos", "best_val", "best_step", "bad", "plateau_factor",
             "plateau_bad", "done", "stopped_early", "history")  # fmt: skip


def copy_state(module: nn.Module, device: str | None = None) -> dict[str, Tensor]:
    """A detached copy of ``module``'s state dict (on ``device``)."""
    # a plain copy per tensor: deepcopy cost ~2 ms per epoch on small flows
    return {k: v.detach().to(device, copy=True) for k, v in module.state_dict().items()}


def _adam(cls: Any, params: list[Tensor], lr: float, weight_decay: float) -> Any:
    """The optimizer with its fused kernel (one kernel for all tensors: a third of the foreach
    update's time in a small NPE step on the CPU), or foreach where torch has no fused kernel
    for the device (CPU before torch 2.4); torch picks neither by itself on the CPU."""
    try:
        return cls(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):
        return cls(params, lr=lr, weight_decay=weight_decay, foreach=True)


def _averaged_keys(module: nn.Module) -> set[str] | None:
    """State-dict keys the moving average covers (None: all), from ``ema_modules()``."""
    if not isinstance(module, AveragedModel):
        return None
    names = {id(m): name for name, m in module.named_modules()}
    keys: set[str] = set()
    for sub in module.ema_modules():
        if id(sub) not in names:
            raise ValueError("ema_modules() must return submodules of the model")
        prefix = names[id(sub)]
        keys |= {f"{prefix}.{k}" if prefix else k for k in sub.state_dict()}
    return keys


class Trainer:
    """Fits a model (see the module notes).

    Args:
        module: the model.
        config: a :class:`TrainConfig`; keyword arguments override its fields.
    """

    def __init__(self, module: nn.Module, config: TrainConfig | None = None, **overrides: Any):
        config = config or TrainConfig()
        self.config = replace(config, **overrides) if overrides else config
        self.dist = Seam(resolve_device(self.config.device))  # one process, or torchrun's rank
        self.device = self.dist.device
        self.module = module.to(self.device)
        if isinstance(module, StepModel):
            self._step_fn = module.train_step
        elif isinstance(module, LossModel):
            self._step_fn = lambda batch, ctx: default_step(self.wrapped, batch, ctx)
        else:
            raise TypeError(
                f"{type(module).__name__} provides neither loss() nor configure_optimizers() "
                "and train_step() (see surrogates.training.protocols)"
            )
        if isinstance(module, OptimizerModel):
            self.optimizers = list(module.configure_optimizers(self.config))
        else:
            cls = torch.optim.AdamW if self.config.optimizer == "adamw" else torch.optim.Adam
            params = [p for p in module.parameters() if p.requires_grad]
            self.optimizers = [_adam(cls, params, self.config.lr, self.config.weight_decay)]
        for opt in self.optimizers:
            for group in opt.param_groups:
                group.setdefault("base_lr", group["lr"])
        self.wrapped = self.wrap(self.module)
        self.generator = torch.Generator().manual_seed(self.dist.seed(self.config.seed))
        c = self.config
        self.ctx = self.dist.context(self.optimizers, self.generator, self.device, amp=c.amp,
                                     clip_grad=c.clip_grad)  # fmt: skip
        # counters, saved in checkpoints
        self.step = self.epoch = self.pos = 0
        self.best_val: float | None = None
        self.best_step: int | None = None
        self.best_state: dict[str, Tensor] | None = None
        # the moving average lives in a copy of the module, evaluated in place; entries it does
        # not cover (ema_modules) follow the live weights, copied before each use
        self.average: nn.Module | None = None
        self._pairs: list[tuple[Tensor, Tensor]] = []
        self._synced: list[tuple[Tensor, Tensor]] = []
        if self.config.ema is not None:
            self.average = copy.deepcopy(self.module).eval().requires_grad_(False)
            keys = _averaged_keys(self.module)
            live, avg = self.module.state_dict(), self.average.state_dict()
            for k, v in avg.items():
                averaged = v.is_floating_point() and (keys is None or k in keys)
                (self._pairs if averaged else self._synced).append((v, live[k]))
        self.bad = 0
        self.plateau_factor, self.plateau_bad = 1.0, 0
        self.done = False
        self.stopped_early = False
        self.history: list[dict[str, Any]] = []
        self._total_steps: int | None = None
        #: the training data's record (fingerprint and how it is read), saved in checkpoints
        self.data: dict[str, Any] | None = None

    # ----------------------------------------------------------------- distributed seam
    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints, metrics and output (always, on one)."""
        return self.dist.is_main

    def wrap(self, module: nn.Module) -> nn.Module:
        """The module a step runs through (DDP under torchrun, for a loss model)."""
        return self.dist.wrap(module)

    def reduce(self, values: dict[str, float], rows: int) -> tuple[dict[str, float], int]:
        """Row-weighted validation sums and the row count over all processes."""
        return self.dist.reduce(values, rows)

    # ----------------------------------------------------------------- schedule
    def lr_factor(self) -> float:
        """Learning-rate multiplier for the next step (warmup x schedule)."""
        c = self.config
        f = min(1.0, (self.step + 1) / c.warmup) if c.warmup else 1.0
        if c.schedule == "cosine" and self._total_steps:
            t = min(self.step, self._total_steps) / self._total_steps
            f *= 0.5 * (1 + math.cos(math.pi * t))
        elif c.schedule == "plateau":
            f *= self.plateau_factor
        return f

    def _set_lr(self) -> float:
        f = self.lr_factor()
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * f
        return self.optimizers[0].param_groups[0]["lr"]

    @property
    def skipped(self) -> int:
        """Updates skipped for a non-finite loss or gradient norm."""
        return self.ctx.skipped

    def autocast(self) -> Any:
        """The mixed-precision context (see :meth:`StepContext.autocast`)."""
        return self.ctx.autocast()

    # ----------------------------------------------------------------- averaging
    @torch.no_grad()
    def _update_average(self) -> None:
        # the decay ramps up from 0.1 so the average forgets the initial weights quickly
        w = 1 - min(self.config.ema, (1 + self.step) / (10 + self.step))
        for avg, live in self._pairs:
            avg.lerp_(live, w)
        for avg, live in self._synced:
            if not avg.is_floating_point():
                avg.copy_(live)

    @torch.no_grad()
    def _sync_average(self) -> nn.Module | None:
        # what the average does not cover takes the live values
        for avg, live in self._synced:
            avg.copy_(live)
        return self.average

    # ----------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self, batches: Iterable[Any], module: nn.Module | None = None) -> dict[str, float]:
        """Validation quantities of ``module`` (default: the trained one) over ``batches``:
        ``val_loss`` for a model with a loss, ``val_<name>`` for each of its
        ``validation_metrics``; means weighted by batch rows, with a fixed generator."""
        module = self.module if module is None else module
        was = module.training
        module.eval()
        g = torch.Generator().manual_seed(self.config.seed + 1)
        totals: dict[str, float] = {}
        n = 0
        for batch in self._iterate(batches, epoch=0):
            batch = to_device(batch, self.device)
            rows = len(batch[0]) if isinstance(batch, (tuple, list)) else 1
            with self.ctx.autocast():
                values = {}
                if isinstance(module, LossModel):
                    values["loss"] = module.loss(batch, generator=g)
                if isinstance(module, ValidationModel):
                    values.update(module.validation_metrics(batch, generator=g))
            for k, v in values.items():
                totals[k] = totals.get(k, 0.0) + float(v) * rows
            n += rows
        module.train(was)
        totals, n = self.reduce(totals, n)
        return {f"val_{k}": v / max(n, 1) for k, v in totals.items()}

    def evaluate(self, batches: Iterable[Any], module: nn.Module | None = None) -> float:
        """The monitored validation quantity (``val_loss`` by default) over ``batches``."""
        return self.validate(batches, module)[self.config.monitor or "val_loss"]

    def _iterate(self, batches: Iterable[Any], epoch: int) -> Iterator[Any]:
        if hasattr(batches, "set_epoch"):  # a data source's optional hook, not a model's
            batches.set_epoch(epoch)
        if self.config.num_workers > 0 and isinstance(batches, torch.utils.data.IterableDataset):
            from torch.utils.data import DataLoader

            return iter(DataLoader(batches, batch_size=None, num_workers=self.config.num_workers))
        return iter(batches)

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly."""
        counters = {k: getattr(self, k) for k in _COUNTERS}
        counters["logs"] = self.ctx.state_dict()
        self._sync_average()
        return {
            "format_version": FORMAT_VERSION,
            "model": copy_state(self.module, "cpu"),
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "best": self.best_state,
            "ema": None if self.average is None else copy_state(self.average, "cpu"),
            "generator": self.generator.get_state(),
            **self.dist.generator_states(self.generator),
            "counters": json.dumps(counters),
            "config": json.dumps(asdict(self.config)),
            "data": json.dumps(self.data),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        for opt, s in zip(self.optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(s)
        self.best_state = state["best"]
        if self.average is not None:
            if state.get("ema") is None:
                raise CheckpointError("the trainer checkpoint has no weight average (ema)")
            self.average.load_state_dict(state["ema"])
        self.generator.set_state(self.dist.own_generator(state))
        counters = json.loads(state["counters"])
        logs = counters.pop("logs", None)
        if logs is None:  # a checkpoint written before the step context
            n = counters.pop("run_n")
            logs = {"sums": {"train_loss": counters.pop("run_sum")},
                    "counts": {"train_loss": n}, "skipped": counters.pop("skipped")}  # fmt: skip
        self.ctx.load_state_dict(logs)
        for k, v in counters.items():
            setattr(self, k, v)

    def _resume(self, path: Path) -> None:
        """Loads the checkpoint at ``path`` after checking its settings and data record."""
        state = load_state(path)
        run = stored_run(state, path)
        merge_settings(run.settings, asdict(self.config), source=str(path.parent))
        check_data(run.data, self.data, source=str(path.parent))
        self.data = self.data if self.data is not None else run.data
        try:
            self.load_state_dict(state)
        except CheckpointError:  # a ValueError already worded for the user
            raise
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointError(f"{path}: does not fit this model ({msg[:200]})") from None

    def save_checkpoint(self, run_dir: str | os.PathLike) -> None:
        """Writes ``run_dir/trainer.ckpt`` atomically (on the main process only)."""
        self.dist.save(self.state_dict, Path(run_dir) / CHECKPOINT)

    # ----------------------------------------------------------------- the loop
    def _validate(self, val_batches: Iterable[Any] | None, log: MetricsLog, lr: float) -> None:
        row: dict[str, Any] = {"step": self.step, "epoch": self.epoch}
        means = self.ctx.pop_means()
        row["train_loss"] = means.pop("train_loss", math.nan)
        row.update(means)
        if val_batches is not None:
            model = self.module if self.average is None else self._sync_average()
            row.update(self.validate(val_batches, model))
            self._monitor(row, model)
        row["lr"] = lr
        self.history.append(row)
        if self.is_main:
            log.append(row, self.history)

    def _monitor(self, row: dict[str, Any], model: nn.Module) -> None:
        c = self.config
        if c.monitor is None:
            return
        if c.monitor not in row:
            raise UserError(
                f"monitor {c.monitor!r} is not a validation quantity of this model; it has "
                f"{', '.join(k for k in row if k.startswith('val_')) or 'none'}"
            )
        val = float(row[c.monitor])
        if c.better(val, self.best_val):
            self.best_val, self.best_step, self.bad, self.plateau_bad = val, self.step, 0, 0
            self.best_state = copy_state(model, "cpu")
            return
        self.bad += 1
        self.plateau_bad += 1
        if c.schedule == "plateau" and self.plateau_bad >= max(1, (c.patience or 2) // 2):
            if c.min_lr_factor is not None and self.plateau_factor * 0.5 < c.min_lr_factor:
                self.stopped_early = True
            self.plateau_factor *= 0.5
            self.plateau_bad = 0
        if c.patience is not None and self.bad >= c.patience:
            self.stopped_early = True

    def _after_validation(self, run: Path | None) -> None:
        if self.config.checkpoint_every is None and run is not None:
            self.save_checkpoint(run)

    def fit(
        self,
        train_batches: Iterable[Any],
        val_batches: Iterable[Any] | None = None,
        run_dir: str | os.PathLike | None = None,
        resume: bool = False,
        data: dict[str, Any] | None = None,
    ) -> TrainResult:
        """Trains until ``max_epochs``/``max_steps`` or early stopping; restores the best weights.

        Args:
            train_batches: an iterable of batches (tuples of tensors), re-iterated every epoch.
            val_batches: validation batches; without them there is no early stopping.
            run_dir: where ``metrics.csv`` and ``trainer.ckpt`` go (None: nothing is written);
                a fresh run writes its first checkpoint before its first step.
            resume: continue from ``run_dir/trainer.ckpt`` if it exists, which must record the
                same settings (but :data:`~surrogates.training.resume.NEUTRAL` ones) and data.
            data: a record of the training data (see :mod:`surrogates.training.resume`), kept
                in checkpoints and checked on resume.

        Raises:
            CheckpointError: on resume, an unreadable checkpoint, other settings or other data.
        """
        c = self.config
        run = Path(run_dir) if run_dir is not None else None
        if run is not None and self.is_main:
            run.mkdir(parents=True, exist_ok=True)
        self.data = data
        train_batches = self.dist.shard(train_batches, equal=True)  # type: ignore[assignment]
        val_batches = self.dist.shard(val_batches, equal=False)
        if resume and run is not None and self.dist.agree((run / CHECKPOINT).exists()):
            self._resume(run / CHECKPOINT)
        elif run is not None:  # the run's settings and data are on disk from its first step
            self.save_checkpoint(run)
        log = MetricsLog(run if self.is_main else None, verbose=c.verbose and self.is_main)
        log.rewrite(self.history)
        try:
            per_epoch: int | None = len(train_batches)  # type: ignore[arg-type]
        except TypeError:
            per_epoch = None
        total = c.max_steps
        if per_epoch is not None:
            total = min(total or math.inf, per_epoch * c.max_epochs)  # type: ignore[assignment]
        self._total_steps = int(total) if total is not None and total != math.inf else None
        start, t0 = self.step, time.perf_counter()
        bar = None
        if c.progress and is_tty() and not self.done and self.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=self._total_steps, initial=self.step, unit="step", leave=False)
        self.module.train()
        lr = self._set_lr()
        try:
            while not self.done and self.epoch < c.max_epochs:
                it = self._iterate(train_batches, self.epoch)
                for _ in range(self.pos):  # resume inside an epoch: skip what was consumed
                    next(it)
                for batch in it:
                    if c.max_steps is not None and self.step >= c.max_steps:
                        break
                    lr = self._set_lr()
                    self._step_fn(to_device(batch, self.device), self.ctx)
                    if self.average is not None:
                        self._update_average()
                    self.step += 1
                    self.pos += 1
                    if bar is not None:
                        bar.update(1)
                        loss = self.ctx.last("train_loss")
                        if loss is not None:
                            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
                    if c.val_every and self.step % c.val_every == 0:
                        self._validate(val_batches, log, lr)
                        self._after_validation(run)
                    if c.checkpoint_every and self.step % c.checkpoint_every == 0 and run:
                        self.save_checkpoint(run)
                    if self.stopped_early:
                        break
                else:
                    self.epoch += 1
                    self.pos = 0
                    if not c.val_every:
                        self._validate(val_batches, log, lr)
                        self._after_validation(run)
                    if not self.stopped_early:
                        continue
                break
            if not self.done:
                last_val = self.history[-1]["step"] if self.history else 0
                if self.step > last_val:  # a final validation for the last interval
                    self._validate(val_batches, log, lr)
                self.done = True
                if run is not None:
                    self.save_checkpoint(run)
        finally:
            if bar is not None:
                bar.close()
            log.close()
        if self.best_state is not None:
            self.module.load_state_dict(self.best_state)
        elif self.average is not None:
            self.module.load_state_dict(self._sync_average().state_dict())
        seconds = time.perf_counter() - t0
        last = next((r["train_loss"] for r in reversed(self.history) if "train_loss" in r), None)
        result = TrainResult(
            steps=self.step,
            epochs=self.epoch,
            best_val_loss=self.best_val,
            best_step=self.best_step,
            last_train_loss=last,
            stopped_early=self.stopped_early,
            seconds=seconds,
            history=list(self.history),
            monitor=c.monitor,
            skipped=self.skipped,
        )
        if c.verbose and self.is_main:
            best = (
                f"{c.monitor} {self.best_val:.4f} at step {self.best_step}"
                if self.best_val is not None
                else "n/a"
            )
            rate = (self.step - start) / seconds if seconds > 0 else float("nan")
            print(
                f"trained {self.step} steps ({self.epoch} epochs) in {seconds:.1f} s "
                f"({rate:.1f} steps/s); best {best}"
                + ("; stopped early" if self.stopped_early else ""),
                flush=True,
            )
        return result
