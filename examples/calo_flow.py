"""Photon-shower flow surrogates: single vs two-stage flow, anomaly AUCs, classifier AUC.

Simulates photon showers with the built-in calorimeter simulator (CaloChallenge dataset-1 binning),
trains a single coupling flow and a two-stage flow (layer energies | E_inc, then voxels | layer
energies, E_inc) with the shared trainer, and reports

* validation NLL per feature of both (same feature space, so directly comparable),
* ROC AUC of the log-likelihood anomaly score, as a p-value against normal held-out showers of
  the same energy (:class:`surrogates.anomaly.AnomalyDetector`), for showers whose incident-energy
  label is off by a factor 2, and for showers with one layer's response scaled by 1.10 (each layer
  in turn; the most-sensitive and the mean are reported); two-stage flows also by their first
  stage alone,
* the CaloChallenge-style classifier AUC between held-out simulator showers and flow samples at the
  same energies, and the separation power of each high-level feature,
* training time, and that ``as_simulator()`` output passes through ``simulators.generate`` into a
  valid file.

Usage::

    python examples/calo_flow.py --quick       # minutes on 2 CPU cores
    python examples/calo_flow.py               # 100k train / 20k held-out showers (hours on CPU)
    python examples/calo_flow.py --kinds two_stage --reuse --fast-sampling bfloat16

Results go to ``examples/output/calo_flow[_quick]/results.json`` (``results_fast_<precision>.json``
with ``--fast-sampling``: the same trained flows, the quality samples drawn on the fast path), with
the command, commit, machine and versions under ``"provenance"``; a full run also keeps a copy in
``benchmarks/results/calo_flow/<kinds>_epochs_<n>[_fast_<precision>].json``, where the README's
numbers are read from (``benchmarks/results/INDEX.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

import simulators
from simulators.calorimeter.features import high_level_features
from surrogates.anomaly import AnomalyDetector, anomaly_auc, anomaly_scores
from surrogates.models import Flow

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import provenance, results_dir

MODES = {
    "quick": {"n_train": 4000, "n_test": 1000, "epochs": 4, "transforms": 3, "hidden": [128],
              "bins": 8, "batch_size": 256, "classifier_epochs": 10, "warmup": 0},
    "full": {"n_train": 100_000, "n_test": 20_000, "epochs": 60, "transforms": 6,
             "hidden": [256, 256], "bins": 8, "batch_size": 512, "classifier_epochs": 50,
             "warmup": 200},
}  # fmt: skip


def simulate(out: Path, n: int, seed: int, workers: int) -> Path:
    path = out / f"photons_{n}_{seed}.h5"
    if not path.exists():
        sim = simulators.get("calorimeter", particle="photon")
        simulators.generate(sim, n, path, seed=seed, workers=workers, progress=None)
    return path


def train(kind: str, train_path: Path, cfg: dict, out: Path, device: str) -> tuple[Flow, dict]:
    t0 = time.perf_counter()
    model = Flow.for_dataset(train_path, kind=kind, transforms=cfg["transforms"],
                             hidden=cfg["hidden"], bins=cfg["bins"], embedding=[64, 64],
                             device=device)  # fmt: skip
    model.fit(
        train_path,
        run_dir=out / kind,
        max_epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        lr=1e-3,
        warmup=cfg["warmup"],
        patience=8,
        verbose=True,
    )
    seconds = time.perf_counter() - t0
    r = model.result
    info = {"kind": kind, "train_seconds": seconds, "steps": r.steps, "epochs": r.epochs,
            "val_nll_per_feature": r.best_val_loss / model.pre.features}  # fmt: skip
    print(f"{kind}: validation NLL {info['val_nll_per_feature']:.4f} nats/feature, {seconds:.0f} s")
    return model, info


def anomaly(model: Flow, x: np.ndarray, e: np.ndarray, layer_sizes: list[int]) -> dict:
    """ROC AUCs of conditional p-values (``-log p`` as the score): the first half of the held-out
    showers calibrates the detector, the second half is scored as is (normal) and made anomalous.
    Two-stage flows are also scored by their first stage alone (layer energies | E_inc)."""
    half = len(x) // 2
    x_ref, e_ref, xs, es = x[:half], e[:half], x[half:], e[half:]
    edges = np.cumsum([0, *layer_sizes])
    res: dict = {}
    for stage in [None, 1] if model.arch["kind"] == "two_stage" else [None]:
        det = AnomalyDetector(model, stage=stage).calibrate(x_ref, e_ref)
        normal = -np.log(det.p_values(xs, es))

        def auc(xb: np.ndarray, eb: np.ndarray, det=det, normal=normal) -> float:
            return anomaly_auc(normal, -np.log(det.p_values(xb, eb)))

        r = {"auc_energy_label_x2": auc(xs, 2 * es), "auc_energy_label_x0.5": auc(xs, 0.5 * es)}
        per_layer = []
        for k in range(len(layer_sizes)):
            bad = xs.copy()
            bad[:, edges[k] : edges[k + 1]] *= 1.10
            per_layer.append(auc(bad, es))
        r["auc_layer_miscalibrated_10pct"] = per_layer
        r["auc_layer_miscalibrated_10pct_max"] = max(per_layer)
        r["auc_layer_miscalibrated_10pct_mean"] = float(np.mean(per_layer))
        res["all_features" if stage is None else "stage_1"] = r
    # the raw score against all normal showers, whatever their energy (no conditioning)
    raw = anomaly_scores(model, xs, es)
    res["unconditional_auc_energy_label_x2"] = anomaly_auc(raw, anomaly_scores(model, xs, 2 * es))
    return res


def quality(model: Flow, x: np.ndarray, e: np.ndarray, cfg: dict, device: str) -> dict:
    from surrogates.metrics.classifier import classifier_auc, low_level_inputs
    from surrogates.metrics.histograms import separation_power

    gen = model.sample(e, generator=torch.Generator().manual_seed(1))
    sim = simulators.get("calorimeter", particle="photon")
    clf = classifier_auc(low_level_inputs(x, e), low_level_inputs(gen, e),
                         epochs=cfg["classifier_epochs"], device=device)  # fmt: skip
    ref_f = high_level_features(x, e, sim.geometry)
    gen_f = high_level_features(gen, e, sim.geometry)
    sep = {k: float(separation_power(ref_f[k], gen_f[k])) for k in ref_f}
    return {"classifier": clf.to_dict(), "separation_power": sep}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small run (minutes)")
    p.add_argument("--out", type=Path, help="output folder")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=2, help="simulation processes")
    p.add_argument("--kinds", nargs="+", default=["coupling", "two_stage"])
    p.add_argument("--transforms", type=int, help="override the mode's spline transforms")
    p.add_argument("--hidden", type=int, nargs="+", help="override the conditioner widths")
    p.add_argument("--bins", type=int, help="override the spline bins")
    p.add_argument("--epochs", type=int, help="override the mode's training epochs")
    p.add_argument(
        "--fast-sampling",
        choices=["bfloat16", "float32"],
        help="draw the quality samples on the fast path (Flow.fast_sampling); results go to "
        "results_fast_<precision>.json",
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="evaluate the flows already trained in the output folder",
    )
    args = p.parse_args()
    mode = "quick" if args.quick else "full"
    cfg = dict(MODES[mode])
    cfg.update({k: v for k in ("transforms", "hidden", "bins", "epochs")
                if (v := getattr(args, k)) is not None})  # fmt: skip
    out = (
        args.out or Path(__file__).parent / "output" / f"calo_flow{'_quick' if args.quick else ''}"
    )
    out.mkdir(parents=True, exist_ok=True)
    train_path = simulate(out, cfg["n_train"], seed=1, workers=args.workers)
    test_path = simulate(out, cfg["n_test"], seed=2, workers=args.workers)
    with simulators.open_dataset(test_path) as d:
        e_te, x_te = d.theta[:].astype(np.float64), d.x[:].astype(np.float64)
    results: dict = {"mode": mode, "config": cfg, "machine": platform.platform(),
                     "cpus": os.cpu_count(), "torch": torch.__version__, "models": {},
                     "provenance": provenance(modules=("torch", "zuko"))}  # fmt: skip
    previous = json.loads((out / "results.json").read_text()) if args.reuse else {"models": {}}
    for kind in args.kinds:
        if args.reuse:
            model = Flow.load(out / kind, device=args.device)
            info = {
                k: v
                for k, v in previous["models"].get(kind, {"kind": kind}).items()
                if k in ("kind", "train_seconds", "steps", "epochs", "val_nll_per_feature")
            }
        else:
            model, info = train(kind, train_path, cfg, out, args.device)
        if args.fast_sampling:
            model.fast_sampling(args.fast_sampling)
        info["sampling"] = args.fast_sampling or "eager"
        info["test_nll_per_feature"] = float(
            -np.mean(model.log_prob(x_te, e_te)) / model.pre.features
        )
        info["anomaly"] = anomaly(model, x_te, e_te, model.pre.layer_sizes)
        info["quality"] = quality(model, x_te, e_te, cfg, args.device)
        print(json.dumps({k: info[k] for k in ("test_nll_per_feature", "anomaly")}, indent=1))
        print(f"classifier AUC {info['quality']['classifier']['auc']:.3f}")
        results["models"][kind] = info
    # the surrogate as a drop-in simulator: a valid dataset file in the same schema
    sim = model.as_simulator()
    path = simulators.generate(sim, 500, out / "surrogate_sample.h5", seed=0, overwrite=True,
                               theta=e_te[:500])  # fmt: skip
    results["as_simulator_verify"] = str(simulators.verify(path))[:200]
    best = min(results["models"], key=lambda k: results["models"][k]["test_nll_per_feature"])
    results["better_by_nll"] = best
    name = f"results_fast_{args.fast_sampling}.json" if args.fast_sampling else "results.json"
    (out / name).write_text(json.dumps(results, indent=1))
    if not args.quick:
        fast = f"_fast_{args.fast_sampling}" if args.fast_sampling else ""
        kept = f"{'_'.join(args.kinds)}_epochs_{cfg['epochs']}{fast}.json"
        (results_dir("calo_flow") / kept).write_text(json.dumps(results, indent=1))
    print(f"better by held-out NLL: {best}; results in {out / name}")


if __name__ == "__main__":
    main()
