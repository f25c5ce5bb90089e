r"""Data-parallel training on several processes or GPUs (``torchrun``), behind the trainer's seam.

Started by ``torchrun --nproc-per-node N -m surrogates train ...`` (or by any launcher that sets
torch's environment: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``),
:func:`init_from_env` opens the process group (``nccl`` on CUDA, ``gloo`` on the CPU) and pins
process :math:`r` to ``cuda:LOCAL_RANK``. The :class:`~surrogates.training.Trainer` then asks a
:class:`Seam` for everything that differs from one process:

* **Gradients.** A model trained through its ``loss`` (flows, NPE) is wrapped in
  :class:`~torch.nn.parallel.DistributedDataParallel`, with ``loss`` routed through DDP's
  ``forward`` (:class:`LossDDP`) so that DDP sees the forward pass and all-reduces gradients
  bucket by bucket during the backward pass. A model with its own ``train_step`` (the GAN, the
  VAE) calls its submodules directly, and the GAN's gradient penalty differentiates the critic
  twice (``autograd.grad(create_graph=True)``): DDP supports neither ``autograd.grad`` nor several
  forwards of one module before a backward without ``static_graph`` workarounds. For these the
  step context averages the gradients of the optimizer's parameters explicitly, with one
  ``all_reduce`` right before each optimizer step (:class:`DistributedStepContext`) -- what DDP
  does, without its overlap of communication and backward. Both give every rank the gradient
  of the mean loss over the global batch, so the weights stay identical on every rank.
* **The non-finite skip.** A step is skipped on every rank if its loss is not finite on any rank
  (the flag is reduced before the backward pass, so no rank waits in an all-reduce the others
  skipped); the clipped gradient norm is computed on the averaged gradients, hence equal.
* **Batches.** Process :math:`r` of :math:`W` takes rows :math:`[rB, (r+1)B)` of each global
  batch of :math:`WB` rows (``batch_size`` :math:`B` is per process), with the same number of
  batches on every rank: an uneven count would leave one rank waiting forever in the last
  all-reduce. See ``shard`` of :class:`~surrogates.training.ArrayBatches` and
  :class:`~surrogates.data.H5Batches`.
* **Randomness.** Weights are initialized from the one ``seed`` on every rank and broadcast
  from rank 0; the step generator of rank :math:`r` is seeded with :func:`rank_seed` (rank 0
  keeps ``seed``, so one process draws what it draws without torchrun). Every rank's generator
  state is saved in the checkpoint, so a resumed run draws what an uninterrupted one would.
* **Validation and files.** Validation sums and row counts are all-reduced, so the monitored
  quantity and the stop decision are the same on every rank. Only rank 0 writes checkpoints,
  ``metrics.csv`` and prints; every rank loads the checkpoint when resuming, after a barrier.
  The training quantities logged in ``metrics.csv`` are rank 0's (its share of the batches).

Example:
    A run on two processes of this machine (``gloo``; ``nccl`` with one GPU per process)::

        torchrun --standalone --nproc-per-node 2 -m surrogates train flow \
            --data calo.h5 --out runs/flow --batch-size 256
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..checkpoint import CheckpointError, save_state
from .context import StepContext
from .protocols import LossModel, StepModel

__all__ = [
    "DistributedStepContext",
    "LossDDP",
    "Seam",
    "init_from_env",
    "is_main_process",
    "rank_seed",
    "world",
]


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """Whether this process writes files and prints (rank 0, or the only process)."""
    return world()[0] == 0


def init_from_env() -> bool:
    """Opens the process group from torchrun's environment; False when not started by it.

    The backend is ``nccl`` when CUDA is available (each process then uses
    ``cuda:LOCAL_RANK``), else ``gloo``. Does nothing when ``WORLD_SIZE`` is unset or a group is
    already open.
    """
    if "WORLD_SIZE" not in os.environ or not dist.is_available():
        return False
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:  # before the group: nccl binds each process to its current device
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return True


def rank_seed(seed: int, rank: int) -> int:
    """The step generator's seed of ``rank``: ``seed`` on rank 0, independent streams elsewhere
    (:class:`numpy.random.SeedSequence` of ``(seed, rank)``)."""
    if rank == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(1, np.uint64)[0] >> 1)


class LossDDP(nn.parallel.DistributedDataParallel):
    """DDP around a :class:`~surrogates.training.protocols.LossModel` whose ``loss`` goes
    through DDP's ``forward``, so gradients are synchronized (the trainer calls ``loss``)."""

    def __init__(self, model: nn.Module, **kwargs: Any):
        super().__init__(_LossForward(model), **kwargs)

    def loss(self, batch: Any, *, generator: torch.Generator | None = None) -> Tensor:
        return self(batch, generator=generator)


