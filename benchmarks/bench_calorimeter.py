"""Calorimeter simulator speed: showers/s per incident energy, 1 and 2 workers, and the time to
write a CaloChallenge dataset-1 sized file (121,000 showers).

The peer is the simulator itself: both runs go through :func:`simulators.generate` (HDF5
writing included), 1 worker in this process and 2 workers on a warm process pool; the ratio is
the 2-worker speed-up on the same showers.

    python benchmarks/bench_calorimeter.py            # quick: ~1-2 s of work per cell
    python benchmarks/bench_calorimeter.py --full     # also generates the 121,000-shower file
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, provenance  # noqa: E402

import simulators  # noqa: E402
from simulators.calorimeter import CHALLENGE_ENERGIES  # noqa: E402
from simulators.calorimeter.em import n_spots  # noqa: E402


def _n_for(energy: float, budget_spots: float) -> int:
    # about the same amount of work for every energy
    return int(np.clip(budget_spots / n_spots(energy), 8, 4000))


def _time_generate(sim, theta: np.ndarray, pool, tmp: Path, tag: str) -> float:
    """Wall time of generate() in this process (pool None) or on a warm process pool."""
    path = tmp / f"{tag}_{0 if pool is None else 2}.h5"
    chunk = max(1, len(theta) // 8)
    t0 = time.perf_counter()
    simulators.generate(
        sim, len(theta), path, seed=1, theta=theta, workers=1, executor=pool, chunk_size=chunk
    )
    dt = time.perf_counter() - t0
    path.unlink()
    return dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="also write the 121,000-shower file")
    ap.add_argument("--budget", type=float, default=None, help="spots per timing cell")
    ap.add_argument("--particles", default="photon,pion")
    ap.add_argument("--full-workers", default="2", help="worker counts for --full, e.g. 1,2")
    args = ap.parse_args(argv)
    budget = args.budget or (2e7 if args.full else 2.5e6)
    print(header(provenance(argv=None if argv is None else [__file__, *argv],
                            modules=("numpy", "scipy", "h5py"))))  # fmt: skip
    print(f"# simulator: calorimeter v{simulators.get('calorimeter').version}; showers/s")
    rates: dict[str, dict[float, float]] = {}
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    pool.submit(int).result()  # start the workers before timing
    with tempfile.TemporaryDirectory() as td, pool:
        tmp = Path(td)
        for particle in args.particles.split(","):
            sim = simulators.get("calorimeter", particle=particle)
            print(f"\n## {particle} ({sim.x_shape[0]} voxels)")
            print(f"{'E_inc [MeV]':>12} {'n':>6} {'1 worker':>10} {'2 workers':>10} {'ratio':>6}")
            rates[particle] = {}
            for e in CHALLENGE_ENERGIES:
                n = _n_for(e, budget)
                theta = np.full((n, 1), e)
                sim.simulate(theta[:2], np.random.default_rng(0))  # warm-up
                t1 = _time_generate(sim, theta, None, tmp, particle)
                t2 = _time_generate(sim, theta, pool, tmp, particle)
                rates[particle][e] = n / t1
                print(f"{e:12.0f} {n:6d} {n / t1:10.1f} {n / t2:10.1f} {t1 / t2:6.2f}")
            # 121,000 showers uniform over the 15 energies, from the 1-worker rates
            est = 121_000 / 15 * sum(1 / r for r in rates[particle].values())
            print(f"estimated time for 121,000 {particle} showers, 1 worker: {est:.0f} s")
        if args.full:
            for particle in args.particles.split(","):
                sim = simulators.get("calorimeter", particle=particle)
                for workers in [int(w) for w in args.full_workers.split(",")]:
                    path = tmp / f"ds1_{particle}_{workers}.h5"
                    t0 = time.perf_counter()
                    simulators.generate(
                        sim, 121_000, path, seed=1, workers=workers, chunk_size=1000
                    )
                    dt = time.perf_counter() - t0
                    size = path.stat().st_size / 2**20
                    print(
                        f"121,000 {particle} showers, {workers} worker(s): {dt:.0f} s "
                        f"({121_000 / dt:.0f} showers/s), file {size:.0f} MiB"
                    )
                    path.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
