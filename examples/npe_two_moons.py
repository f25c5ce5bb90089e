"""Neural posterior estimation on two moons, with its calibration diagnostics.

Simulates the two-moons task, fits :class:`surrogates.inference.NPE` with its defaults, compares
the posterior for one observation with exact reference samples (C2ST and a corner plot), and
checks calibration over many simulations: SBC rank histograms with KS tests, expected coverage
of HPD regions, and a posterior predictive check through the simulator.

Usage:
    python examples/npe_two_moons.py --quick     # 3,000 simulations, about a minute on a laptop
    python examples/npe_two_moons.py             # 20,000 simulations

Outputs (in ``--out``, default ``examples/output/npe_two_moons``): ``corner.png``, ``sbc.png``,
``coverage.png``, ``ppc.png``, ``summary.json`` and the trained estimator in ``npe/``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import simulators
from simulators.toy.reference import reference_posterior
from surrogates.inference import NPE, expected_coverage, posterior_predictive_check, sbc
from surrogates.metrics import c2st
from surrogates.plots.diagnostics import plot_coverage, plot_ppc, plot_sbc_ranks
from surrogates.plots.posterior import plot_corner


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3,000 simulations, fewer checks")
    p.add_argument(
        "--out", default=str(Path(__file__).resolve().parent / "output" / "npe_two_moons")
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n_sims, n_sbc, n_post = (3_000, 300, 2_000) if args.quick else (20_000, 1_000, 10_000)

    sim = simulators.get("two_moons")
    rng = np.random.default_rng(args.seed)
    theta, x = sim.sample_joint(n_sims, rng)
    t0 = time.perf_counter()
    npe = NPE.for_simulator(sim, seed=args.seed, device="cpu").fit(theta, x)
    train_s = time.perf_counter() - t0
    npe.save(out / "npe")

    # one observation: posterior vs exact reference samples
    theta_o = np.array([[0.3, -0.4]])
    x_o = sim.simulate(theta_o, rng)[0]
    g = torch.Generator().manual_seed(args.seed)
    samples = npe.sample((n_post,), x_o, generator=g)
    ref = reference_posterior(sim, x_o, n_post, rng)
    score = c2st(ref, samples, seed=args.seed)
    plot_corner(
        {"reference (exact)": ref, "NPE": samples},
        out / "corner.png",
        labels=list(sim.param_names),
        truth=theta_o[0],
        title=f"two moons, {n_sims} simulations: C2ST {score:.3f}",
    )

    # calibration over fresh simulations from the prior
    theta_t, x_t = sim.sample_joint(n_sbc, rng)
    cal = sbc(npe, theta_t, x_t, n_samples=100, generator=g, param_names=list(sim.param_names))
    plot_sbc_ranks(cal, out / "sbc.png")
    cov = expected_coverage(npe, theta_t[:200], x_t[:200], n_samples=200, generator=g)
    cov.param_names = list(sim.param_names)
    plot_coverage(cov, out / "coverage.png")
    ppc = posterior_predictive_check(sim, samples[:1000], x_o, rng)
    plot_ppc(ppc, out / "ppc.png")

    summary = {
        "simulations": n_sims,
        "train_seconds": round(train_s, 1),
        "epochs": npe.result.epochs,
        "c2st": score,
        "sbc_ks_pvalue": cal.ks_pvalue.tolist(),
        "coverage_at_0.5": float(np.interp(0.5, cov.levels, cov.coverage)),
        "ppc_pvalue": ppc.pvalue.tolist(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(
        f"two moons NPE: {n_sims} simulations, trained in {train_s:.1f} s "
        f"({npe.result.epochs} epochs); C2ST {score:.3f}; "
        f"SBC KS p {np.round(cal.ks_pvalue, 3).tolist()}; figures in {out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
