"""How much our NPE's quality moves with the seed at a fixed budget: held-out negative
log-likelihood over replicates, per training option set.

For each task, budget and seed, the simulations are drawn with that seed exactly as in
``benchmarks/npe_vs_sbi.py`` (so a seed here is the same replicate there) and our NPE is trained
with each option set (``--variants``). It is scored by the mean negative log posterior density
:math:`-\\frac{1}{M}\\sum_j \\log q(\\theta_j \\mid x_j)` over M = 20,000 fresh joint simulations
(the same for every seed and variant): a proper score of the amortized posterior whose
differences between estimators are differences of the expected KL divergence from the true
posterior, with a Monte Carlo error of about 0.01 nats -- far below the seed-to-seed spread,
so it ranks training options at a fraction of the cost of the C2STs, which the final comparison
with ``sbi`` (``npe_vs_sbi.py``) still uses.

Prints per cell and variant the mean over seeds, its standard error, the worst seed and the mean
training time (one thread); writes ``benchmarks/results/npe_seed_spread/<name>.json``.

Usage:
    python benchmarks/npe_seed_spread.py --budgets 1000 --variants "" "patience=12"
    python benchmarks/npe_seed_spread.py --quick
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header, provenance, results_dir
from npe_vs_sbi import TASKS, simulations

import simulators
from surrogates.inference import NPE, torch_prior

#: fresh joint simulations the estimators are scored on
N_TEST = 20_000


def test_set(task: str) -> tuple[torch.Tensor, torch.Tensor]:
    sim = simulators.get(task)
    theta, x = sim.sample_joint(N_TEST, np.random.default_rng([TASKS.index(task), 99]))
    keep = np.all(np.isfinite(x.reshape(len(x), -1)), axis=1)
    return torch.as_tensor(theta[keep]), torch.as_tensor(x[keep], dtype=torch.float32)


def parse_variant(text: str) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in (o.split("=", 1) for o in text.split())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--budgets", nargs="+", type=int, default=[1000])
    p.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    p.add_argument("--variants", nargs="+", default=[""], metavar="'KEY=JSON ...'",
                   help="option sets of our NPE ('' = the defaults)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="two moons, seeds 0 1, defaults")
    args = p.parse_args(argv)
    try:
        variants = [parse_variant(v) for v in args.variants]
    except ValueError:
        p.error(f"--variants takes strings of KEY=JSON pairs, got {args.variants}")
    if args.quick:
        args.tasks, args.seeds = ["two_moons"], [0, 1]
    torch.set_num_threads(1)
    prov = provenance(argv=None if argv is None else [__file__, *argv], modules=("torch", "zuko"))
    print(header(prov))
    rows = []
    for task in args.tasks:
        theta_t, x_t = test_set(task)
        prior = torch_prior(simulators.get(task).prior)
        for budget in args.budgets:
            for text, options in zip(args.variants, variants, strict=True):
                nll, secs, steps, best = [], [], [], []
                for seed in args.seeds:
                    theta, x = simulations(task, budget, seed)
                    npe = NPE(prior, seed=seed, device="cpu", **options)
                    t0 = time.perf_counter()
                    npe.fit(theta, x)
                    secs.append(time.perf_counter() - t0)
                    steps.append(int(npe.result.steps))
                    best.append(int(npe.result.best_step or 0))
                    with torch.no_grad():
                        nll.append(-float(np.mean(npe.log_prob(theta_t.numpy(), x_t))))
                v = np.array(nll)
                row = {"task": task, "sims": budget, "variant": text or "defaults",
                       "seeds": args.seeds, "nll": nll, "train_s": secs, "steps": steps,
                       "best_step": best}  # fmt: skip
                rows.append(row)
                print(f"| {task} | {budget} | {row['variant']} | {v.mean():.3f} ± "
                      f"{v.std(ddof=1) / np.sqrt(len(v)):.3f} | worst {v.max():.3f} "
                      f"| sd {v.std(ddof=1):.3f} | {np.mean(secs):.1f} s | "
                      f"steps {min(steps)}-{max(steps)} |", flush=True)  # fmt: skip
    name = "npe_seed_spread_quick" if args.quick else "npe_seed_spread_" + "_".join(
        [*args.tasks, *map(str, args.budgets)])  # fmt: skip
    out = results_dir("npe_seed_spread") / f"{name}.json"
    out.write_text(json.dumps({"provenance": prov, "rows": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
