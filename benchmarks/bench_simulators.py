"""Simulation throughput (rows/s) of the toy simulators via `simulators.generate`, 1 vs 2 workers.

Each row of the table is one complete `generate` call writing a dataset file (simulation, part
files, assembly, verification), so it is the throughput a user of `surrogates simulate` sees.

    python benchmarks/bench_simulators.py [--scale 0.1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, provenance

import simulators

ROWS = {
    "two_moons": 1_000_000,
    "gaussian_linear": 1_000_000,
    "slcp": 1_000_000,
    "lotka_volterra": 20_000,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="multiply the row counts")
    p.add_argument("--names", nargs="*", default=list(ROWS))
    args = p.parse_args()
    print(header(provenance(modules=("numpy", "scipy", "h5py"))))
    print(f"{'simulator':<16} {'rows':>10} {'1 worker':>14} {'2 workers':>14} {'speed-up':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names:
            n = max(1000, int(ROWS[name] * args.scale))
            sim = simulators.get(name)
            rates = []
            for workers in (1, 2):
                path = Path(tmp) / f"{name}-{workers}.h5"
                t0 = time.perf_counter()
                simulators.generate(sim, n, path, seed=0, workers=workers)
                rates.append(n / (time.perf_counter() - t0))
            print(
                f"{name:<16} {n:>10,} {rates[0]:>10,.0f} r/s {rates[1]:>10,.0f} r/s "
                f"{rates[1] / rates[0]:>8.2f}x"
            )


if __name__ == "__main__":
    main()
