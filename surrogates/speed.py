r"""Sampling speed: rows per second of anything with ``simulate(theta, rng)``, per θ bin.

One implementation serves the evaluation report (:mod:`surrogates.report`), ``benchmarks/
bench_surrogates.py`` and ``benchmarks/bench_flow.py``, so that the speed a user is shown and the
speed a benchmark prints are measured the same way:

* :func:`best_rate`: best of a few timed calls (wall clock, with process CPU time beside it: on a
  shared machine the CPU-time rate is the better estimate of an unloaded core);
* :func:`torch_threads`: the torch thread count set for a block and restored after it;
* :func:`condition_bins`: θ rows grouped by condition (the discrete incident energies of a
  calorimeter file, or log-spaced bins of a continuous parameter);
* :func:`rates_by_condition`: a warm-up, then rows/s of a simulator-like object in every bin,
  at a fixed batch or at a batch sized to a time per call (a shower simulator's cost grows with
  the incident energy, so its batches shrink at high energy);
* :func:`spectrum_rate`: the time-weighted rate over a whole spectrum;
* :func:`bulk_sampling_path`: a surrogate put on its family's fastest exact-enough path;
* :func:`speed_table`: surrogate against simulator per bin and over the spectrum, as a dict.

The whole-spectrum rate is what a user generating a file sees: with :math:`N_b` rows in bin
:math:`b` generated at :math:`r_b` rows/s, the file takes :math:`\sum_b N_b / r_b` seconds, so

.. math:: r = \frac{\sum_b N_b}{\sum_b N_b / r_b},

the weighted harmonic mean of the bin rates. It is dominated by the slowest bins: for the
dataset-1 photon spectrum (15 energies, 2⁸ to 2²² MeV, equally frequent) the three highest
energies take most of a simulator's time.

Example:
    >>> import numpy as np
    >>> from surrogates.speed import condition_bins, rates_by_condition, spectrum_rate
    >>> import simulators
    >>> sim = simulators.get("two_moons")
    >>> bins = condition_bins(sim.prior.sample(1000, np.random.default_rng(0)), discrete=False)
    >>> rates = rates_by_condition(sim, bins.rows, batch=1000, reps=2)
    >>> spectrum_rate([r.rows_per_s for r in rates], bins.counts) > 0
    True
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Bins",
    "Rate",
    "all_threads",
    "best_rate",
    "bulk_sampling_path",
    "condition_bins",
    "cpu_has_bfloat16_units",
    "format_energy",
    "rates_by_condition",
    "spectrum_rate",
    "speed_table",
    "torch_threads",
]


@dataclass(frozen=True)
class Rate:
    """Rows per second of one timing cell (the best of ``reps`` calls of ``rows`` rows)."""

    rows: int
    reps: int
    rows_per_s: float
    cpu_rows_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "reps": self.reps, "rows_per_s": self.rows_per_s,
                "cpu_rows_per_s": self.cpu_rows_per_s}  # fmt: skip


@dataclass(frozen=True)
class Bins:
    """θ rows grouped by condition.

    Attributes:
        centers: one value per bin (the discrete value, or the geometric centre of a log bin).
        rows: the θ rows of each bin, (n_b, P).
        counts: n_b, the weights of the whole-spectrum rate.
        discrete: whether every bin holds a single value of θ.
    """

    centers: np.ndarray
    rows: list[np.ndarray]
    counts: np.ndarray
    discrete: bool


def all_threads() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Sets ``torch.set_num_threads(n)`` for the block and restores the previous count; ``None``
    leaves it alone (and never imports torch, so numpy-only simulators are timed without it)."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def best_rate(
    fn: Callable[[], object], rows: int, reps: int = 3, budget_s: float = math.inf
) -> Rate:
    """Best rows per second of up to ``reps`` calls of ``fn``, each producing ``rows`` rows.

    The best call is the one least disturbed by other work on the machine. Repetitions stop
    early once ``budget_s`` seconds are spent (at least one call is always timed).
    """
    wall = cpu = 0.0
    spent, done = 0.0, 0
    while done < max(reps, 1) and (done == 0 or spent < budget_s):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        dw, dc = time.perf_counter() - w0, time.process_time() - c0
        wall, cpu = max(wall, rows / max(dw, 1e-9)), max(cpu, rows / max(dc, 1e-9))
        spent, done = spent + dw, done + 1
    return Rate(rows=int(rows), reps=done, rows_per_s=wall, cpu_rows_per_s=cpu)


def spectrum_rate(rates: Sequence[float], counts: Sequence[float] | None = None) -> float:
    """Rows per second over a spectrum: total rows / total time, ``Σ N_b / Σ (N_b / r_b)``.

    Args:
        rates: rows per second in each bin, r_b.
        counts: rows wanted in each bin, N_b (default: equally many in each).
    """
    r = np.asarray(rates, dtype=np.float64)
    n = np.ones_like(r) if counts is None else np.asarray(counts, dtype=np.float64)
    if r.shape != n.shape or r.size == 0:
        raise ValueError(f"need one count per rate, got {n.shape} counts for {r.shape} rates")
    if np.any(r <= 0) or np.any(n < 0) or n.sum() <= 0:
        raise ValueError("rates must be positive and counts non-negative, not all zero")
    return float(n.sum() / np.sum(n / r))


def condition_bins(
    theta: np.ndarray, *, discrete: bool | None = None, max_discrete: int = 32, n_bins: int = 8
) -> Bins:
    """Groups θ rows (N, P) by their first parameter: one bin per distinct value when there are
    at most ``max_discrete`` of them (the CaloChallenge energies), else ``n_bins`` log-spaced
    bins between the smallest and largest positive value (linear when any value is ≤ 0).
    ``discrete=False`` puts every row in a single bin; ``True`` forces one bin per value."""
    theta = np.asarray(theta, dtype=np.float64).reshape(len(theta), -1)
    if len(theta) == 0:
        raise ValueError("no θ rows to bin")
    key = theta[:, 0]
    values = np.unique(key)
    if discrete is False:
        center = np.array([float(np.median(key))])
        return Bins(center, [theta], np.array([len(theta)]), discrete=len(values) == 1)
    if discrete or len(values) <= max_discrete:
        rows = [theta[key == v] for v in values]
        return Bins(values, rows, np.array([len(r) for r in rows]), discrete=True)
    lo, hi = float(key.min()), float(key.max())
    log = lo > 0
    edges = np.geomspace(lo, hi, n_bins + 1) if log else np.linspace(lo, hi, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, key, side="right") - 1, 0, n_bins - 1)
    keep = [b for b in range(n_bins) if np.any(idx == b)]
    mid = np.sqrt(edges[:-1] * edges[1:]) if log else (edges[:-1] + edges[1:]) / 2
    rows = [theta[idx == b] for b in keep]
    return Bins(mid[keep], rows, np.array([len(r) for r in rows]), discrete=False)


def _batch_rows(rows: np.ndarray, n: int) -> np.ndarray:
    """``n`` θ rows of a bin: its first rows, repeated when it holds fewer."""
    reps = -(-n // len(rows))
    return np.tile(rows, (reps, 1))[:n] if reps > 1 else rows[:n]


def _auto_rows(sim: Any, rows: np.ndarray, rng: Any, seconds: float, lo: int, hi: int) -> int:
    """Rows for a call of about ``seconds``: untimed probes double from ``lo`` rows, at least
    two, until one takes a quarter of that (or reaches ``hi``); the best probe rate is scaled.
    One probe of a few rows is mostly call overhead and noise: a single slow one (a page fault,
    a first allocation) once sized a bin's batch to 47 rows where its neighbours got ~500."""
    n, best, probes = lo, 0.0, 0
    while True:
        t0 = time.perf_counter()
        sim.simulate(_batch_rows(rows, n), rng)
        dt = max(time.perf_counter() - t0, 1e-9)
        best, probes = max(best, n / dt), probes + 1
        if (dt >= seconds / 4 and probes >= 2) or n >= hi:
            return int(np.clip(seconds * best, lo, hi))
        n = min(2 * n, hi)


