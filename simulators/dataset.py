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

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

from .base import Prior, Simulator, SimulatorInputError, outside_support, prior_from_dict
from .registry import get

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "REQUIRED_ATTRS",
    "Dataset",
    "DatasetCheck",
    "NonFinite",
    "array_fingerprint",
    "check_arrays",
    "check_dataset",
    "finite_rows",
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
#: the type each attribute must have once decoded (JSON attributes after parsing)
_ATTR_TYPES: dict[str, tuple[type, ...]] = {
    "format_version": (int,), "simulator": (str,), "simulator_version": (int,),
    "simulator_config": (dict,), "param_names": (list,), "seed": (int,), "chunk_size": (int,),
    "n": (int,), "prior": (dict,), "x_shape": (list,), "allow_nan": (bool, int),
}  # fmt: skip
#: what to do with rows holding NaN/inf: refuse them, drop them (counted), or accept what the
#: file allows (θ always finite; x finite unless its ``allow_nan`` attribute says otherwise)
NonFinite = Literal["refuse", "drop", "file"]
#: the dataset identity a training run records: equal fingerprints, the same training data
FINGERPRINT_KEYS = ("format", "simulator", "seed", "n", "theta_sha256")
_PRIOR_TYPES = ("box_uniform", "latin_hypercube", "log_uniform", "normal", "log_normal", "discrete")


def _decode_attrs(attrs: h5py.AttributeManager, path: Path | str = "") -> dict[str, Any]:
    """The root attributes, JSON ones parsed; a malformed one is an error naming the file and
    the attribute."""
    meta: dict[str, Any] = {}
    for key in attrs:
        try:
            value = attrs[key]
        except (OSError, TypeError, ValueError) as exc:
            raise SimulatorInputError(f"{path}: attribute {key} cannot be read ({exc})") from None
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        if isinstance(value, np.generic):
            value = value.item()
        if key in _JSON_ATTRS and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise SimulatorInputError(
                    f"{path}: attribute {key} is not valid JSON ({exc.msg} at character "
                    f"{exc.pos}): {value[:60]!r}"
                ) from None
        want = _ATTR_TYPES.get(key)
        if want and not (isinstance(value, want) and (bool in want or type(value) is not bool)):
            names = " or ".join(t.__name__ for t in want)
            raise SimulatorInputError(
                f"{path}: attribute {key} must be {names}, got {type(value).__name__} {value!r:.60}"
            )
        meta[key] = value
    return meta


def _check_meta(path: Path, meta: dict[str, Any]) -> None:
    if meta.get("format") != FORMAT:
        raise SimulatorInputError(f"{path} is not a simsurrogates dataset (no format attribute)")
    missing = [k for k in REQUIRED_ATTRS if k not in meta]
    if missing:
        raise SimulatorInputError(f"{path} lacks attribute(s): {', '.join(missing)}")
    if meta["format_version"] > FORMAT_VERSION:
        raise SimulatorInputError(
            f"{path} has format version {meta['format_version']}; "
            f"this package reads up to {FORMAT_VERSION}: upgrade simsurrogates"
        )
    if not all(isinstance(p, str) for p in meta["param_names"]):
        raise SimulatorInputError(f"{path}: attribute param_names must be a list of names")
    for key in ("n", "chunk_size", "seed"):
        if meta[key] < 0:
            raise SimulatorInputError(f"{path}: attribute {key} must be ≥ 0, got {meta[key]}")


def _check_arrays(path: Path, meta: dict[str, Any], theta: Any, x: Any) -> None:
    """Shapes and dtypes of ``theta``/``x`` against each other and the attributes."""
    n, p = int(meta["n"]), len(meta["param_names"])
    if not isinstance(theta, h5py.Dataset) or not isinstance(x, h5py.Dataset):
        raise SimulatorInputError(f"{path}: theta and x must be datasets, not groups")
    for name, d in (("theta", theta), ("x", x)):
        kinds = "f" if name == "theta" else "fiu"
        if d.dtype.kind not in kinds:
            want = "floating point" if name == "theta" else "numeric"
            raise SimulatorInputError(f"{path}: {name} has dtype {d.dtype}, expected {want}")
    if theta.shape != (n, p):
        raise SimulatorInputError(f"{path}: theta has shape {theta.shape}, expected ({n}, {p})")
    if x.ndim < 1 or x.shape[0] != n:
        rows = x.shape[0] if x.ndim else 0
        raise SimulatorInputError(f"{path}: x has {rows} rows, theta has {n} (attribute n = {n})")
    if "x_shape" in meta and list(x.shape[1:]) != list(meta["x_shape"]):
        raise SimulatorInputError(
            f"{path}: x has rows of shape {tuple(x.shape[1:])}, attribute x_shape says "
            f"{tuple(meta['x_shape'])}"
        )


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


