"""What limits the shower VAE: the decoder's per-voxel likelihood or the latent prior.

Trains the demo's shower VAE (photons up to 65 GeV, ``surrogates demo``'s data, batches of
256) once per arm -- one Gaussian per voxel or a mixture of two, the N(0, I) prior or the
flow prior (:mod:`surrogates.models.vae`) -- and scores against held-out simulated showers, with
the low- and high-level classifier AUCs of ``surrogates evaluate``, two kinds of samples:
z drawn from the model's prior (what :meth:`VAE.sample` returns) and z drawn from the encoder
given the held-out showers themselves (the decoder's best case: a perfect prior). The gap between
the two is what the prior costs; the second alone is what the decoder costs.

Usage:
    python benchmarks/shower_vae_variants.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header, provenance, results_dir
from shower_zero_band import demo_showers

import simulators
from simulators.calorimeter.features import high_level_features
from surrogates import metrics as M
from surrogates.cli.demo import DEFAULT
from surrogates.models import VAE
from surrogates.report import _high_level_matrix

#: (name, VAE settings); the last is the shower default
ARMS = [
    ("one Gaussian, N(0, I)", {"components": 1, "prior": "normal", "variance": "sample"}),
    ("mixture of 2, N(0, I)", {"components": 2, "prior": "normal"}),
    ("mixture of 2, flow prior", {"components": 2, "prior": "flow"}),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data", type=Path, default=Path("examples/output/shower_zero_band"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    prov = provenance(argv=None if argv is None else [__file__, *argv], modules=("torch", "zuko"))
    print(header(prov))
    sim = simulators.get(DEFAULT["simulator"], **DEFAULT["config"])
    train, ref = demo_showers(sim, args.data, args.seed)
    theta, x_r, f_r, hl_r, low_r = ref.theta, ref.x, ref.features, ref.high_level, ref.low_level

    def scores(x_c: np.ndarray) -> dict:
        f_c = high_level_features(x_c, theta, sim.geometry)
        hl_c, _ = _high_level_matrix(f_c, theta)
        feats = M.compare_features(f_r, f_c)
        worst = max(feats, key=lambda k: feats[k]["separation_power"])
        return {
            "auc_low_level": M.classifier_auc(low_r, M.low_level_inputs(x_c, theta),
                                              seed=args.seed).to_dict()["auc"],
            "auc_high_level": M.classifier_auc(hl_r, hl_c, seed=args.seed).to_dict()["auc"],
            "separation_worst": worst,
            "separation_max": feats[worst]["separation_power"],
        }  # fmt: skip

    th = torch.as_tensor(theta, dtype=torch.float32)
    xt = torch.as_tensor(x_r, dtype=torch.float32)
    arms = []
    for name, arch in ARMS:
        t0 = time.perf_counter()
        model = VAE.for_dataset(train, seed=args.seed, device="cpu", **arch)
        model.fit(train, max_steps=args.max_steps, batch_size=DEFAULT["batch_size"],
                  seed=args.seed, progress=False)  # fmt: skip
        train_s = time.perf_counter() - t0
        net, pre, g = model.net.eval(), model.pre, torch.Generator().manual_seed(args.seed)
        with torch.no_grad():
            c = pre.condition(th)
            y, _ = pre.forward(xt, th, generator=g)
            m, logvar = net.encode(y.flatten(1), c)
            z_enc = m + torch.exp(0.5 * logvar) * torch.randn(m.shape, generator=g)
            x_enc = pre.inverse(net.draw(z_enc, c, g), th).double().numpy()
        x_pri = model.sample(theta, generator=g).astype(np.float64)
        arm = {"arm": name, "arch": arch, "steps": model.result.steps, "train_s": train_s,
               "best_val_loss": model.result.best_val_loss,
               "prior_z": scores(x_pri), "encoded_z": scores(x_enc)}  # fmt: skip
        arms.append(arm)
        print(f"\n{name}: {arm['steps']} steps, {train_s:.0f} s, best val "
              f"{arm['best_val_loss']:.2f}")  # fmt: skip
        for k in ("prior_z", "encoded_z"):
            s = arm[k]
            print(f"  z from {k.split('_')[0]:8s}: AUC low {s['auc_low_level']:.3f} high "
                  f"{s['auc_high_level']:.3f}; worst separation {s['separation_worst']} "
                  f"{s['separation_max']:.3f}")  # fmt: skip
    out = results_dir("shower_vae_variants") / "shower_vae_variants.json"
    out.write_text(json.dumps({"provenance": prov, "arms": arms}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