def rates_by_condition(
    sim: Any,
    bins: Sequence[np.ndarray],
    *,
    batch: int | Sequence[int] | None,
    threads: int | None = 1,
    reps: int = 3,
    budget_s: float = math.inf,
    seconds_per_call: float = 0.3,
    min_rows: int = 8,
    max_rows: int = 4096,
    seed: int = 0,
    warmup: bool = True,
) -> list[Rate]:
    """Rows per second of ``sim.simulate(theta, rng)`` on the θ rows of each bin.

    A warm-up call on the first bin at the timing batch comes first (imports, caches,
    ``torch.compile`` of a flow's fast path, first allocations), untimed.

    Args:
        sim: anything with ``simulate(theta, rng)``: a simulator, or a surrogate's
            :meth:`~surrogates.models.base.Surrogate.as_simulator`.
        bins: θ rows per bin (e.g. :attr:`Bins.rows`); a batch takes a bin's first rows,
            repeated when the bin holds fewer.
        batch: rows per timed call: one size, one per bin, or ``None`` to size each bin's
            batch so that a call takes about ``seconds_per_call`` (from the best rate of
            untimed probes that double from ``min_rows`` rows; clipped to [``min_rows``,
            ``max_rows``]).
        threads: torch threads during the timing (restored after); ``None`` leaves them.
        reps: timed calls per bin; the best is kept (:func:`best_rate`).
        budget_s: per bin, no further repetition once this many seconds are spent.
        seconds_per_call, min_rows, max_rows: the automatic batch (``batch=None``).
        seed: seeds the ``numpy.random.Generator`` passed to ``simulate``.
        warmup: ``False`` where ``sim`` was just warmed up at this batch (e.g. by the same
            measurement on another thread count).

    Returns:
        One :class:`Rate` per bin.
    """
    bins = [np.asarray(b, dtype=np.float64).reshape(len(b), -1) for b in bins]
    if not bins or any(len(b) == 0 for b in bins):
        raise ValueError("every bin needs at least one θ row")
    fixed = isinstance(batch, (int, np.integer))
    if batch is not None and not fixed and len(batch) != len(bins):
        raise ValueError(f"{len(batch)} batch sizes for {len(bins)} bins")
    rng = np.random.default_rng(seed)
    out = []
    with torch_threads(threads):
        first = int(batch) if fixed else min_rows if batch is None else int(batch[0])
        if warmup:
            sim.simulate(_batch_rows(bins[0], first), rng)  # untimed
        for i, rows in enumerate(bins):
            if batch is None:
                n = _auto_rows(sim, rows, rng, seconds_per_call, min_rows, max_rows)
            else:
                n = int(batch) if fixed else int(batch[i])
            theta = _batch_rows(rows, n)
            out.append(best_rate(lambda t=theta: sim.simulate(t, rng), n, reps, budget_s))
    return out