def finite_rows(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Which rows hold only finite values in both ``theta`` and ``x``, shape (N,)."""
    return np.isfinite(theta.reshape(len(theta), -1)).all(1) & np.isfinite(
        x.reshape(len(x), -1)
    ).all(1)


@dataclass
class _Rows:
    """Counts rows flagged by a mask, chunk after chunk, and remembers the first one."""

    count: int = 0
    first: int | None = None

    def add(self, bad: np.ndarray, offset: int) -> None:
        k = int(bad.sum())
        if k and self.first is None:
            self.first = offset + int(np.argmax(bad))
        self.count += k


def _refuse_nonfinite(source: str, rows: _Rows, n: int, what: str = "theta or x") -> None:
    raise SimulatorInputError(
        f"{source}: {rows.count} of {n} row(s) hold NaN/inf in {what} (first: row {rows.first}); "
        "pass drop_nonfinite=True to skip them"
    )


@dataclass(frozen=True)
class DatasetCheck:
    """What the input gate found in a dataset file (or arrays).

    Attributes:
        path: the file (``"<arrays>"`` for arrays).
        n: rows in the file.
        n_nonfinite: rows holding NaN/inf in θ or x.
        first_nonfinite: index of the first of them, or None.
        nonfinite: the policy the check ran with (see :data:`NonFinite`).
        fingerprint: the dataset identity (:data:`FINGERPRINT_KEYS`).
    """

    path: str
    n: int
    n_nonfinite: int
    first_nonfinite: int | None
    nonfinite: str
    fingerprint: dict[str, Any] = field(default_factory=dict)

    @property
    def n_dropped(self) -> int:
        """Rows a reader skips under this policy (``"drop"``: the non-finite ones)."""
        return self.n_nonfinite if self.nonfinite == "drop" else 0


class Dataset:
    """A dataset file opened read-only; ``theta`` and ``x`` are read lazily.

    Opening checks everything that needs no data read: the attributes (JSON ones parsed, each
    with its type), the format version, and the shapes and dtypes of ``theta`` and ``x`` against
    each other and the attributes. :meth:`check` streams the data (finiteness, the prior's
    support, the fingerprint).

    Attributes:
        theta: h5py dataset (N, P); slicing reads numpy arrays.
        x: h5py dataset (N, *x_shape).
        meta: root attributes, JSON values decoded.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = _open(self.path)
        try:
            self.meta = _decode_attrs(self._file.attrs, self.path)
            _check_meta(self.path, self.meta)
            if "theta" not in self._file or "x" not in self._file:
                raise SimulatorInputError(f"{self.path} lacks the theta/x datasets")
            self.theta = self._file["theta"]
            self.x = self._file["x"]
            _check_arrays(self.path, self.meta, self.theta, self.x)
        except (KeyError, OSError):
            self._file.close()
            raise SimulatorInputError(f"{self.path} lacks the theta/x datasets") from None
        except BaseException:
            self._file.close()
            raise

    def __len__(self) -> int:
        return int(self.theta.shape[0])

    @property
    def chunk_size(self) -> int:
        return int(self.meta.get("chunk_size") or (self.x.chunks or (max(len(self), 1),))[0])

    @property
    def param_names(self) -> list[str]:
        return list(self.meta["param_names"])

    @property
    def x_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def simulator(self) -> Simulator:
        """Rebuilds the simulator that wrote the file, from its name and configuration."""
        return get(self.meta["simulator"], **self.meta["simulator_config"])

    def prior(self) -> Prior | None:
        """The prior of the ``prior`` attribute (None without one, or of a type this package
        does not know).

        Raises:
            SimulatorInputError: a malformed ``prior`` attribute, naming the file.
        """
        d = self.meta.get("prior")
        if d is None or d.get("type") not in _PRIOR_TYPES:
            return None
        try:
            prior = prior_from_dict(d)
        except SimulatorInputError as exc:
            raise SimulatorInputError(f"{self.path}: attribute prior: {exc}") from None
        if prior.dim != len(self.param_names):
            raise SimulatorInputError(f"{self.path}: attribute prior has {prior.dim} parameter(s),"
                                      f" the file {len(self.param_names)}")  # fmt: skip
        return prior

    def iter_chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yields ``(theta, x)`` one storage chunk at a time."""
        c = self.chunk_size
        for start in range(0, len(self), c):
            yield self.theta[start : start + c], self.x[start : start + c]

    def check(
        self,
        nonfinite: NonFinite = "refuse",
        visit: Callable[[int, np.ndarray, np.ndarray, np.ndarray], None] | None = None,
    ) -> DatasetCheck:
        """The input gate's streamed part: one pass over the chunks.

        Checks: at least one row; finiteness of θ and x per row (see :data:`NonFinite`); θ of
        the finite rows inside the support of the ``prior`` attribute; hashes θ for the
        :data:`FINGERPRINT_KEYS`.

        Args:
            nonfinite: ``"refuse"`` (an error with the count and the first row index),
                ``"drop"`` (counted; an error only if no row is left) or ``"file"``.
            visit: called with ``(chunk index, theta, x, finite rows)`` for every chunk, so
                a reader can do its own work in the same pass.

        Raises:
            SimulatorInputError: naming the file and the first problem.
        """
        path, n = self.path, len(self)
        if n == 0:
            raise SimulatorInputError(f"{path} holds no rows (n = 0): nothing to read")
        if nonfinite not in ("refuse", "drop", "file"):
            raise ValueError(f"nonfinite must be 'refuse', 'drop' or 'file', got {nonfinite!r}")
        prior = self.prior()
        bad_theta, bad_x, bad, outside = _Rows(), _Rows(), _Rows(), _Rows()
        digest = hashlib.sha256(f"{self.theta.dtype.str}{self.theta.shape}".encode())
        first_outside = None
        c = self.chunk_size
        try:
            for i, start in enumerate(range(0, n, c)):
                t, xx = self.theta[start : start + c], self.x[start : start + c]
                digest.update(np.ascontiguousarray(t).tobytes())
                ft = np.isfinite(t).all(1)
                fx = np.isfinite(xx.reshape(len(xx), -1)).all(1)
                ok = ft & fx
                bad_theta.add(~ft, start)
                bad_x.add(~fx, start)
                bad.add(~ok, start)
                if prior is not None:
                    out = outside_support(prior, t) & ft
                    if out.any() and first_outside is None:
                        first_outside = t[int(np.argmax(out))].tolist()
                    outside.add(out, start)
                if visit is not None:
                    visit(i, t, xx, ok)
        except OSError as exc:
            raise SimulatorInputError(f"{path}: data cannot be read ({exc})") from None
        if outside.count:
            raise SimulatorInputError(
                f"{path}: {outside.count} theta row(s) lie outside the support of the prior "
                f"attribute (low {prior.low.tolist()}, high {prior.high.tolist()}); first: row "
                f"{outside.first} = {first_outside}"
            )
        if nonfinite == "file":
            if bad_theta.count:
                raise SimulatorInputError(
                    f"{path}: theta has NaN/inf in {bad_theta.count} row(s) (first: row "
                    f"{bad_theta.first})"
                )
            if bad_x.count and not self.meta.get("allow_nan", False):
                raise SimulatorInputError(
                    f"{path}: x has NaN/inf in {bad_x.count} row(s) (first: row {bad_x.first})"
                )
        elif nonfinite == "refuse" and bad.count:
            _refuse_nonfinite(str(path), bad, n)
        elif bad.count == n:
            raise SimulatorInputError(f"{path}: all {n} rows hold NaN/inf; nothing is left")
        fp = {"format": self.meta["format"], "simulator": self.meta["simulator"],
              "seed": self.meta["seed"], "n": n, "theta_sha256": digest.hexdigest()}  # fmt: skip
        return DatasetCheck(str(path), n, bad.count, bad.first, nonfinite, fp)

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


#: results of :func:`check_dataset`, keyed by the file's identity and modification time
_CHECKED: dict[tuple[Any, ...], DatasetCheck] = {}


def check_dataset(data: Any, nonfinite: NonFinite = "refuse") -> DatasetCheck:
    """The input gate for a dataset file: every command and ``fit`` call it before any work.

    Opening (:class:`Dataset`) checks the attributes, shapes and dtypes; :meth:`Dataset.check`
    streams the data. The result is remembered for an unchanged file (same inode, size and
    modification time), so a second reader of the same file does not pay the pass again.

    Args:
        data: a path or a :class:`Dataset`.
        nonfinite: see :meth:`Dataset.check`.

    Raises:
        SimulatorInputError: one line naming the file and the first problem.
    """
    path = Path(getattr(data, "path", data))
    try:
        st = path.stat()
        key: tuple[Any, ...] | None = (str(path.resolve()), st.st_ino, st.st_size,
                                       st.st_mtime_ns, nonfinite)  # fmt: skip
    except OSError:
        key = None
    if key is not None and key in _CHECKED:
        return _CHECKED[key]
    with open_dataset(path) as ds:
        result = ds.check(nonfinite)
    if key is not None:
        if len(_CHECKED) >= 32:
            _CHECKED.pop(next(iter(_CHECKED)))
        _CHECKED[key] = result
    return result


def array_fingerprint(theta: Any) -> dict[str, Any]:
    """The fingerprint of in-memory training data: its row count and the hash of θ."""
    t = np.ascontiguousarray(np.asarray(theta, dtype=np.float32))
    digest = hashlib.sha256(f"{t.dtype.str}{t.shape}".encode() + t.tobytes()).hexdigest()
    return {"format": "arrays", "simulator": None, "seed": None, "n": len(t),
            "theta_sha256": digest}  # fmt: skip


def check_arrays(
    theta: Any, x: Any, nonfinite: NonFinite = "refuse", *, names: tuple[str, str] = ("theta", "x")
) -> tuple[np.ndarray, DatasetCheck]:
    """The input gate for in-memory training data ``(theta, x)``: equal row counts, at least one
    row, finiteness per row as :meth:`Dataset.check` does.

    Returns:
        The mask of the rows to keep (all, or the finite ones with ``"drop"``) and the check.

    Raises:
        SimulatorInputError: naming the argument.
    """
    t, xx = np.asarray(theta), np.asarray(x)
    if t.ndim == 0 or xx.ndim == 0 or len(t) != len(xx):
        rows = [a.shape[0] if a.ndim else "no" for a in (t, xx)]
        raise SimulatorInputError(f"{names[0]} has {rows[0]} rows, {names[1]} has {rows[1]}")
    if len(t) == 0:
        raise SimulatorInputError(f"{names[0]} and {names[1]} hold no rows: nothing to read")
    for name, a in zip(names, (t, xx), strict=True):
        if a.dtype.kind not in "fiub":
            raise SimulatorInputError(f"{name} has dtype {a.dtype}, expected numeric")
    ok = finite_rows(t, xx)
    bad = _Rows()
    bad.add(~ok, 0)
    source = f"{names[0]}/{names[1]}"
    if nonfinite == "refuse" and bad.count:
        _refuse_nonfinite(source, bad, len(t))
    if bad.count == len(t):
        raise SimulatorInputError(f"{source}: all {len(t)} rows hold NaN/inf; nothing is left")
    check = DatasetCheck("<arrays>", len(t), bad.count, bad.first, nonfinite,
                         array_fingerprint(t))  # fmt: skip
    keep = ok if nonfinite == "drop" else np.ones(len(t), dtype=bool)
    return keep, check


def verify(path: str | os.PathLike) -> dict[str, Any]:
    """Checks a dataset file end to end and returns a summary (``surrogates info``).

    The same gate as every reader (:func:`check_dataset` with ``nonfinite="file"``): readable
    HDF5; the format marker and a supported version; every required attribute, JSON ones
    parsed and typed; ``theta`` (N, P) and ``x`` (N, *x_shape) against ``n``, the parameter
    names and ``x_shape``; at least one row; every row readable; θ finite and inside the
    prior's support; x finite unless the simulator allows NaN; alias datasets (e.g. the
    calorimeter's ``showers``) identical to their targets.

    Raises:
        SimulatorInputError: naming the first problem found.
    """
    path = Path(path)
    with open_dataset(path) as ds:
        check = ds.check("file")
        f, meta, n = ds._file, ds.meta, len(ds)
        aliases = {}
        for name in f:
            if name not in ("theta", "x") and isinstance(f[name], h5py.Dataset):
                same = f[name].id == ds.theta.id or f[name].id == ds.x.id
                if not same and f[name].shape[0] != n:
                    raise SimulatorInputError(f"{path}: dataset {name} has the wrong row count")
                aliases[name] = list(f[name].shape)
        return {
            "path": str(path),
            "n": n,
            "theta_shape": list(ds.theta.shape),
            "x_shape": list(ds.x.shape[1:]),
            "x_dtype": str(ds.x.dtype),
            "chunks": -(-n // ds.chunk_size),
            "compression": ds.x.compression,
            "nan_rows": check.n_nonfinite,
            "other_datasets": aliases,
            "bytes": path.stat().st_size,
            "meta": meta,
            "fingerprint": check.fingerprint,
        }
