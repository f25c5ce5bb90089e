"""The HDF5 dataset format, version 1: resumable reproducible generation, lazy reading, checks.

A dataset is one HDF5 file with datasets ``theta`` (N, P) and ``x`` (N, *x_shape), chunked by rows
and compressed, plus root attributes describing how it was made (see :data:`REQUIRED_ATTRS`).

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
    >>> with simulators.open_dataset("moons.h5") as data:  # doctest: +SKIP
    ...     theta, x = data.theta[:10], data.x[:10]
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .base import Simulator, SimulatorInputError
from .registry import get

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "REQUIRED_ATTRS",
    "Dataset",
    "default_chunk_size",
    "generate",
    "open_dataset",
    "verify",
]

FORMAT = "simsurrogates"
FORMAT_VERSION = 1
REQUIRED_ATTRS = (
    "format",
    "format_version",
    "simulator",
    "simulator_version",
    "simulator_config",
    "param_names",
    "seed",
    "chunk_size",
    "n",
    "package_version",
    "created",
)
_JSON_ATTRS = ("simulator_config", "param_names", "prior", "x_shape")
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
            f"cannot resume: {parts} has no readable spec.json; rerun with --overwrite"
        ) from None
    diff = sorted(k for k in spec if old.get(k) != spec[k])
    if diff:
        raise SimulatorInputError(
            f"cannot resume: the interrupted run in {parts} differs in {', '.join(diff)}; "
            "rerun with the same arguments, or with --overwrite to start over"
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
        raise SimulatorInputError(f"{path} exists; pass --overwrite to replace it")
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
                f"an interrupted run exists at {parts}; pass --resume to continue it "
                "or --overwrite to start over"
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


def _decode_attrs(attrs: h5py.AttributeManager) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, np.generic):
            value = value.item()
        if key in _JSON_ATTRS and isinstance(value, str):
            value = json.loads(value)
        meta[key] = value
    return meta


def _open(path: str | os.PathLike) -> h5py.File:
    path = Path(path)
    if not path.exists():
        raise SimulatorInputError(f"{path} does not exist")
    if path.is_dir():
        raise SimulatorInputError(f"{path} is a folder, not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError:
        raise SimulatorInputError(
            f"{path} is not a readable HDF5 file (truncated, corrupted or another format)"
        ) from None


class Dataset:
    """A dataset file opened read-only; ``theta`` and ``x`` are read lazily.

    Attributes:
        theta: h5py dataset (N, P); slicing reads numpy arrays.
        x: h5py dataset (N, *x_shape).
        meta: root attributes, JSON values decoded.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = _open(self.path)
        try:
            self.meta = _decode_attrs(self._file.attrs)
            if self.meta.get("format") != FORMAT:
                raise SimulatorInputError(f"{self.path} is not a simsurrogates dataset")
            self.theta = self._file["theta"]
            self.x = self._file["x"]
        except (KeyError, OSError):
            self._file.close()
            raise SimulatorInputError(f"{self.path} lacks the theta/x datasets") from None
        except SimulatorInputError:
            self._file.close()
            raise

    def __len__(self) -> int:
        return int(self.theta.shape[0])

    @property
    def chunk_size(self) -> int:
        return int(self.meta.get("chunk_size") or (self.x.chunks or (len(self),))[0])

    @property
    def param_names(self) -> list[str]:
        return list(self.meta["param_names"])

    @property
    def x_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def simulator(self) -> Simulator:
        """Rebuilds the simulator that wrote the file, from its name and configuration."""
        return get(self.meta["simulator"], **self.meta["simulator_config"])

    def iter_chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yields ``(theta, x)`` one storage chunk at a time."""
        c = self.chunk_size
        for start in range(0, len(self), c):
            yield self.theta[start : start + c], self.x[start : start + c]

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Dataset({str(self.path)!r}, simulator={self.meta['simulator']!r}, n={len(self)})"


def open_dataset(path: str | os.PathLike) -> Dataset:
    """Opens a dataset file read-only; raises :class:`SimulatorInputError` if it is not one."""
    return Dataset(path)


def verify(path: str | os.PathLike) -> dict[str, Any]:
    """Checks a dataset file end to end and returns a summary.

    Checks: readable HDF5; the format marker and a supported version; every required attribute;
    ``theta`` (N, P) and ``x`` (N, ...) with N equal to the ``n`` attribute and P to the number of
    parameter names; every row readable; θ finite; x finite unless the simulator allows NaN;
    alias datasets (e.g. the calorimeter's ``showers``) identical to their targets.

    Raises:
        SimulatorInputError: naming the first problem found.
    """
    path = Path(path)
    with _open(path) as f:
        meta = _decode_attrs(f.attrs)
        if meta.get("format") != FORMAT:
            raise SimulatorInputError(
                f"{path} is not a simsurrogates dataset (no format attribute)"
            )
        missing = [k for k in REQUIRED_ATTRS if k not in meta]
        if missing:
            raise SimulatorInputError(f"{path} lacks attribute(s): {', '.join(missing)}")
        if meta["format_version"] > FORMAT_VERSION:
            raise SimulatorInputError(
                f"{path} has format version {meta['format_version']}; "
                f"this package reads up to {FORMAT_VERSION}: upgrade simsurrogates"
            )
        if "theta" not in f or "x" not in f:
            raise SimulatorInputError(f"{path} lacks the theta/x datasets")
        theta, x = f["theta"], f["x"]
        n = int(meta["n"])
        if theta.shape != (n, len(meta["param_names"])):
            raise SimulatorInputError(
                f"{path}: theta has shape {theta.shape}, expected ({n}, {len(meta['param_names'])})"
            )
        if x.shape[0] != n:
            raise SimulatorInputError(f"{path}: x has {x.shape[0]} rows, expected {n}")
        allow_nan = bool(meta.get("allow_nan", False))
        chunk = int(meta["chunk_size"]) or n
        nan_rows = 0
        try:
            for start in range(0, n, chunk):
                t = theta[start : start + chunk]
                if not np.all(np.isfinite(t)):
                    raise SimulatorInputError(f"{path}: theta has NaN/inf in rows ≥ {start}")
                bad = ~np.isfinite(x[start : start + chunk].reshape(len(t), -1)).all(axis=1)
                nan_rows += int(bad.sum())
        except OSError as exc:
            raise SimulatorInputError(f"{path}: data cannot be read ({exc})") from None
        if nan_rows and not allow_nan:
            raise SimulatorInputError(f"{path}: x has NaN/inf in {nan_rows} row(s)")
        aliases = {}
        for name in f:
            if name not in ("theta", "x") and isinstance(f[name], h5py.Dataset):
                same = f[name].id == theta.id or f[name].id == x.id
                if not same and f[name].shape[0] != n:
                    raise SimulatorInputError(f"{path}: dataset {name} has the wrong row count")
                aliases[name] = list(f[name].shape)
        return {
            "path": str(path),
            "n": n,
            "theta_shape": list(theta.shape),
            "x_shape": list(x.shape[1:]),
            "x_dtype": str(x.dtype),
            "chunks": -(-n // chunk),
            "compression": x.compression,
            "nan_rows": nan_rows,
            "other_datasets": aliases,
            "bytes": path.stat().st_size,
            "meta": meta,
        }
