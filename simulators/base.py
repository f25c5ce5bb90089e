"""The simulator interface, priors and input validation.

A simulator maps a batch of parameters θ of shape (N, P) to a batch of outputs x of shape
(N, *x_shape), drawing all randomness from a :class:`numpy.random.Generator` from the caller.
Every setting that changes its output lives in :attr:`Simulator.config`, a JSON-serializable dict.

Example:
    >>> import numpy as np, simulators
    >>> sim = simulators.get("two_moons")
    >>> rng = np.random.default_rng(0)
    >>> theta = sim.prior.sample(4, rng)
    >>> sim.simulate(theta, rng).shape
    (4, 2)
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from .errors import UserError

__all__ = [
    "BoxUniform",
    "Discrete",
    "LogNormal",
    "LogUniform",
    "Normal",
    "Prior",
    "Simulator",
    "SimulatorInputError",
    "UserError",
    "check_array",
    "check_theta",
    "outside_support",
    "parse_setting",
    "prior_from_dict",
]


class SimulatorInputError(UserError):
    """Bad input to a simulator or the dataset layer; its message is one line for the user."""


def check_array(
    value: Any, name: str, *, shape: Sequence[int | None] | None = None, finite: bool = True
) -> np.ndarray:
    """Converts ``value`` to a float64 array and checks its shape and finiteness.

    Args:
        value: anything :func:`numpy.asarray` accepts.
        name: the argument's name, used in the error message.
        shape: expected shape; ``None`` entries match any length.
        finite: reject NaN and ±inf.

    Raises:
        SimulatorInputError: naming the argument and what was expected.
    """
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SimulatorInputError(f"{name} must be numeric: {exc}") from None
    if shape is not None:
        ok = arr.ndim == len(shape) and all(
            s is None or s == a for s, a in zip(shape, arr.shape, strict=True)
        )
        if not ok:
            want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
            raise SimulatorInputError(f"{name} must have shape {want}, got {arr.shape}")
    if finite and not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise SimulatorInputError(f"{name} contains {bad} NaN or infinite value(s)")
    return arr


class Prior(ABC):
    """A distribution over parameters, in numpy: sampling, log-density and support."""

    #: lower and upper bounds of the support per parameter (may be ±inf)
    low: np.ndarray
    high: np.ndarray

    @property
    def dim(self) -> int:
        return len(self.low)

    @abstractmethod
    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draws ``n`` parameter vectors, shape (n, P)."""

    @abstractmethod
    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        """Log-density (or log-mass for discrete priors) of each row, shape (N,)."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable description: ``{"type": ..., **arguments}``."""

    def contains(self, theta: np.ndarray) -> np.ndarray:
        """Whether each row lies in the support, shape (N,)."""
        theta = np.asarray(theta, dtype=np.float64)
        return np.all((theta >= self.low) & (theta <= self.high), axis=-1)


class BoxUniform(Prior):
    """Independent uniform distributions on ``[low, high]``."""

    def __init__(self, low: Sequence[float], high: Sequence[float]):
        self.low = np.asarray(low, dtype=np.float64).reshape(-1)
        self.high = np.asarray(high, dtype=np.float64).reshape(-1)
        if self.low.shape != self.high.shape or np.any(self.high <= self.low):
            raise SimulatorInputError("BoxUniform needs low < high of equal length")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.low, self.high, size=(n, self.dim))

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        theta = np.atleast_2d(theta)
        lp = -np.sum(np.log(self.high - self.low))
        return np.where(self.contains(theta), lp, -np.inf)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "box_uniform", "low": self.low.tolist(), "high": self.high.tolist()}


class LogUniform(Prior):
    """Independent log-uniform distributions on ``[low, high]`` (``low > 0``)."""

    def __init__(self, low: Sequence[float], high: Sequence[float]):
        self.low = np.asarray(low, dtype=np.float64).reshape(-1)
        self.high = np.asarray(high, dtype=np.float64).reshape(-1)
        if np.any(self.low <= 0) or np.any(self.high <= self.low):
            raise SimulatorInputError("LogUniform needs 0 < low < high")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        u = rng.uniform(np.log(self.low), np.log(self.high), size=(n, self.dim))
        return np.exp(u)

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        theta = np.atleast_2d(theta)
        with np.errstate(divide="ignore", invalid="ignore"):
            lp = -np.sum(np.log(theta) + np.log(np.log(self.high / self.low)), axis=-1)
        return np.where(self.contains(theta), lp, -np.inf)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "log_uniform", "low": self.low.tolist(), "high": self.high.tolist()}


