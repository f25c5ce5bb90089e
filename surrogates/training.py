"""The one trainer shared by every model (flows, VAEs, GANs, neural posterior estimation).

A model plugs in as a :class:`torch.nn.Module` with

* ``loss(batch, *, generator) -> Tensor`` -- a scalar to minimize (flows, VAEs, NPE); any
  randomness (dequantization noise, reparameterization) must come from ``generator``, the
  trainer's own :class:`torch.Generator`, which is checkpointed; and optionally
* ``configure_optimizers(config) -> list[Optimizer]`` and
  ``train_step(batch, optimizers, trainer) -> Tensor`` -- to own the update (GANs).

The trainer handles devices, mixed precision (CUDA only), learning-rate warmup and schedules,
gradient clipping, an optional moving average of the weights (``ema``), validation with early
stopping (best weights restored), tracking (``metrics.csv``, TensorBoard when installed, a
progress bar when stderr is a terminal) and atomic checkpoints every N steps that resume
bit-for-bit on the CPU: the checkpoint holds the weights, optimizer and schedule state, the step,
epoch and position in the epoch, the generator state, the best weights and the average. Batches
come from any iterable of tuples of tensors; if it has ``set_epoch`` (as
:class:`surrogates.data.H5Batches` and :class:`ArrayBatches` do) its order is a function of the
epoch, which is what makes resuming exact.

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
import csv
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import FORMAT_VERSION, CheckpointError, load_state, save_state

__all__ = ["ArrayBatches", "TrainConfig", "TrainResult", "Trainer", "resolve_device"]

CHECKPOINT = "trainer.ckpt"
METRICS = "metrics.csv"


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/``None`` -> CUDA when available, else CPU; anything else as given."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but CUDA is not available")
    return dev


@dataclass
class TrainConfig:
    """Training settings (all optional).

    Attributes:
        lr: peak learning rate.
        weight_decay: L2 penalty (decoupled for ``"adamw"``).
        optimizer: ``"adam"`` or ``"adamw"``.
        schedule: ``"cosine"`` (to zero over the run), ``"plateau"`` (halve after
            ``max(1, patience // 2)`` validations without improvement) or ``"none"``.
        warmup: steps of linear warmup.
        max_epochs: passes over the training batches.
        max_steps: optional cap on optimizer steps (also the cosine length when given).
        batch_size: rows per batch (used by models that build the batches).
        clip_grad: gradient-norm clipping threshold, or None.
        patience: validations without improvement before stopping early, or None.
        min_lr_factor: with ``"plateau"``, stop early instead of halving the learning rate below
            ``lr * min_lr_factor`` (the last epochs at a tiny rate change the model little);
            None: no floor.
        val_every: validate every this many steps; None: at the end of every epoch.
        checkpoint_every: write a checkpoint every this many steps; None: at every validation.
        ema: decay per step of an exponential moving average of the weights (e.g. 0.99), or
            None. With it, validation, early stopping and the final weights use the average,
            which removes the step-to-step jitter of a high learning rate.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        amp: bfloat16 autocast on CUDA (ignored on CPU).
        seed: seeds the trainer's generator (and the batch order where the model builds it).
        num_workers: DataLoader worker processes for torch IterableDatasets.
        progress: show a progress bar (only when stderr is a terminal).
        verbose: print a line per validation and a summary to stdout.
    """

    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    schedule: str = "cosine"
    warmup: int = 0
    max_epochs: int = 50
    max_steps: int | None = None
    batch_size: int = 256
    clip_grad: float | None = 5.0
    patience: int | None = 10
    min_lr_factor: float | None = None
    val_every: int | None = None
    checkpoint_every: int | None = None
    ema: float | None = None
    device: str = "auto"
    amp: bool = False
    seed: int = 0
    num_workers: int = 0
    progress: bool = True
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "plateau", "none"):
            raise ValueError(f"schedule must be cosine, plateau or none, got {self.schedule!r}")
        for name in ("lr", "max_epochs", "batch_size"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in (
            "max_steps",
            "val_every",
            "checkpoint_every",
            "patience",
            "clip_grad",
            "min_lr_factor",
        ):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None, got {value}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ValueError(f"ema must be in (0, 1) or None, got {self.ema}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be 0 or more, got {self.num_workers}")


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` did."""

    steps: int
    epochs: int
    best_val_loss: float | None
    best_step: int | None
    last_train_loss: float | None
    stopped_early: bool
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


class ArrayBatches:
    """In-memory batches of tensors with a deterministic per-epoch shuffle (like ``H5Batches``).

    Args:
        *tensors: tensors with equal first dimension, e.g. ``(theta, x)``.
        batch_size: rows per batch (the last batch may be smaller).
        shuffle: permute rows every epoch, from ``(seed, epoch)``.
        seed: shuffling seed.
    """

    def __init__(
        self, *tensors: Tensor, batch_size: int = 256, shuffle: bool = True, seed: int = 0
    ):
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("ArrayBatches needs tensors of equal length")
        self.tensors, self.batch_size, self.shuffle, self.seed = tensors, batch_size, shuffle, seed
        self.epoch = 0
        self.n_rows = len(tensors[0])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return -(-self.n_rows // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            idx = torch.randperm(self.n_rows, generator=g)
        else:
            idx = torch.arange(self.n_rows)
        for s in range(0, self.n_rows, self.batch_size):
            i = idx[s : s + self.batch_size]
            yield tuple(t[i] for t in self.tensors)


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(b, device) for b in batch)
    return batch


def _copy_state(module: nn.Module, device: str | None = None) -> dict[str, Tensor]:
    # a plain copy per tensor: deepcopy cost ~2 ms per epoch on small flows
    return {k: v.detach().to(device, copy=True) for k, v in module.state_dict().items()}


def _is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _adam(cls: Any, params: list[Tensor], lr: float, weight_decay: float) -> Any:
    """The optimizer with its fused kernel (one kernel for all tensors: a third of the foreach
    update's time in a small NPE step on the CPU), or foreach where torch has no fused kernel
    for the device (CPU before torch 2.4); torch picks neither by itself on the CPU."""
    try:
        return cls(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):
        return cls(params, lr=lr, weight_decay=weight_decay, foreach=True)


class Trainer:
    """Fits a module that provides ``loss(batch, *, generator)`` (see the module notes).

    Args:
        module: the model.
        config: a :class:`TrainConfig`; keyword arguments override its fields.
    """

    def __init__(self, module: nn.Module, config: TrainConfig | None = None, **overrides: Any):
        config = config or TrainConfig()
        self.config = TrainConfig(**{**asdict(config), **overrides})
        self.device = resolve_device(self.config.device)
        self.module = module.to(self.device)
        if hasattr(module, "configure_optimizers"):
            self.optimizers = list(module.configure_optimizers(self.config))
        else:
            cls = torch.optim.AdamW if self.config.optimizer == "adamw" else torch.optim.Adam
            params = [p for p in module.parameters() if p.requires_grad]
            self.optimizers = [_adam(cls, params, self.config.lr, self.config.weight_decay)]
        for opt in self.optimizers:
            for group in opt.param_groups:
                group.setdefault("base_lr", group["lr"])
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.amp = self.config.amp and self.device.type == "cuda"
        # counters, saved in checkpoints
        self.step = self.epoch = self.pos = 0
        self.best_val: float | None = None
        self.best_step: int | None = None
        self.best_state: dict[str, Tensor] | None = None
        # the moving average of the weights lives in a copy of the module, evaluated in place
        self.average: nn.Module | None = None
        self._pairs: list[tuple[Tensor, Tensor]] = []
        if self.config.ema is not None:
            self.average = copy.deepcopy(self.module).eval().requires_grad_(False)
            live = self.module.state_dict().values()
            self._pairs = list(zip(self.average.state_dict().values(), live, strict=True))
        self.bad = 0
        self.plateau_factor, self.plateau_bad = 1.0, 0
        self.run_sum, self.run_n = 0.0, 0
        self.skipped = 0
        self.done = False
        self.stopped_early = False
        self.history: list[dict[str, Any]] = []
        self._total_steps: int | None = None

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

    # ----------------------------------------------------------------- steps
    def autocast(self) -> Any:
        """The mixed-precision context of a step (a no-op unless ``amp`` on CUDA)."""
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp)

    def _train_step(self, batch: Any) -> Tensor:
        if hasattr(self.module, "train_step"):
            return self.module.train_step(batch, self.optimizers, self)
        (opt,) = self.optimizers
        opt.zero_grad(set_to_none=True)
        with self.autocast():
            loss = self.module.loss(batch, generator=self.generator)
        if not torch.isfinite(loss):
            # a rare overflow in a spline or logit; skip the update rather than poison the weights
            self.skipped += 1
            return loss.detach()
        loss.backward()
        if self.config.clip_grad is not None:
            nn.utils.clip_grad_norm_(self.module.parameters(), self.config.clip_grad, foreach=True)
        opt.step()
        return loss.detach()

    @torch.no_grad()
    def _update_average(self) -> None:
        # the decay ramps up from 0.1 so the average forgets the initial weights quickly
        w = 1 - min(self.config.ema, (1 + self.step) / (10 + self.step))
        for avg, live in self._pairs:
            if avg.is_floating_point():
                avg.lerp_(live, w)
            else:
                avg.copy_(live)

    @torch.no_grad()
    def evaluate(self, batches: Iterable[Any], module: nn.Module | None = None) -> float:
        """Mean loss of ``module`` (default: the trained one) over ``batches`` (weighted by batch
        size), with a fixed generator."""
        module = self.module if module is None else module
        was = module.training
        module.eval()
        g = torch.Generator().manual_seed(self.config.seed + 1)
        total, n = 0.0, 0
        for batch in self._iterate(batches, epoch=0):
            batch = _to(batch, self.device)
            rows = len(batch[0]) if isinstance(batch, (tuple, list)) else 1
            with self.autocast():
                loss = module.loss(batch, generator=g)
            total += float(loss) * rows
            n += rows
        module.train(was)
        return total / max(n, 1)

    def _iterate(self, batches: Iterable[Any], epoch: int) -> Iterator[Any]:
        if hasattr(batches, "set_epoch"):
            batches.set_epoch(epoch)
        if self.config.num_workers > 0 and isinstance(batches, torch.utils.data.IterableDataset):
            from torch.utils.data import DataLoader

            return iter(DataLoader(batches, batch_size=None, num_workers=self.config.num_workers))
        return iter(batches)

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly."""
        counters = {
            k: getattr(self, k)
            for k in (
                "step", "epoch", "pos", "best_val", "best_step", "bad", "plateau_factor",
                "plateau_bad", "run_sum", "run_n", "skipped", "done", "stopped_early", "history",
            )
        }  # fmt: skip
        return {
            "format_version": FORMAT_VERSION,
            "model": _copy_state(self.module, "cpu"),
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "best": self.best_state,
            "ema": None if self.average is None else _copy_state(self.average, "cpu"),
            "generator": self.generator.get_state(),
            "counters": json.dumps(counters),
            "config": json.dumps(asdict(self.config)),
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
        self.generator.set_state(state["generator"])
        for k, v in json.loads(state["counters"]).items():
            setattr(self, k, v)

    def save_checkpoint(self, run_dir: str | os.PathLike) -> None:
        """Writes ``run_dir/trainer.ckpt`` atomically."""
        save_state(self.state_dict(), Path(run_dir) / CHECKPOINT)

    # ----------------------------------------------------------------- tracking
    def _log(self, run_dir: Path | None, row: dict[str, Any], writer: Any) -> None:
        self.history.append(row)
        if run_dir is not None:
            path = run_dir / METRICS
            new = not path.exists()
            with open(path, "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(row))
                if new:
                    w.writeheader()
                w.writerow(row)
        if writer is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and v == v:
                    writer.add_scalar(k, v, row["step"])
        if self.config.verbose:
            items = " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
            )
            print(items, flush=True)

    def _truncate_metrics(self, run_dir: Path) -> None:
        # rows written after the checkpoint we resume from would be written again
        path = run_dir / METRICS
        if not path.exists():
            return
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= self.step]
        with open(path, "w", newline="") as f:
            if rows:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)

    @staticmethod
    def _tensorboard(run_dir: Path | None) -> Any:
        if run_dir is None:
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from torch.utils.tensorboard import SummaryWriter
            return SummaryWriter(str(run_dir / "tensorboard"))
        except Exception:  # tensorboard is optional
            return None

    # ----------------------------------------------------------------- the loop
    def _validate(
        self, val_batches: Iterable[Any] | None, run_dir: Path | None, writer: Any, lr: float
    ) -> None:
        train_loss = self.run_sum / self.run_n if self.run_n else float("nan")
        self.run_sum, self.run_n = 0.0, 0
        row: dict[str, Any] = {"step": self.step, "epoch": self.epoch, "train_loss": train_loss}
        if val_batches is not None:
            model = self.module if self.average is None else self.average
            val = self.evaluate(val_batches, model)
            row["val_loss"] = val
            if self.best_val is None or val < self.best_val:
                self.best_val, self.best_step, self.bad, self.plateau_bad = val, self.step, 0, 0
                self.best_state = _copy_state(model, "cpu")
            else:
                self.bad += 1
                self.plateau_bad += 1
                if self.config.schedule == "plateau" and self.plateau_bad >= max(
                    1, (self.config.patience or 2) // 2
                ):
                    floor = self.config.min_lr_factor
                    if floor is not None and self.plateau_factor * 0.5 < floor:
                        self.stopped_early = True
                    self.plateau_factor *= 0.5
                    self.plateau_bad = 0
                if self.config.patience is not None and self.bad >= self.config.patience:
                    self.stopped_early = True
        row["lr"] = lr
        self._log(run_dir, row, writer)

    def fit(
        self,
        train_batches: Iterable[Any],
        val_batches: Iterable[Any] | None = None,
        run_dir: str | os.PathLike | None = None,
        resume: bool = False,
    ) -> TrainResult:
        """Trains until ``max_epochs``/``max_steps`` or early stopping; restores the best weights.

        Args:
            train_batches: an iterable of batches (tuples of tensors), re-iterated every epoch.
            val_batches: validation batches; without them there is no early stopping.
            run_dir: where ``metrics.csv`` and ``trainer.ckpt`` go (None: nothing is written).
            resume: continue from ``run_dir/trainer.ckpt`` if it exists.
        """
        c = self.config
        run = Path(run_dir) if run_dir is not None else None
        if run is not None:
            run.mkdir(parents=True, exist_ok=True)
            if resume and (run / CHECKPOINT).exists():
                self.load_state_dict(load_state(run / CHECKPOINT))
                self._truncate_metrics(run)
            elif (run / METRICS).exists():
                (run / METRICS).unlink()
        try:
            per_epoch: int | None = len(train_batches)  # type: ignore[arg-type]
        except TypeError:
            per_epoch = None
        total = c.max_steps
        if per_epoch is not None:
            total = min(total or math.inf, per_epoch * c.max_epochs)  # type: ignore[assignment]
        self._total_steps = int(total) if total is not None and total != math.inf else None
        writer = self._tensorboard(run)
        start, t0 = self.step, time.perf_counter()
        bar = None
        if c.progress and _is_tty() and not self.done:
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
                    loss = float(self._train_step(_to(batch, self.device)))
                    if self.average is not None:
                        self._update_average()
                    self.step += 1
                    self.pos += 1
                    if math.isfinite(loss):
                        self.run_sum += loss
                        self.run_n += 1
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
                    if c.val_every and self.step % c.val_every == 0:
                        self._validate(val_batches, run, writer, lr)
                        if c.checkpoint_every is None and run is not None:
                            self.save_checkpoint(run)
                    if c.checkpoint_every and self.step % c.checkpoint_every == 0 and run:
                        self.save_checkpoint(run)
                    if self.stopped_early:
                        break
                else:
                    self.epoch += 1
                    self.pos = 0
                    if not c.val_every:
                        self._validate(val_batches, run, writer, lr)
                        if c.checkpoint_every is None and run is not None:
                            self.save_checkpoint(run)
                    if not self.stopped_early:
                        continue
                break
            if not self.done:
                if self.run_n:  # a final validation for the last partial interval
                    self._validate(val_batches, run, writer, lr)
                self.done = True
                if run is not None:
                    self.save_checkpoint(run)
        finally:
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
        if self.best_state is not None:
            self.module.load_state_dict(self.best_state)
        elif self.average is not None:
            self.module.load_state_dict(self.average.state_dict())
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
        )
        if c.verbose:
            best = (
                f"{self.best_val:.4f} at step {self.best_step}"
                if self.best_val is not None
                else "n/a"
            )
            rate = (self.step - start) / seconds if seconds > 0 else float("nan")
            print(
                f"trained {self.step} steps ({self.epoch} epochs) in {seconds:.1f} s "
                f"({rate:.1f} steps/s); best validation loss {best}"
                + ("; stopped early" if self.stopped_early else ""),
                flush=True,
            )
        return result