def format_energy(mev: float) -> str:
    """An energy in MeV for people: ``"256 MeV"``, ``"65.5 GeV"``, ``"4.19 TeV"``."""
    for scale, unit in ((1e6, "TeV"), (1e3, "GeV")):
        if abs(mev) >= scale:
            return f"{mev / scale:.3g} {unit}"
    return f"{mev:.3g} MeV"


def cpu_has_bfloat16_units() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AMX tiles or AVX-512-BF16).

    Without them torch emulates bfloat16 and the flow's fast path with bfloat16 conditioners
    runs slower than eager sampling (about 12x slower on an AVX2-only AMD EPYC core).
    """
    import torch

    # private probes (torch 2.x): a torch without them is taken to lack the units
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def bulk_sampling_path(model: Any) -> str:
    """Puts ``model`` on its family's fastest exact-enough path for bulk sampling on the CPU
    and says which one.

    A :class:`~surrogates.models.Flow` takes :meth:`~surrogates.models.Flow.fast_sampling`
    with bfloat16 conditioners, whose sample quality was measured equal to eager sampling
    (``docs/decisions/007-fast-sampling-bfloat16.md``), where the CPU has bfloat16 matrix units
    (:func:`cpu_has_bfloat16_units`); elsewhere it samples eagerly, which is faster there.
    VAEs and GANs have one path (a decoder or generator pass).
    """
    from .models import Flow

    if not isinstance(model, Flow):
        return f"{model.model_type}: its one sampling path (a network pass)"
    if cpu_has_bfloat16_units():
        model.fast_sampling("bfloat16")
        return (
            "flow: fast path (compiled spline inverses, bfloat16 conditioners; quality measured "
            "equal to eager, docs/decisions/007-fast-sampling-bfloat16.md)"
        )
    model.fast_sampling(None)
    return ("flow: eager (this CPU has no bfloat16 matrix units, AMX or AVX-512-BF16, and "
            "there the fast path's bfloat16 conditioners are slower than eager)")  # fmt: skip


def speed_table(
    bins: Bins,
    surrogate: list[Rate],
    simulator: list[Rate],
    *,
    more_threads: dict[int, Rate] | None = None,
    top: int = 3,
) -> dict[str, Any]:
    """Surrogate against simulator per bin and over the spectrum (JSON-ready).

    The speed-up is the surrogate on one torch thread over the simulator in one process (one
    core), like for like. The surrogate's rate on more threads, whose cost does not depend on θ,
    is listed beside it as measured at the highest bin.

    Args:
        bins: the bins (their centres, and row counts as the spectrum's weights).
        surrogate: the surrogate's rates per bin on one thread.
        simulator: the simulator's rates per bin.
        more_threads: the surrogate's rate at the highest bin by torch thread count.
        top: how many of the highest bins to single out (``"top"``).

    Returns:
        ``bins`` (per bin: ``theta``, ``count``, ``simulator``, ``surrogate``, ``speedup``),
        ``spectrum`` (time-weighted rates and speed-up), ``more_threads``, ``top`` (the highest
        bins' θ and speed-ups, ascending) and ``slower_than_simulator`` (θ of the bins with
        speed-up < 1).
    """
    n = len(bins.counts)
    if len(simulator) != n or len(surrogate) != n:
        raise ValueError(f"need one rate per bin ({n} bins)")
    rows = [
        {"theta": float(c), "count": int(k), "simulator": sim.to_dict(),
         "surrogate": sur.to_dict(), "speedup": sur.rows_per_s / sim.rows_per_s}
        for c, k, sur, sim in zip(bins.centers, bins.counts, surrogate, simulator, strict=True)
    ]  # fmt: skip
    sim_spec = spectrum_rate([r.rows_per_s for r in simulator], bins.counts)
    sur_spec = spectrum_rate([r.rows_per_s for r in surrogate], bins.counts)
    highest = rows[-top:]
    return {
        "bins": rows,
        "spectrum": {
            "simulator_rows_per_s": sim_spec,
            "surrogate_rows_per_s": sur_spec,
            "speedup": sur_spec / sim_spec,
        },
        "more_threads": {
            str(t): {"theta": rows[-1]["theta"], **r.to_dict()}
            for t, r in sorted((more_threads or {}).items())
        },
        "top": {"theta": [r["theta"] for r in highest], "speedup": [r["speedup"] for r in highest]},
        "slower_than_simulator": [r["theta"] for r in rows if r["speedup"] < 1],
    }
