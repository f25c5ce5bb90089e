r"""Surrogates of N-body density slices conditioned on cosmology: the field GAN and VAE against
the particle-mesh simulator at held-out cosmologies.

The training set is ``datasets/nbody_lh_1k.toml`` (1,000 runs on Latin hypercubes in (Ω_m, σ_8);
each row is 4 projected 16 Mpc/h slices of one 256 Mpc/h box on a 64² grid); rows 0-719 train,
rows 720-799 validate (the model's monitor and its best weights), rows 800-999 are left to
``examples/cosmology_inference.py`` as its test set. For each family
the script

1. trains it (the convolutional backbones of :mod:`surrogates.models.backbones`, chosen by
   ``for_dataset`` for ``nbody`` data) with the shared trainer, timed;
2. simulates fresh boxes at six held-out cosmologies inside the prior (``COSMOLOGIES``; the
   simulator's runs are shared by the families) and samples the surrogate at the same θ;
3. compares them per cosmology: the mean power spectrum ratio surrogate/simulator over
   0.05 < k < 0.5 h/Mpc with the simulator's cosmic-variance band (the standard error of its
   mean spectrum), the response of the low-k amplitude to σ_8 (0.9 against 0.7 at Ω_m = 0.3)
   and to Ω_m (0.4 against 0.2 at σ_8 = 0.8), and the pixel-PDF and peak-height separation
   powers beside those of two halves of the simulator's own slices (their sampling noise);
4. times sampling against the simulator (slices/s, one thread; one run makes 4 slices).

**Augmentation.** 800 boxes are few for a generative model of 16,384 numbers, but the
statistics of a periodic box are invariant under its symmetries, and every image of a training
box under them is an equally likely box at the same θ. The script adds, per training row, images
under the 8 symmetries of the square (rotations and reflections of the slice plane, applied to
all slices together) with a random periodic shift of the plane, and a random symmetry of the
slab axis: the slabs start every quarter of the box, so a shift along it by a quarter cycles the
slices and a reflection reverses their order (then shifts by one slab).

Figures: ``power_ratio.png`` (ratio per cosmology and family, the simulator's band, ±10%),
``slices.png`` (simulator and surrogate slices side by side), ``pixel_peaks.png`` (pixel PDF
and peak counts at the central cosmology).

Usage::

    python examples/nbody_surrogates.py --quick           # tiny boxes, a few minutes
    python examples/nbody_surrogates.py                   # needs datasets/nbody_lh_1k.h5
    python examples/nbody_surrogates.py --families gan --steps gan=3000
    python examples/nbody_surrogates.py --families vae --threads 1 &   # two families side by
    python examples/nbody_surrogates.py --families gan --threads 1     # side on two cores
    python examples/nbody_surrogates.py --reuse                        # both in one figure

Results go to ``examples/output/nbody_surrogates[_quick]/results.json``; a full run also writes
``benchmarks/results/nbody_surrogates/<family>.json`` with the command, commit, machine and
versions (the README's row, through ``benchmarks/results/INDEX.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import simulators
from simulators.errors import UserError
from surrogates.metrics.fields import (
    find_peaks,
    pixel_pdf,
    power_spectra,
)
from surrogates.metrics.histograms import reference_bins, separation_power
from surrogates.models import registry
from surrogates.speed import best_rate, torch_threads

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import provenance, results_dir

ROOT = Path(__file__).resolve().parents[1]
#: held-out cosmologies (Ω_m, σ_8): a σ_8 sequence and an Ω_m sequence through (0.3, 0.8), and a
#: corner of the prior
COSMOLOGIES = ((0.3, 0.7), (0.3, 0.8), (0.3, 0.9), (0.2, 0.8), (0.4, 0.8), (0.45, 0.65))
SIGMA8_PAIR, OMEGA_PAIR, CENTRE = ((0, 2), (3, 4), 1)
K_RANGE = (0.05, 0.5)  # h/Mpc: where the power spectrum ratio is judged
LOW_K = (0.05, 0.15)  # h/Mpc: the low-k amplitude of the response checks
N_TRAIN = 800
#: the quick mode's boxes: 16³ particles in 64 Mpc/h, 4 slices of one 4 Mpc/h cell, 16² grid
QUICK_CONFIG = {"design": "latin_hypercube", "box_size": 64.0, "n_particles": 16,
                "mesh_factor": 2, "n_steps": 4, "a_start": 0.1, "redshifts": [0.0],
                "output": "slices", "n_slices": 4, "slice_thickness": 4.0,
                "transfer": "eh_nowiggle", "lpt_order": 2}  # fmt: skip
SETTINGS = {
    # WGAN-GP with the paper's five critic steps and the fields' noise per pixel; conv widths
    # sized for a CPU. Step budgets on one core of the 2-core machine: GAN ~20-45 min (2,500
    # steps left it without the low-k power and with a 0.41x sigma_8 response against 5,000
    # steps' 1.64x; the simulator's: 1.72x), VAE ~13 min
    "gan": {"arch": {"conv_widths": [16, 32, 64], "latent": 64},
            "train": {"max_steps": 5000, "batch_size": 32, "lr": 2e-4, "patience": None}},
    "vae": {"arch": {"conv_widths": [16, 32, 64], "latent": 64},
            "train": {"max_steps": 1500, "batch_size": 32, "lr": 1e-3, "patience": None}},
}  # fmt: skip
QUICK = {"conv_widths": [8, 16], "latent": 16, "max_steps": 150}


def augment(theta: np.ndarray, x: np.ndarray, copies: int, rng: np.random.Generator):
    """``copies`` images of every row (N, C, M, M) under symmetries of the periodic box.

    Copy j applies the j-th of the 8 symmetries of the square to the slice plane (all slices
    alike; copy 0 is the identity), then a random periodic shift of the plane, and a random
    symmetry of the slab axis: a cyclic shift of the C slices and, half the time, their
    reversal (the slabs are evenly spaced around the box). Copy 0 of each row is the row itself.
    """
    out_t, out_x = [theta], [x]
    n, c, m = x.shape[0], x.shape[1], x.shape[-1]
    for j in range(1, copies):
        y = np.rot90(x, j % 4, axes=(-2, -1))
        if (j // 4) % 2:
            y = y[..., ::-1]
        y = np.ascontiguousarray(y)
        shifts = rng.integers(0, m, size=(n, 2))
        order = (np.arange(c)[None, :] + rng.integers(0, c, size=(n, 1))) % c
        flip = rng.random(n) < 0.5
        order[flip] = order[flip, ::-1]
        for i in range(n):
            y[i] = np.roll(y[i][order[i]], tuple(shifts[i]), axis=(-2, -1))
        out_t.append(theta)
        out_x.append(y)
    return np.concatenate(out_t), np.concatenate(out_x)


def spectra(fields: np.ndarray, box: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k, the mean spectrum of all slices of rows (N, C, M, M), and its standard error from the
    scatter of the per-row means (a row's slices cut one box and are not independent)."""
    n, c = fields.shape[:2]
    k, p, _ = power_spectra(fields.reshape(n * c, *fields.shape[2:]), box)
    per_row = p.reshape(n, c, -1).mean(axis=1)
    return k, per_row.mean(axis=0), per_row.std(axis=0, ddof=1) / np.sqrt(n)


