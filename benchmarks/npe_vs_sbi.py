"""Neural posterior estimation: ``surrogates.inference.NPE`` against ``sbi``'s NPE, in one process,
over training seeds.

For each task (two moons, SLCP, Gaussian linear, Lotka-Volterra), simulation budget and seed, one
set of simulations -- drawn with that seed -- is given to every method: our NPE with its defaults,
``sbi``'s NPE with its default (a 5-transform MAF) and with ``density_estimator="nsf"``, each
initialised from the same seed. A seed is one replicate of the whole experiment; a cell's value is
the mean over seeds of the seed's mean C2ST over the observations, and it is compared with sbi
seed by seed (paired difference and its standard error over seeds), next to each method's worst
seed.

Two scoring protocols (``--protocols``), on the same trained estimators:

- ``ours``: observations θ_o drawn from the prior with a fixed seed per task; reference posteriors
  analytic (Gaussian linear), exact (two moons) or likelihood-tempered SMC (SLCP,
  Lotka-Volterra), cached under ``benchmarks/results/reference/`` (git-ignored); 2,000 samples
  per class in ``surrogates.metrics.c2st`` (sbibm's classifier, 500 epochs).
- ``sbibm``: the SBI benchmark's own observations 1, 2, ... and its 10,000 reference posterior
  samples each, read from the installed ``sbibm`` package, and its ``sbibm.metrics.c2st``
  (scikit-learn MLP) on 10,000 samples per class, as published (Lueckmann et al., 2021). The
  project's simulators define the same tasks (``simulators.toy``), so the training simulations
  are the project's. ``sbibm`` is a benchmark extra, not a dependency: it pins an old ``sbi``, so
  install it with ``pip install --no-deps sbibm`` and then ``pandas pyro-ppl future autograd
  scikit-learn``. One of its C2STs takes 60-100 s on one core (2-d) against 8-30 s for ours.

Training wall time is the time of the ``fit``/``train`` call, after one untimed warm-up fit per
method. Training runs one fit at a time in this process; the C2STs run meanwhile in
``--c2st-workers`` processes (one thread each). Every trained estimator's scores are kept as one
unit file under ``benchmarks/results/npe_vs_sbi/units/`` (tracked: the raw measurements) as
soon as they are complete, so a killed run, or a later checkout, continues where it stopped; the
key holds the task, budget, method, seed, protocol, observation count, sample count and our NPE's
options -- delete the folder after changing the estimator's code. The result file
``benchmarks/results/npe_vs_sbi/<name>.json`` (a partial run or other options: a name after them)
gathers the units with the command, commit,
machine and versions under ``"provenance"``.

Usage:
    python benchmarks/npe_vs_sbi.py                     # 4 tasks x {10^3, 10^4} x 5 seeds, ours
    python benchmarks/npe_vs_sbi.py --protocols ours sbibm --tasks two_moons --budgets 1000 \\
        --n-obs 2                                       # the SBI benchmark's protocol as well
    python benchmarks/npe_vs_sbi.py --protocols ours sbibm --budgets 10000 --n-obs 5 \\
        --sbibm-obs 2                                   # one training, both protocols
    python benchmarks/npe_vs_sbi.py --protocols ours sbibm --budgets 10000 --n-obs 5 \\
        --sbibm-obs 2 --gather                          # the units scored so far, no training
    python benchmarks/npe_vs_sbi.py --quick             # two moons + Gaussian linear, 10^3, 2 obs
    python benchmarks/npe_vs_sbi.py --methods ours --npe ema=null   # an option of ours
    python benchmarks/npe_vs_sbi.py --tables-from benchmarks/results/npe_vs_sbi/npe_vs_sbi.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor
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
PEERS = ("sbi_maf", "sbi_nsf")
PROTOCOLS = ("ours", "sbibm")
LABELS = {"ours": "ours", "sbi_maf": "sbi MAF", "sbi_nsf": "sbi NSF"}
#: replicates: each seed draws its own simulations and initialises every method
SEEDS = [0, 1, 2, 3, 4]
#: posterior samples per C2ST class: ours / sbibm's published protocol
N_SAMPLES = {"ours": 2000, "sbibm": 10_000}
#: reference posterior samples of our protocol, cached across scripts (git-ignored)
REFERENCE = RESULTS / "reference"
#: the SBI benchmark's published NPE C2ST at 10^4 simulations (Lueckmann et al., 2021)
PUBLISHED = {"two_moons": 0.61, "slcp": 0.90, "gaussian_linear": 0.55}


def observations(task: str, n_obs: int) -> tuple[np.ndarray, np.ndarray]:
    """Our protocol's fixed (θ_o, x_o) per task: the same for every run and method."""
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
    """Our protocol's reference posterior samples for observation i, cached on disk."""
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


