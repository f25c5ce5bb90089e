"""Surrogate sampling speed against the calorimeter simulator: photon showers/s of the flow
(eager and fast path), the VAE and the GAN, and of the simulator at every incident energy.

One process, one torch thread (``torch.set_num_threads(1)``; the simulator is numpy), every rate
measured by :mod:`surrogates.speed` (warm-up, best of repeated calls; wall clock with the
process CPU-time rate beside it, the better estimate of an unloaded core on a shared machine),
through each model's :meth:`~surrogates.models.base.Surrogate.as_simulator` as a user samples.

* Surrogates: by default each family with its default photon-shower architecture (the flow
  with ``bench_flow.py``'s ``SHOWER_ARCH``), built on a small simulated photon file; untrained
  weights cost the same as trained ones. ``--run FAMILY=RUN_DIR`` loads a trained run instead.
  Showers/s at batch 1 and 100 (at 65.5 GeV) and 10,000 at the lowest and the three highest
  incident energies (a surrogate's cost does not depend on the energy). The flow's fast path
  (:meth:`~surrogates.models.Flow.fast_sampling`, bfloat16 conditioners) is compiled in an
  untimed warm-up; with ``--quick`` it is skipped on CPUs without bfloat16 matrix units, where
  it compiles for minutes and then runs slower than eager.
* Simulator: every one of the 15 dataset-1 energies (2⁸ to 2²² MeV), at batches of up to
  10,000 showers sized to about 2 s per call (fewer showers at high energy, where one costs
  ~5 ms).
* Whole spectrum: total showers / total time of generating a dataset-1 file whose 15 energies are
  equally frequent (:func:`surrogates.speed.spectrum_rate`); the surrogates' spectrum rates come
  from their batch-10,000 rates at the energies measured.
* Ratios surrogate / simulator at the three highest energies and over the spectrum, with the
  targets for the VAE and the GAN: >= 100x at the three highest energies, >= 30x over the
  spectrum.

Usage::

    python benchmarks/bench_surrogates.py [--quick] [--run flow=runs/flow --run vae=runs/vae]

Output: printed, and written to ``benchmarks/results/bench_surrogates/bench_surrogates.txt``
(``bench_surrogates_quick.txt`` with ``--quick``) with the provenance header.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import header, provenance, results_dir

import simulators
from surrogates.models import Flow, registry
from surrogates.speed import (
    Rate,
    cpu_has_bfloat16_units,
    format_energy,
    rates_by_condition,
    spectrum_rate,
)

#: the flow architecture bench_flow.py times: the default photon-shower flow (two-stage)
SHOWER_ARCH = {k: v for k, v in Flow.Arch.for_data("showers").to_dict().items() if k != "split"}
#: targets of the VAE and the GAN over the simulator (issue 23)
TARGET_TOP, TARGET_SPECTRUM = 100.0, 30.0
FAMILIES = ("flow", "vae", "gan")


def _models(runs: dict[str, str], quick: bool, tmp: Path) -> dict[str, object]:
    """The surrogates by family: loaded from ``runs`` or built untrained on a small file."""
    path = tmp / "photons.h5"
    if set(FAMILIES) - set(runs):
        sim = simulators.get("calorimeter", particle="photon")
        simulators.generate(sim, 300 if quick else 2000, path, seed=0, workers=1, progress=None)
    models = {}
    for fam in FAMILIES:
        cls = registry.get(fam)
        if fam in runs:
            models[fam] = cls.load(runs[fam], device="cpu")
        else:
            arch = SHOWER_ARCH if fam == "flow" else {}
            models[fam] = cls.for_dataset(path, device="cpu", seed=0, **arch)
    return models


def _time_surrogate(model, energies: list[float], big: int, quick: bool) -> dict[str, object]:
    """Showers/s at batch 1 and 100 (65.5 GeV), and at batch ``big`` per energy."""
    sur = model.as_simulator()
    mid = [np.full((1, 1), 65536.0)]
    small = {
        1: rates_by_condition(sur, mid, batch=1, reps=5 if quick else 20)[0],
        100: rates_by_condition(sur, mid, batch=100, reps=2 if quick else 5)[0],
    }
    rows = [np.full((1, 1), e) for e in energies]
    by_energy = rates_by_condition(sur, rows, batch=big, reps=1 if quick else 2)
    return {"small": small, "by_energy": dict(zip(energies, by_energy, strict=True))}


def _fmt(r: Rate) -> str:
    return f"{r.rows_per_s:10.1f} showers/s (CPU time: {r.cpu_rows_per_s:10.1f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a smoke run of about a minute")
    p.add_argument("--run", action="append", default=[], metavar="FAMILY=RUN_DIR",
                   help="time a trained run instead of an untrained default model")  # fmt: skip
    p.add_argument("--no-fast", action="store_true",
                   help="skip the flow's fast path (on CPUs without bfloat16 matrix units it "
                   "compiles for minutes and samples slower than eager)")  # fmt: skip
    args = p.parse_args(argv)
    runs = dict(r.split("=", 1) for r in args.run)
    if set(runs) - set(FAMILIES):
        p.error(f"--run takes one of {', '.join(FAMILIES)}=RUN_DIR")
    torch.set_num_threads(1)
    lines: list[str] = []

    def out(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    prov = provenance(None if argv is None else [__file__, *argv], ("torch", "zuko", "numpy"))
    out(header({**prov, "torch_threads": "1", "device": "cpu"}))
    sim = simulators.get("calorimeter", particle="photon")
    energies = [float(e) for e in sim.prior.values]
    timed = [energies[0], *energies[-3:]]
    big = 2000 if args.quick else 10_000
    fast = not args.no_fast and (not args.quick or cpu_has_bfloat16_units())

    with tempfile.TemporaryDirectory() as td:
        models = _models(runs, args.quick, Path(td))
    results: dict[str, dict] = {}
    for fam, model in models.items():
        origin = f"trained run {runs[fam]}" if fam in runs else "untrained, default architecture"
        if fam == "flow":
            model.fast_sampling(None)
            results["flow (eager)"] = _time_surrogate(model, timed, big, args.quick)
            if fast:
                model.fast_sampling("bfloat16")
                results["flow (fast, bfloat16)"] = _time_surrogate(model, timed, big, args.quick)
                model.fast_sampling(None)
            else:
                out(
                    f"flow (fast, bfloat16): skipped ({'--no-fast' if args.no_fast else '--quick'}"
                    f"; bfloat16 matrix units on this CPU: {cpu_has_bfloat16_units()})"
                )
        else:
            results[fam] = _time_surrogate(model, timed, big, args.quick)
        out(f"{fam}: {origin}, {model.arch}")

    # the simulator: fewer showers per call at high energy, where one shower costs ~5 ms
    sim_rates = rates_by_condition(
        sim, [np.full((1, 1), e) for e in energies], batch=None, threads=None,
        reps=1 if args.quick else 2, seconds_per_call=0.2 if args.quick else 2.0,
        max_rows=big,
    )  # fmt: skip
    sim_by_e = dict(zip(energies, sim_rates, strict=True))
    sim_spec = spectrum_rate([r.rows_per_s for r in sim_rates])
    sim_spec_cpu = spectrum_rate([r.cpu_rows_per_s for r in sim_rates])

    out(f"\n## showers/s, 1 thread (batch {big:,} per energy; batch 1 and 100 at 65.5 GeV)")
    for name, res in results.items():
        for b, r in res["small"].items():
            out(f"{name:<22} batch {b:>6}: {_fmt(r)}")
        for e, r in res["by_energy"].items():
            out(f"{name:<22} batch {big:>6} at {e:>9.0f} MeV: {_fmt(r)}")
        walls = [r.rows_per_s for r in res["by_energy"].values()]
        out(f"{name:<22} cost vs energy: slowest/fastest rate {min(walls) / max(walls):.2f} "
            "(flat: 1)")  # fmt: skip
    for e, r in sim_by_e.items():
        out(f"{'simulator':<22} batch {r.rows:>6} at {e:>9.0f} MeV: {_fmt(r)}")
    out(f"{'simulator':<22} whole spectrum (15 energies, equally frequent): "
        f"{sim_spec:.1f} showers/s (CPU time: {sim_spec_cpu:.1f})")  # fmt: skip

    out("\n## surrogate / simulator at the three highest energies and over the whole spectrum")
    top = energies[-3:]
    for name, res in results.items():
        by_e = res["by_energy"]
        wall = [by_e[e].rows_per_s / sim_by_e[e].rows_per_s for e in top]
        cpu = [by_e[e].cpu_rows_per_s / sim_by_e[e].cpu_rows_per_s for e in top]
        spec = spectrum_rate([r.rows_per_s for r in by_e.values()]) / sim_spec
        where = ", ".join(map(format_energy, top))
        text = (f"{name:<22} at {where}: " + ", ".join(f"{x:.1f}" for x in wall)
                + " (CPU time: " + ", ".join(f"{x:.1f}" for x in cpu)
                + f"); whole spectrum {spec:.1f}")  # fmt: skip
        if name in ("vae", "gan"):
            ok = min(wall) >= TARGET_TOP and spec >= TARGET_SPECTRUM
            verdict = "PASS" if ok else "SHORT"
            text += f"  [{verdict}: >= {TARGET_TOP:.0f}x top, >= {TARGET_SPECTRUM:.0f}x spectrum]"
        out(text)
    name = "bench_surrogates_quick.txt" if args.quick else "bench_surrogates.txt"
    path = results_dir("bench_surrogates") / name
    path.write_text("\n".join(lines) + "\n")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
