"""Flow speed: training overhead vs bare zuko, and sampling showers/s vs the calorimeter simulator.

1. Training steps/s of :class:`surrogates.models.Flow` (default coupling architecture) through the
   shared trainer against bare ``zuko`` -- a ``zuko.flows.NICE`` coupling flow with zuko's
   rational-quadratic splines and the same widths, trained by a minimal loop on pre-standardized
   tensors -- in one process, alternating repetitions and keeping each side's best; prints the
   overhead ratio (bare / Flow steps per second; target <= 1.10).
2. Sampling showers/s of the default photon-shower flow (two-stage: the 5 layer energies by an
   autoregressive flow, then the 368 normalized voxels by a coupling flow; 6 transforms per stage,
   conditioners [256, 256], 8 bins, embedding [64, 64]; the shower preprocessing a dataset file
   of the simulator gets; untrained, which costs the same as trained), eager and on the fast path
   (:meth:`Flow.fast_sampling`: compiled spline inverses, conditioners in bfloat16 -- or float32,
   timed beside it), at batch sizes 1, 100 and 10,000, the last at the lowest and the three
   highest incident energies (the flow's cost must not depend on the energy), against the
   calorimeter simulator's showers/s at every incident energy of the dataset-1 spectrum and over
   the whole spectrum, printing the ratios. The fast path's compilation happens in an untimed
   warm-up. The single coupling flow of the same widths is timed beside them.
   Peers at the same architecture: bare zuko's NICE spline coupling flow, and zuko's
   ``NSF(passes=2)`` (the implementation this flow replaced; timed at batch 1,000 unless
   ``--quick``).

Every timing is single-threaded (``torch.set_num_threads(1)``; the simulator is numpy) and reported
as wall-clock rate with the process CPU-time rate beside it: on a shared machine the CPU-time rate
is the better estimate of an unloaded core. Best of the repetitions.

3. ``--run RUN_DIR --data F.h5``: a trained flow (e.g. the demo's ``runs/demo/flow`` and
   ``runs/demo/test.h5``) timed as the evaluation report times it -- its bulk sampling path
   (:func:`surrogates.speed.bulk_sampling_path`), batch :data:`surrogates.report.SPEED_BATCH`,
   one thread -- at every incident energy of the file, against the simulator timed by this
   script's own loop; prints the per-energy speed-ups to set beside the report's. Only this part
   runs.

Usage::

    python benchmarks/bench_flow.py [--quick] [--device cpu|cuda] [--training-only]
    python benchmarks/bench_flow.py --run runs/demo/flow --data runs/demo/test.h5 [--reps 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
import zuko
from _common import header, provenance
from zuko.transforms import MonotonicRQSTransform

import simulators
from surrogates.models import Flow
from surrogates.speed import best_rate
from surrogates.training import ArrayBatches, Trainer

#: the photon-shower architecture of the sampling target (373 features for dataset 1): the
#: default, a two-stage flow; the single coupling flow of the same widths is timed beside it
SHOWER_ARCH = {k: v for k, v in Flow.Arch.for_data("showers").to_dict().items() if k != "split"}


def _best_rate(fn: Callable[[], object], rows: int, reps: int) -> tuple[float, float]:
    """Best (wall, CPU-time) rows per second of ``reps`` calls of ``fn``
    (:func:`surrogates.speed.best_rate`, which the evaluation report uses too)."""
    rate = best_rate(fn, rows, reps)
    return rate.rows_per_s, rate.cpu_rows_per_s


def _bare_coupling(features: int, context: int, arch: dict) -> zuko.flows.Flow:
    """zuko's own spline coupling flow (NICE with RQS transforms) of the same widths."""
    return zuko.flows.NICE(
        features,
        context,
        transforms=arch["transforms"],
        univariate=partial(MonotonicRQSTransform, slope=1e-3),
        shapes=[(arch["bins"],), (arch["bins"],), (arch["bins"] - 1,)],
        hidden_features=tuple(arch["hidden"]),
    )