class Normal(Prior):
    """Multivariate normal with mean ``loc`` and covariance ``cov`` (a vector means diagonal)."""

    def __init__(self, loc: Sequence[float], cov: Sequence[float] | Sequence[Sequence[float]]):
        self.loc = np.asarray(loc, dtype=np.float64).reshape(-1)
        cov = np.asarray(cov, dtype=np.float64)
        self.cov = np.diag(cov) if cov.ndim == 1 else cov
        self._chol = np.linalg.cholesky(self.cov)
        self.low = np.full(self.loc.shape, -np.inf)
        self.high = np.full(self.loc.shape, np.inf)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.loc + rng.standard_normal((n, self.dim)) @ self._chol.T

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        d = np.atleast_2d(theta) - self.loc
        z = np.linalg.solve(self._chol, d.T).T
        logdet = 2 * np.sum(np.log(np.diag(self._chol)))
        return -0.5 * (np.sum(z**2, axis=-1) + logdet + self.dim * np.log(2 * np.pi))

    def to_dict(self) -> dict[str, Any]:
        return {"type": "normal", "loc": self.loc.tolist(), "cov": self.cov.tolist()}


class LogNormal(Prior):
    """Independent log-normal distributions: ``log θ_i ~ N(loc_i, scale_i²)``."""

    def __init__(self, loc: Sequence[float], scale: Sequence[float]):
        self.loc = np.asarray(loc, dtype=np.float64).reshape(-1)
        self.scale = np.asarray(scale, dtype=np.float64).reshape(-1)
        self.low = np.zeros_like(self.loc)
        self.high = np.full(self.loc.shape, np.inf)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.exp(self.loc + self.scale * rng.standard_normal((n, self.dim)))

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        theta = np.atleast_2d(theta)
        with np.errstate(divide="ignore", invalid="ignore"):
            lt = np.log(theta)
            z = (lt - self.loc) / self.scale
            lp = np.sum(-0.5 * z**2 - np.log(self.scale) - lt - 0.5 * np.log(2 * np.pi), axis=-1)
        return np.where(np.all(theta > 0, axis=-1), lp, -np.inf)

    def contains(self, theta: np.ndarray) -> np.ndarray:
        return np.all(np.asarray(theta) > 0, axis=-1)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "log_normal", "loc": self.loc.tolist(), "scale": self.scale.tolist()}


class Discrete(Prior):
    """A one-parameter distribution over a finite set of values (uniform unless ``probs`` given)."""

    def __init__(self, values: Sequence[float], probs: Sequence[float] | None = None):
        self.values = np.asarray(values, dtype=np.float64).reshape(-1)
        p = np.full(len(self.values), 1 / len(self.values)) if probs is None else probs
        self.probs = np.asarray(p, dtype=np.float64)
        if not np.isclose(self.probs.sum(), 1.0):
            raise SimulatorInputError("Discrete probs must sum to one")
        self.low = np.array([self.values.min()])
        self.high = np.array([self.values.max()])

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(self.values, size=(n, 1), p=self.probs)

    def contains(self, theta: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, dtype=np.float64).reshape(-1, 1)
        return np.any(np.isclose(theta, self.values[None, :], rtol=1e-6, atol=0), axis=-1)

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, dtype=np.float64).reshape(-1, 1)
        match = np.isclose(theta, self.values[None, :], rtol=1e-6, atol=0)
        with np.errstate(divide="ignore"):
            return np.log(match.astype(np.float64) @ self.probs)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "discrete", "values": self.values.tolist(), "probs": self.probs.tolist()}


def prior_from_dict(d: dict[str, Any]) -> Prior:
    """The prior that :meth:`Prior.to_dict` described (a Latin hypercube comes back as the
    uniform box it covers: the same support and density).

    Raises:
        SimulatorInputError: an unknown ``type`` or missing/malformed arguments.
    """
    if not isinstance(d, dict):
        raise SimulatorInputError(f"a prior is a JSON object with a type, got {d!r}")
    kind = d.get("type")
    try:
        if kind in ("box_uniform", "latin_hypercube"):
            return BoxUniform(d["low"], d["high"])
        if kind == "log_uniform":
            return LogUniform(d["low"], d["high"])
        if kind == "normal":
            return Normal(d["loc"], d["cov"])
        if kind == "log_normal":
            return LogNormal(d["loc"], d["scale"])
        if kind == "discrete":
            return Discrete(d["values"], d.get("probs"))
    except (KeyError, TypeError, ValueError, np.linalg.LinAlgError) as exc:
        if isinstance(exc, SimulatorInputError):
            raise
        raise SimulatorInputError(f"malformed {kind} prior ({type(exc).__name__}: {exc})") from None
    raise SimulatorInputError(f"unknown prior type {kind!r}")


def outside_support(prior: Prior, theta: Any) -> np.ndarray:
    """Which rows of ``theta`` (N, P) lie outside the prior's support, shape (N,).

    θ held in a lower precision than float64 (float32 files and tensors) is compared in that
    precision at the bounds: a value that rounds to a bound counts as on it, so a float64 θ
    inside the support stays inside once stored as float32.
    """
    t = np.asarray(theta)
    t64 = t.astype(np.float64)
    if t.dtype.kind == "f" and t.dtype.itemsize < 8:
        with np.errstate(over="ignore"):
            low, high = prior.low.astype(t.dtype), prior.high.astype(t.dtype)
        t64 = np.where(t == low, prior.low, np.where(t == high, prior.high, t64))
    return ~np.asarray(prior.contains(t64), dtype=bool).reshape(len(t64))


