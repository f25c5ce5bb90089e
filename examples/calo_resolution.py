"""Energy response and resolution of the calorimeter, from the simulator and from its surrogates.

One analysis code path, run unchanged on every source behind the :class:`simulators.Simulator`
interface -- the built-in calorimeter simulator and each trained surrogate through
``model.as_simulator()`` -- as an analysis that swaps its simulator for a surrogate would:

1. simulate N showers at each of the 15 CaloChallenge dataset-1 incident energies
   (2^8 ... 2^22 MeV), the same θ rows for every source, ``rng = default_rng(seed)`` per source;
2. per energy, from the deposited energy E_dep (the sum of the voxels) and r = E_dep / E_inc:
   the response R(E) = mean(r) and the relative resolution σ/E = std(r) / mean(r) (the plain
   sample standard deviation, ``--estimator std``, the usual definition; ``--estimator iqr``
   uses the interquartile range / 1.349 instead, the Gaussian-equivalent width of the core,
   which ignores tails);
3. fit the resolution model

   .. math:: \\frac{\\sigma}{E} = \\frac{a}{\\sqrt{E/\\mathrm{GeV}}} \\oplus b
             = \\sqrt{\\frac{a^2}{E/\\mathrm{GeV}} + b^2}

   by weighted least squares (:func:`scipy.optimize.curve_fit`, ``absolute_sigma=True``) with
   each point's bootstrap standard error as its uncertainty;
4. bootstrap: resample the showers within each energy (``--bootstrap`` times, 200 by default),
   recompute R and σ/E and refit a, b each time (same weights); the standard deviations of the
   refitted values are σ_a, σ_b.

Each surrogate is compared with the simulator: a, b and their relative difference in %, the
difference in units of the simulator's bootstrap σ and of the combined σ (both samples fluctuate),
and per energy the response and resolution differences in σ units. The simulator's configured
stochastic and constant terms are printed beside the fit for orientation: sampling fraction,
leakage and the readout threshold shift the fitted values away from them, most at low energy.

Usage::

    python examples/calo_resolution.py --quick     # 200 showers per energy, the quick runs
    python examples/calo_resolution.py             # 2,000 showers per energy (minutes)
    python examples/calo_resolution.py --particle pion
    python examples/calo_resolution.py --runs flow=runs/flow vae=runs/vae

Surrogates are read from ``examples/output/calo_surrogates[_quick]/<particle>/<family>`` (written
by ``examples/calo_surrogates.py``); ``--runs FAMILY=PATH`` overrides, missing runs are skipped.
Results go to ``examples/output/calo_resolution[_quick]/<particle>/results.json`` and
``resolution.png``; a full run also keeps a copy with provenance in
``benchmarks/results/calo_resolution/<particle>.json`` (with ``--families`` a subset:
``<particle>_<families>.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from scipy.optimize import OptimizeWarning, curve_fit

import simulators
from simulators.calorimeter.simulator import CHALLENGE_ENERGIES
from surrogates.checkpoint import CheckpointError
from surrogates.models import registry
from surrogates.plots.common import COLORS, save_figure

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import provenance, results_dir

__all__ = ["bootstrap", "energy_statistics", "fit_resolution", "resolution_model"]

FAMILIES = ("flow", "vae", "gan")
SHOWERS = {"quick": 200, "full": 2000}
#: the acceptance the issue asks for: |a_s - a_sim| / a_sim and the same for b
TOLERANCE = 0.10
#: line colours: the simulator in the reference colour of every report figure, then surrogates
SOURCE_COLORS = (COLORS[0], COLORS[1], "#2e8b57", "#7b3294", "#b8860b")


def resolution_model(e_gev: np.ndarray, a: float, b: float) -> np.ndarray:
    """σ/E = a/√E ⊕ b = sqrt(a²/E + b²), E in GeV."""
    return np.sqrt(a * a / np.asarray(e_gev, dtype=np.float64) + b * b)


def fit_resolution(
    e_gev: np.ndarray, rel_sigma: np.ndarray, err: np.ndarray
) -> tuple[float, float, np.ndarray, float]:
    """Weighted least-squares fit of :func:`resolution_model`.

    Args:
        e_gev: incident energies in GeV, shape (K,).
        rel_sigma: measured σ/E at those energies, shape (K,).
        err: the standard error of each σ/E (absolute, used as is: ``absolute_sigma=True``).

    Returns:
        ``(a, b, cov, chi2)``: both terms as non-negative numbers (the model depends on a² and
        b² only, so the sign the optimizer lands on carries no meaning), their covariance from
        the fit (infinite where a term sits at zero: the model is flat in it there; the
        bootstrap of :func:`bootstrap` still gives its spread) and the fit's χ².
    """
    e = np.asarray(e_gev, dtype=np.float64)
    y = np.asarray(rel_sigma, dtype=np.float64)
    # a zero error (a degenerate bootstrap) would be an infinite weight
    s = np.maximum(np.asarray(err, dtype=np.float64), 1e-12)
    # start from the two asymptotes: b from the highest energy, a from the lowest
    b0 = float(y[np.argmax(e)])
    a0 = float(np.sqrt(max(y[np.argmin(e)] ** 2 - b0**2, 1e-6) * e.min()))
    with warnings.catch_warnings():
        # a term at zero makes the covariance singular; it then reads inf, which is the answer
        warnings.simplefilter("ignore", OptimizeWarning)
        popt, cov = curve_fit(resolution_model, e, y, p0=(a0, b0), sigma=s, absolute_sigma=True)
    chi2 = float(np.sum(((y - resolution_model(e, *popt)) / s) ** 2))
    return abs(float(popt[0])), abs(float(popt[1])), cov, chi2


def energy_statistics(ratio: np.ndarray, estimator: str = "std") -> tuple[np.ndarray, np.ndarray]:
    """Response and relative resolution per energy.

    Args:
        ratio: E_dep / E_inc, shape (..., N): the last axis runs over showers of one energy.
        estimator: ``"std"`` (sample standard deviation) or ``"iqr"`` (interquartile range /
            1.349, the standard deviation of a Gaussian with that IQR).

    Returns:
        ``(response, resolution)``: mean(r) and width(r) / mean(r), shape (...,).
    """
    mean = ratio.mean(axis=-1)
    if estimator == "std":
        width = ratio.std(axis=-1, ddof=1)
    elif estimator == "iqr":
        q25, q75 = np.percentile(ratio, [25, 75], axis=-1)
        width = (q75 - q25) / 1.349
    else:
        raise ValueError(f"estimator must be 'std' or 'iqr', got {estimator!r}")
    return mean, width / mean


def bootstrap(
    ratio: np.ndarray,
    e_gev: np.ndarray,
    *,
    n_boot: int,
    rng: np.random.Generator,
    estimator: str = "std",
) -> dict[str, Any]:
    """Measures response and resolution, fits a and b, and bootstraps all of them.

    Args:
        ratio: E_dep / E_inc, shape (K energies, N showers).
        e_gev: the K incident energies in GeV.
        n_boot: bootstrap resamples (showers resampled with replacement within each energy).
        rng: draws the resamples.
        estimator: see :func:`energy_statistics`.

    Returns:
        A JSON-ready dict: per energy ``response``, ``resolution`` and their bootstrap errors;
        the fitted ``a``, ``b``, their bootstrap ``sigma_a``, ``sigma_b`` and correlation, the
        fit's own errors (``a_err_fit``, ``b_err_fit``), ``chi2`` and ``ndf``.
    """
    k, n = ratio.shape
    response, resolution = energy_statistics(ratio, estimator)
    boot_r = np.empty((n_boot, k))
    boot_s = np.empty((n_boot, k))
    for i in range(k):
        idx = rng.integers(0, n, size=(n_boot, n))
        boot_r[:, i], boot_s[:, i] = energy_statistics(ratio[i][idx], estimator)
    r_err, s_err = boot_r.std(axis=0, ddof=1), boot_s.std(axis=0, ddof=1)
    a, b, cov, chi2 = fit_resolution(e_gev, resolution, s_err)
    # refit each resample with the same weights: the spread of (a, b) is their statistical error
    ab = np.array([fit_resolution(e_gev, s, s_err)[:2] for s in boot_s])
    return {
        "response": response.tolist(),
        "response_err": r_err.tolist(),
        "resolution": resolution.tolist(),
        "resolution_err": s_err.tolist(),
        "a": a,
        "b": b,
        "sigma_a": float(ab[:, 0].std(ddof=1)),
        "sigma_b": float(ab[:, 1].std(ddof=1)),
        "corr_ab": float(np.corrcoef(ab.T)[0, 1]),
        # JSON has no inf: a singular covariance is written as null
        "a_err_fit": float(np.sqrt(cov[0, 0])) if np.isfinite(cov[0, 0]) else None,
        "b_err_fit": float(np.sqrt(cov[1, 1])) if np.isfinite(cov[1, 1]) else None,
        "chi2": chi2,
        "ndf": k - 2,
    }


def deposited_fractions(
    sim: simulators.Simulator, energies: np.ndarray, n: int, seed: int
) -> tuple[np.ndarray, float]:
    """E_dep / E_inc of ``n`` showers per energy from ``sim``; returns (ratio (K, n), seconds).

    Energy by energy from one generator, so every source sees the same θ rows in the same order
    and only the showers' sums are kept in memory.
    """
    rng = np.random.default_rng(seed)
    ratio = np.empty((len(energies), n))
    t0 = time.perf_counter()
    for i, e in enumerate(energies):
        x = sim.simulate(np.full((n, 1), e), rng)
        ratio[i] = np.asarray(x, dtype=np.float64).reshape(n, -1).sum(axis=1) / e
    return ratio, time.perf_counter() - t0


def load_surrogates(
    runs: dict[str, Path], particle: str
) -> dict[str, tuple[simulators.Simulator, Path]]:
    """The trained surrogates as simulators; missing or unusable runs are skipped with a line."""
    found = {}
    for family, run in runs.items():
        if not (run / "model.json").is_file():
            print(f"skipping {family}: no trained run in {run}")
            continue
        try:
            # as_simulator() samples on the CPU whatever the device, so load it there directly
            model = registry.get(family).load(run, device="cpu")
        except CheckpointError as exc:
            print(f"skipping {family}: {exc}")
            continue
        sim = model.as_simulator()
        trained_on = sim.config.get("base_config", {}).get("particle")
        if sim.config.get("base") != "calorimeter" or trained_on != particle:
            print(f"skipping {family}: {run} was trained on {sim.config.get('base')} "
                  f"{trained_on}s, not calorimeter {particle}s")  # fmt: skip
            continue
        found[family] = (sim, run)
    return found


def compare(ref: dict[str, Any], cand: dict[str, Any]) -> dict[str, Any]:
    """Differences of a surrogate's numbers from the simulator's, relative and in σ units."""
    out: dict[str, Any] = {}
    for p in ("a", "b"):
        diff = cand[p] - ref[p]
        out[f"{p}_rel"] = diff / ref[p]
        out[f"{p}_pull_sim"] = diff / ref[f"sigma_{p}"]
        out[f"{p}_pull_combined"] = diff / np.hypot(ref[f"sigma_{p}"], cand[f"sigma_{p}"])
    for q in ("response", "resolution"):
        diff = np.subtract(cand[q], ref[q])
        out[f"{q}_pull_sim"] = (diff / np.asarray(ref[f"{q}_err"])).tolist()
        comb = np.hypot(ref[f"{q}_err"], cand[f"{q}_err"])
        out[f"{q}_pull_combined"] = (diff / comb).tolist()
    out["within_tolerance"] = bool(max(abs(out["a_rel"]), abs(out["b_rel"])) <= TOLERANCE)
    return out


def plot(results: dict[str, Any], path: Path) -> Path:
    """σ/E vs E (log-log) with the fitted curves, and the response below, every source."""
    e = np.asarray(results["energies_mev"]) / 1e3
    fig = Figure(figsize=(6.4, 6.0))
    ax, rax = fig.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1.3), "hspace": 0.06}
    )
    grid = np.geomspace(e.min() / 1.3, e.max() * 1.3, 200)
    n = len(results["sources"])
    for j, (name, r) in enumerate(results["sources"].items()):
        color = SOURCE_COLORS[j % len(SOURCE_COLORS)]
        # spread the markers a little in E so that error bars of the sources do not hide each other
        shift = 1.0 + 0.04 * (j - (n - 1) / 2)
        label = (f"{name}: a = {r['a']:.4f} ± {r['sigma_a']:.4f}, "
                 f"b = {r['b']:.4f} ± {r['sigma_b']:.4f}")  # fmt: skip
        ax.errorbar(e * shift, r["resolution"], yerr=r["resolution_err"], fmt="o", ms=3.5,
                    color=color, capsize=2, lw=1, label=label)  # fmt: skip
        ax.plot(grid, resolution_model(grid, r["a"], r["b"]), color=color, lw=1.1, alpha=0.8)
        rax.errorbar(e * shift, r["response"], yerr=r["response_err"], fmt="o", ms=3.5,
                     color=color, capsize=2, lw=1)  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylabel(f"σ/E ({results['estimator']})", fontsize=9)
    ax.set_title(f"calorimeter {results['particle']}s: σ/E = a/√E ⊕ b, "
                 f"{results['showers_per_energy']:,} showers per energy", fontsize=10)  # fmt: skip
    ax.legend(fontsize=7.5, loc="upper right")
    ax.grid(True, which="major", color="0.9", lw=0.6)
    ax.tick_params(labelsize=8)
    rax.axhline(1.0, color="0.4", lw=0.8)
    rax.set_xlabel("incident energy E [GeV]", fontsize=9)
    rax.set_ylabel("⟨E_dep⟩/E", fontsize=9)
    rax.grid(True, which="major", color="0.9", lw=0.6)
    rax.tick_params(labelsize=8)
    return save_figure(fig, path)


def print_tables(results: dict[str, Any]) -> None:
    """The fitted terms and their differences, then per-energy response and resolution pulls."""
    src = results["sources"]
    cmp_ = results["comparisons"]
    cfg = results["simulator_config_terms"]
    print(f"\nσ/E = a/√(E/GeV) ⊕ b, {results['particle']}s, {results['showers_per_energy']:,} "
          f"showers per energy, {results['bootstrap']} bootstrap resamples, "
          f"width: {results['estimator']}")  # fmt: skip
    print("simulator config: " + ", ".join(f"{k} = {v}" for k, v in cfg.items()))
    print(f"{'source':<10} {'a':>8} {'σ_a':>7} {'b':>8} {'σ_b':>7} {'χ²/ndf':>9} {'Δa %':>7} "
          f"{'Δa/σsim':>8} {'Δa/σcmb':>8} {'Δb %':>7} {'Δb/σsim':>8} {'Δb/σcmb':>8} "
          f"{'≤10%':>5} {'showers/s':>10}")  # fmt: skip
    for name, r in src.items():
        c = cmp_.get(name)
        line = (f"{name:<10} {r['a']:8.4f} {r['sigma_a']:7.4f} {r['b']:8.4f} {r['sigma_b']:7.4f} "
                f"{r['chi2']:5.1f}/{r['ndf']:<3d}")  # fmt: skip
        if c is None:
            line += " " * 63
        else:
            line += (f" {100 * c['a_rel']:+7.1f} {c['a_pull_sim']:+8.1f} "
                     f"{c['a_pull_combined']:+8.1f} {100 * c['b_rel']:+7.1f} "
                     f"{c['b_pull_sim']:+8.1f} {c['b_pull_combined']:+8.1f} "
                     f"{'yes' if c['within_tolerance'] else 'NO':>5}")  # fmt: skip
        print(f"{line} {r['showers_per_s']:10.1f}")
    names = list(cmp_)
    e = np.asarray(results["energies_mev"]) / 1e3
    for q, label in (("response", "response ⟨E_dep⟩/E"), ("resolution", "resolution σ/E")):
        print(f"\n{label}: simulator ± bootstrap σ; surrogates as (value - simulator) / σ_sim")
        print(f"{'E [GeV]':>9} {'simulator':>17}" + "".join(f" {n:>16}" for n in names))
        ref = src["simulator"]
        for i in range(len(e)):
            row = f"{e[i]:9.3f} {ref[q][i]:9.5f} ± {ref[q + '_err'][i]:.5f}"
            for n in names:
                row += f" {src[n][q][i]:9.5f} {cmp_[n][q + '_pull_sim'][i]:+6.1f}"
            print(row)


def parse_runs(
    items: list[str], families: list[str], quick: bool, particle: str
) -> dict[str, Path]:
    """Default run folders of ``families``, overridden or extended by ``FAMILY=PATH`` items."""
    folder = f"calo_surrogates{'_quick' if quick else ''}"
    base = Path(__file__).parent / "output" / folder / particle
    runs = {family: base / family for family in families}
    for item in items:
        family, sep, path = item.partition("=")
        if not sep or family not in registry.names():
            raise ValueError(f"--runs: expected FAMILY=PATH with FAMILY in "
                             f"{', '.join(registry.names())}, got {item!r}")  # fmt: skip
        runs[family] = Path(path)
    return runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="200 showers per energy, the quick runs")
    p.add_argument("--particle", choices=("photon", "pion"), default="photon")
    p.add_argument("--runs", nargs="+", default=[], metavar="FAMILY=PATH",
                   help="a family's trained run (default: calo_surrogates' output)")  # fmt: skip
    p.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES),
                   help="families looked for in the default run folders")  # fmt: skip
    p.add_argument("--showers", type=int, help="showers per energy (default 2,000; quick 200)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples")
    p.add_argument("--estimator", choices=("std", "iqr"), default="std",
                   help="width of E_dep/E_inc: standard deviation or IQR/1.349")  # fmt: skip
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, help="output folder")
    args = p.parse_args()
    if args.showers is not None and args.showers < 2:
        p.error(f"--showers needs at least 2 showers per energy, got {args.showers}")
    if args.bootstrap < 2:
        p.error(f"--bootstrap needs at least 2 resamples, got {args.bootstrap}")
    try:
        runs = parse_runs(args.runs, args.families, args.quick, args.particle)
    except ValueError as exc:
        p.error(str(exc))
    mode = "quick" if args.quick else "full"
    n = args.showers or SHOWERS[mode]
    suffix = "_quick" if args.quick else ""
    out = args.out or Path(__file__).parent / "output" / f"calo_resolution{suffix}" / args.particle
    out.mkdir(parents=True, exist_ok=True)
    energies = np.asarray(CHALLENGE_ENERGIES)
    e_gev = energies / 1e3

    reference = simulators.get("calorimeter", particle=args.particle)
    sources: dict[str, tuple[simulators.Simulator, Path | None]] = {"simulator": (reference, None)}
    sources.update(load_surrogates(runs, args.particle))

    terms = ["stochastic_term", "constant_term", "threshold_mev"]
    if args.particle == "pion":
        terms.insert(1, "hadronic_stochastic_term")
    results: dict[str, Any] = {
        "mode": mode,
        "particle": args.particle,
        "energies_mev": energies.tolist(),
        "showers_per_energy": n,
        "bootstrap": args.bootstrap,
        "estimator": args.estimator,
        "seed": args.seed,
        "simulator_config_terms": {k: reference.config[k] for k in terms},
        "sources": {},
        "comparisons": {},
    }
    for name, (sim, run) in sources.items():
        ratio, seconds = deposited_fractions(sim, energies, n, args.seed)
        rng = np.random.default_rng([args.seed, 1])
        r = bootstrap(ratio, e_gev, n_boot=args.bootstrap, rng=rng, estimator=args.estimator)
        r.update({"run_dir": None if run is None else str(run), "seconds": seconds,
                  "showers_per_s": ratio.size / seconds})  # fmt: skip
        results["sources"][name] = r
        print(f"{name}: {ratio.size:,} showers in {seconds:.1f} s ({ratio.size / seconds:.0f}/s); "
              f"a = {r['a']:.4f} ± {r['sigma_a']:.4f}, b = {r['b']:.4f} ± {r['sigma_b']:.4f}",
              flush=True)  # fmt: skip
        if name != "simulator":
            results["comparisons"][name] = compare(results["sources"]["simulator"], r)

    print_tables(results)
    results["provenance"] = provenance(modules=("torch", "zuko"))
    (out / "results.json").write_text(json.dumps(results, indent=1))
    fig = plot(results, out / "resolution.png")
    if not args.quick:
        # a subset of the families gets its own file beside the one of all of them
        part = "" if set(args.families) == set(FAMILIES) else "_" + "_".join(args.families)
        kept = results_dir("calo_resolution") / f"{args.particle}{part}.json"
        kept.write_text(json.dumps(results, indent=1))
    print(f"\nresults in {out / 'results.json'}, figure {fig}")


if __name__ == "__main__":
    main()