def low_k(k: np.ndarray, p: np.ndarray) -> float:
    sel = (k > LOW_K[0]) & (k < LOW_K[1])
    return float(p[sel].mean())


def compare(sim: list[np.ndarray], sur: list[np.ndarray], box: float) -> dict:
    """The numbers of the issue's acceptance list for one family; ``sim`` and ``sur`` hold the
    rows (N, C, M, M) at each of :data:`COSMOLOGIES`."""
    per, amp_sim, amp_sur = [], [], []
    for cosmo, a, b in zip(COSMOLOGIES, sim, sur, strict=True):
        k, pa, sa = spectra(a, box)
        _, pb, sb = spectra(b, box)
        sel = (k > K_RANGE[0]) & (k < K_RANGE[1])
        ratio = pb / pa
        half = len(a) // 2
        pix = reference_bins(a, 40, quantiles=(0.001, 0.999))
        peaks = [np.concatenate([f[find_peaks(f)] for f in s.reshape(-1, *s.shape[2:])])
                 for s in (a, b, a[:half], a[half:])]  # fmt: skip
        pbins = reference_bins(peaks[0], 40, quantiles=(0.001, 0.999))
        per.append({
            "omega_m": cosmo[0], "sigma_8": cosmo[1], "rows_simulator": len(a),
            "rows_surrogate": len(b), "k": k[sel].tolist(), "power_ratio": ratio[sel].tolist(),
            # the simulator's cosmic-variance band on the ratio, and the combined noise
            "simulator_band": (sa / pa)[sel].tolist(),
            "ratio_noise": (ratio * np.hypot(sa / pa, sb / pb))[sel].tolist(),
            "max_abs_ratio_deviation": float(np.max(np.abs(ratio[sel] - 1))),
            "pixel_pdf_separation": separation_power(a, b, pix),
            "pixel_pdf_separation_sim_halves": separation_power(a[:half], a[half:], pix),
            "peak_separation": separation_power(peaks[0], peaks[1], pbins),
            "peak_separation_sim_halves": separation_power(peaks[2], peaks[3], pbins),
            "peaks_per_slice_simulator": len(peaks[0]) / (a.shape[0] * a.shape[1]),
            "peaks_per_slice_surrogate": len(peaks[1]) / (b.shape[0] * b.shape[1]),
        })  # fmt: skip
        amp_sim.append(low_k(k, pa))
        amp_sur.append(low_k(k, pb))

    def response(pair: tuple[int, int]) -> dict:
        r_sim = amp_sim[pair[1]] / amp_sim[pair[0]]
        r_sur = amp_sur[pair[1]] / amp_sur[pair[0]]
        return {"simulator": r_sim, "surrogate": r_sur, "relative_difference": r_sur / r_sim - 1}

    worst = max(p["max_abs_ratio_deviation"] for p in per)
    return {
        "per_cosmology": per,
        "max_abs_power_ratio_deviation": worst,
        "power_within_10_percent": worst <= 0.10,
        "sigma8_response": response(SIGMA8_PAIR),
        "omega_m_response": response(OMEGA_PAIR),
    }


