"""Streaming throughput of `surrogates.data.H5Batches` against bare h5py, and its peak memory.

Writes a shower-like dataset (368 float32 per row, 70% zeros, gzip) larger than the memory budget,
then reads it once with bare h5py (whole chunks, file order: the fastest a reader can go) and once
with H5Batches (shuffled across a buffer of chunks, batched torch tensors), both in this process.
Reports rows/s, the ratio, and peak RSS against the file size.

    python benchmarks/bench_data.py                 # 1 GiB of x, 256 MiB budget
    python benchmarks/bench_data.py --file-mib 256  # quicker
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, header, peak_rss_mib, provenance

import simulators
from simulators import BoxUniform, Simulator


class ShowerLike(Simulator):
    """Cheap synthetic rows with the size and sparsity of calorimeter showers."""

    name = "bench_shower_like"
    defaults = {"n_voxels": 368}

    def __init__(self, **config):
        super().__init__(**config)
        self.param_names = ("E",)
        self.x_shape = (self._config["n_voxels"],)
        self.prior = BoxUniform([1.0], [2.0])

    def _simulate(self, theta, rng):
        x = rng.exponential(theta, size=(len(theta), *self.x_shape))
        x[rng.random(x.shape) < 0.7] = 0.0
        return x


def make(path: Path, rows: int) -> None:
    simulators.generate(ShowerLike(), rows, path, seed=0, workers=2, overwrite=True)


def bare_h5py(path: Path) -> tuple[int, float]:
    import h5py

    rows, t0 = 0, time.perf_counter()
    with h5py.File(path, "r") as f:
        c = f["x"].chunks[0]
        for s in range(0, f["x"].shape[0], c):
            _theta, x = f["theta"][s : s + c], f["x"][s : s + c]
            rows += len(x)
    return rows, time.perf_counter() - t0


def ours(path: Path, batch_size: int) -> tuple[int, float]:
    from surrogates.data import H5Batches

    ds = H5Batches(path, split="all", batch_size=batch_size, seed=0)
    rows, t0 = 0, time.perf_counter()
    for theta, _x in ds:
        rows += len(theta)
    return rows, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--file-mib", type=int, default=1024, help="uncompressed size of x")
    p.add_argument("--budget-mib", type=int, default=256, help="memory budget to stay under")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument(
        "--path",
        type=Path,
        default=RESULTS / "bench_data" / "stream.h5",
        help="the scratch dataset (git-ignored; regenerated when its size differs)",
    )
    args = p.parse_args()
    args.path.parent.mkdir(parents=True, exist_ok=True)
    rows = args.file_mib * 2**20 // (368 * 4)
    if not args.path.exists() or simulators.open_dataset(args.path).x.shape[0] != rows:
        # a child process, so that generation does not count against our peak RSS
        proc = multiprocessing.get_context("spawn").Process(target=make, args=(args.path, rows))
        proc.start()
        proc.join()
    import torch  # noqa: F401  (import cost outside the timed and measured region)

    print(header(provenance(modules=("numpy", "h5py", "torch"))))
    size = args.path.stat().st_size / 2**20
    print(f"file: {rows:,} rows, x {args.file_mib} MiB uncompressed, {size:.0f} MiB on disk")
    bare_h5py(args.path)  # warm the page cache for both readers alike
    base_rss = peak_rss_mib()
    n1, t1 = bare_h5py(args.path)
    n2, t2 = ours(args.path, args.batch_size)
    rss = peak_rss_mib()
    assert n1 == n2 == rows
    print(f"bare h5py  : {n1 / t1:12,.0f} rows/s ({t1:.2f} s)")
    print(f"H5Batches  : {n2 / t2:12,.0f} rows/s ({t2:.2f} s), shuffled, batch {args.batch_size}")
    print(f"ratio      : {t1 / t2:.2f} of bare h5py throughput (target >= 0.8)")
    grow = rss - base_rss
    print(
        f"peak RSS   : {rss:.0f} MiB, of which {grow:.0f} MiB while streaming (imports before: "
        f"{base_rss:.0f} MiB); budget {args.budget_mib} MiB; file {args.file_mib} MiB"
    )
    print(f"streaming memory within budget: {grow <= args.budget_mib}")


if __name__ == "__main__":
    main()
