"""Flow speed: training overhead vs bare zuko, and sampling showers/s vs the calorimeter simulator.

1. Training steps/s of :class:`surrogates.models.Flow` through the shared trainer against a bare
   ``zuko`` NSF of the same architecture trained by a minimal loop on pre-standardized tensors, in
   one process, alternating repetitions and keeping each side's best; prints the overhead ratio
   (bare / Flow steps per second; target ≤ 1.10).
2. Sampling showers/s of a photon-shower flow at batch sizes 1, 100 and 10,000 against the
   calorimeter simulator's showers/s at each incident energy of the dataset-1 spectrum and over the
   whole spectrum (its mean time per shower), printing the ratios.

Usage::

    python benchmarks/bench_flow.py [--quick] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
import zuko

import simulators
from surrogates.models import Flow
from surrogates.training import ArrayBatches, Trainer


def _arch(quick: bool) -> dict:
    return {"kind": "coupling", "transforms": 5, "hidden": [128, 128], "bins": 8}


def training_overhead(steps: int, reps: int, device: str) -> dict:
    rng = np.random.default_rng(0)
    n, d, p = 256 * steps, 10, 3
    theta = rng.uniform(-1, 1, (n, p)).astype(np.float32)
    x = (np.tanh(theta @ rng.normal(size=(p, d))) + 0.3 * rng.standard_normal((n, d))).astype(
        np.float32
    )
    arch = _arch(False)
    best_flow = best_bare = 0.0
    for _ in range(reps):
        # Flow through the trainer (preprocessing, embedding-free conditioning, tracking, clipping)
        model = Flow.for_dataset((theta, x), device=device, **arch)
        batches = ArrayBatches(torch.from_numpy(theta), torch.from_numpy(x), batch_size=256)
        trainer = Trainer(model.net, max_steps=steps, schedule="none", progress=False,
                          device=device,                          patience=None)  # fmt: skip
        t0 = time.perf_counter()
        trainer.fit(batches)
        best_flow = max(best_flow, steps / (time.perf_counter() - t0))
        # bare zuko: same architecture, standardized tensors, Adam, clipping, loss.item()
        xs = torch.from_numpy((x - x.mean(0)) / x.std(0)).to(device)
        ts = torch.from_numpy((theta - theta.mean(0)) / theta.std(0)).to(device)
        flow = zuko.flows.NSF(d, p, bins=8, transforms=5, passes=2, hidden_features=(128, 128)).to(
            device
        )
        opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        for _ in range(steps):
            i = torch.randint(0, n, (256,), generator=g).to(device)
            loss = -flow(ts[i]).log_prob(xs[i]).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(flow.parameters(), 5.0)
            opt.step()
            loss.item()
        best_bare = max(best_bare, steps / (time.perf_counter() - t0))
    return {"flow_steps_per_s": best_flow, "bare_zuko_steps_per_s": best_bare,
            "overhead_ratio": best_bare / best_flow}  # fmt: skip


def sampling(quick: bool, device: str) -> dict:
    sim = simulators.get("calorimeter", particle="photon")
    rng = np.random.default_rng(0)
    e_fit, x_fit = sim.sample_joint(300 if quick else 2000, rng)
    arch = {"kind": "coupling", "transforms": 6, "hidden": [256, 256], "embedding": [64, 64]}
    model = Flow.for_dataset((e_fit, x_fit), device=device, **arch)
    g = torch.Generator().manual_seed(0)
    flow_rate = {}
    for batch, reps in ((1, 20), (100, 5), (10_000, 1 if quick else 2)):
        e = np.full((batch, 1), 65536.0)
        model.sample(e[:1], generator=g)  # warm-up
        t0 = time.perf_counter()
        for _ in range(reps):
            model.sample(e, generator=g)
        flow_rate[batch] = batch * reps / (time.perf_counter() - t0)
    per_energy = {}
    energies = sim.prior.values
    for energy in energies:
        n, t = 0, 0.0
        while t < (0.3 if quick else 2.0) and n < 5000:
            m = max(2, n)
            t0 = time.perf_counter()
            sim.simulate(np.full((m, 1), energy), rng)
            t += time.perf_counter() - t0
            n += m
        per_energy[float(energy)] = n / t
    # whole spectrum: showers are drawn uniformly over the discrete energies
    spectrum = 1.0 / np.mean([1.0 / r for r in per_energy.values()])
    big = flow_rate[10_000]
    return {
        "flow_showers_per_s": flow_rate,
        "simulator_showers_per_s": per_energy,
        "ratio_per_energy_at_batch_10000": {e: big / r for e, r in per_energy.items()},
        "ratio_top3_energies": [big / per_energy[float(e)] for e in energies[-3:]],
        "simulator_spectrum_showers_per_s": spectrum,
        "ratio_whole_spectrum": big / spectrum,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"zuko {zuko.__version__}, threads {torch.get_num_threads()}, device {args.device}"
    )
    tr = training_overhead(30 if args.quick else 200, 2 if args.quick else 3, args.device)
    print(
        f"training: Flow {tr['flow_steps_per_s']:.1f} steps/s, bare zuko "
        f"{tr['bare_zuko_steps_per_s']:.1f} steps/s, overhead ratio {tr['overhead_ratio']:.3f}"
    )
    sa = sampling(args.quick, args.device)
    for b, r in sa["flow_showers_per_s"].items():
        print(f"flow sampling, batch {b:>6}: {r:10.1f} showers/s")
    for e, r in sa["simulator_showers_per_s"].items():
        ratio = sa["ratio_per_energy_at_batch_10000"][e]
        print(f"simulator at {e:>10.0f} MeV: {r:10.1f} showers/s; flow/simulator {ratio:8.2f}")
    print("flow/simulator at the 3 highest energies: "
          + ", ".join(f"{r:.1f}" for r in sa["ratio_top3_energies"]))  # fmt: skip
    print(f"whole spectrum: simulator {sa['simulator_spectrum_showers_per_s']:.1f} showers/s, "
          f"flow/simulator {sa['ratio_whole_spectrum']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
