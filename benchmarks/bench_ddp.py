"""Data-parallel training throughput: 1 against 2 processes (torchrun, gloo, CPU).

Each configuration is started with ``python -m torch.distributed.run --nproc-per-node P`` on
this script's worker, which trains a conditional spline flow on in-memory vectors with the
shared trainer (DDP above one process), one torch thread per process, ``--batch`` rows per
process (weak scaling: the global batch grows with P). Reports optimizer steps/s and training
rows/s (steps/s x batch x P) and the ratio to one process. Correctness is the test's business
(``tests/test_distributed.py``); this measures speed only, on a machine that may be shared.

    python benchmarks/bench_ddp.py            # 300 steps per configuration
    python benchmarks/bench_ddp.py --quick    # 30 steps
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, header, provenance, results_dir

DIM, CONTEXT = 16, 4


def worker(steps: int, batch: int, out: Path) -> None:
    import torch

    from surrogates.models import Flow
    from surrogates.training import ArrayBatches, TrainConfig, Trainer
    from surrogates.training.distributed import init_from_env, world

    torch.set_num_threads(1)
    init_from_env()
    rank, size = world()
    g = torch.Generator().manual_seed(0)
    theta = torch.rand(20_000, CONTEXT, generator=g)
    x = torch.randn(20_000, DIM, generator=g) + theta.repeat(1, DIM // CONTEXT)
    model = Flow.for_dataset((theta.numpy(), x.numpy()), seed=0, device="cpu", transforms=4,
                             hidden=[128, 128], bins=8)  # fmt: skip
    config = TrainConfig(max_steps=5, batch_size=batch, progress=False, device="cpu")
    data = ArrayBatches(theta, x, batch_size=batch, seed=0)
    Trainer(model.net, config).fit(data)  # warm-up: allocator, DDP buckets
    trainer = Trainer(model.net, config, max_steps=steps)
    t0 = time.perf_counter()
    result = trainer.fit(ArrayBatches(theta, x, batch_size=batch, seed=1))
    seconds = time.perf_counter() - t0
    if rank == 0:
        out.write_text(json.dumps({"processes": size, "steps": result.steps, "seconds": seconds}))
    if size > 1:
        torch.distributed.destroy_process_group()


def launch(processes: int, steps: int, batch: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(processes), __file__, "--worker", "--steps", str(steps),
               "--batch", str(batch), "--out", str(out)]  # fmt: skip
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="30 steps per configuration")
    p.add_argument("--batch", type=int, default=256, help="rows per process and step")
    p.add_argument("--steps", type=int, help="optimizer steps (default 300; --quick 30)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    steps = args.steps or (30 if args.quick else 300)
    if args.worker:
        worker(steps, args.batch, args.out)
        return
    prov = provenance(modules=["torch", "zuko"])
    lines = [header({**prov, "torch_threads": "1 per process", "backend": "gloo", "device": "cpu",
                     "cpus_visible": str(os.cpu_count())})]  # fmt: skip
    lines.append(f"# flow: {DIM}-d x, {CONTEXT}-d theta, 4 spline transforms, hidden 128x128; "
                 f"batch {args.batch} per process; {steps} steps")  # fmt: skip
    lines.append(f"{'processes':>9} {'steps/s':>9} {'rows/s':>10} {'rows/s ratio':>13}")
    base = None
    for n in (1, 2):
        r = launch(n, steps, args.batch)
        rate = r["steps"] / r["seconds"]
        rows = rate * args.batch * n
        base = base or rows
        lines.append(f"{n:>9} {rate:>9.1f} {rows:>10,.0f} {rows / base:>12.2f}x")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    name = "bench_ddp_quick.txt" if args.quick else "bench_ddp.txt"
    (results_dir("bench_ddp") / name).write_text(text)


if __name__ == "__main__":
    main()
