"""``surrogates demo``: the main job end to end on an embedded default, on the CPU in minutes.

Simulates photon showers (CaloChallenge dataset-1 geometry, incident energies 256 MeV to 65 GeV),
trains a conditional surrogate on them (a flow; ``--model vae|gan`` for the others), samples it
at the conditions of a held-out simulated set, and writes the evaluation report comparing the two.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ..models.registry import FAMILIES

__all__ = ["add_parser", "run"]

#: the embedded default: small enough for a few minutes on two CPU cores
DEFAULT = {
    "simulator": "calorimeter",
    "config": {"particle": "photon", "e_max_mev": 65536.0},
    "n_train": 10_000,
    "n_test": 2_000,
    "max_steps": 800,
    "batch_size": 256,
}
QUICK = {**DEFAULT, "n_train": 2000, "n_test": 1000, "max_steps": 60}
#: what the demo writes into --out; --overwrite removes these and nothing else
ENTRIES = ("train.h5", "test.h5", "generated.h5", "flow", "vae", "gan", "report",
           "train.h5.parts", "test.h5.parts", "generated.h5.parts")  # fmt: skip


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="simulate showers, train a flow, sample and evaluate it (minutes, CPU)",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="default runs/demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="simulation processes")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--quick", action="store_true", help="a smoke run of well under a minute")
    p.add_argument("--model", choices=sorted(FAMILIES), default="flow",
                   help="the surrogate family (default flow)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo in --out")
    p.set_defaults(run=run)


def _step(text: str) -> float:
    print(f"==> {text}", flush=True)
    return time.perf_counter()


def _speed_line(speed: dict) -> str:
    """The report's speed-up at the top energies and over the spectrum, as the report shows."""
    from surrogates.speed import format_energy

    top = ", ".join(
        f"{s:.3g}x at {format_energy(e)}"
        for e, s in zip(speed["top"]["theta"], speed["top"]["speedup"], strict=True)
    )
    slow, n = len(speed["slower_than_simulator"]), len(speed["bins"])
    verdict = f"; SLOWER than the simulator at {slow} of {n} energies" if slow else ""
    return (
        f"    sampling speed-up (surrogate / simulator, 1 thread, batch {speed['batch']:,}, "
        f"{speed['path'].split(' (')[0]}): {top}; {speed['spectrum']['speedup']:.3g}x over the "
        f"spectrum{verdict}"
    )


def run(args: argparse.Namespace) -> int:
    import shutil

    from simulators.outputs import check_output_location

    out: Path = args.out
    check_output_location(out, kind="folder", overwrite=args.overwrite, parents=True)

    import numpy as np

    import simulators
    from surrogates.models import registry
    from surrogates.report import evaluate

    cfg = QUICK if args.quick else DEFAULT
    for name in ENTRIES:  # --overwrite: the demo's own outputs go, anything else in --out stays
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    sim = simulators.get(cfg["simulator"], **cfg["config"])

    t0 = _step(f"simulating {cfg['n_train']:,} + {cfg['n_test']:,} photon showers")
    train, test = out / "train.h5", out / "test.h5"
    for path, n, seed in ((train, cfg["n_train"], args.seed), (test, cfg["n_test"], args.seed + 1)):
        simulators.generate(sim, n, path, seed=seed, workers=args.workers, progress=None)
    t_sim = time.perf_counter() - t0
    print(f"    {t_sim:.0f} s, {(cfg['n_train'] + cfg['n_test']) / t_sim:,.0f} showers/s")

    name = args.model
    t0 = _step(f"training a conditional {name} (at most {cfg['max_steps']} steps)")
    model = registry.get(name).for_dataset(train, seed=args.seed, device=args.device)
    model.fit(
        train,
        run_dir=out / name,
        max_steps=cfg["max_steps"],
        batch_size=cfg["batch_size"],
        seed=args.seed,
    )
    print(f"    {time.perf_counter() - t0:.0f} s, {model.result.steps} steps, best validation "
          f"loss {model.result.best_val_loss:.2f}")  # fmt: skip

    t0 = _step(f"sampling the {name} at the held-out conditions")
    with simulators.open_dataset(test) as data:
        theta = data.theta[...].astype(np.float64)
    generated = out / "generated.h5"
    simulators.generate(model.as_simulator(), len(theta), generated, seed=args.seed, theta=theta)
    print(f"    {len(theta) / (time.perf_counter() - t0):,.0f} showers/s")

    _step(f"evaluating {name} samples against the held-out simulation")
    summary = evaluate(test, generated, out / "report", seed=args.seed, device=args.device)
    m = summary["metrics"]
    minutes = (time.perf_counter() - t_start) / 60
    print(
        f"demo done in {minutes:.1f} min: classifier AUC (simulation vs {name}) "
        f"{m['classifier_low_level']['auc']:.3f} low-level, "
        f"{m['classifier_high_level']['auc']:.3f} high-level (0.5 = indistinguishable)"
    )
    speed = summary.get("speed") or {}
    if "bins" in speed:
        print(_speed_line(speed))
    elif "note" in speed:
        print(f"    speed: {speed['note']}")
    print(f"    data   {train}, {test}, {generated}")
    print(f"    model  {out / name}")
    print(f"    report {out / 'report' / 'report.html'}")
    return 0
