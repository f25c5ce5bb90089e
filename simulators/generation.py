"""Resumable, reproducible generation of dataset files (:mod:`simulators.dataset` is the format).

Generation is split in chunks of ``chunk_size`` rows. Chunk ``i`` draws all of its randomness from
``numpy.random.default_rng(SeedSequence(seed).spawn(n_chunks)[i])``, so the file is bit-identical
whatever the number of workers and however often the run was interrupted. Each finished chunk
is written to ``PATH.parts/chunk-000123.h5`` and published by atomic rename; the final file is
assembled from verified parts under a temporary name and published by atomic rename, so a killed
run loses at most the chunks in flight and never leaves a half-written file under the final name.

Faults: the output location is checked before any work
(:func:`simulators.outputs.check_output_location`). After the first finished chunk, the space the
run still needs (the remaining parts plus the assembled file, projected from the compressed size of
the finished parts) is compared with the free space of the target's file system, and the run stops
with a :class:`~simulators.errors.UserError` when it does not fit. A full disk mid-run (``ENOSPC``)
stops it the same way. Both keep the finished parts, so ``resume=True`` continues once there
is room; a run that fails before its first chunk is finished leaves nothing behind.

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
import re
import shutil
import signal
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from . import part_files
from .base import Simulator, SimulatorInputError
from .dataset import _JSON_ATTRS, FORMAT, FORMAT_VERSION, verify
from .outputs import check_output_location, is_disk_full

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
    # Ctrl-C reaches the whole process group: the parent handles it (it lets the chunks in
    # flight finish and exits with one line); a worker that took it would die with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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


def _run_job(job: _Job) -> int:
    rng = np.random.default_rng(job.seed_seq)
    n = job.stop - job.start
    theta = job.sim.prior.sample(n, rng) if job.theta is None else job.theta
    x = job.sim.simulate(theta, rng)
    part_files.write(job.parts, job.index, theta, x, job.chunk_size, job.compression)
    return job.index


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
        SimulatorInputError: bad arguments, an output location that cannot be written, an
            existing output without ``overwrite`` (all before any work), or an interrupted run
            that ``resume`` does not match.
        UserError: a projected size beyond the free space, or a full disk mid-run (the
            finished parts are kept for ``resume``).
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
    check_output_location(path, kind="file", overwrite=overwrite)
    n_chunks = -(-n // chunk_size)

    parts = path.with_name(path.name + ".parts")
    spec = _spec(sim, n, seed, chunk_size, theta, compression)
    fresh = not os.path.lexists(parts)
    if not fresh:
        if resume:
            _check_spec(parts, spec)
        elif overwrite:
            if parts.is_dir():
                shutil.rmtree(parts)
            else:
                parts.unlink()
            fresh = True
        else:
            raise SimulatorInputError(
                f"an interrupted run exists at {parts}; pass resume=True to continue it "
                "or overwrite=True to start over"
            )
        _remove_stale_assemblies(path)
    try:
        _write_parts(sim, n, path, parts, spec, n_chunks, theta, workers, executor, progress)
        meta = _meta(sim, n, seed, chunk_size, theta, attrs)
        _assemble(path, parts, n_chunks, chunk_size, sim, meta, compression)
    except BaseException as exc:
        kept = len(part_files.finished(parts))
        if fresh and not kept:  # nothing to resume: leave nothing behind
            shutil.rmtree(parts, ignore_errors=True)
        if is_disk_full(exc):
            raise part_files.disk_full(path, parts, kept) from None
        raise
    shutil.rmtree(parts, ignore_errors=True)
    return path


def _write_parts(
    sim: Simulator,
    n: int,
    path: Path,
    parts: Path,
    spec: dict,
    n_chunks: int,
    theta: np.ndarray | None,
    workers: int,
    executor: cf.Executor | None,
    progress: bool | None,
) -> None:
    """Writes every missing part of ``parts``, checking free space after the first one."""
    parts.mkdir(exist_ok=True)
    spec_tmp = parts / f"spec.json.{uuid.uuid4().hex}.tmp"
    spec_tmp.write_text(json.dumps(spec, indent=1))
    os.replace(spec_tmp, parts / "spec.json")
    for stale in parts.glob("*.tmp"):
        stale.unlink(missing_ok=True)

    chunk_size, compression = spec["chunk_size"], spec["compression"]
    seeds = np.random.SeedSequence(spec["seed"]).spawn(n_chunks)
    n_params = len(sim.param_names)
    todo = []
    done_rows = 0
    for i in range(n_chunks):
        start, stop = i * chunk_size, min(n, (i + 1) * chunk_size)
        part = part_files.path_of(parts, i)
        if part_files.part_ok(part, stop - start, n_params, sim, chunk_size):
            done_rows += stop - start
            continue
        sub = None if theta is None else theta[start:stop].astype(np.float64)
        todo.append(_Job(sim, i, start, stop, seeds[i], sub, parts, chunk_size, compression))
    if done_rows:  # resuming: the finished parts already tell the size
        part_files.check_free_space(path, parts, n_chunks)

    bar = _progress_bar(n, done_rows, f"{sim.name}", progress)
    checked = bool(done_rows)

    def done(job: _Job) -> None:
        nonlocal checked
        if bar is not None:
            bar.update(job.stop - job.start)
        if not checked:
            checked = True
            part_files.check_free_space(path, parts, n_chunks)

    try:
        _run_jobs(todo, workers, executor, done)
    finally:
        if bar is not None:
            bar.close()


def _remove_stale_assemblies(path: Path) -> None:
    """Removes ``.NAME.<hex>.tmp`` beside ``path``: an assembly killed before its rename."""
    pattern = re.compile(re.escape(f".{path.name}.") + r"[0-9a-f]{32}\.tmp")
    for p in path.parent.iterdir():
        if pattern.fullmatch(p.name) and p.is_file():
            p.unlink(missing_ok=True)


def _meta(
    sim: Simulator,
    n: int,
    seed: int,
    chunk_size: int,
    theta: np.ndarray | None,
    attrs: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
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
    futures: dict[cf.Future, _Job] = {}
    try:
        futures = {executor.submit(_run_job, job): job for job in jobs}
        for fut in cf.as_completed(futures):
            fut.result()
            done(futures[fut])
    except BaseException:
        for fut in futures:  # an executor we do not own (Dask) keeps running what we leave
            fut.cancel()
        raise
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
    """Copies the parts' raw chunks into the final file and publishes it.

    Before each chunk the free space must still hold what is left to copy (the parts' sizes, an
    upper bound) and a margin for the chunk index: HDF5 must never meet a full disk itself
    (see :mod:`simulators.part_files`), so the copy stops cleanly, the parts kept, when the space
    runs out.
    """
    n = meta["n"]
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    sizes = [part_files.path_of(parts, i).stat().st_size for i in range(n_chunks)]
    margin = 2**20 + 256 * n_chunks
    try:
        with h5py.File(tmp, "w") as f:
            shape = (n, len(sim.param_names))
            dt = part_files.create(f, "theta", shape, np.float32, chunk_size, compression)
            dx = part_files.create(f, "x", (n, *sim.x_shape), sim.x_dtype, chunk_size, compression)
            for i in range(n_chunks):
                part_files.check_room(path, parts, sum(sizes[i:]) + margin)
                with h5py.File(part_files.path_of(parts, i), "r") as p:
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
