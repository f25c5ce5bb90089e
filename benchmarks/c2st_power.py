"""Power of ``surrogates.metrics.c2st`` against ``sbi``'s C2ST, on samples with a known answer.

Each case is a pair of independent samples, 2,000 per class: two moons posterior samples (exact,
observation 0 of ``benchmarks/npe_vs_sbi.py``) against an independent exact set, as drawn and
blurred by Gaussian noise of 5 % and 10 % of the reference's spread; a thin ring against one twice
as wide (radius N(1, 0.05²) against N(1, 0.1²), Bayes accuracy 0.661); N(0, 1) against N(0.4, 1)
on one of two axes (Bayes accuracy 0.579). Every case is scored by our C2ST (the default, and the
earlier protocol that stopped 10 epochs after the best validation accuracy), and by
``sbi.utils.metrics.c2st`` with its MLP (the classifier of sbibm) and its random forest. A higher
score on a pair that differs is a more powerful test; on identical distributions every score
should be near 0.5. Prints the mean over three seeds and the seconds per score.

Usage:
    python benchmarks/c2st_power.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header, provenance
from npe_vs_sbi import observations

import simulators
from simulators.toy.reference import reference_posterior
from surrogates.metrics import c2st

N = 2000
#: the protocol before 2026-12: Adam at 3e-3, batches of 512, stop 10 epochs after the best
EARLIER = {"epochs": 200, "batch_size": 512, "lr": 3e-3, "patience": 10}


def ring(n: int, width: float, rng: np.random.Generator) -> np.ndarray:
    phi = rng.uniform(0, 2 * np.pi, n)
    r = 1 + width * rng.normal(size=n)
    return np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1)


def cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    sim = simulators.get("two_moons")
    x_o = observations("two_moons", 1)[1][0]
    ref = reference_posterior(sim, x_o, N, np.random.default_rng(1))
    other = reference_posterior(sim, x_o, N, np.random.default_rng(2))
    rng = np.random.default_rng(3)
    spread = ref.std(axis=0)
    out = {"two moons, exact vs exact": (ref, other)}
    for blur in (0.05, 0.1):
        noise = blur * spread * rng.normal(size=other.shape)
        out[f"two moons, exact vs blurred {blur:.0%}"] = (ref, other + noise)
    out["ring, width 0.05 vs 0.1 (Bayes 0.661)"] = (ring(N, 0.05, rng), ring(N, 0.1, rng))
    shifted = rng.normal(size=(N, 2)) + np.array([0.4, 0.0])
    out["Gaussian, shift 0.4 (Bayes 0.579)"] = (rng.normal(size=(N, 2)), shifted)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from sbi.utils.metrics import c2st as sbi_c2st

    prov = provenance(argv=None if argv is None else [__file__, *argv],
                      modules=("torch", "sbi", "sklearn", "numpy"))  # fmt: skip
    print(header({**prov, "torch_threads": "1"}))
    scorers = {
        "ours": lambda a, b, s: c2st(a, b, seed=s),
        "ours, earlier protocol": lambda a, b, s: c2st(a, b, seed=s, **EARLIER),
        "sbi MLP (sbibm)": lambda a, b, s: float(
            sbi_c2st(torch.as_tensor(a), torch.as_tensor(b), seed=s, classifier="mlp")
        ),
        "sbi random forest": lambda a, b, s: float(
            sbi_c2st(torch.as_tensor(a), torch.as_tensor(b), seed=s)
        ),
    }
    print("\n| case | " + " | ".join(scorers) + " |")
    print("|---|" + "---:|" * len(scorers))
    seconds = dict.fromkeys(scorers, 0.0)
    pairs = cases()
    for name, (a, b) in pairs.items():
        cells = []
        for label, score in scorers.items():
            t0 = time.perf_counter()
            cells.append(f"{np.mean([score(a, b, s) for s in args.seeds]):.3f}")
            seconds[label] += time.perf_counter() - t0
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    n = len(pairs) * len(args.seeds)
    print("\nseconds per score: " + ", ".join(f"{k} {v / n:.1f}" for k, v in seconds.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