class _LossForward(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: Any, *, generator: torch.Generator | None = None) -> Tensor:
        return self.model.loss(batch, generator=generator)


def _all_reduce(t: Tensor, device: torch.device, op: Any = None) -> Tensor:
    """All-reduces ``t`` on the communication device (nccl needs CUDA tensors)."""
    buf = t.to(device)
    dist.all_reduce(buf, op=op or dist.ReduceOp.SUM)
    return buf.to(t.device)


class DistributedStepContext(StepContext):
    """A :class:`StepContext` whose skip decision is the same on every rank and whose gradients
    are averaged over ranks before clipping (unless DDP already averaged them).

    Args:
        *args, **kwargs: as :class:`StepContext`.
        sync_grads: average the gradients here (models with their own ``train_step``).
    """

    def __init__(self, *args: Any, sync_grads: bool, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.sync_grads = sync_grads
        self.world_size = dist.get_world_size()

    def _comm(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def _agree(self, finite: bool) -> bool:
        flag = torch.tensor([float(finite)])
        return bool(_all_reduce(flag, self._comm(), dist.ReduceOp.MIN).item())

    def _synchronize(self, params: list[Tensor]) -> None:
        # clipping then sees the averaged gradients: the same norm, the same decision everywhere
        if self.sync_grads:
            self._average(params)

    def _average(self, params: list[Tensor]) -> None:
        """Mean gradients over ranks in one all-reduce of one flat buffer; a parameter that got
        no gradient on any rank keeps none (Adam then leaves it alone, as on one process)."""
        grads = [p.grad for p in params]
        if not params:
            return
        like = params[0]
        flat = torch.cat(
            [(g if g is not None else torch.zeros_like(p)).reshape(-1).to(like.dtype)
             for p, g in zip(params, grads, strict=True)]
            + [torch.tensor([float(g is not None) for g in grads], dtype=like.dtype,
                            device=like.device)]
        )  # fmt: skip
        flat = _all_reduce(flat, self._comm())
        has = flat[-len(params) :]
        flat = flat[: -len(params)] / self.world_size
        s = 0
        for k, p in enumerate(params):
            n = p.numel()
            if has[k] > 0:
                p.grad = flat[s : s + n].view_as(p).to(p.dtype).clone()
            s += n


class Seam:
    """What the trainer does differently on several processes (identity on one).

    Args:
        device: the trainer's device; a CUDA device without an index becomes
            ``cuda:LOCAL_RANK`` under torchrun.
    """

    def __init__(self, device: torch.device):
        self.rank, self.world_size = world()
        self.active = self.world_size > 1
        if self.active and device.type == "cuda" and device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        self.device = device
        self.ddp = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def seed(self, seed: int) -> int:
        """This rank's step-generator seed (:func:`rank_seed`)."""
        return rank_seed(seed, self.rank)

    def _comm(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def wrap(self, module: nn.Module) -> nn.Module:
        """DDP for a loss model; the module itself, with rank 0's weights, for a step model."""
        if not self.active:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        if isinstance(module, LossModel) and not isinstance(module, StepModel):
            self.ddp = True
            return LossDDP(module, device_ids=ids)
        with torch.no_grad():  # DDP's start, by hand: every rank begins from rank 0's state
            for t in module.state_dict().values():
                buf = t.to(self._comm())
                dist.broadcast(buf, 0)
                t.copy_(buf)
        return module

    def context(self, *args: Any, **kwargs: Any) -> StepContext:
        """The step context (call after :meth:`wrap`)."""
        if not self.active:
            return StepContext(*args, **kwargs)
        return DistributedStepContext(*args, sync_grads=not self.ddp, **kwargs)

    def reduce(self, values: dict[str, float], rows: int) -> tuple[dict[str, float], int]:
        """Sums of validation quantities and rows over ranks (keys in one order everywhere)."""
        if not self.active:
            return values, rows
        names: list[Any] = [None] * self.world_size  # a rank without rows has no quantities
        dist.all_gather_object(names, sorted(values))
        keys = sorted(set().union(*names))
        t = torch.tensor([values.get(k, 0.0) for k in keys] + [float(rows)], dtype=torch.float64)
        t = _all_reduce(t, self._comm())
        return {k: float(v) for k, v in zip(keys, t[:-1].tolist(), strict=True)}, int(t[-1])

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank (e.g. whether a checkpoint exists)."""
        if not self.active:
            return flag
        t = torch.tensor([float(flag)])
        buf = t.to(self._comm())
        dist.broadcast(buf, 0)
        return bool(buf.item())

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def generator_states(self, generator: torch.Generator) -> dict[str, Any]:
        """Every rank's generator state, for the checkpoint (nothing on one process)."""
        if not self.active:
            return {}
        states: list[Any] = [None] * self.world_size
        dist.all_gather_object(states, generator.get_state())
        return {"rank_generators": states}

    def own_generator(self, state: dict[str, Any]) -> Tensor:
        """This rank's generator state from a checkpoint."""
        ranks = state.get("rank_generators")
        if not self.active and ranks is None:
            return state["generator"]
        if ranks is None or len(ranks) != self.world_size:
            n = 1 if ranks is None else len(ranks)
            raise CheckpointError(
                f"the checkpoint was written by {n} process(es); resume it with as many "
                f"(this run has {self.world_size})"
            )
        return ranks[self.rank]

    def save(self, make_state: Callable[[], dict[str, Any]], path: Path) -> None:
        """Writes ``make_state()`` on rank 0 (every rank calls it: it may gather), then waits."""
        if not self.active:
            save_state(make_state(), path)
            return
        state = make_state()
        if self.is_main:
            save_state(state, path)
        dist.barrier()  # nobody reads or moves on before the file is complete

    def shard(self, batches: Iterable[Any] | None, *, equal: bool) -> Iterable[Any] | None:
        """This rank's share of ``batches`` (``equal``: the same number on every rank).

        A source with ``shard(rank, world_size, equal=)`` shards itself; any other sized
        iterable is dealt out batch by batch (batch ``i`` to rank ``i mod W``).
        """
        if not self.active or batches is None:
            return batches
        if callable(getattr(batches, "shard", None)):  # a data source's hook, like set_epoch
            batches.shard(self.rank, self.world_size, equal=equal)  # type: ignore[attr-defined]
            return batches
        return _Dealt(batches, self.rank, self.world_size, equal)


class _Dealt:
    """Batch ``i`` of an iterable to rank ``i mod W``; ``equal``: ``len // W`` per rank."""

    def __init__(self, batches: Iterable[Any], rank: int, world_size: int, equal: bool):
        self.batches, self.rank, self.world_size, self.equal = batches, rank, world_size, equal
        if equal and not hasattr(batches, "__len__"):
            msg = "training batches without len() cannot be split evenly; give them shard()"
            raise TypeError(msg)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.batches, "set_epoch"):
            self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        n = len(self.batches)  # type: ignore[arg-type]
        return n // self.world_size if self.equal else len(range(self.rank, n, self.world_size))

    def __iter__(self) -> Iterator[Any]:
        limit = len(self) if self.equal else math.inf
        mine = (b for i, b in enumerate(self.batches) if i % self.world_size == self.rank)
        for k, b in enumerate(mine):
            if k >= limit:
                return
            yield b
