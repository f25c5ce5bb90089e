"""Neural posterior estimation: ``surrogates.inference.NPE`` against ``sbi``'s NPE, in one process.

For each task (two moons, SLCP, Gaussian linear, Lotka-Volterra) and simulation budget, one set of
simulations (fixed seed) is given to every method: our NPE with its defaults, ``sbi``'s NPE with
its default (a 5-transform MAF) and with ``density_estimator="nsf"``. Like ``sbibm``, the
observations are fixed per task: θ_o drawn from the prior with a fixed seed and x_o simulated.
Each estimate is scored by C2ST (``surrogates.metrics.c2st``; 0.5 is perfect) against reference
posterior samples -- analytic for Gaussian linear, exact for two moons, likelihood-tempered SMC
for SLCP and Lotka-Volterra -- cached under ``benchmarks/results/reference/`` (git-ignored).
Every method is trained with seeds 0, 1 and 2 (``--seeds``): an observation's C2ST is its mean
over the three estimates and a cell's time the mean time. Training wall time is the time of the
``fit``/``train`` call, after one untimed warm-up fit per method (so no method is charged for the
process's one-time imports). The script prints the machine and versions, markdown tables (the last
one is the README's), the C2ST differences ours - sbi with their paired standard errors over the
observations, and the time ratios ours / sbi; results also go to
``benchmarks/results/npe_vs_sbi/npe_vs_sbi.json`` (a partial run or other options: a file named
after them), with the command, commit, machine and versions under ``"provenance"``.

Usage:
    python benchmarks/npe_vs_sbi.py             # full: 4 tasks x {1000, 10000} x 10 obs x 3 seeds
    python benchmarks/npe_vs_sbi.py --seeds 0   # one training run per cell (a third of the time)
    python benchmarks/npe_vs_sbi.py --quick     # two moons + Gaussian linear, 1000 sims, 2 obs
    python benchmarks/npe_vs_sbi.py --tasks slcp --budgets 10000 --n-obs 5
    python benchmarks/npe_vs_sbi.py --methods ours --npe adjust=false   # an option of ours
    python benchmarks/npe_vs_sbi.py --tables-from benchmarks/results/npe_vs_sbi/npe_vs_sbi.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, header, provenance, results_dir

import simulators
from simulators.toy.reference import reference_posterior
from surrogates.inference import NPE, torch_prior
from surrogates.metrics import c2st

TASKS = ("two_moons", "slcp", "gaussian_linear", "lotka_volterra")
METHODS = ("ours", "sbi_maf", "sbi_nsf")
LABELS = {"ours": "ours", "sbi_maf": "sbi MAF", "sbi_nsf": "sbi NSF"}
#: training seeds of every method: the seed alone moves a cell by up to 0.08 (sbi's NSF, two moons
#: at 10^3), more than most differences between the methods
SEEDS = [0, 1, 2]
#: reference posterior samples, cached across scripts (git-ignored)
REFERENCE = RESULTS / "reference"
#: the SBI benchmark's published NPE C2ST at 10^4 simulations (Lueckmann et al., 2021)
PUBLISHED = {"two_moons": 0.61, "slcp": 0.90, "gaussian_linear": 0.55}


def observations(task: str, n_obs: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed (θ_o, x_o) per task: the same for every run and method."""
    sim = simulators.get(task)
    rng = np.random.default_rng([TASKS.index(task), 2021])
    theta, x = [], []
    while len(x) < n_obs:  # Lotka-Volterra may fail to solve: draw again
        t = sim.prior.sample(1, rng)
        xo = sim.simulate(t, rng)
        if np.all(np.isfinite(xo)):
            theta.append(t[0])
            x.append(xo[0])
    return np.array(theta), np.array(x)


def reference(task: str, i: int, x_o: np.ndarray, n: int) -> np.ndarray:
    """Reference posterior samples for observation i, cached on disk."""
    path = REFERENCE / f"{task}_{i}_{n}.npz"
    if path.exists():
        data = np.load(path)
        if np.array_equal(data["x_o"], x_o):
            return data["samples"]
    sim = simulators.get(task)
    rng = np.random.default_rng([TASKS.index(task), i, 7])
    samples = reference_posterior(sim, x_o, n, rng)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, samples=samples, x_o=x_o)
    return samples