def sbibm_observations(task: str, n_obs: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The SBI benchmark's observations 1..n_obs of ``task`` and their reference samples, read
    from the installed package's files (its task classes would import its simulators)."""
    import pandas as pd
    import sbibm

    root = Path(sbibm.__file__).parent / "tasks" / task / "files"
    xs, refs = [], []
    for i in range(1, n_obs + 1):
        folder = root / f"num_observation_{i}"
        xs.append(pd.read_csv(folder / "observation.csv").to_numpy(np.float64)[0])
        refs.append(
            pd.read_csv(folder / "reference_posterior_samples.csv.bz2").to_numpy(np.float64)
        )
    return xs, refs


def simulations(task: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    sim = simulators.get(task)
    theta, x = sim.sample_joint(n, np.random.default_rng([TASKS.index(task), n, 1, seed]))
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


def _c2st_job(job: tuple[str, np.ndarray, np.ndarray, int]) -> float:
    protocol, ref, est, seed = job
    torch.set_num_threads(1)
    if protocol == "ours":
        return c2st(ref, est, seed=seed)
    from sbibm.metrics import c2st as sbibm_c2st
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return float(sbibm_c2st(torch.as_tensor(ref), torch.as_tensor(est))[0])


def _seconds(s: float) -> str:
    return f"{s:.1f}" if s < 10 else f"{s:.0f}"


def _mean_se(v: np.ndarray) -> tuple[float, float]:
    se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return float(v.mean()), float(se)


def print_tables(rows: list[dict[str, Any]]) -> None:
    """Per protocol: every cell (mean ± standard error over seeds, worst seed, time); ours against
    each sbi method (paired difference over seeds ± its standard error, seeds where ours is lower,
    the worst seeds, the time ratio); and the README's table."""
    by = {(r["protocol"], r["task"], r["sims"], r["method"]): r for r in rows}
    for protocol in dict.fromkeys(r["protocol"] for r in rows):
        cells = [r for r in rows if r["protocol"] == protocol]
        keys = list(dict.fromkeys((r["task"], r["sims"]) for r in cells))
        methods = [m for m in METHODS if any(r["method"] == m for r in cells)]
        print(f"\n## protocol: {protocol}\n")
        print("| task | sims | method | seeds | C2ST mean ± se | worst seed | train s |")
        print("|---|---:|---|---:|---:|---:|---:|")
        for r in cells:
            m, se = _mean_se(np.asarray(r["seed_c2st"]))
            print(f"| {r['task']} | {r['sims']} | {LABELS[r['method']]} | {len(r['seeds'])} "
                  f"| {m:.3f} ± {se:.3f} | {max(r['seed_c2st']):.3f} "
                  f"| {np.mean(r['train_s']):.1f} |")  # fmt: skip
        print("\n| task | sims | vs | C2ST ours − sbi (mean ± se over seeds) | lower in "
              "| worst seed ours / sbi | time ours / sbi |")  # fmt: skip
        print("|---|---:|---|---:|---:|---:|---:|")
        for task, sims in keys:
            ours = by.get((protocol, task, sims, "ours"))
            for peer in PEERS:
                other = by.get((protocol, task, sims, peer))
                if ours is None or other is None:
                    continue
                shared = sorted(set(ours["seeds"]) & set(other["seeds"]))
                a = np.array([ours["seed_c2st"][ours["seeds"].index(s)] for s in shared])
                b = np.array([other["seed_c2st"][other["seeds"].index(s)] for s in shared])
                d, se = _mean_se(a - b)
                ratio = np.mean(ours["train_s"]) / np.mean(other["train_s"])
                print(f"| {task} | {sims} | {LABELS[peer]} | {d:+.3f} ± {se:.3f} "
                      f"| {int((a < b).sum())}/{len(shared)} | {a.max():.3f} / {b.max():.3f} "
                      f"| {ratio:.2f} |")  # fmt: skip
        print("\n| task | sims | " + " | ".join(f"{LABELS[m]} C2ST / s" for m in methods) + " |")
        print("|---|---:|" + "---|" * len(methods))
        for task, sims in keys:
            text = []
            for m in methods:
                r = by.get((protocol, task, sims, m))
                if r is None:
                    text.append("–")
                    continue
                mean, se = _mean_se(np.asarray(r["seed_c2st"]))
                text.append(f"{mean:.3f} ± {se:.3f} (worst {max(r['seed_c2st']):.3f}) / "
                            f"{_seconds(float(np.mean(r['train_s'])))}")  # fmt: skip
            print(f"| {task} | {sims} | " + " | ".join(text) + " |")
    published = [f"{t} {v}" for t, v in PUBLISHED.items() if any(r["task"] == t for r in rows)]
    if published and any(r["sims"] == 10000 for r in rows):
        print(f"\nPublished sbibm NPE C2ST at 10^4 simulations: {', '.join(published)}")


def time_fits(tasks: list[str], budgets: list[int], methods: list[str], seeds: list[int],
              options: dict[str, Any]) -> list[dict[str, Any]]:  # fmt: skip
    """Training seconds of every method on each seed's simulations, one fit at a time and
    nothing else in the process: the scoring runs time their fits beside C2ST workers."""
    rows = []
    for task in tasks:
        for budget in budgets:
            times: dict[str, list[float]] = {m: [] for m in methods}
            for seed in seeds:
                theta, x = simulations(task, budget, seed)
                for method in methods:
                    times[method].append(train(method, task, theta, x, seed, options)[1])
                    print(f"  {task:16s} {budget:6d} {method:8s} seed {seed} "
                          f"train {times[method][-1]:7.1f} s", flush=True)  # fmt: skip
            rows += [{"task": task, "sims": budget, "method": m, "seeds": seeds,
                      "train_s": times[m]} for m in methods]  # fmt: skip
    return rows


def print_times(rows: list[dict[str, Any]]) -> None:
    """Mean training seconds over seeds per method, and ours over each sbi method."""
    by = {(r["task"], r["sims"], r["method"]): np.mean(r["train_s"]) for r in rows}
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    peers = [m for m in PEERS if m in methods and "ours" in methods]
    print("\n| task | sims | " + " | ".join(f"{LABELS[m]} s" for m in methods)
          + "".join(f" | ours / {LABELS[m]}" for m in peers) + " |")  # fmt: skip
    print("|---|---:|" + "---:|" * (len(methods) + len(peers)))
    for task, sims in dict.fromkeys((r["task"], r["sims"]) for r in rows):
        cells = [_seconds(by[task, sims, m]) for m in methods]
        cells += [f"{by[task, sims, 'ours'] / by[task, sims, m]:.2f}" for m in peers]
        print(f"| {task} | {sims} | " + " | ".join(cells) + " |")


def _upgrade(row: dict[str, Any]) -> dict[str, Any]:
    """A row of a results file written before issue 30: one simulation set, seeds that varied
    only the initialisation, one mean time."""
    if "protocol" in row:
        return row
    seeds = row.get("seeds", [0])
    return {**row, "protocol": "ours, one simulation set (seeds vary the initialisation)",
            "seeds": seeds, "seed_c2st": row.get("seed_c2st", [row["c2st"]]),
            "train_s": [row["train_s"]] * len(seeds)}  # fmt: skip


def unit_key(task: str, sims: int, method: str, seed: int, protocols: list[str], n_obs: int,
             options: dict[str, Any], sbibm_obs: int | None = None) -> str:  # fmt: skip
    """The name of a unit file: one trained estimator and its scores."""
    opts = json.dumps(options, sort_keys=True) if method == "ours" else ""
    digest = hashlib.sha1(opts.encode()).hexdigest()[:8] if opts not in ("", "{}") else "default"
    obs = f"{n_obs}" if sbibm_obs in (None, n_obs) else f"{n_obs}+{sbibm_obs}"
    return f"{task}_{sims}_{method}_{seed}_{'+'.join(protocols)}_obs{obs}_{digest}"


def write_results(
    args: argparse.Namespace, prov: dict[str, str], out: Path, keys: list[tuple[Any, ...]]
) -> None:
    """The tables and the result file of the scored units ``keys`` (task, budget, method,
    seed, path)."""
    rows: list[dict[str, Any]] = []
    for protocol in args.protocols:
        for task in args.tasks:
            for budget in args.budgets:
                for method in args.methods:
                    done = [(s, json.loads(path.read_text())) for t, b, m, s, path in keys
                            if (t, b, m) == (task, budget, method)]  # fmt: skip
                    if not done:  # a cell --gather found no unit of
                        continue
                    rows.append({
                        "protocol": protocol, "task": task, "sims": budget, "method": method,
                        "seeds": [s for s, _ in done],
                        "seed_c2st": [float(np.mean(u["scores"][protocol])) for _, u in done],
                        "scores": [u["scores"][protocol] for _, u in done],
                        "train_s": [u["train_s"] for _, u in done],
                    })  # fmt: skip
    print_tables(rows)
    meta = {"provenance": prov, "npe_options": args.npe, "n_obs": args.n_obs,
            "sbibm_obs": args.sbibm_obs or args.n_obs, "rows": rows}  # fmt: skip
    out.write_text(json.dumps(meta, indent=1))
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--budgets", nargs="+", type=int, default=[1000, 10000])
    p.add_argument("--n-obs", type=int, default=10, help="observations per task (sbibm: 10)")
    p.add_argument("--sbibm-obs", type=int, default=None,
                   help="sbibm's observations beside ours (default: --n-obs)")  # fmt: skip
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--protocols", nargs="+", default=["ours"], choices=PROTOCOLS)
    p.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="replicates (default 0-4; --quick: 0 1)")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--c2st-workers", type=int, default=1,
                   help="C2ST processes beside the training (one thread each)")  # fmt: skip
    p.add_argument("--npe", nargs="+", default=[], metavar="KEY=JSON",
                   help="options of our NPE, e.g. ema=null (values parsed as JSON)")  # fmt: skip
    p.add_argument("--quick", action="store_true",
                   help="two moons + Gaussian linear, 10^3 sims, 2 obs, seeds 0 1")  # fmt: skip
    p.add_argument("--time-only", action="store_true",
                   help="time each method's fits alone, no scoring")  # fmt: skip
    p.add_argument("--tables-from", type=Path, metavar="JSON",
                   help="print the tables of an earlier run's results file and exit")  # fmt: skip
    p.add_argument("--gather", action="store_true",
                   help="train nothing: tables and result file from the units already scored "
                        "(a partial run; each cell lists its seeds)")  # fmt: skip
    args = p.parse_args(argv)
    try:
        args.npe = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.npe)}
    except ValueError:
        p.error(f"--npe takes KEY=JSON pairs, got {' '.join(args.npe)}")
    if args.c2st_workers < 1:
        p.error(f"--c2st-workers must be at least 1, got {args.c2st_workers}")
    if args.sbibm_obs is not None and "sbibm" not in args.protocols:
        p.error("--sbibm-obs needs --protocols sbibm")
    if args.tables_from:
        try:
            rows = [_upgrade(r) for r in json.loads(args.tables_from.read_text())["rows"]]
            print_tables(rows)
        except (OSError, ValueError, KeyError, TypeError) as e:
            p.error(f"--tables-from {args.tables_from}: not a results file of this script ({e})")
        return 0
    if "sbibm" in args.protocols:
        try:
            import sbibm.metrics  # noqa: F401
        except ImportError as e:
            p.error(f"--protocols sbibm needs the sbibm package ({e}); see the docstring")
    if args.quick:
        args.tasks, args.budgets, args.n_obs = ["two_moons", "gaussian_linear"], [1000], 2
    default_seeds = [0, 1] if args.quick else SEEDS
    if args.seeds is None:
        args.seeds = default_seeds
    if args.threads:
        torch.set_num_threads(args.threads)
    prov = provenance(argv=None if argv is None else [__file__, *argv],
                      modules=("torch", "zuko", "sbi", "sbibm", "sklearn", "numpy"))  # fmt: skip
    prov["torch_threads"] = str(torch.get_num_threads())
    print(header(prov))
    name = "npe_vs_sbi_quick" if args.quick else "npe_vs_sbi"
    if args.time_only:
        name += "_times"
    # a partial run gets its own file: the full run's file is the README's source
    if not args.quick:
        for key in ("tasks", "budgets", "methods", "protocols"):
            if getattr(args, key) != p.get_default(key) and not (
                args.time_only and key == "protocols"
            ):
                name += "_" + "_".join(map(str, getattr(args, key)))
        if args.n_obs != p.get_default("n_obs") and not args.time_only:
            name += f"_obs_{args.n_obs}"
        if args.sbibm_obs not in (None, args.n_obs) and not args.time_only:
            name += f"_sbibm_obs_{args.sbibm_obs}"
    if args.seeds != default_seeds:
        name += "_seeds_" + "_".join(map(str, args.seeds))
    if args.npe:
        name += "_" + "_".join(f"{k}_{v}" for k, v in sorted(args.npe.items()))
    out = results_dir("npe_vs_sbi") / f"{name}.json"
    units = results_dir("npe_vs_sbi") / "units"
    units.mkdir(exist_ok=True)
    if args.gather:
        opts = (args.protocols, args.n_obs, args.npe, args.sbibm_obs)
        keys = [(t, b, m, s, units / f"{unit_key(t, b, m, s, *opts)}.json")
                for t in args.tasks for b in args.budgets for s in args.seeds
                for m in args.methods]  # fmt: skip
        write_results(args, prov, out, [k for k in keys if k[4].exists()])
        return 0
    # one untimed fit per method first: lazy imports (e.g. torch._dynamo, ~1 s) fall outside
    # the timed fits, whichever method runs first
    theta, x = simulations(args.tasks[0], 200, 0)
    for method in args.methods:
        train(method, args.tasks[0], theta, x, args.seeds[0], args.npe)
    if args.time_only:
        rows = time_fits(args.tasks, args.budgets, args.methods, args.seeds, args.npe)
        print_times(rows)
        out.write_text(json.dumps({"provenance": prov, "npe_options": args.npe, "rows": rows},
                                  indent=1))  # fmt: skip
        print(f"wrote {out}")
        return 0
    pending: list[tuple[Path, dict[str, Any], dict[str, list[Future]]]] = []

    def flush(wait: bool) -> None:
        for item in list(pending):
            path, unit, futures = item
            if not wait and not all(f.done() for fs in futures.values() for f in fs):
                continue
            unit["scores"] = {k: [f.result() for f in fs] for k, fs in futures.items()}
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(unit))
            os.replace(tmp, path)
            pending.remove(item)
            means = " ".join(f"{k} {np.mean(v):.3f}" for k, v in unit["scores"].items())
            print(f"  scored {path.stem}: C2ST {means}", flush=True)

    t_start = time.perf_counter()
    keys: list[tuple[str, int, str, int, Path]] = []
    with ProcessPoolExecutor(args.c2st_workers, mp_context=get_context("spawn")) as pool:
        for task in args.tasks:
            obs: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
            if "ours" in args.protocols:
                _, x_o = observations(task, args.n_obs)
                refs = [reference(task, i, x_o[i], N_SAMPLES["ours"]) for i in range(args.n_obs)]
                obs["ours"] = (list(x_o), refs)
            if "sbibm" in args.protocols:
                obs["sbibm"] = sbibm_observations(task, args.sbibm_obs or args.n_obs)
            for budget in args.budgets:
                for seed in args.seeds:
                    theta, x = simulations(task, budget, seed)
                    for method in args.methods:
                        key = unit_key(task, budget, method, seed, args.protocols, args.n_obs,
                                       args.npe, args.sbibm_obs)  # fmt: skip
                        path = units / f"{key}.json"
                        keys.append((task, budget, method, seed, path))
                        if path.exists():
                            continue
                        sample, seconds = train(method, task, theta, x, seed, args.npe)
                        print(f"  {task:16s} {budget:6d} {method:8s} seed {seed} "
                              f"train {seconds:7.1f} s", flush=True)  # fmt: skip
                        futures = {}
                        for protocol, (xs, refs) in obs.items():
                            n = N_SAMPLES[protocol]
                            futures[protocol] = [
                                pool.submit(_c2st_job, (protocol, refs[i],
                                            np.asarray(sample(xs[i], n, i), np.float64), i + 1))
                                for i in range(len(xs))
                            ]  # fmt: skip
                        unit = {"task": task, "sims": budget, "method": method, "seed": seed,
                                "train_s": seconds}  # fmt: skip
                        pending.append((path, unit, futures))
                        flush(wait=False)
        flush(wait=True)
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")
    write_results(args, prov, out, keys)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