def simulate_test(sim, runs: int, path: Path, workers: int) -> tuple[np.ndarray, float]:
    """``runs`` boxes at each held-out cosmology (shared by the families); CPU seconds per run."""
    theta = np.repeat(np.asarray(COSMOLOGIES, dtype=np.float64), runs, axis=0)
    if not path.exists():
        t0 = time.perf_counter()
        simulators.generate(sim, len(theta), path, seed=11, theta=theta, workers=workers,
                            progress=None)  # fmt: skip
        print(f"    {len(theta)} runs in {time.perf_counter() - t0:.0f} s", flush=True)
    with simulators.open_dataset(path) as d:
        if d.meta["simulator_config"] != sim.config or len(d) != len(theta):
            raise UserError(f"{path} was simulated for other data; remove it to simulate anew")
        return d.x[:]


def speed(model, sim, theta: np.ndarray, slices: int) -> dict:
    """Slices per second, one thread: the surrogate at batch 64 (best of 3), the simulator one
    run at a time (best of 2)."""
    g = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    t = np.repeat(theta[:1], 64, axis=0)
    with torch_threads(1):
        model.sample(t[:8], generator=g)  # warm-up
        sur = best_rate(lambda: model.sample(t, generator=g), 64 * slices, 3)
        sim.simulate(theta[:1], rng)
        ref = best_rate(lambda: sim.simulate(theta[:1], rng), slices, 2)
    return {"surrogate_slices_per_s": sur.rows_per_s, "simulator_slices_per_s": ref.rows_per_s,
            "surrogate_cpu_slices_per_s": sur.cpu_rows_per_s,
            "simulator_cpu_slices_per_s": ref.cpu_rows_per_s,
            "speedup": sur.rows_per_s / ref.rows_per_s, "threads": 1, "batch_rows": 64}  # fmt: skip


