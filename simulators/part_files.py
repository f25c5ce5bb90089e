"""Part files: one finished chunk of a :func:`simulators.generate` run each, and the space.

Chunk ``i`` of a run writing ``PATH`` is published as ``PATH.parts/chunk-00000i.h5`` (temporary
name, then atomic rename); the final file is assembled from the parts' raw chunks. The projection
of the space a run still needs and the one-line errors for a full disk live here too.

HDF5 must never meet a full disk itself: a write failing inside the library leaves it in a state
that crashes the process at exit (a segmentation fault after the error). So a part is built in
memory and written with plain file I/O, and the assembly checks the free space before each chunk.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .base import Simulator
from .errors import UserError
from .outputs import format_bytes

__all__ = [
    "check_free_space",
    "check_room",
    "create",
    "disk_full",
    "finished",
    "image",
    "part_ok",
    "path_of",
    "storage",
    "write",
    "write_file",
]


def storage(compression: str) -> dict[str, Any]:
    """Filters of every ``theta``/``x`` dataset, parts and final file alike."""
    kw: dict[str, Any] = {"compression": compression, "shuffle": True}
    if compression == "gzip":
        kw["compression_opts"] = 4
    return kw


def create(f: h5py.File, name: str, shape: tuple, dtype: Any, chunk_rows: int, compression: str):
    # maxshape None lets a part's single chunk be longer than its rows (the last, short chunk).
    return f.create_dataset(
        name,
        shape,
        dtype,
        chunks=(chunk_rows, *shape[1:]),
        maxshape=(None, *shape[1:]),
        **storage(compression),
    )


def path_of(parts: Path, index: int) -> Path:
    """The part file of chunk ``index``."""
    return parts / f"chunk-{index:06d}.h5"


def write(
    parts: Path, index: int, theta: np.ndarray, x: np.ndarray, chunk_size: int, compression: str
) -> None:
    """Publishes chunk ``index`` as a part file: written under a temporary name, then renamed."""
    final = path_of(parts, index)
    tmp = final.with_name(f"{final.name}.{uuid.uuid4().hex}.tmp")
    data = image(theta, x, chunk_size, compression, index)
    try:
        write_file(tmp, data)
        os.replace(tmp, final)
    except BaseException:  # a full disk, an interrupt: no half-written temporary stays
        tmp.unlink(missing_ok=True)
        raise


def image(theta: np.ndarray, x: np.ndarray, chunk_size: int, compression: str, index: int) -> bytes:
    """One part as an HDF5 file image, built in memory.

    Compressed here, in parallel, with the final file's chunk shape and filters, so that the final
    assembly copies raw chunks and never recompresses. HDF5 never writes a part to disk itself: a
    write failing inside HDF5 (a full disk) leaves the library in a state that crashes the process
    at exit, while a failing :func:`write_file` is a plain ``OSError``.
    """
    n = len(theta)
    name = f"chunk-{index:06d}.h5.{uuid.uuid4().hex}.mem"  # in memory only: never on disk
    with h5py.File(name, "w", driver="core", backing_store=False) as f:
        dt = create(f, "theta", (n, theta.shape[1]), np.float32, chunk_size, compression)
        dt[...] = theta
        dx = create(f, "x", x.shape, x.dtype, chunk_size, compression)
        dx[...] = x
        f.attrs["index"] = index
        f.attrs["rows"] = n
        f.flush()
        return f.id.get_file_image()


def write_file(path: Path, data: bytes) -> None:
    """Plain file I/O: a full disk is an ``OSError`` with ``errno`` ENOSPC."""
    with open(path, "wb") as fh:
        fh.write(data)


def part_ok(path: Path, rows: int, n_params: int, sim: Simulator, chunk_size: int) -> bool:
    """Whether ``path`` is a complete part of ``rows`` rows in this run's layout."""
    try:
        with h5py.File(path, "r") as f:
            return (
                int(f.attrs["rows"]) == rows
                and f["theta"].shape == (rows, n_params)
                and f["x"].shape == (rows, *sim.x_shape)
                and f["x"].dtype == np.dtype(sim.x_dtype)
                and f["x"].chunks == (chunk_size, *sim.x_shape)
            )
    except (OSError, KeyError, ValueError):
        return False


def finished(parts: Path) -> list[Path]:
    """The published part files (a temporary's name ends in .tmp)."""
    return sorted(parts.glob("chunk-*.h5")) if parts.is_dir() else []


def check_free_space(path: Path, parts: Path, n_chunks: int) -> None:
    """Refuses to go on when the remaining parts plus the final file will not fit.

    The projection takes the mean compressed size of the finished parts; the final file is about
    the sum of the parts (raw chunk copies) and exists beside them until they are removed.
    """
    sizes = [p.stat().st_size for p in finished(parts)]
    if not sizes:
        return
    per_part = sum(sizes) / len(sizes)
    need = per_part * (n_chunks - len(sizes)) + per_part * n_chunks
    check_room(path, parts, need, f" (projected from {len(sizes)} finished chunk(s))")


def check_room(path: Path, parts: Path, need: float, basis: str = "") -> None:
    """Refuses, naming ``resume=True``, when the file system of ``parts`` has less than ``need``."""
    free = shutil.disk_usage(parts).free
    if need > free:
        raise UserError(
            f"not enough free space for {path}: about {format_bytes(need)} more are needed{basis}, "
            f"{format_bytes(free)} are free; the finished chunks are kept in {parts}: free some "
            "space, then rerun with resume=True"
        )


def disk_full(path: Path, parts: Path, kept: int) -> UserError:
    """The one-line error for a full disk, naming ``resume=True`` when finished parts are kept."""
    if not kept:
        return UserError(f"no space left on the device of {path}; free some space and rerun")
    return UserError(
        f"no space left on the device of {path}; {kept} finished chunk(s) are kept in {parts}: "
        "free some space, then rerun with resume=True"
    )
