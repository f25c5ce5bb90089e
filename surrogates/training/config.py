"""Training settings (:class:`TrainConfig`) and what a fit did (:class:`TrainResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from simulators.errors import UserError

__all__ = ["TrainConfig", "TrainResult"]


@dataclass
class TrainConfig:
    """Training settings (all optional).

    Attributes:
        lr: peak learning rate.
        weight_decay: L2 penalty (decoupled for ``"adamw"``).
        optimizer: ``"adam"`` or ``"adamw"``.
        schedule: ``"cosine"`` (to zero over the run), ``"plateau"`` (halve after
            ``max(1, patience // 2)`` validations without improvement of the monitored
            quantity) or ``"none"``.
        warmup: steps of linear warmup.
        max_epochs: passes over the training batches.
        max_steps: optional cap on optimizer steps (also the cosine length when given).
        batch_size: rows per batch (used by models that build the batches).
        clip_grad: gradient-norm clipping threshold, or None.
        patience: validations without improvement before stopping early, or None.
        min_lr_factor: with ``"plateau"``, stop early instead of halving the learning rate below
            ``lr * min_lr_factor`` (the last epochs at a tiny rate change the model little);
            None: no floor.
        monitor: the validation quantity that early stopping, the plateau schedule and the
            choice of the best weights follow: a column of ``metrics.csv`` (``"val_loss"``, or
            ``"val_<name>"`` of a model's ``validation_metrics``). None: no early stopping, and
            training returns the last weights (or their moving average).
        mode: ``"min"`` or ``"max"``: whether a lower or a higher monitored value is better.
        val_every: validate every this many steps; None: at the end of every epoch.
        checkpoint_every: write a checkpoint every this many steps; None: at every validation.
        ema: decay per step of an exponential moving average of the weights (e.g. 0.99), or
            None. With it, validation, early stopping and the final weights use the average,
            which removes the step-to-step jitter of a high learning rate. A model restricts
            it to some of its modules with ``ema_modules()``.
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
    monitor: str | None = "val_loss"
    mode: str = "min"
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
            raise UserError(f"optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "plateau", "none"):
            raise UserError(f"schedule must be cosine, plateau or none, got {self.schedule!r}")
        if self.mode not in ("min", "max"):
            raise UserError(f"mode must be 'min' or 'max', got {self.mode!r}")
        for name in ("lr", "max_epochs", "batch_size"):
            if not getattr(self, name) > 0:
                raise UserError(f"{name} must be positive, got {getattr(self, name)}")
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
                raise UserError(f"{name} must be positive or None, got {value}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise UserError(f"ema must be in (0, 1) or None, got {self.ema}")
        if self.num_workers < 0:
            raise UserError(f"num_workers must be 0 or more, got {self.num_workers}")

    def better(self, value: float, best: float | None) -> bool:
        """Whether ``value`` of the monitored quantity improves on ``best`` (NaN never does)."""
        if value != value:
            return False
        if best is None:
            return True
        return value < best if self.mode == "min" else value > best


@dataclass
class TrainResult:
    """What :meth:`~surrogates.training.Trainer.fit` did.

    ``best_val_loss`` is the best value of the monitored quantity (``monitor``), ``best_step``
    the step it was reached at; both None without validation or with ``monitor=None``.
    """

    steps: int
    epochs: int
    best_val_loss: float | None
    best_step: int | None
    last_train_loss: float | None
    stopped_early: bool
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    monitor: str | None = "val_loss"
    skipped: int = 0