def check_theta(theta: Any, prior: Prior, n_params: int | None, name: str = "theta") -> np.ndarray:
    """Validates a batch of parameters against a prior: shape (N, P), finite, inside the
    support; returns it as float64.

    Raises:
        SimulatorInputError: naming ``name``, the first offending row and the bounds.
    """
    arr = check_array(theta, name, shape=None if n_params is None else (None, n_params))
    src = theta if isinstance(theta, np.ndarray) and theta.dtype.kind == "f" else arr
    outside = outside_support(prior, np.asarray(src).reshape(arr.shape))
    if outside.any():
        i = int(np.argmax(outside))
        lo, hi = prior.low.tolist(), prior.high.tolist()
        raise SimulatorInputError(
            f"{name} row {i} = {arr[i].tolist()} is outside the prior's support "
            f"(low {lo}, high {hi})"
        )
    return arr


def _coerce(key: str, text: str, default: Any) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "yes", "1", "false", "no", "0"):
            return str(value).lower() in ("true", "yes", "1")
    elif isinstance(default, int) and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif (
        isinstance(default, float)
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    ):
        return float(value)
    elif isinstance(default, str):
        return str(value) if not isinstance(value, (dict, list)) else value
    elif default is None or isinstance(default, (list, dict)):
        return value
    raise SimulatorInputError(f"{key}={text}: expected a value of type {type(default).__name__}")


def parse_setting(item: str, defaults: dict[str, Any]) -> tuple[str, Any]:
    """Parses one ``key=value`` command-line setting against a simulator's defaults.

    The value is read as JSON when it parses (numbers, booleans, lists) and as a string otherwise,
    then checked against the type of the default.
    """
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SimulatorInputError(f"a setting is key=value, got {item!r}")
    if key not in defaults:
        known = ", ".join(sorted(defaults)) or "none"
        raise SimulatorInputError(f"unknown setting {key!r}; known settings: {known}")
    return key, _coerce(key, text.strip(), defaults[key])


class Simulator(ABC):
    """Base class of all simulators.

    Subclasses set the class attributes, list every output-changing setting with its default in
    :attr:`defaults`, and implement :meth:`_simulate` (and :meth:`log_likelihood` where tractable).
    Configuration is validated in ``__init__``: unknown keys are rejected; :meth:`_check_config` may
    check values. After ``__init__``, subclasses build ``self.prior``, ``self.x_shape`` and
    ``self.param_names`` (they may depend on the configuration).
    """

    #: registry name
    name: ClassVar[str]
    #: bumped whenever the output for a given seed and configuration changes
    version: ClassVar[int] = 1
    #: every setting that changes the output, with its default
    defaults: ClassVar[dict[str, Any]] = {}
    #: whether NaN may legitimately appear in x (e.g. a failed ODE solve)
    allow_nan: ClassVar[bool] = False
    #: dtype of x in datasets
    x_dtype: ClassVar[type] = np.float32
    #: extra names for ``theta``/``x`` in dataset files (hard links), e.g. a community format's
    h5_aliases: ClassVar[dict[str, str]] = {}

    param_names: tuple[str, ...]
    x_shape: tuple[int, ...]
    prior: Prior

    def __init__(self, **config: Any):
        unknown = sorted(set(config) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise SimulatorInputError(
                f"{self.name}: unknown setting(s) {', '.join(unknown)}; known settings: {known}"
            )
        merged = {**self.defaults, **config}
        self._config = json.loads(json.dumps(merged))  # deep copy, and proof it is JSON
        self._check_config(self._config)

    def _check_config(self, config: dict[str, Any]) -> None:
        """Raises :class:`SimulatorInputError` for invalid setting values."""

    @property
    def config(self) -> dict[str, Any]:
        """Every output-changing setting (a copy)."""
        return json.loads(json.dumps(self._config))

    def check_theta(self, theta: Any) -> np.ndarray:
        """Validates a batch of parameters: shape (N, P), finite, inside the prior's support."""
        return check_theta(theta, self.prior, len(self.param_names))

    def simulate(self, theta: Any, rng: np.random.Generator) -> np.ndarray:
        """Simulates one output per row of ``theta``.

        Args:
            theta: parameters, shape (N, P), inside the prior's support.
            rng: the only source of randomness.

        Returns:
            x, shape (N, *x_shape), dtype :attr:`x_dtype`.
        """
        if not isinstance(rng, np.random.Generator):
            raise SimulatorInputError("rng must be a numpy.random.Generator")
        theta = self.check_theta(theta)
        if len(theta) == 0:
            return np.zeros((0, *self.x_shape), dtype=self.x_dtype)
        return np.asarray(self._simulate(theta, rng), dtype=self.x_dtype)

    @abstractmethod
    def _simulate(self, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Simulates validated float64 parameters, shape (N, P)."""

    def log_likelihood(self, theta: Any, x: Any) -> np.ndarray:
        """log p(x | θ) per row, where tractable; shape (N,)."""
        raise NotImplementedError(f"{self.name} has no tractable likelihood")

    def sample_joint(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draws θ from the prior and x from the simulator."""
        theta = self.prior.sample(n, rng)
        return theta, self.simulate(theta, rng)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config.items())
        return f"{type(self).__name__}({args})"
