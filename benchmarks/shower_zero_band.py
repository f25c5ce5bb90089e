"""Where the shower flow's excess hits come from: the dequantization band of zero voxels.

Zero voxels (below the readout threshold δ) are dequantized to ``zero_band`` · δ · U(0, 1)
before the logit (:class:`surrogates.preprocessing.ShowerPreprocessing`); samples below δ read
zero again. With a band up to δ the density of the zeros is highest at log δ, right where the
simulator has almost no voxels, and a flow that smooths over the edge puts zeros just above δ:
too many hits, i.e. too little sparsity. This script trains the demo's shower flow (photons up
to 65 GeV, ``surrogates demo``'s sizes and steps) once per band and prints, against held-out
simulated showers: per layer, the fraction of hit voxels and the voxels per shower in
[δ, 2δ); the sparsity separation power per layer; and the low- and high-level classifier AUCs
of ``surrogates evaluate``. ``--family vae`` (or gan) trains that family instead.

Usage:
    python benchmarks/shower_zero_band.py                       # bands 0.999 (old), 0.1, 0.01
    python benchmarks/shower_zero_band.py --bands 0.999 0.1 --family vae
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header, provenance, results_dir

import simulators
from simulators.calorimeter.features import high_level_features
from surrogates import metrics as M
from surrogates.cli.demo import DEFAULT
from surrogates.models import registry
from surrogates.preprocessing import ShowerPreprocessing
from surrogates.preprocessing.showers import layer_sizes_of
from surrogates.report import _high_level_matrix


def simulate(sim, n: int, path: Path, seed: int) -> Path:
    if not path.exists():
        simulators.generate(sim, n, path, seed=seed, progress=None)
    return path


@dataclass
class HeldOut:
    """The demo's held-out showers and their reference features for the classifiers."""

    theta: np.ndarray
    x: np.ndarray
    features: dict
    high_level: np.ndarray
    low_level: np.ndarray


def demo_showers(sim, folder: Path, seed: int) -> tuple[Path, HeldOut]:
    """The demo's training file and held-out showers (``surrogates demo``'s sizes), simulated
    into ``folder`` once."""
    folder.mkdir(parents=True, exist_ok=True)
    train = simulate(sim, DEFAULT["n_train"], folder / "train.h5", seed)
    test = simulate(sim, DEFAULT["n_test"], folder / "test.h5", seed + 1)
    with simulators.open_dataset(test) as ds:
        theta, x = ds.theta[...].astype(np.float64), ds.x[...].astype(np.float64)
    features = high_level_features(x, theta, sim.geometry)
    high_level, _ = _high_level_matrix(features, theta)
    return train, HeldOut(theta, x, features, high_level, M.low_level_inputs(x, theta))


def layer_table(x_r, x_c, e_inc, sizes, threshold) -> list[dict]:
    """Per layer and incident energy: hit fraction and voxels in [δ, 2δ) per shower."""
    off = np.cumsum([0, *sizes])
    rows = []
    for k in range(len(sizes)):
        s = slice(off[k], off[k + 1])
        for e in np.unique(e_inc):
            m = e_inc == e
            r, c = x_r[m][:, s], x_c[m][:, s]
            near = [int(((v > 0) & (v < 2 * threshold)).sum()) / m.sum() for v in (r, c)]
            rows.append({"layer": k, "e_inc": float(e), "hit_sim": float((r > 0).mean()),
                         "hit_model": float((c > 0).mean()), "near_sim": near[0],
                         "near_model": near[1]})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bands", nargs="+", type=float, default=[0.999, 0.1, 0.01])
    p.add_argument("--family", default="flow", choices=["flow", "vae", "gan"])
    p.add_argument("--max-steps", type=int, default=DEFAULT["max_steps"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data", type=Path, default=Path("examples/output/shower_zero_band"))
    args = p.parse_args(argv)
    if any(not 0 < b <= 0.999 for b in args.bands):
        p.error(f"--bands must lie in (0, 0.999], got {args.bands}")
    if args.threads:
        torch.set_num_threads(args.threads)
    prov = provenance(argv=None if argv is None else [__file__, *argv], modules=("torch", "zuko"))
    print(header(prov))
    sim = simulators.get(DEFAULT["simulator"], **DEFAULT["config"])
    sizes, threshold = layer_sizes_of(sim), sim.config["threshold_mev"]
    train, ref = demo_showers(sim, args.data, args.seed)
    theta, x_r, f_r, hl_r, low_r = ref.theta, ref.x, ref.features, ref.high_level, ref.low_level
    e_inc = theta[:, 0]

    def auc(a: np.ndarray, b: np.ndarray) -> float:
        return M.classifier_auc(a, b, seed=args.seed).to_dict()["auc"]

    arms = []
    for band in args.bands:
        pre = ShowerPreprocessing(sizes, threshold=threshold, zero_band=band)
        t0 = time.perf_counter()
        model = registry.get(args.family).for_dataset(
            train, preprocessing=pre, seed=args.seed, device="cpu"
        )
        model.fit(train, max_steps=args.max_steps, batch_size=DEFAULT["batch_size"],
                  seed=args.seed)  # fmt: skip
        train_s = time.perf_counter() - t0
        gen = torch.Generator().manual_seed(args.seed)
        x_c = np.asarray(model.sample(theta, generator=gen), dtype=np.float64)
        f_c = high_level_features(x_c, theta, sim.geometry)
        hl_c, _ = _high_level_matrix(f_c, theta)
        feats = M.compare_features(f_r, f_c)
        sparsity = {k: v["separation_power"] for k, v in feats.items() if k.startswith("spars")}
        arm = {
            "family": args.family,
            "zero_band": band,
            "train_s": train_s,
            "steps": model.result.steps,
            "best_val_loss": model.result.best_val_loss,
            "auc_low_level": auc(low_r, M.low_level_inputs(x_c, theta)),
            "auc_high_level": auc(hl_r, hl_c),
            "separation_sparsity": sparsity,
            "separation_mean": float(np.mean([v["separation_power"] for v in feats.values()])),
            "layers": layer_table(x_r, x_c, e_inc, sizes, threshold),
        }
        arms.append(arm)
        print(f"\n{args.family}, zero_band {band}: {arm['steps']} steps, {train_s:.0f} s, best val "
              f"{arm['best_val_loss']:.2f}; AUC low {arm['auc_low_level']:.3f} high "
              f"{arm['auc_high_level']:.3f}; separation mean "
              f"{arm['separation_mean']:.4f}")  # fmt: skip
        print("  sparsity separation: " + ", ".join(f"{k} {v:.4f}" for k, v in sparsity.items()))
        print("  layer | hit fraction sim / model | voxels in [δ, 2δ) per shower sim / model")
        for k in range(len(sizes)):
            rows = [r for r in arm["layers"] if r["layer"] == k]
            hs = np.mean([r["hit_sim"] for r in rows])
            hf = np.mean([r["hit_model"] for r in rows])
            ns = np.mean([r["near_sim"] for r in rows])
            nf = np.mean([r["near_model"] for r in rows])
            print(f"  {k} | {hs:.4f} / {hf:.4f} | {ns:.2f} / {nf:.2f}")
    name = "shower_zero_band" + ("" if args.family == "flow" else f"_{args.family}")
    out = results_dir("shower_zero_band") / f"{name}.json"
    out.write_text(json.dumps({"provenance": prov, "arms": arms}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
