r"""Multi-round inference for one observation: truncated sequential NPE (TSNPE).

Round 1 simulates from the prior and trains :class:`~surrogates.inference.NPE`. Each later round
simulates from the prior truncated to the current estimate's highest-probability region

.. math::
    \mathrm{HPR}_\varepsilon = \{\theta : q(\theta \mid x_o) \ge \tau_\varepsilon\},
    \qquad \tau_\varepsilon = \varepsilon\text{-quantile of } \log q(\theta' \mid x_o),
    \ \theta' \sim q(\cdot \mid x_o),

appends the new simulations and retrains on all of them (Deistler, Gonçalves & Macke, 2022,
arXiv:2210.04815). Every proposal is the prior restricted to a region holding all but a fraction
ε of the estimated posterior mass, so the plain NPE loss stays valid: no importance weights, no
atomic proposals, no leakage correction -- and, since the flow lives on the prior's support, no
sample ever leaves it. The truncated prior is sampled by rejection from the prior; the acceptance
rate of each round is reported (a tiny rate means a posterior much narrower than the prior, where
more rounds pay off most). Truncation trusts the earlier rounds' estimates: at small budgets one
amortized round can be as good or better (``benchmarks/results/tsnpe/tsnpe.txt``;
``docs/decisions/001-npe-training-defaults.md``).

Example:
    >>> import numpy as np, simulators
    >>> sim = simulators.get("two_moons")
    >>> rng = np.random.default_rng(0)
    >>> x_o = sim.simulate(sim.prior.sample(1, rng), rng)[0]
    >>> res = tsnpe(sim, x_o, rounds=2, simulations=500, seed=0,
    ...             npe_options={"max_epochs": 5})  # doctest: +SKIP
    >>> res.npe.sample((1000,), x_o).shape  # doctest: +SKIP
    (1000, 2)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .npe import NPE

__all__ = ["RoundInfo", "TSNPEResult", "truncated_prior_sample", "tsnpe"]

log = logging.getLogger(__name__)


@dataclass
class RoundInfo:
    """One round: simulations added, the HPR threshold used, the rejection acceptance rate."""

    simulations: int
    log_threshold: float | None
    acceptance: float


@dataclass
class TSNPEResult:
    """The final estimator, all simulations (θ, x) and the per-round record."""

    npe: NPE
    theta: np.ndarray
    x: np.ndarray
    rounds: list[RoundInfo] = field(default_factory=list)


def truncated_prior_sample(
    prior: Any,
    npe: NPE,
    x_o: Any,
    n: int,
    rng: np.random.Generator,
    *,
    log_threshold: float,
    batch: int = 100_000,
    max_draws: int = 100_000_000,
) -> tuple[np.ndarray, float]:
    """``n`` draws of the prior restricted to ``{θ : log q(θ | x_o) ≥ log_threshold}``.

    Args:
        prior: a prior of :mod:`simulators.base` (``sample(n, rng)``).
        npe: the current estimator.
        x_o: the observation.
        n: draws wanted.
        rng: the randomness.
        log_threshold: the HPR threshold τ.
        batch: prior draws per rejection pass.
        max_draws: give up (``RuntimeError``) after this many prior draws.

    Returns:
        (θ (n, P), the acceptance rate).
    """
    kept, drawn, accepted = [], 0, 0
    while accepted < n:
        if drawn >= max_draws:
            raise RuntimeError(
                f"truncated prior: only {accepted} of {n} draws accepted in {drawn:,} prior "
                "draws; the region is too small for rejection sampling"
            )
        theta = prior.sample(batch, rng)
        drawn += batch
        inside = theta[npe.log_prob(theta, x_o) >= log_threshold]
        kept.append(inside)
        accepted += len(inside)
    return np.concatenate(kept)[:n], accepted / drawn


def tsnpe(
    simulator: Any,
    x_o: Any,
    *,
    rounds: int = 3,
    simulations: int | list[int] = 1000,
    epsilon: float = 1e-4,
    hpr_samples: int = 20_000,
    seed: int = 0,
    npe_options: dict[str, Any] | None = None,
) -> TSNPEResult:
    """Truncated sequential NPE for the observation ``x_o`` (see the module notes).

    Args:
        simulator: a simulator of :mod:`simulators` (``prior``, ``simulate(theta, rng)``).
        x_o: the observation (shape ``x_shape``).
        rounds: rounds, the first from the prior.
        simulations: simulations per round (one count, or one per round).
        epsilon: posterior mass left outside the truncation region.
        hpr_samples: estimator samples that set the threshold τ_ε.
        seed: seeds the simulations, the truncation and every estimator.
        npe_options: keyword arguments of :class:`NPE` (architecture and training settings).

    Returns:
        :class:`TSNPEResult` with the estimator trained on all rounds' simulations.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must lie in (0, 1), got {epsilon}")
    counts = [simulations] * rounds if isinstance(simulations, int) else list(simulations)
    if len(counts) != rounds or min(counts) < 2:
        raise ValueError(f"simulations must be one count >= 2 or {rounds} of them, got {counts}")
    rng = np.random.default_rng(seed)
    x_o = np.asarray(x_o, dtype=np.float32)
    options = {"seed": seed, **(npe_options or {})}
    thetas: list[np.ndarray] = []
    xs: list[np.ndarray] = []
    record: list[RoundInfo] = []
    npe: NPE | None = None
    for r, n in enumerate(counts):
        if npe is None:
            theta, threshold, rate = simulator.prior.sample(n, rng), None, 1.0
        else:
            q = npe.sample((hpr_samples,), x_o, generator=torch.Generator().manual_seed(seed + r))
            threshold = float(np.quantile(npe.log_prob(q, x_o), epsilon))
            theta, rate = truncated_prior_sample(simulator.prior, npe, x_o, n, rng,
                                                 log_threshold=threshold)  # fmt: skip
        thetas.append(theta)
        xs.append(simulator.simulate(theta, rng))
        record.append(RoundInfo(n, threshold, rate))
        log.info("TSNPE round %d: %d simulations, acceptance %.3g", r + 1, n, rate)
        npe = NPE.for_simulator(simulator, **options).fit(np.concatenate(thetas),
                                                          np.concatenate(xs))  # fmt: skip
    return TSNPEResult(npe, np.concatenate(thetas), np.concatenate(xs), record)
