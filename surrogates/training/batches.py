"""Batches for the trainer: in-memory batches, the one train/validation split, device moves.

Example:
    >>> import torch
    >>> train_idx, val_idx = split_indices(10, 0.2, seed=0)
    >>> len(train_idx), len(val_idx)
    (8, 2)
    >>> [len(b[0]) for b in ArrayBatches(torch.zeros(10, 1), batch_size=4)]
    [4, 4, 2]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

__all__ = ["VAL_BATCH", "ArrayBatches", "split_indices", "to_device", "validation_batch_size"]

#: validation batches hold at least this many rows (no gradients: larger is faster)
VAL_BATCH = 4096


class ArrayBatches:
    """In-memory batches of tensors with a deterministic per-epoch shuffle (like ``H5Batches``).

    Args:
        *tensors: tensors with equal first dimension, e.g. ``(theta, x)``.
        batch_size: rows per batch (the last batch may be smaller).
        shuffle: permute rows every epoch, from ``(seed, epoch)``.
        seed: shuffling seed.

    On several processes (:meth:`shard`) ``batch_size`` is per process: process ``r`` of ``W``
    takes rows ``[r b, (r+1) b)`` of each global batch of ``W * batch_size`` shuffled rows, so
    two processes see together what one process sees with twice the batch size. Training
    shards (``equal=True``) split the last, short global batch of ``m`` rows into ``m // W``
    rows per process and drop its ``m mod W`` remaining rows (and the batch when ``m < W``):
    every process then takes the same number of equal batches, which keeps DDP's gradient mean
    the mean over the global batch. Validation shards (``equal=False``) drop nothing.
    """

    def __init__(
        self, *tensors: Tensor, batch_size: int = 256, shuffle: bool = True, seed: int = 0
    ):
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("ArrayBatches needs tensors of equal length")
        self.tensors, self.batch_size, self.shuffle, self.seed = tensors, batch_size, shuffle, seed
        self.epoch = 0
        self.n_rows = len(tensors[0])
        self.rank, self.world_size, self.equal = 0, 1, True

    def shard(self, rank: int, world_size: int, *, equal: bool = True) -> None:
        """Yields only process ``rank``'s share of each global batch (see the class notes)."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.rank, self.world_size, self.equal = int(rank), int(world_size), bool(equal)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        full, rest = divmod(self.n_rows, self.batch_size * self.world_size)
        if self.equal:
            return full + (rest >= self.world_size)
        return full + (rest > self.rank)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            idx = torch.randperm(self.n_rows, generator=g)
        else:
            idx = torch.arange(self.n_rows)
        step, w, r = self.batch_size * self.world_size, self.world_size, self.rank
        for s in range(0, self.n_rows, step):
            i = idx[s : s + step]
            if self.equal:
                b = len(i) // w
                i = i[r * b : (r + 1) * b]
            else:  # validation: every row once, none dropped
                i = i[r::w]
            if len(i):
                yield tuple(t[i] for t in self.tensors)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """The one random train/validation split of ``n`` in-memory rows.

    ``round(val_fraction * n)`` rows (at least one when ``val_fraction > 0``) go to validation,
    drawn by a permutation seeded with ``seed``; files are split by
    :func:`surrogates.data.split_mask` instead, chunk by chunk.

    Returns:
        (train indices, validation indices).
    """
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(val_fraction * n)) if val_fraction > 0 else 0
    return perm[n_val:], perm[:n_val]


def validation_batch_size(batch_size: int) -> int:
    """Rows per validation batch for training batches of ``batch_size``."""
    return max(batch_size, VAL_BATCH)


def to_device(batch: Any, device: torch.device) -> Any:
    """Moves a tensor, or a tuple/list of them, to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device) for b in batch)
    return batch
