"""Streaming HDF5 datasets into PyTorch.

:class:`H5Batches` reads a dataset file one whole storage chunk at a time, shuffles rows within a
buffer of a few chunks and the chunk order across the file, and yields ready-made batches, so data
larger than memory streams at disk speed. The file is opened lazily in each process (each DataLoader
worker opens its own handle), and the train/validation split is a fixed function of
``(split_seed, chunk index)``, the same in every process and every epoch.

Example:
    >>> from torch.utils.data import DataLoader
    >>> train = H5Batches("moons.h5", split="train", batch_size=512, seed=0)  # doctest: +SKIP
    >>> for epoch in range(3):  # doctest: +SKIP
    ...     train.set_epoch(epoch)
    ...     for theta, x in DataLoader(train, batch_size=None, num_workers=2):
    ...         ...
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Literal

import h5py
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from simulators.base import SimulatorInputError
from simulators.dataset import finite_rows, open_dataset

__all__ = ["H5Batches", "Split", "load_arrays", "split_mask"]

Split = Literal["train", "val", "all"]


def split_mask(
    chunk_index: int, rows: int, split: Split, val_fraction: float, split_seed: int
) -> np.ndarray:
    """Boolean mask of a chunk's rows that belong to ``split``.

    About ``val_fraction`` of each chunk goes to validation, chosen by a generator seeded with
    ``(split_seed, chunk_index)``: deterministic, independent of workers and epochs.
    """
    if split == "all":
        return np.ones(rows, dtype=bool)
    is_val = np.random.default_rng([split_seed, chunk_index]).random(rows) < val_fraction
    return is_val if split == "val" else ~is_val


def _check_split(split: str, val_fraction: float) -> None:
    if split not in ("train", "val", "all"):
        raise SimulatorInputError(f"split must be 'train', 'val' or 'all', got {split!r}")
    if not 0 <= val_fraction < 1:
        raise SimulatorInputError(f"val_fraction must be in [0, 1), got {val_fraction}")


def load_arrays(
    path: str | os.PathLike,
    *,
    split: Split = "all",
    val_fraction: float = 0.1,
    split_seed: int = 0,
    drop_invalid: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Reads one split of a dataset into memory, in file order (for data that fits in memory)."""
    _check_split(split, val_fraction)
    thetas, xs = [], []
    with open_dataset(path) as data:
        for i, (theta, x) in enumerate(data.iter_chunks()):
            keep = split_mask(i, len(theta), split, val_fraction, split_seed)
            if drop_invalid:
                keep &= finite_rows(theta, x)
            thetas.append(theta[keep])
            xs.append(x[keep])
    return np.concatenate(thetas), np.concatenate(xs)


