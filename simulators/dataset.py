"""The HDF5 dataset format, version 1: its attributes, lazy reading and checks.

Writing (resumable, reproducible generation) is :mod:`simulators.generation`.

A dataset is one HDF5 file with datasets ``theta`` (N, P) and ``x`` (N, *x_shape), chunked by rows
and compressed, plus root attributes describing how it was made (see :data:`REQUIRED_ATTRS`).

Example:
    >>> import simulators
    >>> sim = simulators.get("two_moons")
    >>> simulators.generate(sim, n=1000, path="moons.h5", seed=1)  # doctest: +SKIP
    >>> with simulators.open_dataset("moons.h5") as data:  # doctest: +SKIP
    ...     theta, x = data.theta[:10], data.x[:10]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .base import Simulator, SimulatorInputError
from .registry import get

__all__ = ["FORMAT", "FORMAT_VERSION", "REQUIRED_ATTRS", "Dataset", "open_dataset", "verify"]

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