def training_overhead(steps: int, reps: int, device: str) -> dict:
    rng = np.random.default_rng(0)
    n, d, p = 256 * steps, 10, 3
    theta = rng.uniform(-1, 1, (n, p)).astype(np.float32)
    x = (np.tanh(theta @ rng.normal(size=(p, d))) + 0.3 * rng.standard_normal((n, d))).astype(
        np.float32
    )
    best_flow = best_bare = 0.0
    for _ in range(reps):
        # Flow through the trainer (preprocessing, embedding-free conditioning, tracking, clipping)
        model = Flow.for_dataset((theta, x), device=device)
        batches = ArrayBatches(torch.from_numpy(theta), torch.from_numpy(x), batch_size=256)
        trainer = Trainer(model.net, max_steps=steps, schedule="none", progress=False,
                          device=device, patience=None)  # fmt: skip
        t0 = time.perf_counter()
        trainer.fit(batches)
        best_flow = max(best_flow, steps / (time.perf_counter() - t0))
        # bare zuko: same architecture, standardized tensors, Adam, clipping, loss.item()
        xs = torch.from_numpy((x - x.mean(0)) / x.std(0)).to(device)
        ts = torch.from_numpy((theta - theta.mean(0)) / theta.std(0)).to(device)
        flow = _bare_coupling(d, p, model.arch).to(device)
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
    return {"arch": model.arch, "flow_steps_per_s": best_flow, "bare_zuko_steps_per_s": best_bare,
            "overhead_ratio": best_bare / best_flow}  # fmt: skip


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _flow_rates(
    model: Flow, energies: list[float], batches: tuple[int, ...], quick: bool, device: str
) -> tuple[dict, dict]:
    """Showers/s at the given batch sizes (65.5 GeV), and at batch 10,000 at the lowest and the
    three highest energies."""
    g = torch.Generator().manual_seed(0)

    def draw(e: np.ndarray) -> None:
        model.sample(e, generator=g)
        _sync(device)

    draw(np.full((2000, 1), energies[0]))  # warm-up: compilation, and the first allocations
    flow_rate: dict = {}
    for batch, reps in ((1, 20), (100, 5)):
        if batch in batches:
            e = np.full((batch, 1), 65536.0)
            draw(e[:1])
            flow_rate[batch] = _best_rate(partial(draw, e), batch, reps)
    flow_by_energy = {}
    draw(np.full((10_000, 1), energies[0]))
    for energy in [energies[0], *energies[-3:]]:
        e = np.full((10_000, 1), energy)
        flow_by_energy[energy] = _best_rate(partial(draw, e), 10_000, 1 if quick else 2)
    flow_rate[10_000] = max(flow_by_energy.values())
    return flow_rate, flow_by_energy


def _simulator_rates(sim, energies: list[float], rng, seconds: float) -> dict:
    """(wall, CPU-time) showers/s per energy: calls of doubling size until ``seconds`` are spent
    (at most 5,000 showers)."""
    per_energy = {}
    for energy in energies:
        n, t, tc = 0, 0.0, 0.0
        while t < seconds and n < 5000:
            m = max(2, n)
            w0, c0 = time.perf_counter(), time.process_time()
            sim.simulate(np.full((m, 1), energy), rng)
            t += time.perf_counter() - w0
            tc += time.process_time() - c0
            n += m
        per_energy[energy] = (n / t, n / tc)
    return per_energy