class H5Batches(IterableDataset):
    """Batches of ``(theta, x)`` float32 tensors streamed from a dataset file.

    Args:
        path: a dataset file (see :mod:`simulators.dataset`).
        split: ``"train"``, ``"val"`` or ``"all"``.
        val_fraction: fraction of rows in the validation split.
        split_seed: fixes which rows are validation rows.
        batch_size: rows per batch.
        shuffle: shuffle chunk order and rows within a buffer of chunks.
        seed: with the epoch (:meth:`set_epoch`), fixes the shuffling.
        buffer_chunks: chunks shuffled together; memory is about this many chunks.
        drop_last: drop the last incomplete batch of each process.
        drop_invalid: skip rows with NaN/inf in θ or x.

    Use with ``DataLoader(ds, batch_size=None, num_workers=k)``: worker ``w`` of ``k`` reads the
    chunks ``w, w + k, ...`` of the epoch's chunk order.

    On several processes (:meth:`shard`, called by the trainer under torchrun) process ``r`` of
    ``W`` reads the chunks ``r, r + W, ...`` of the epoch's order, which its workers split
    again, so each process reads only its share of the file. ``batch_size`` is then per
    process. A training shard (``equal=True``) yields full batches only and, each epoch, as
    many as the process with the fewest rows can fill (the excess of the others is dropped,
    from their last worker's last batches): every process takes the same number of steps, as
    DDP needs (an uneven count leaves a process waiting forever in the last all-reduce). The
    counts come from the split's row counts per chunk; with ``drop_invalid`` the file is read
    once more to count the finite rows. A validation shard (``equal=False``) drops nothing.
    Unlike :class:`~surrogates.training.ArrayBatches`, a sharded epoch is not the same batches
    as one process with ``W`` times the batch size (whole chunks go to one process), but an
    equally random one.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        split: Split = "train",
        val_fraction: float = 0.1,
        split_seed: int = 0,
        batch_size: int = 256,
        shuffle: bool = True,
        seed: int = 0,
        buffer_chunks: int = 4,
        drop_last: bool = False,
        drop_invalid: bool = False,
    ):
        _check_split(split, val_fraction)
        if batch_size < 1:
            raise SimulatorInputError(f"batch_size must be ≥ 1, got {batch_size}")
        self.path = os.fspath(path)
        self.split: Split = split
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.buffer_chunks = max(1, buffer_chunks)
        self.drop_last = drop_last
        self.drop_invalid = drop_invalid
        self.epoch = 0
        with open_dataset(self.path) as data:
            self.n = len(data)
            self.chunk_size = data.chunk_size
            self.meta = data.meta
            self.x_shape = data.x_shape
        self.n_chunks = -(-self.n // self.chunk_size)
        #: rows of the split in each chunk (finite ones only, once sharded with drop_invalid)
        self.chunk_rows = np.array(
            [split_mask(i, self._rows(i), split, val_fraction, split_seed).sum()
             for i in range(self.n_chunks)], dtype=np.int64
        )  # fmt: skip
        self.n_rows = int(self.chunk_rows.sum())
        self.rank, self.world_size, self.equal = 0, 1, True
        self._file: h5py.File | None = None
        self._datasets: tuple[h5py.Dataset, h5py.Dataset] | None = None

    def _rows(self, i: int) -> int:
        return min(self.n, (i + 1) * self.chunk_size) - i * self.chunk_size

    def shard(self, rank: int, world_size: int, *, equal: bool = True) -> None:
        """Reads only process ``rank``'s chunks (see the class notes)."""
        if not 0 <= rank < world_size:
            raise SimulatorInputError(f"rank must be in [0, {world_size}), got {rank}")
        self.rank, self.world_size, self.equal = int(rank), int(world_size), bool(equal)
        if self.sharded_equal and self.drop_invalid:  # the exact counts the plan needs
            self.chunk_rows = np.array([len(self._read_chunk(i)[0]) for i in range(self.n_chunks)])
            self.n_rows = int(self.chunk_rows.sum())
            self._close()
        if self.sharded_equal and not self._quota(self._order(), 1)[0]:
            raise SimulatorInputError(
                f"{self.path}: {self.n_chunks} chunk(s) of {self.chunk_size} rows cannot give each "
                f"of {world_size} processes a batch of {self.batch_size} rows; write the file "
                "with smaller chunks (--chunk-size) or use fewer processes"
            )

    @property
    def sharded_equal(self) -> bool:
        return self.world_size > 1 and self.equal

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = self._datasets = None

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n_chunks)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.n_chunks)

    def _quota(self, order: np.ndarray, n_workers: int) -> np.ndarray:
        """Full batches each worker of this process yields, the same total on every process."""
        w, b = self.world_size, self.batch_size
        counts = np.array([[self.chunk_rows[order[r::w][k::n_workers]].sum() // b
                            for k in range(n_workers)] for r in range(w)])  # fmt: skip
        mine, excess = counts[self.rank].copy(), counts[self.rank].sum() - counts.sum(1).min()
        for k in reversed(range(n_workers)):
            cut = min(excess, mine[k])
            mine[k] -= cut
            excess -= cut
        return mine

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch, which with ``seed`` fixes the shuffling."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.sharded_equal:  # with one worker; a few batches fewer with several
            return int(self._quota(self._order(), 1)[0])
        if self.world_size > 1:
            return -(-int(self.chunk_rows[self._order()[self.rank :: self.world_size]].sum())
                     // self.batch_size)  # fmt: skip
        if self.drop_last:
            return self.n_rows // self.batch_size
        return -(-self.n_rows // self.batch_size)

    def __getstate__(self) -> dict:
        # An open HDF5 handle must not cross a process boundary: each worker opens its own.
        return {**self.__dict__, "_file": None, "_datasets": None}

    def _open(self) -> tuple[h5py.Dataset, h5py.Dataset]:
        if self._file is None:
            # Whole-chunk reads need no chunk cache; keep it small so memory stays bounded.
            self._file = h5py.File(self.path, "r", rdcc_nbytes=1 << 20)
            self._datasets = (self._file["theta"], self._file["x"])
        return self._datasets

    def _read_chunk(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        dtheta, dx = self._open()
        start, stop = i * self.chunk_size, i * self.chunk_size + self._rows(i)
        theta = dtheta[start:stop]
        x = dx[start:stop]
        keep = split_mask(i, len(theta), self.split, self.val_fraction, self.split_seed)
        if self.drop_invalid:
            keep &= finite_rows(theta, x)
        if keep.all():
            return theta, x
        return theta[keep], x[keep]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        order = self._order()
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.shuffle:
            rng.permutation(self.n_chunks)  # the draw of _order: the row shuffles follow it
        quota = int(self._quota(order, n_workers)[worker]) if self.sharded_equal else None
        mine = order[self.rank :: self.world_size][worker::n_workers]
        left = math.inf if quota is None else quota
        rest_t = np.zeros((0, len(self.meta["param_names"])), np.float32)
        rest_x = np.zeros((0, *self.x_shape), np.float32)
        for g in range(0, len(mine), self.buffer_chunks):
            parts = [self._read_chunk(int(i)) for i in mine[g : g + self.buffer_chunks]]
            theta = np.concatenate([rest_t] + [p[0] for p in parts])
            x = np.concatenate([rest_x] + [p[1] for p in parts])
            if self.shuffle:
                perm = rng.permutation(len(theta))
                theta, x = theta[perm], x[perm]
            full = len(theta) - len(theta) % self.batch_size
            for s in range(0, full, self.batch_size):
                if left <= 0:
                    return
                left -= 1
                yield self._tensors(theta[s : s + self.batch_size], x[s : s + self.batch_size])
            rest_t, rest_x = theta[full:], x[full:]
        if len(rest_t) and not self.drop_last and quota is None:
            yield self._tensors(rest_t, rest_x)

    @staticmethod
    def _tensors(theta: np.ndarray, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.from_numpy(np.ascontiguousarray(theta, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        )
