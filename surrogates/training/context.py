"""The step context: what every model's training step goes through.

The trainer hands a :class:`StepContext` to the step (the default one for a
:class:`~surrogates.training.protocols.LossModel`, or a model's own ``train_step``). It owns
the mixed-precision context, the backward pass with gradient clipping and the skip of
non-finite losses or gradients, the optimizer steps, and the logging of any number of named
quantities, as Lightning's manual optimization (``manual_backward``, ``log_dict``) and
accelerate's ``accelerator.backward`` do. A model's step thus never repeats that code, and
whatever it logs becomes a column of ``metrics.csv`` and a TensorBoard scalar, averaged over
the steps of each validation interval.

Example:
    >>> import torch
    >>> from surrogates.training import ArrayBatches, Trainer, TrainConfig
    >>> class TwoLosses(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.a = torch.nn.Parameter(torch.zeros(1))
    ...         self.b = torch.nn.Parameter(torch.zeros(1))
    ...     def configure_optimizers(self, config):
    ...         sgd = torch.optim.SGD
    ...         return [sgd([self.a], lr=config.lr), sgd([self.b], lr=config.lr)]
    ...     def train_step(self, batch, ctx):
    ...         opt_a, opt_b = ctx.optimizers
    ...         la, lb = ((batch[0] - self.a) ** 2).mean(), ((batch[0] + self.b) ** 2).mean()
    ...         for loss, opt in ((la, opt_a), (lb, opt_b)):
    ...             if ctx.backward(loss, opt):
    ...                 ctx.step(opt)
    ...         ctx.log("loss_a", la)
    ...         ctx.log("loss_b", lb)
    >>> data = ArrayBatches(torch.ones(8, 1), batch_size=8)
    >>> r = Trainer(TwoLosses(), TrainConfig(lr=0.1, max_steps=3, progress=False)).fit(data)
    >>> sorted(k for k in r.history[-1] if k.startswith("loss"))
    ['loss_a', 'loss_b']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["StepContext", "default_step"]


class StepContext:
    """Autocast, backward, optimizer steps and logging for one model's training steps.

    Args:
        optimizers: the model's optimizers, in the order it configured them.
        generator: the trainer's checkpointed generator, the only source of a step's randomness.
        device: where the model and the batches live.
        amp: bfloat16 autocast (CUDA only).
        clip_grad: gradient-norm clipping threshold per optimizer, or None.
    """

    def __init__(
        self,
        optimizers: Sequence[torch.optim.Optimizer],
        generator: torch.Generator,
        device: torch.device,
        *,
        amp: bool = False,
        clip_grad: float | None = None,
    ):
        self.optimizers = list(optimizers)
        self.generator = generator
        self.device = device
        self.amp = bool(amp) and device.type == "cuda"
        self.clip_grad = clip_grad
        #: updates skipped because a loss or a gradient norm was not finite
        self.skipped = 0
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._ready: dict[int, bool] = {}

    def autocast(self) -> AbstractContextManager[Any]:
        """The mixed-precision context of a forward pass (a no-op unless ``amp`` on CUDA)."""
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp)

    def backward(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> bool:
        """Gradients of ``loss`` for ``optimizer``'s parameters, clipped; False if skipped.

        The optimizer's gradients are reset first (one backward per optimizer step). A
        non-finite loss or gradient norm (a rare overflow in a spline or a logit) skips the
        update instead of poisoning the weights: the gradients are cleared, :attr:`skipped`
        counts it and the following :meth:`step` of this optimizer does nothing.
        """
        optimizer.zero_grad(set_to_none=True)
        ok = self._agree(bool(torch.isfinite(loss)))
        if ok:
            loss.backward()
            params = [p for g in optimizer.param_groups for p in g["params"]]
            self._synchronize(params)
            if self.clip_grad is not None:
                norm = nn.utils.clip_grad_norm_(params, self.clip_grad, foreach=True)
                ok = bool(torch.isfinite(norm))
                if not ok:
                    optimizer.zero_grad(set_to_none=True)
        if not ok:
            self.skipped += 1
        self._ready[id(optimizer)] = ok
        return ok

    def _agree(self, finite: bool) -> bool:
        """Whether every process's loss is finite (one process: its own)."""
        return finite

    def _synchronize(self, params: list[Tensor]) -> None:
        """Makes the gradients the same on every process (one process: nothing to do)."""

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Applies ``optimizer``'s update, unless its last :meth:`backward` was skipped."""
        if self._ready.pop(id(optimizer), True):
            optimizer.step()

    def log(self, name: str, value: float | Tensor) -> None:
        """Records a quantity of this step; non-finite values are left out of the mean."""
        v = float(value.detach()) if isinstance(value, Tensor) else float(value)
        if math.isfinite(v):
            self._sums[name] = self._sums.get(name, 0.0) + v
            self._counts[name] = self._counts.get(name, 0) + 1
        else:
            self._sums.setdefault(name, 0.0)
            self._counts.setdefault(name, 0)

    def log_dict(self, values: dict[str, float | Tensor]) -> None:
        """:meth:`log` of every item."""
        for name, value in values.items():
            self.log(name, value)

    def last(self, name: str) -> float | None:
        """The running mean of ``name`` in this interval (None before it is logged)."""
        n = self._counts.get(name)
        return self._sums[name] / n if n else None

    def pop_means(self) -> dict[str, float]:
        """The mean of every logged quantity since the last call (NaN where none was finite)."""
        means = {k: (s / self._counts[k] if self._counts[k] else math.nan)
                 for k, s in self._sums.items()}  # fmt: skip
        self._sums, self._counts = {}, {}
        return means

    def state_dict(self) -> dict[str, Any]:
        """The logging accumulators and the skip count (checkpointed for an exact resume)."""
        return {"sums": dict(self._sums), "counts": dict(self._counts), "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._sums, self._counts = dict(state["sums"]), dict(state["counts"])
        self.skipped = int(state["skipped"])


def default_step(module: Any, batch: Any, ctx: StepContext) -> None:
    """The step of a :class:`~surrogates.training.protocols.LossModel`: one loss, one
    optimizer, logged as ``train_loss``."""
    (optimizer,) = ctx.optimizers
    with ctx.autocast():
        loss = module.loss(batch, generator=ctx.generator)
    if ctx.backward(loss, optimizer):
        ctx.step(optimizer)
    ctx.log("train_loss", loss.detach())
