"""Voxel by voxel, where a surrogate's calorimeter showers differ from the simulator's: per layer
and radial bin, the probability that a voxel is hit, the median share of its layer's energy
that a hit voxel holds, and the mean share (hit or not), for reference and candidate showers at
the same incident energies, in a low and a high energy range.

A classifier's AUC says that showers differ; this says how: too many or too few hits, hits too
small or too large at a given radius (the shower widths follow from the last two).

Usage::

    python benchmarks/shower_voxel_profile.py REFERENCE.h5 CANDIDATE.h5 [--layers 1 2]

Output: printed (no file; the decision that quotes it names the command).
"""

from __future__ import annotations

import argparse

import numpy as np

import simulators

#: incident-energy ranges in MeV: (label, low, high)
RANGES = (("E < 16 GeV", 0.0, 2.0**14), ("E >= 262 GeV", 2.0**18, np.inf))


def profile(showers: np.ndarray, geometry, layer: int) -> tuple[np.ndarray, ...]:
    """Per radial bin: hit probability, median share of a hit voxel, mean share."""
    cube = geometry.reshape_layer(showers, layer)  # (N, n_alpha, n_radial)
    total = cube.sum(axis=(1, 2), keepdims=True)
    share = np.divide(cube, total, out=np.zeros_like(cube), where=total > 0)
    hit = cube > 0
    median = np.array([np.median(share[..., j][hit[..., j]]) if hit[..., j].any() else np.nan
                       for j in range(cube.shape[2])])  # fmt: skip
    return hit.mean(axis=(0, 1)), median, share.mean(axis=(0, 1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reference", help="simulator showers (HDF5 dataset)")
    p.add_argument("candidate", help="surrogate showers at the same conditions")
    p.add_argument("--layers", nargs="+", type=int, default=[1, 2])
    args = p.parse_args(argv)
    with (
        simulators.open_dataset(args.reference) as ref,
        simulators.open_dataset(args.candidate) as can,
    ):
        e_ref, e_can = np.asarray(ref.theta[:])[:, 0], np.asarray(can.theta[:])[:, 0]
        if e_ref.shape != e_can.shape or not np.allclose(e_ref, e_can):
            p.error("the two files must hold showers at the same incident energies, row by row")
        x_ref, x_can = np.asarray(ref.x[:]), np.asarray(can.x[:])
        sim = simulators.get(ref.meta["simulator"], **ref.meta["simulator_config"])
    np.set_printoptions(precision=4, linewidth=110)
    for layer in args.layers:
        for label, lo, hi in RANGES:
            rows = (e_ref >= lo) & (e_ref < hi)
            print(f"layer {layer}, {label} ({rows.sum()} showers), by radial bin:")
            names = ("P(hit)", "median share | hit", "mean share")
            ref_stats = profile(x_ref[rows], sim.geometry, layer)
            can_stats = profile(x_can[rows], sim.geometry, layer)
            for name, r, c in zip(names, ref_stats, can_stats, strict=True):
                print(f"  {name:20s} reference {r}")
                print(f"  {'':20s} candidate {c}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
