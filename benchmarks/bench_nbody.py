"""Speed of the particle-mesh N-body simulator: one run at 64³ and 128³ particles (10 steps), and
dataset throughput through `simulators.generate` with 1 and 2 workers, extrapolated to the
Latin-hypercube recipe `datasets/nbody_lh.toml`.

The peer is the simulator itself: the 128³ / 64³ time ratio against the ideal N log N scaling
(8.6x), and the 2-worker / 1-worker throughput ratio against the ideal 2x.

    python benchmarks/bench_nbody.py [--quick] [--rows 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, peak_rss_mib, provenance

import simulators

ROOT = Path(__file__).resolve().parents[1]


def one_run(n_particles: int, repeats: int) -> float:
    """Best wall time of one simulate() call (one row) at the default box, 10 steps."""
    sim = simulators.get("nbody", n_particles=n_particles, n_steps=10)
    best = np.inf
    for r in range(repeats):
        t0 = time.perf_counter()
        sim.simulate([[0.3, 0.8]], np.random.default_rng(r))
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="skip 128³, fewer rows")
    p.add_argument("--rows", type=int, default=8, help="rows per generate() call")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    print(header(provenance(modules=("numpy", "scipy", "h5py"))))

    print(f"{'run (10 steps, B=2)':<24} {'wall s':>8} {'peak RSS MiB':>13}")
    t64 = one_run(64, args.repeats)
    print(f"{'64^3 particles':<24} {t64:>8.2f} {peak_rss_mib():>13.0f}")
    if not args.quick:
        t128 = one_run(128, max(1, args.repeats - 1))
        print(f"{'128^3 particles':<24} {t128:>8.2f} {peak_rss_mib():>13.0f}")
        ideal = 8 * np.log(128**3 * 8) / np.log(64**3 * 8)
        print(f"128^3 / 64^3 time ratio: {t128 / t64:.2f}x (ideal N log N: {ideal:.2f}x)")

    recipe = tomllib.loads((ROOT / "datasets" / "nbody_lh.toml").read_text())
    sim = simulators.get(recipe["simulator"], **recipe.get("config", {}))
    rows = max(2, args.rows // (2 if args.quick else 1))
    rates = []
    print(f"\n{'generate (recipe config)':<24} {'rows':>5} {'rows/s':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            path = Path(tmp) / f"nbody-{workers}.h5"
            t0 = time.perf_counter()
            simulators.generate(sim, rows, path, seed=0, chunk_size=rows // 2, workers=workers)
            rates.append(rows / (time.perf_counter() - t0))
            print(f"{f'{workers} worker(s)':<24} {rows:>5} {rates[-1]:>8.3f}")
    print(f"2 / 1 workers: {rates[1] / rates[0]:.2f}x (ideal 2x)")
    n = recipe["n"]
    print(
        f"recipe nbody_lh ({n} rows): {n / rates[0] / 3600:.2f} h with 1 worker, "
        f"{n / rates[1] / 3600:.2f} h with 2"
    )


if __name__ == "__main__":
    main()