def plot_ratios(results: dict, path: Path) -> None:
    fams = list(results)
    fig, axes = plt.subplots(1, len(COSMOLOGIES), figsize=(3.0 * len(COSMOLOGIES), 3.2),
                             sharey=True, squeeze=False)  # fmt: skip
    for i, (ax, cosmo) in enumerate(zip(axes[0], COSMOLOGIES, strict=True)):
        for j, fam in enumerate(fams):
            p = results[fam]["per_cosmology"][i]
            k, r = np.asarray(p["k"]), np.asarray(p["power_ratio"])
            if j == 0:
                band = np.asarray(p["simulator_band"])
                ax.fill_between(k, 1 - band, 1 + band, color="0.85", label="simulator ±1 s.e.")
            ax.plot(k, r, marker="o", ms=3, label=fam.upper())
        for y in (0.9, 1.1):
            ax.axhline(y, color="k", ls=":", lw=0.8)
        ax.axhline(1, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_xticks([0.05, 0.1, 0.2, 0.5], ["0.05", "0.1", "0.2", "0.5"])
        ax.minorticks_off()
        ax.set_title(f"Ω_m={cosmo[0]}, σ_8={cosmo[1]}", fontsize=9)
        ax.set_xlabel("k [h/Mpc]")
    axes[0, 0].set_ylabel("P_surrogate / P_simulator")
    ratios = [r for f in fams for p in results[f]["per_cosmology"] for r in p["power_ratio"]]
    axes[0, 0].set_yscale("log")  # a surrogate may be off by factors, not percent
    axes[0, 0].set_ylim(min(0.8, 0.9 * min(ratios)), max(1.25, 1.1 * max(ratios)))
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_slices(sim: list[np.ndarray], samples: dict, path: Path) -> None:
    show = (0, CENTRE, 2, 5)
    rows = ["simulator", *samples]
    fig, axes = plt.subplots(len(rows), len(show), figsize=(2.4 * len(show), 2.4 * len(rows)),
                             squeeze=False)  # fmt: skip
    for j, i in enumerate(show):
        ref = np.log10(2 + sim[i][0, 0])
        lo, hi = np.percentile(ref, (1, 99))
        for r, name in enumerate(rows):
            img = (
                ref
                if name == "simulator"
                else np.log10(2 + np.clip(samples[name][i][0, 0], -1.99, None))
            )
            axes[r, j].imshow(img, vmin=lo, vmax=hi, cmap="magma")
            axes[r, j].set_xticks([])
            axes[r, j].set_yticks([])
            if r == 0:
                axes[r, j].set_title(f"Ω_m={COSMOLOGIES[i][0]}, σ_8={COSMOLOGIES[i][1]}",
                                     fontsize=9)  # fmt: skip
            if j == 0:
                axes[r, j].set_ylabel(name if name == "simulator" else name.upper())
    fig.suptitle("log10(2 + δ), one slice; same colour scale per column", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_pixel_peaks(sim: np.ndarray, samples: dict, path: Path) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    bins = reference_bins(sim, 50, quantiles=(0.001, 0.999))
    mid = 0.5 * (bins[1:] + bins[:-1])
    peak_sim = np.concatenate([f[find_peaks(f)] for f in sim.reshape(-1, *sim.shape[2:])])
    pbins = reference_bins(peak_sim, 30, quantiles=(0.001, 0.999))
    pmid = 0.5 * (pbins[1:] + pbins[:-1])
    n_sim = sim.shape[0] * sim.shape[1]
    a.plot(mid, pixel_pdf(sim, bins), "k-", label="simulator")
    b.plot(pmid, np.histogram(peak_sim, pbins)[0] / n_sim, "k-", label="simulator")
    for name, s in samples.items():
        a.plot(mid, pixel_pdf(s, bins), label=name.upper())
        pk = np.concatenate([f[find_peaks(f)] for f in s.reshape(-1, *s.shape[2:])])
        b.plot(pmid, np.histogram(pk, pbins)[0] / (s.shape[0] * s.shape[1]), label=name.upper())
    a.set(yscale="log", xlabel="δ (slice)", ylabel="density", title="pixel PDF")
    b.set(xlabel="peak height δ", ylabel="peaks per slice", title="peak counts")
    a.legend(fontsize=8)
    fig.suptitle(f"Ω_m={COSMOLOGIES[CENTRE][0]}, σ_8={COSMOLOGIES[CENTRE][1]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pairs(items: list[str], what: str, p: argparse.ArgumentParser) -> dict[str, str]:
    out = {}
    for item in items:
        family, sep, value = item.partition("=" if what == "steps" else ":")
        if family not in SETTINGS or not sep or not value:
            p.error(f"--{what} takes FAMILY{'=N' if what == 'steps' else ':KEY=VALUE'} with "
                    f"FAMILY one of {', '.join(SETTINGS)}, got {item!r}")  # fmt: skip
        if what == "steps" and not value.isdigit():
            p.error(f"--steps takes FAMILY=N with N a whole number, got {item!r}")
        out.setdefault(family, []).append(value)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="16² slices of tiny boxes, short training")
    p.add_argument("--data", type=Path, default=ROOT / "datasets" / "nbody_lh_1k.h5",
                   help="the training file (full mode; rows 0-799 are used)")  # fmt: skip
    p.add_argument("--families", nargs="+", choices=sorted(SETTINGS), default=sorted(SETTINGS))
    p.add_argument("--steps", nargs="+", default=[], metavar="FAMILY=N")
    p.add_argument("--arch", nargs="+", default=[], metavar="FAMILY:KEY=VALUE")
    p.add_argument("--augment", type=int, default=16, help="images per training row (1: none)")
    p.add_argument("--test-runs", type=int, help="simulator runs per held-out cosmology")
    p.add_argument("--reuse", action="store_true", help="evaluate the runs already in --out")
    p.add_argument("--out", type=Path, help="output folder")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=2, help="simulation processes")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            p.error("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    steps = {f: int(v[-1]) for f, v in _pairs(args.steps, "steps", p).items()}
    arch_items = _pairs(args.arch, "arch", p)
    if args.augment < 1 or (args.test_runs is not None and args.test_runs < 2):
        p.error("--augment must be at least 1 and --test-runs at least 2")
    try:
        archs = {f: registry.get(f).Arch.parse(arch_items.get(f, [])) for f in args.families}
    except UserError as exc:
        p.error(str(exc))
    suffix = "_quick" if args.quick else ""
    out = args.out or ROOT / "examples" / "output" / f"nbody_surrogates{suffix}"
    out.mkdir(parents=True, exist_ok=True)

    if args.quick:
        sim = simulators.get("nbody", **QUICK_CONFIG)
        data = out / "train_quick.h5"
        if not data.exists():
            simulators.generate(sim, 120, data, seed=4, chunk_size=40, workers=args.workers)
        n_train, runs = 120, args.test_runs or 6
    else:
        if not args.data.exists():
            p.error(f"{args.data} not found: run `surrogates simulate --recipe "
                    f"datasets/nbody_lh_1k.toml --workers 2` first (~30 min)")  # fmt: skip
        data, n_train, runs = args.data, N_TRAIN, args.test_runs or 24
    with simulators.open_dataset(data) as d:
        if d.meta["simulator"] != "nbody" or len(d.x.shape) != 4:
            p.error(f"{data} holds {d.meta['simulator']} rows of shape {d.x.shape[1:]}; "
                    "this script needs nbody slices (C, M, M)")  # fmt: skip
        meta = dict(d.meta)
        config = meta["simulator_config"]
        theta, x = d.theta[:n_train], d.x[:n_train]
    sim = simulators.get("nbody", **config)
    box = float(config["box_size"])
    print(f"==> held-out cosmologies: {runs} simulator runs at each of {len(COSMOLOGIES)}",
          flush=True)  # fmt: skip
    test = simulate_test(sim, runs, out / f"test_{runs}.h5", args.workers)
    sim_rows = np.split(test, len(COSMOLOGIES))
    rng = np.random.default_rng(0)
    # the last tenth validates, unaugmented: no image of a training box among them
    n_val = len(theta) // 10
    val = (theta[-n_val:], x[-n_val:])
    theta_aug, x_aug = augment(theta[:-n_val], x[:-n_val], args.augment, rng)
    print(f"==> training rows: {len(theta) - n_val} boxes x {args.augment} symmetry images; "
          f"{n_val} boxes validate", flush=True)  # fmt: skip

    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"models": {}}
    samples = {}
    for family in args.families:
        cls = registry.get(family)
        arch = {**SETTINGS[family]["arch"], **archs[family]}
        cfg = dict(SETTINGS[family]["train"])
        if args.quick:
            arch.update(conv_widths=QUICK["conv_widths"], latent=QUICK["latent"])
            cfg["max_steps"] = QUICK["max_steps"]
        cfg["max_steps"] = steps.get(family, cfg["max_steps"])
        cfg["max_epochs"] = 10**6  # the step budget ends the run
        run = out / family / "run"
        print(f"==> {family}: {json.dumps(arch)} {json.dumps(cfg)}", flush=True)
        if args.reuse:
            model = cls.load(run, device=args.device)
            info = {k: v for k, v in results["models"].get(family, {}).items()
                    if k in ("train_seconds", "train_cpu_seconds", "steps")}  # fmt: skip
        else:
            t0, c0 = time.perf_counter(), time.process_time()
            model = cls.for_dataset((theta, x), meta=meta, device=args.device, **arch)
            model.fit((theta_aug, x_aug), val, run_dir=run, verbose=True, **cfg)
            info = {"train_seconds": time.perf_counter() - t0, "steps": model.result.steps,
                    "train_cpu_seconds": time.process_time() - c0}  # fmt: skip
        g = torch.Generator().manual_seed(1)
        t0 = time.perf_counter()
        per = max(runs, 64)
        sur_rows = [model.sample(np.repeat([c], per, axis=0), generator=g) for c in COSMOLOGIES]
        sur_rows = [np.asarray(s.cpu() if hasattr(s, "cpu") else s, dtype=np.float64)
                    for s in sur_rows]  # fmt: skip
        info["sample_seconds"] = time.perf_counter() - t0
        samples[family] = sur_rows
        info.update(compare(sim_rows, sur_rows, box))
        info["speed"] = speed(model, sim, np.asarray(COSMOLOGIES[CENTRE])[None], x.shape[1])
        info.update({"arch": model.arch, "train": cfg, "augment": args.augment})
        # re-read: families may train in separate processes side by side
        if results_path.exists():
            results = json.loads(results_path.read_text())
        results["models"][family] = info
        results.update({"mode": "quick" if args.quick else "full", "data": str(data),
                        "n_train_rows": int(n_train), "test_runs_per_cosmology": runs,
                        "cosmologies": COSMOLOGIES, "k_range": K_RANGE, "low_k": LOW_K,
                        "provenance": provenance(modules=("torch", "zuko", "numpy"))})  # fmt: skip
        results_path.write_text(json.dumps(results, indent=1))
        if not args.quick:  # the default folder's runs are the README's; others get a prefix
            name = f"{family}.json" if args.out is None else f"{out.name}_{family}.json"
            kept = results_dir("nbody_surrogates") / name
            kept.write_text(json.dumps({**results, "models": {family: info}}, indent=1))
        s8, om, sp = info["sigma8_response"], info["omega_m_response"], info["speed"]
        print(f"{family}: max |P ratio - 1| over {K_RANGE[0]} < k < {K_RANGE[1]}: "
              f"{info['max_abs_power_ratio_deviation']:.3f} (target 0.10); σ_8 response "
              f"{s8['surrogate']:.3f} vs {s8['simulator']:.3f} ({s8['relative_difference']:+.1%}); "
              f"Ω_m response {om['surrogate']:.3f} vs {om['simulator']:.3f} "
              f"({om['relative_difference']:+.1%}); {sp['speedup']:.0f}x the simulator "
              f"({sp['surrogate_slices_per_s']:.0f} vs {sp['simulator_slices_per_s']:.2f} "
              f"slices/s); trained in {info.get('train_seconds', float('nan')):.0f} s",
              flush=True)  # fmt: skip

    done = {f: results["models"][f] for f in args.families}
    plot_ratios(done, out / "power_ratio.png")
    plot_slices(sim_rows, samples, out / "slices.png")
    plot_pixel_peaks(sim_rows[CENTRE], {f: s[CENTRE] for f, s in samples.items()},
                     out / "pixel_peaks.png")  # fmt: skip
    print(f"\n{'family':<6} {'max|ΔP/P|':>10} {'σ8 resp.':>9} {'pixel sep (noise)':>18} "
          f"{'peak sep (noise)':>17} {'speed-up':>9} {'train s':>8}")  # fmt: skip
    for family, info in done.items():
        c = info["per_cosmology"][CENTRE]
        print(
            f"{family:<6} {info['max_abs_power_ratio_deviation']:>10.3f} "
            f"{info['sigma8_response']['relative_difference']:>+9.1%} "
            f"{c['pixel_pdf_separation']:>9.4f} ({c['pixel_pdf_separation_sim_halves']:.4f}) "
            f"{c['peak_separation']:>8.4f} ({c['peak_separation_sim_halves']:.4f}) "
            f"{info['speed']['speedup']:>9.0f} {info.get('train_seconds', float('nan')):>8.0f}"
        )
    print(f"figures and results in {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