def simulations(task: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    sim = simulators.get(task)
    theta, x = sim.sample_joint(n, np.random.default_rng([TASKS.index(task), n, 1]))
    return torch.as_tensor(theta, dtype=torch.float32), torch.as_tensor(x, dtype=torch.float32)


def train(
    method: str,
    task: str,
    theta: torch.Tensor,
    x: torch.Tensor,
    seed: int,
    options: dict[str, Any] | None = None,
) -> tuple[Any, float]:
    """Returns (a function x_o, n, seed -> samples, training seconds)."""
    sim = simulators.get(task)
    prior = torch_prior(sim.prior)
    if method == "ours":
        npe = NPE(prior, seed=seed, device="cpu", **(options or {}))
        t0 = time.perf_counter()
        npe.fit(theta, x)
        seconds = time.perf_counter() - t0

        def sample(x_o: np.ndarray, n: int, s: int) -> np.ndarray:
            return npe.sample((n,), x_o, generator=torch.Generator().manual_seed(s))

        return sample, seconds
    from sbi.inference import NPE as SbiNPE

    torch.manual_seed(seed)
    inference = SbiNPE(
        prior=prior, density_estimator=method.split("_")[1], show_progress_bars=False
    )
    t0 = time.perf_counter()
    inference.append_simulations(theta, x).train()
    seconds = time.perf_counter() - t0
    posterior = inference.build_posterior()

    def sample_sbi(x_o: np.ndarray, n: int, s: int) -> np.ndarray:
        torch.manual_seed(s)
        xo = torch.as_tensor(x_o, dtype=torch.float32)
        return posterior.sample((n,), x=xo, show_progress_bars=False).numpy()

    return sample_sbi, seconds


def cross_check(task: str, method: str, ref: np.ndarray, est: np.ndarray, ours: float) -> None:
    """Prints our C2ST of one estimate next to ``sbi``'s two implementations (where installed)."""
    try:
        from sbi.utils.metrics import c2st as sbi_c2st
    except ImportError:
        print("# C2ST cross-check skipped: sbi is not installed")
        return

    a, b = torch.as_tensor(ref), torch.as_tensor(est)
    mlp, rf = float(sbi_c2st(a, b, classifier="mlp")), float(sbi_c2st(a, b))
    print(
        f"# C2ST cross-check ({task}, {method}, obs 0): surrogates.metrics.c2st {ours:.3f}, "
        f"sbi.utils.metrics.c2st MLP (as sbibm) {mlp:.3f}, random forest (sbi's default) {rf:.3f}"
    )


def _c2st_job(job: tuple[np.ndarray, np.ndarray, int]) -> float:
    torch.set_num_threads(1)
    ref, est, seed = job
    return c2st(ref, est, seed=seed)


def _seconds(s: float) -> str:
    return f"{s:.1f}" if s < 10 else f"{s:.0f}"


def print_tables(
    rows: list[dict[str, Any]], tasks: list[str], budgets: list[int], methods: list[str]
) -> None:
    """The markdown tables: every row; ours against each sbi method (mean C2ST difference ± its
    paired standard error over the observations, the observations where ours is lower, and the
    time ratio); and the README's table."""
    print()
    print("| task | simulations | method | C2ST (mean ± sd) | train time (s) |")
    print("|---|---:|---|---:|---:|")
    for r in rows:
        c2 = f"{r['c2st']:.3f} ± {r['c2st_sd']:.3f}"
        print(f"| {r['task']} | {r['sims']} | {r['method']} | {c2} | {r['train_s']:.1f} |")
    print()
    print(
        "| task | simulations | C2ST ours − sbi MAF | C2ST ours − sbi NSF "
        "| time ours / sbi MAF | time ours / sbi NSF |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    by = {(r["task"], r["sims"], r["method"]): r for r in rows}
    for task in tasks:
        for budget in budgets:
            ours = by.get((task, budget, "ours"))
            if ours is None:
                continue
            cells = []
            for m in ("sbi_maf", "sbi_nsf"):
                other = by.get((task, budget, m))
                if other is None:
                    cells.append("–")
                    continue
                d = np.asarray(ours["scores"]) - np.asarray(other["scores"])
                se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
                cells.append(f"{d.mean():+.3f} ± {se:.3f} (lower in {int((d < 0).sum())}/{len(d)})")
            for m in ("sbi_maf", "sbi_nsf"):
                other = by.get((task, budget, m))
                cells.append(f"{ours['train_s'] / other['train_s']:.2f}" if other else "–")
            print(f"| {task} | {budget} | " + " | ".join(cells) + " |")
    print()
    print("| task | sims | " + " | ".join(f"{LABELS[m]} C2ST / s" for m in methods) + " |")
    print("|---|---:|" + "---|" * len(methods))
    for task in tasks:
        for budget in budgets:
            cells = [by.get((task, budget, m)) for m in methods]
            text = [f"{r['c2st']:.3f} / {_seconds(r['train_s'])}" if r else "–" for r in cells]
            print(f"| {task} | {budget} | " + " | ".join(text) + " |")
    published = [f"{t} {v}" for t, v in PUBLISHED.items() if t in tasks]
    if published and 10000 in budgets:
        print(f"\nPublished sbibm NPE C2ST at 10^4 simulations: {', '.join(published)}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--budgets", nargs="+", type=int, default=[1000, 10000])
    p.add_argument("--n-obs", type=int, default=10, help="observations per task (sbibm: 10)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--n-samples", type=int, default=2000, help="posterior samples per C2ST class")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument(
        "--c2st-workers",
        type=int,
        default=2,
        help="processes for the C2STs, which run after all training (one torch thread each)",
    )
    p.add_argument(
        "--npe",
        nargs="+",
        default=[],
        metavar="KEY=JSON",
        help="options for our NPE, e.g. adjust=false transforms=3 (values parsed as JSON)",
    )
    p.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        help="training seeds of every method (default 0 1 2; --quick: 0); each observation's "
        "C2ST is its mean over the seeds and the time the mean time",
    )
    p.add_argument(
        "--quick", action="store_true", help="two moons + Gaussian linear, 1000 sims, 2 obs"
    )
    p.add_argument(
        "--tables-from",
        type=Path,
        metavar="JSON",
        help="print the tables of an earlier run's results file and exit (no training)",
    )
    args = p.parse_args(argv)
    try:
        args.npe = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.npe)}
    except ValueError:
        p.error(f"--npe takes KEY=JSON pairs, got {' '.join(args.npe)}")
    if args.c2st_workers < 1:
        p.error(f"--c2st-workers must be at least 1, got {args.c2st_workers}")
    if args.tables_from:
        try:
            rows = json.loads(args.tables_from.read_text())["rows"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            p.error(f"--tables-from {args.tables_from}: not a results file of this script ({e})")
        seen = list(dict.fromkeys((r["task"], r["sims"], r["method"]) for r in rows))
        tasks, budgets, methods = (list(dict.fromkeys(k[i] for k in seen)) for i in range(3))
        print_tables(rows, tasks, sorted(budgets), [m for m in METHODS if m in methods])
        return 0
    if args.quick:
        args.tasks, args.budgets, args.n_obs, args.n_samples = (
            ["two_moons", "gaussian_linear"],
            [1000],
            2,
            1000,
        )
    default_seeds = [0] if args.quick else SEEDS
    if args.seeds is None:
        args.seeds = default_seeds
    if args.threads:
        torch.set_num_threads(args.threads)
    prov = provenance(argv=None if argv is None else [__file__, *argv],
                      modules=("torch", "zuko", "sbi", "numpy"))  # fmt: skip
    prov["torch_threads"] = str(torch.get_num_threads())
    print(header(prov))
    # one untimed fit per method first: lazy imports (e.g. torch._dynamo, ~1 s) fall outside
    # the timed fits, whichever method runs first
    theta, x = simulations(args.tasks[0], 200)
    for method in args.methods:
        train(method, args.tasks[0], theta, x, args.seeds[0], args.npe)
    # Training (timed) first, one fit at a time; the C2STs, untimed and the bulk of the work, after
    # it in --c2st-workers processes.
    cells: list[dict[str, Any]] = []
    jobs: list[tuple[np.ndarray, np.ndarray, int]] = []
    t_start = time.perf_counter()
    for task in args.tasks:
        _, x_o = observations(task, args.n_obs)
        refs = [reference(task, i, x_o[i], args.n_samples) for i in range(args.n_obs)]
        for budget in args.budgets:
            theta, x = simulations(task, budget)
            for method in args.methods:
                times = []
                first_job = len(jobs)
                for seed in args.seeds:
                    sample, seconds = train(method, task, theta, x, seed, args.npe)
                    for i in range(args.n_obs):
                        est = np.asarray(sample(x_o[i], args.n_samples, i), dtype=np.float64)
                        jobs.append((refs[i], est, i))
                    times.append(seconds)
                cells.append({"task": task, "sims": budget, "method": method,
                              "times": times, "jobs": first_job})  # fmt: skip
                print(f"  {task:16s} {budget:6d} {method:8s} train {np.mean(times):7.1f} s",
                      flush=True)  # fmt: skip
    print(f"# {len(jobs)} C2STs in {args.c2st_workers} processes", flush=True)
    with ProcessPoolExecutor(args.c2st_workers, mp_context=get_context("spawn")) as pool:
        scores_all = list(pool.map(_c2st_job, jobs, chunksize=4))
    cross_check(cells[0]["task"], cells[0]["method"], jobs[0][0], jobs[0][1], scores_all[0])
    rows: list[dict[str, Any]] = []
    for cell in cells:
        lo = cell["jobs"]
        n_seeds, n_obs = len(args.seeds), args.n_obs
        per_seed = np.reshape(scores_all[lo : lo + n_seeds * n_obs], (n_seeds, n_obs))
        scores = per_seed.mean(axis=0).tolist()
        row = {
            "task": cell["task"],
            "sims": cell["sims"],
            "method": cell["method"],
            "c2st": float(np.mean(scores)),
            "c2st_sd": float(np.std(scores)),
            "scores": scores,
            "train_s": float(np.mean(cell["times"])),
            "seeds": args.seeds,
            "seed_c2st": per_seed.mean(axis=1).tolist(),
        }
        rows.append(row)
        c2 = f"C2ST {row['c2st']:.3f} ± {row['c2st_sd']:.3f}"
        if n_seeds > 1:
            c2 += " (seeds: " + ", ".join(f"{v:.3f}" for v in row["seed_c2st"]) + ")"
        print(f"  {row['task']:16s} {row['sims']:6d} {row['method']:8s} {c2}  "
              f"train {row['train_s']:7.1f} s")  # fmt: skip
    print_tables(rows, args.tasks, args.budgets, args.methods)
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")
    name = "npe_vs_sbi_quick" if args.quick else "npe_vs_sbi"
    # a partial run gets its own file: the full run's file is the README's source
    if not args.quick:
        for key in ("tasks", "budgets", "methods"):
            if getattr(args, key) != p.get_default(key):
                name += "_" + "_".join(map(str, getattr(args, key)))
        if args.n_obs != p.get_default("n_obs"):
            name += f"_obs_{args.n_obs}"
    if args.seeds != default_seeds:
        name += "_seeds_" + "_".join(map(str, args.seeds))
    if args.npe:
        name += "_" + "_".join(f"{k}_{v}" for k, v in sorted(args.npe.items()))
    out = results_dir("npe_vs_sbi") / f"{name}.json"
    meta = {"provenance": prov, "npe_options": args.npe, "rows": rows}
    out.write_text(json.dumps(meta, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
