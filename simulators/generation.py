"""Resumable, reproducible generation of dataset files (:mod:`simulators.dataset` is the format).

Generation is split in chunks of ``chunk_size`` rows. Chunk ``i`` draws all of its randomness from
``numpy.random.default_rng(SeedSequence(seed).spawn(n_chunks)[i])``, so the file is bit-identical
whatever the number of workers and however often the run was interrupted. Each finished chunk
is written to ``PATH.parts/chunk-000123.h5`` and published by atomic rename; the final file is
assembled from verified parts under a temporary name and published by atomic rename, so a killed
run loses at most the chunks in flight and never leaves a half-written file under the final name.

Example:
    >>> import simulators
    >>> sim = simulators.get("two_moons")
    >>> simulators.generate(sim, n=1000, path="moons.h5", seed=1)  # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .base import Simulator, SimulatorInputError
from .dataset import _JSON_ATTRS, FORMAT, FORMAT_VERSION, verify

__all__ = ["default_chunk_size", "generate"]

#: target bytes of ``x`` per chunk: one chunk is one contiguous read of about this size
_CHUNK_BYTES = 2 * 2**20
_MAX_CHUNK_ROWS = 10_000


def default_chunk_size(sim: Simulator, n: int) -> int:
    """Rows per chunk: about 2 MiB of ``x``, at most 10,000 rows and at most ``n``."""
    row_bytes = int(np.prod(sim.x_shape, dtype=np.int64)) * np.dtype(sim.x_dtype).itemsize
    rows = max(1, min(_MAX_CHUNK_ROWS, _CHUNK_BYTES // max(row_bytes, 1)))
    return int(max(1, min(rows, n)))


def _package_version() -> str:
    from . import __version__

    return __version__


def _limit_threads() -> None:
    # One BLAS/OpenMP thread per worker, or K workers oversubscribe the cores.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


@dataclass(frozen=True)
class _Job:
    """Everything a worker needs to produce one chunk."""

    sim: Simulator
    index: int
    start: int
    stop: int
    seed_seq: np.random.SeedSequence
    theta: np.ndarray | None
    parts: Path
    chunk_size: int
    compression: str


def _storage(compression: str) -> dict[str, Any]:
    """Filters of every ``theta``/``x`` dataset, parts and final file alike."""
    kw: dict[str, Any] = {"compression": compression, "shuffle": True}
    if compression == "gzip":
        kw["compression_opts"] = 4
    return kw


def _create(f: h5py.File, name: str, shape: tuple, dtype: Any, chunk_rows: int, compression: str):
    # maxshape None lets a part's single chunk be longer than its rows (the last, short chunk).
    return f.create_dataset(
        name,
        shape,
        dtype,
        chunks=(chunk_rows, *shape[1:]),
        maxshape=(None, *shape[1:]),
        **_storage(compression),
    )


def _part_path(parts: Path, index: int) -> Path:
    return parts / f"chunk-{index:06d}.h5"


def _run_job(job: _Job) -> int:
    rng = np.random.default_rng(job.seed_seq)
    n = job.stop - job.start
    theta = job.sim.prior.sample(n, rng) if job.theta is None else job.theta
    x = job.sim.simulate(theta, rng)
    final = _part_path(job.parts, job.index)
    tmp = final.with_name(f"{final.name}.{uuid.uuid4().hex}.tmp")
    # Compressed here, in parallel, with the final file's chunk shape and filters, so that the
    # final assembly copies raw chunks and never recompresses.
    with h5py.File(tmp, "w") as f:
        dt = _create(f, "theta", (n, theta.shape[1]), np.float32, job.chunk_size, job.compression)
        dt[...] = theta
        dx = _create(f, "x", x.shape, x.dtype, job.chunk_size, job.compression)
        dx[...] = x
        f.attrs["index"] = job.index
        f.attrs["rows"] = n
    os.replace(tmp, final)
    return job.index


def _part_ok(path: Path, rows: int, n_params: int, sim: Simulator, chunk_size: int) -> bool:
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


def _spec(
    sim: Simulator, n: int, seed: int, chunk_size: int, theta: np.ndarray | None, compression: str
) -> dict:
    spec = {
        "simulator": sim.name,
        "simulator_version": sim.version,
        "simulator_config": sim.config,
        "n": n,
        "seed": seed,
        "chunk_size": chunk_size,
        "compression": compression,
        "theta_sha256": None if theta is None else hashlib.sha256(theta.tobytes()).hexdigest(),
    }
    return json.loads(json.dumps(spec))


def _check_spec(parts: Path, spec: dict) -> None:
    try:
        old = json.loads((parts / "spec.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise SimulatorInputError(
            f"cannot resume: {parts} has no readable spec.json; rerun with overwrite=True"
        ) from None
    diff = sorted(k for k in spec if old.get(k) != spec[k])
    if diff:
        raise SimulatorInputError(
            f"cannot resume: the interrupted run in {parts} differs in {', '.join(diff)}; "
            "rerun with the same arguments, or with overwrite=True to start over"
        )


def _progress_bar(total: int, initial: int, desc: str, enabled: bool | None):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="row", unit_scale=True)


def generate(
    sim: Simulator,
    n: int,
    path: str | os.PathLike,
    *,
    seed: int,
    chunk_size: int | None = None,
    workers: int = 1,
    executor: cf.Executor | None = None,
    resume: bool = False,
    overwrite: bool = False,
    theta: Any = None,
    compression: str = "gzip",
    progress: bool | None = False,
    attrs: dict[str, Any] | None = None,
) -> Path:
    """Simulates ``n`` rows into an HDF5 dataset at ``path``.

    Args:
        sim: the simulator.
        n: number of rows, ≥ 1.
        path: the final file; published only when complete.
        seed: root seed; chunk ``i`` uses ``SeedSequence(seed).spawn(n_chunks)[i]``.
        chunk_size: rows per chunk (default :func:`default_chunk_size`); with the seed it fixes
            the result.
        workers: processes on this machine (ignored when ``executor`` is given).
        executor: any :class:`concurrent.futures.Executor`, e.g. a Dask client's executor.
        resume: continue an interrupted run from its part files.
        overwrite: replace an existing file (the old one stays until the new one is published).
        theta: optional (n, P) conditions to simulate instead of prior draws.
        compression: ``"gzip"`` or ``"lzf"``.
        progress: show a progress bar; ``None`` shows it when stderr is a terminal.
        attrs: extra root attributes (JSON-serializable).

    Returns:
        The path of the published file.

    Raises:
        SimulatorInputError: bad arguments, an existing output without ``overwrite``, or an
            interrupted run that ``resume`` does not match.
    """
    path = Path(path)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise SimulatorInputError(f"n must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SimulatorInputError(f"seed must be a non-negative integer, got {seed!r}")
    if workers < 1:
        raise SimulatorInputError(f"workers must be ≥ 1, got {workers}")
    if compression not in ("gzip", "lzf"):
        raise SimulatorInputError(f"compression must be 'gzip' or 'lzf', got {compression!r}")
    n, seed = int(n), int(seed)
    chunk_size = default_chunk_size(sim, n) if chunk_size is None else int(chunk_size)
    if chunk_size < 1:
        raise SimulatorInputError(f"chunk_size must be ≥ 1, got {chunk_size}")
    chunk_size = min(chunk_size, n)
    if theta is not None:
        theta = sim.check_theta(theta).astype(np.float32)
        if len(theta) != n:
            raise SimulatorInputError(f"theta has {len(theta)} rows but n = {n}")
    if path.exists() and not overwrite:
        raise SimulatorInputError(f"{path} exists; pass overwrite=True to replace it")
    if not path.parent.exists():
        raise SimulatorInputError(f"output folder {path.parent} does not exist")

    parts = path.with_name(path.name + ".parts")
    spec = _spec(sim, n, seed, chunk_size, theta, compression)
    if parts.exists():
        if resume:
            _check_spec(parts, spec)
        elif overwrite:
            shutil.rmtree(parts)
        else:
            raise SimulatorInputError(
                f"an interrupted run exists at {parts}; pass resume=True to continue it "
                "or overwrite=True to start over"
            )
    parts.mkdir(exist_ok=True)
    spec_tmp = parts / f"spec.json.{uuid.uuid4().hex}.tmp"
    spec_tmp.write_text(json.dumps(spec, indent=1))
    os.replace(spec_tmp, parts / "spec.json")
    for stale in parts.glob("*.tmp"):
        stale.unlink(missing_ok=True)

    n_chunks = -(-n // chunk_size)
    seeds = np.random.SeedSequence(seed).spawn(n_chunks)
    n_params = len(sim.param_names)
    todo = []
    done_rows = 0
    for i in range(n_chunks):
        start, stop = i * chunk_size, min(n, (i + 1) * chunk_size)
        if _part_ok(_part_path(parts, i), stop - start, n_params, sim, chunk_size):
            done_rows += stop - start
            continue
        sub = None if theta is None else theta[start:stop].astype(np.float64)
        todo.append(_Job(sim, i, start, stop, seeds[i], sub, parts, chunk_size, compression))

    bar = _progress_bar(n, done_rows, f"{sim.name}", progress)
    try:
        _run_jobs(
            todo, workers, executor, lambda job: bar.update(job.stop - job.start) if bar else None
        )
    finally:
        if bar is not None:
            bar.close()

    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "simulator": sim.name,
        "simulator_version": sim.version,
        "simulator_config": sim.config,
        "param_names": list(sim.param_names),
        "x_shape": list(sim.x_shape),
        "prior": sim.prior.to_dict(),
        "allow_nan": bool(sim.allow_nan),
        "seed": seed,
        "chunk_size": chunk_size,
        "n": n,
        "theta_source": "prior" if theta is None else "given",
        "package_version": _package_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **(attrs or {}),
    }
    _assemble(path, parts, n_chunks, chunk_size, sim, meta, compression)
    shutil.rmtree(parts, ignore_errors=True)
    return path


def _run_jobs(
    jobs: list[_Job], workers: int, executor: cf.Executor | None, done: Callable[[_Job], Any]
) -> None:
    if not jobs:
        return
    if executor is None and workers == 1:
        for job in jobs:
            _run_job(job)
            done(job)
        return
    own = executor is None
    if own:
        ctx = multiprocessing.get_context("spawn")
        executor = cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_limit_threads)
    try:
        futures = {executor.submit(_run_job, job): job for job in jobs}
        for fut in cf.as_completed(futures):
            fut.result()
            done(futures[fut])
    finally:
        if own:
            executor.shutdown(wait=True, cancel_futures=True)


def _assemble(
    path: Path,
    parts: Path,
    n_chunks: int,
    chunk_size: int,
    sim: Simulator,
    meta: dict[str, Any],
    compression: str,
) -> None:
    n = meta["n"]
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            dt = _create(f, "theta", (n, len(sim.param_names)), np.float32, chunk_size, compression)
            dx = _create(f, "x", (n, *sim.x_shape), sim.x_dtype, chunk_size, compression)
            for i in range(n_chunks):
                with h5py.File(_part_path(parts, i), "r") as p:
                    for src, dst in ((p["theta"], dt), (p["x"], dx)):
                        zeros = (0,) * (src.ndim - 1)
                        mask, raw = src.id.read_direct_chunk((0, *zeros))
                        dst.id.write_direct_chunk((i * chunk_size, *zeros), raw, mask)
            for alias, target in getattr(sim, "h5_aliases", {}).items():
                f[alias] = f[target]  # a hard link: no copy
            for key, value in meta.items():
                f.attrs[key] = json.dumps(value) if key in _JSON_ATTRS else value
        verify(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
