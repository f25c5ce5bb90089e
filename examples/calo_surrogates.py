"""Calorimeter-shower surrogates of every family under one protocol: flow, VAE and GAN.

Simulates CaloChallenge dataset-1 showers with the built-in simulator (photons, or the 533-voxel
pions with ``--particle pion``), and for each family

1. trains it on the training file with the shared trainer (timed, on this machine),
2. samples it at the conditions of the held-out file through ``as_simulator()`` and
   :func:`simulators.generate` -- the path an analysis takes -- into a dataset file (timed),
3. evaluates the samples against the held-out simulation with :func:`surrogates.report.evaluate`
   (the same code as ``surrogates evaluate``): classifier AUC on low-level inputs (voxels) and on
   high-level features, the separation power of every high-level feature (E_tot/E_inc among them),
   with its figures and report.html.

The families share the data, the split, the sampling path and the evaluation; only the model and
its training schedule differ (``SETTINGS``). The published dataset-1 photon results (Geant4
showers, the challenge's own classifier) are printed beside ours for orientation only: our
reference is our own simulator.

Usage::

    python examples/calo_surrogates.py --quick                  # minutes on 2 CPU cores
    python examples/calo_surrogates.py                          # 100k train / 20k held-out
    python examples/calo_surrogates.py --particle pion --families vae gan
    python examples/calo_surrogates.py --families gan --epochs gan=40 --arch gan:gp_weight=1

Results go to ``examples/output/calo_surrogates[_quick]/<particle>/results.json`` (one entry per
family, updated in place so families can be run one at a time); a full run also keeps a copy in
``benchmarks/results/calo_surrogates/<particle>_<family>.json`` with the command, commit, machine
and versions, where the README's rows are read from (``benchmarks/results/INDEX.md``); with
``--out DIR`` the copy is named ``<DIR's name>_<particle>_<family>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import simulators
from simulators.errors import UserError
from surrogates.models import registry
from surrogates.report import evaluate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import provenance, results_dir

SIZES = {"quick": (4000, 1000), "full": (100_000, 20_000)}
#: per family: architecture keywords and training settings (full mode; --quick shortens them)
SETTINGS = {
    "flow": {
        "arch": {"kind": "two_stage", "transforms": 6, "hidden": [256, 256], "bins": 8,
                 "embedding": [64, 64]},
        "train": {"max_epochs": 6, "batch_size": 512, "lr": 1e-3, "warmup": 200, "patience": 8},
    },
    # the shower defaults: a mixture of 2 Gaussians per voxel and the flow prior (decision 012)
    "vae": {"arch": {},
            "train": {"max_epochs": 15, "batch_size": 512, "lr": 1e-3}},
    # two critic steps per generator step (the paper: five): 2.5 times the generator updates
    # for the same critic steps, which is what a 2-core machine can afford
    "gan": {"arch": {"n_critic": 2}, "train": {"max_epochs": 20, "batch_size": 512}},
}  # fmt: skip
QUICK_EPOCHS = {"flow": 3, "vae": 10, "gan": 10}
#: CaloChallenge 2022, dataset-1 photons (Krause et al. 2024, arXiv:2410.21611): best entries
PUBLISHED = {"gan": (0.93, 0.95), "vae": (0.89, 0.97)}


def simulate(folder: Path, particle: str, n: int, seed: int, workers: int) -> Path:
    path = folder / f"{particle}s_{n}_{seed}.h5"
    if not path.exists():
        sim = simulators.get("calorimeter", particle=particle)
        simulators.generate(sim, n, path, seed=seed, workers=workers, progress=None)
    return path


def train(family: str, train_path: Path, run: Path, arch: dict, cfg: dict, device: str):
    cls = registry.get(family)
    t0 = time.perf_counter()
    model = cls.for_dataset(train_path, device=device, **arch)
    model.fit(train_path, run_dir=run, verbose=True, **cfg)
    r = model.result
    return model, {"train_seconds": time.perf_counter() - t0, "steps": r.steps,
                   "epochs": r.epochs, "best_val_loss": r.best_val_loss}  # fmt: skip


def summary(metrics: dict) -> dict:
    """The numbers the issue and the README ask for, read from the report's metrics.json."""
    feats = metrics["features"]
    sparsity = {k: v["separation_power"] for k, v in feats.items() if k.startswith("sparsity_")}
    return {
        "auc_low_level": metrics["classifier_low_level"]["auc"],
        "auc_high_level": metrics["classifier_high_level"]["auc"],
        "separation_e_ratio": feats["E_tot/E_inc"]["separation_power"],
        "separation_mean": metrics["separation_power_mean"],
        "separation_max": metrics["separation_power_max"],
        "separation_worst": max(feats, key=lambda k: feats[k]["separation_power"]),
        "separation_sparsity": sparsity,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="4,000 / 1,000 showers, short training")
    p.add_argument("--particle", choices=("photon", "pion"), default="photon")
    p.add_argument("--families", nargs="+", choices=sorted(SETTINGS), default=sorted(SETTINGS))
    p.add_argument("--epochs", nargs="+", default=[], metavar="FAMILY=N",
                   help="override a family's training epochs")  # fmt: skip
    p.add_argument("--arch", nargs="+", default=[], metavar="FAMILY:KEY=VALUE",
                   help="override a family's architecture setting")  # fmt: skip
    p.add_argument("--reuse", action="store_true", help="evaluate the runs already in --out")
    p.add_argument("--out", type=Path, help="output folder")
    p.add_argument("--data", type=Path, help="folder of the simulated files (shared by runs)")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=2, help="simulation processes")
    args = p.parse_args()
    mode = "quick" if args.quick else "full"
    epochs: dict[str, int] = {}
    for item in args.epochs:
        family, _, n = item.partition("=")
        if family not in SETTINGS or not n.isdigit():
            p.error(f"--epochs takes FAMILY=N with FAMILY one of {', '.join(SETTINGS)}, "
                    f"got {item!r}")  # fmt: skip
        epochs[family] = int(n)
    arch_items: dict[str, list[str]] = {}
    for item in args.arch:
        family, _, kv = item.partition(":")
        if family not in SETTINGS:
            p.error(f"--arch takes FAMILY:KEY=VALUE with FAMILY one of {', '.join(SETTINGS)}, "
                    f"got {item!r}")  # fmt: skip
        arch_items.setdefault(family, []).append(kv)
    try:
        archs = {f: registry.get(f).Arch.parse(arch_items.get(f, [])) for f in args.families}
    except UserError as exc:
        p.error(str(exc))
    suffix = "_quick" if args.quick else ""
    out = args.out or Path(__file__).parent / "output" / f"calo_surrogates{suffix}" / args.particle
    data = args.data or Path(__file__).parent / "output" / "calo_data"
    out.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    n_train, n_test = SIZES[mode]
    train_path = simulate(data, args.particle, n_train, seed=1, workers=args.workers)
    test_path = simulate(data, args.particle, n_test, seed=2, workers=args.workers)
    with simulators.open_dataset(test_path) as d:
        e_test = d.theta[:]

    results_path = out / "results.json"
    for family in args.families:
        cls = registry.get(family)
        arch = {**SETTINGS[family]["arch"], **archs[family]}
        cfg = dict(SETTINGS[family]["train"])
        cfg["max_epochs"] = epochs.get(family, QUICK_EPOCHS[family] if args.quick
                                       else cfg["max_epochs"])  # fmt: skip
        run = out / family
        print(f"==> {family}: {json.dumps(arch)} {json.dumps(cfg)}", flush=True)
        if args.reuse:
            model = cls.load(run, device=args.device)
            earlier = json.loads(results_path.read_text())["models"].get(family, {})
            info = {k: v for k, v in earlier.items()
                    if k in ("train_seconds", "steps", "epochs", "best_val_loss")}  # fmt: skip
        else:
            model, info = train(family, train_path, run, arch, cfg, args.device)
        info.update({"arch": model.arch, "train": cfg})
        gen_path = out / f"{family}_samples.h5"
        t0 = time.perf_counter()
        simulators.generate(model.as_simulator(), len(e_test), gen_path, seed=3, theta=e_test,
                            overwrite=True, progress=None)  # fmt: skip
        info["sample_seconds"] = time.perf_counter() - t0
        info["sample_showers_per_s"] = len(e_test) / info["sample_seconds"]
        metrics = evaluate(test_path, gen_path, out / f"{family}_report", device=args.device,
                           max_samples=n_test, overwrite=True)  # fmt: skip
        info.update(summary(metrics["metrics"]))
        info["report"] = str(out / f"{family}_report" / "report.html")
        # re-read: families may run in separate processes side by side
        results = json.loads(results_path.read_text()) if results_path.exists() else {"models": {}}
        results.update(
            {
                "mode": mode,
                "particle": args.particle,
                "n_train": n_train,
                "n_test": n_test,
                "provenance": provenance(modules=("torch", "zuko")),
            }
        )
        results["models"][family] = info
        results_path.write_text(json.dumps(results, indent=1))
        if not args.quick:  # the default folder's runs are the README's; others get a prefix
            name = f"{args.particle}_{family}.json"
            kept = results_dir("calo_surrogates") / (
                name if args.out is None else f"{out.name}_{name}"
            )
            kept.write_text(json.dumps({**results, "models": {family: info}}, indent=1))
        print(f"{family}: AUC {info['auc_low_level']:.3f} low-level, "
              f"{info['auc_high_level']:.3f} high-level; separation E_tot/E_inc "
              f"{info['separation_e_ratio']:.4f}, mean {info['separation_mean']:.3f}, worst "
              f"{info['separation_worst']} {info['separation_max']:.3f}; trained in "
              f"{info.get('train_seconds', float('nan')):.0f} s", flush=True)  # fmt: skip

    print(f"\n{args.particle}s, {n_train:,} train / {n_test:,} held-out ({mode})")
    print(f"{'family':<6} {'AUC low':>8} {'AUC high':>9} {'sep E/Einc':>11} {'train s':>8}"
          f"   published dataset-1 photons (low / high)")  # fmt: skip
    for family, info in results["models"].items():
        pub = PUBLISHED.get(family)
        ref = f"{pub[0]:.2f} / {pub[1]:.2f}" if pub and args.particle == "photon" else ""
        print(f"{family:<6} {info['auc_low_level']:8.3f} {info['auc_high_level']:9.3f} "
              f"{info['separation_e_ratio']:11.4f} {info.get('train_seconds', np.nan):8.0f}   "
              f"{ref}")  # fmt: skip
    print(f"results in {results_path}")


if __name__ == "__main__":
    main()
