"""Multi-round (truncated sequential) NPE against one round at the same simulation budget.

For each task and observation of ``benchmarks/npe_vs_sbi.py`` (same observations, same cached
reference posteriors), trains our NPE once on ``budget`` prior simulations (amortized, one
estimator for all observations) and runs ``surrogates.inference.tsnpe`` with ``rounds`` rounds of
``budget / rounds`` simulations for each observation; prints the C2ST of both per observation,
the means, and the training time. Results also go to ``benchmarks/results/tsnpe/tsnpe.json``
(with ``--npe``: a file named after the options), with the command, commit, machine and versions
under ``"provenance"``.

Usage:
    python benchmarks/tsnpe.py [--tasks two_moons slcp] [--budget 2000] [--rounds 2] [--n-obs 5]
    python benchmarks/tsnpe.py --tasks two_moons --npe lr=0.008
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
from npe_vs_sbi import TASKS, observations, reference

import simulators
from surrogates.inference import NPE, tsnpe
from surrogates.metrics import c2st


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=["two_moons", "slcp"], choices=TASKS)
    p.add_argument("--budget", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--n-obs", type=int, default=5)
    p.add_argument("--n-samples", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--npe",
        nargs="+",
        default=[],
        metavar="KEY=JSON",
        help="options of every NPE (one round and the rounds); values parsed as JSON",
    )
    args = p.parse_args(argv)
    try:
        options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.npe)}
    except ValueError:
        p.error(f"--npe takes KEY=JSON pairs, got {' '.join(args.npe)}")
    torch.set_num_threads(args.threads)
    prov = provenance(argv=None if argv is None else [__file__, *argv],
                      modules=("torch", "zuko", "numpy"))  # fmt: skip
    prov["torch_threads"] = str(torch.get_num_threads())
    print(header(prov))
    rows = []
    for task in args.tasks:
        sim = simulators.get(task)
        _, x_o = observations(task, args.n_obs)
        theta, x = sim.sample_joint(args.budget, np.random.default_rng([TASKS.index(task), 5]))
        t0 = time.perf_counter()
        npe = NPE.for_simulator(sim, seed=0, **options).fit(theta, x)
        one_round_s = time.perf_counter() - t0
        for i in range(args.n_obs):
            ref = reference(task, i, x_o[i], args.n_samples)
            g = torch.Generator().manual_seed(i)
            single = c2st(ref, npe.sample((args.n_samples,), x_o[i], generator=g), seed=i)
            t0 = time.perf_counter()
            res = tsnpe(sim, x_o[i], rounds=args.rounds, simulations=args.budget // args.rounds,
                        seed=i, npe_options=options)  # fmt: skip
            multi_s = time.perf_counter() - t0
            g = torch.Generator().manual_seed(i)
            multi = c2st(ref, res.npe.sample((args.n_samples,), x_o[i], generator=g), seed=i)
            rate = res.rounds[-1].acceptance
            rows.append({"task": task, "obs": i, "one_round": single, "tsnpe": multi,
                         "one_round_train_s": one_round_s, "tsnpe_s": multi_s,
                         "last_acceptance": rate})  # fmt: skip
            print(f"  {task:10s} obs {i}: C2ST one round {single:.3f}, TSNPE {multi:.3f} "
                  f"(last round's acceptance {rate:.3f}, {multi_s:.0f} s)", flush=True)  # fmt: skip
        mine = [r for r in rows if r["task"] == task]
        print(f"{task}: {args.budget} simulations, mean C2ST one round "
              f"{np.mean([r['one_round'] for r in mine]):.3f} ({one_round_s:.0f} s, amortized), "
              f"TSNPE {args.rounds} rounds {np.mean([r['tsnpe'] for r in mine]):.3f} "
              f"({np.mean([r['tsnpe_s'] for r in mine]):.0f} s per observation)")  # fmt: skip
    name = "tsnpe" + "".join(f"_{k}_{v}" for k, v in sorted(options.items()))
    (results_dir("tsnpe") / f"{name}.json").write_text(
        json.dumps({"provenance": prov, "npe_options": options, "rows": rows}, indent=1)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
