"""Calorimeter showers: average shower per layer and high-level features at three energies.

Simulates photon and charged-pion showers at 1, 16 and 262 GeV (2^10, 2^14, 2^18 MeV), draws
the average shower of each in the (r, α) layout of the CaloChallenge layers, and the histograms
of the challenge's high-level features with the three energies overlaid. It also writes one
dataset file per particle, checks it the way the challenge does (``incident_energies`` (N, 1),
``showers`` (N, n_voxels)) and prints ``surrogates info`` for it.

    python examples/calorimeter_showers.py --out examples/output/calorimeter --quick
    python examples/calorimeter_showers.py --out docs/calorimeter      # 2,000 showers/energy,
                                                                       # 10,000-shower files
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import simulators  # noqa: E402
from simulators.calorimeter import high_level_features  # noqa: E402
from surrogates.plots.calorimeter import (  # noqa: E402
    plot_average_shower,
    plot_feature_histograms,
)

ENERGIES = (2.0**10, 2.0**14, 2.0**18)


def structural_check(path: Path, n_voxels: int) -> None:
    """The challenge's own file check: two datasets with these shapes, energies in MeV."""
    import h5py

    with h5py.File(path, "r") as f:
        e, x = f["incident_energies"], f["showers"]
        assert e.ndim == 2 and e.shape[1] == 1, e.shape
        assert x.shape == (e.shape[0], n_voxels), x.shape
        energies = e[:, 0]
        assert set(np.unique(energies)) <= {2.0**k for k in range(8, 23)}
        print(f"{path.name}: incident_energies {e.shape}, showers {x.shape}: OK")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="output folder for the PNGs")
    ap.add_argument("--quick", action="store_true", help="few showers (seconds)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-files", action="store_true", help="skip the dataset files")
    args = ap.parse_args(argv)
    n = 150 if args.quick else 2000
    n_file = 300 if args.quick else 10_000
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for particle in ("photon", "pion"):
        sim = simulators.get("calorimeter", particle=particle)
        g = sim.geometry
        feats = {}
        for e in ENERGIES:
            t0 = time.perf_counter()
            theta = np.full((n, 1), e)
            x = sim.simulate(theta, rng)
            label = f"{e / 1000:.0f} GeV"
            plot_average_shower(
                x,
                g,
                args.out / f"average_{particle}_{int(e)}MeV.png",
                title=f"average of {n} {particle} showers, E_inc = {label} (radius: log(1 + r/mm))",
            )
            feats[label] = high_level_features(x, theta, g)
            tot = x.sum(axis=1)
            print(
                f"{particle} {label:>7}: E_tot/E_inc = {np.mean(tot / e):.3f}, "
                f"sigma/E = {tot.std() / tot.mean():.3f} ({time.perf_counter() - t0:.1f} s)"
            )
        keys = ["E_tot/E_inc"] + [f"E_layer_{lid}" for lid in g.layers]
        keys += [f"{q}_{lid}" for lid in g.alpha_binned for q in ("ec_eta", "width_eta")]
        keys += [f"sparsity_{lid}" for lid in g.layers]
        plot_feature_histograms(
            feats,
            args.out / f"features_{particle}.png",
            keys=keys,
            ratio=False,
            bins_from="all",
            title=f"{particle} showers: high-level features at three energies",
        )
        if not args.no_files:
            path = args.out / f"calo_{particle}s.h5"
            t0 = time.perf_counter()
            simulators.generate(sim, n_file, path, seed=args.seed, chunk_size=1000, overwrite=True)
            print(f"wrote {n_file} {particle} showers in {time.perf_counter() - t0:.0f} s")
            structural_check(path, g.n_voxels)
            from surrogates.cli import main as cli

            cli(["info", str(path)])
    print(f"plots in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
