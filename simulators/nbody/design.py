"""Latin-hypercube designs for training sets over a box of parameters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..base import Prior, SimulatorInputError

__all__ = ["LatinHypercube"]


class LatinHypercube(Prior):
    """A uniform box whose ``sample(n, rng)`` returns an n-point Latin hypercube design.

    Each axis of the box is cut into n equal strata and every stratum holds exactly one of the n
    points (at a uniform position inside it), with the strata of different axes paired by
    independent random permutations (McKay, Beckman & Conover 1979). Marginally every point is
    uniform on the box, so :meth:`log_prob` is the uniform density.

    The design property holds within one call only. The dataset layer draws θ chunk by chunk, so a
    generated file is a union of independent Latin hypercubes, one per chunk of ``chunk_size`` rows:
    pick large chunks for a well-stratified training set.

    Example:
        >>> import numpy as np
        >>> lh = LatinHypercube([0.1, 0.6], [0.5, 1.0])
        >>> theta = lh.sample(10, np.random.default_rng(0))
        >>> sorted(np.floor((theta[:, 0] - 0.1) / 0.04).astype(int).tolist())
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    """

    def __init__(self, low: Sequence[float], high: Sequence[float]):
        self.low = np.asarray(low, dtype=np.float64).reshape(-1)
        self.high = np.asarray(high, dtype=np.float64).reshape(-1)
        if self.low.shape != self.high.shape or np.any(self.high <= self.low):
            raise SimulatorInputError("LatinHypercube needs low < high of equal length")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        n = int(n)
        if n <= 0:
            return np.zeros((0, self.dim))
        strata = np.stack([rng.permutation(n) for _ in range(self.dim)], axis=1)
        u = (strata + rng.uniform(size=(n, self.dim))) / n
        return self.low + u * (self.high - self.low)

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        theta = np.atleast_2d(theta)
        lp = -np.sum(np.log(self.high - self.low))
        return np.where(self.contains(theta), lp, -np.inf)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "latin_hypercube", "low": self.low.tolist(), "high": self.high.tolist()}