def trained_run(run: str, data: str, reps: int) -> None:
    """Per-energy speed-ups of a trained flow at the report's batch, path and thread count."""
    from surrogates.report import SPEED_BATCH
    from surrogates.speed import bulk_sampling_path, format_energy

    ds = simulators.open_dataset(data)
    sim = simulators.get(ds.meta["simulator"], **ds.meta["simulator_config"])
    energies = sorted({float(e) for e in np.asarray(ds.theta[:]).ravel()})
    model = Flow.load(run, device="cpu")
    path = bulk_sampling_path(model)
    print(f"trained flow {run} on {data}: {path}; batch {SPEED_BATCH}, 1 thread, best of {reps}")
    g = torch.Generator().manual_seed(0)
    model.sample(np.full((SPEED_BATCH, 1), energies[0]), generator=g)  # warm-up
    rng = np.random.default_rng(0)
    sim.simulate(np.full((100, 1), energies[0]), rng)
    sim_rates = _simulator_rates(sim, energies, rng, 2.0)
    for e in energies:
        theta = np.full((SPEED_BATCH, 1), e)
        flow = _best_rate(lambda t=theta: model.sample(t, generator=g), SPEED_BATCH, reps)
        ratio, cpu_ratio = flow[0] / sim_rates[e][0], flow[1] / sim_rates[e][1]
        print(
            f"{format_energy(e):>10}: simulator {_fmt(sim_rates[e])}; flow {_fmt(flow)}; "
            f"speed-up {ratio:.3f} (CPU time {cpu_ratio:.3f})"
        )


def sampling(quick: bool, device: str) -> dict:
    sim = simulators.get("calorimeter", particle="photon")
    rng = np.random.default_rng(0)
    e_fit, x_fit = sim.sample_joint(300 if quick else 2000, rng)
    # the shower preprocessing a dataset file of this simulator gets (373 features, split 5)
    meta = {"simulator": "calorimeter", "simulator_config": {"particle": "photon"}}
    shower = partial(Flow.for_dataset, (e_fit, x_fit), device=device)
    model = shower(preprocessing=Flow.default_preprocessing(meta, x_fit), **SHOWER_ARCH)
    features, energies = model.pre.features, [float(e) for e in sim.prior.values]
    g = torch.Generator().manual_seed(0)

    modes = {"eager": None, "fast, bfloat16 conditioners": "bfloat16",
             "fast, float32 conditioners": "float32"}  # fmt: skip
    rates = {}
    for name, precision in modes.items():
        model.fast_sampling(precision)
        batches = (1, 100) if precision != "float32" else ()
        rates[name] = _flow_rates(model, energies, batches, quick, device)
    model.fast_sampling(None)
    single = shower(
        preprocessing=Flow.default_preprocessing(meta, x_fit), **{**SHOWER_ARCH, "kind": "coupling"}
    )
    e = np.full((10_000, 1), energies[-1])
    single.sample(e[:1000], generator=g)
    coupling_rate = _best_rate(
        lambda: (single.sample(e, generator=g), _sync(device)), 10_000, 1 if quick else 2
    )

    # peers of the same architecture on the bare flow (no embedding, preprocessing or I/O)
    ctx = model.pre.context
    peers: dict = {}
    with torch.no_grad():
        bare = _bare_coupling(features, ctx, SHOWER_ARCH).to(device)
        c, z = torch.randn(10_000, ctx, device=device), torch.randn(10_000, features, device=device)
        peers["bare zuko NICE-RQS coupling, batch 10000"] = _best_rate(
            lambda: (bare(c).transform.inv(z), _sync(device)), 10_000, 1 if quick else 2
        )
        if not quick:
            nsf = zuko.flows.NSF(features, ctx, bins=8, transforms=6, passes=2,
                                 hidden_features=(256, 256)).to(device)  # fmt: skip
            peers["zuko NSF(passes=2) (previous Flow), batch 1000"] = _best_rate(
                lambda: (nsf(c[:1000]).transform.inv(z[:1000]), _sync(device)), 1000, 1
            )

    per_energy = _simulator_rates(sim, energies, rng, 0.3 if quick else 2.0)
    # whole spectrum: showers are drawn uniformly over the discrete energies
    spectrum = tuple(1.0 / np.mean([1.0 / r[i] for r in per_energy.values()]) for i in (0, 1))
    return {
        "features": features,
        "flow_showers_per_s": {k: v[0] for k, v in rates.items()},
        "flow_showers_per_s_by_energy_at_batch_10000": {k: v[1] for k, v in rates.items()},
        "single_coupling_flow_showers_per_s_at_batch_10000": coupling_rate,
        "peers_showers_per_s": peers,
        "simulator_showers_per_s": per_energy,
        "simulator_spectrum_showers_per_s": spectrum,
        "energies": energies,
    }


def _fmt(rate: tuple[float, float]) -> str:
    return f"{rate[0]:9.1f} showers/s (CPU time: {rate[1]:9.1f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--training-only", action="store_true",
                   help="only the training overhead against bare zuko (minutes)")  # fmt: skip
    p.add_argument("--run", help="a trained flow's run folder: time it as the report does")
    p.add_argument("--data", help="with --run: a dataset file whose incident energies are timed")
    p.add_argument("--reps", type=int, default=3, help="with --run: timed calls per energy")
    args = p.parse_args()
    if bool(args.run) != bool(args.data):
        p.error("--run and --data go together")
    torch.set_num_threads(1)
    prov = provenance(modules=("torch", "zuko", "numpy"))
    print(header({**prov, "torch_threads": "1", "device": args.device}))
    if args.run:
        trained_run(args.run, args.data, args.reps)
        return
    tr = training_overhead(30 if args.quick else 200, 2 if args.quick else 3, args.device)
    print(
        f"training ({tr['arch']}): Flow {tr['flow_steps_per_s']:.1f} steps/s, bare zuko "
        f"{tr['bare_zuko_steps_per_s']:.1f} steps/s, overhead ratio {tr['overhead_ratio']:.3f} "
        "(target <= 1.10)"
    )
    if args.training_only:
        return
    sa = sampling(args.quick, args.device)
    print(f"sampling: photon showers, {sa['features']} flow features, {SHOWER_ARCH}")
    for mode, rates in sa["flow_showers_per_s"].items():
        for b, r in rates.items():
            print(f"flow ({mode}), batch {b:>6}: {_fmt(r)}")
        for e, r in sa["flow_showers_per_s_by_energy_at_batch_10000"][mode].items():
            print(f"flow ({mode}), batch  10000 at {e:>10.0f} MeV: {_fmt(r)}")
    print(f"single coupling flow (same widths, eager), batch  10000: "
          f"{_fmt(sa['single_coupling_flow_showers_per_s_at_batch_10000'])}")  # fmt: skip
    for mode, by_e in sa["flow_showers_per_s_by_energy_at_batch_10000"].items():
        walls = [r[0] for r in by_e.values()]
        print(f"flow ({mode}) cost vs energy: slowest/fastest rate "
              f"{min(walls) / max(walls):.2f} (flat: 1)")  # fmt: skip
    for name, r in sa["peers_showers_per_s"].items():
        print(f"peer {name}: {_fmt(r)}")
    sim_rates = sa["simulator_showers_per_s"]
    eager, fast = (sa["flow_showers_per_s_by_energy_at_batch_10000"][m]
                   for m in ("eager", "fast, bfloat16 conditioners"))  # fmt: skip
    for e, r in sim_rates.items():
        print(f"simulator at {e:>10.0f} MeV: {_fmt(r)}; flow/simulator eager "
              f"{eager.get(e, max(eager.values()))[0] / r[0]:6.1f}, fast "
              f"{fast.get(e, max(fast.values()))[0] / r[0]:6.1f}")  # fmt: skip
    top = sa["energies"][-3:]
    spec = sa["simulator_spectrum_showers_per_s"]
    for mode, by_e in sa["flow_showers_per_s_by_energy_at_batch_10000"].items():
        big = sa["flow_showers_per_s"][mode][10_000]
        print(f"flow ({mode})/simulator at batch 10000 at the 3 highest energies (target >= 20): "
              + ", ".join(f"{by_e[e][0] / sim_rates[e][0]:.1f}" for e in top)
              + " (CPU time: "
              + ", ".join(f"{by_e[e][1] / sim_rates[e][1]:.1f}" for e in top)
              + f"); whole spectrum ({spec[0]:.1f} showers/s simulated): "
              f"{big[0] / spec[0]:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
