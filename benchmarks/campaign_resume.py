"""A sampling campaign killed mid-run and resumed gives the file of an uninterrupted run.

Draws N showers (default 1,000,000) from a trained surrogate through ``as_simulator()`` and
:func:`simulators.generate` -- the chunked, resumable writer of ``surrogates simulate`` -- three
ways: uninterrupted with ``--workers`` processes; killed with SIGKILL once a quarter of the chunks
are finished, then resumed; and (with ``--dask``) on a Dask ``LocalCluster`` of 2 workers. It
compares ``theta`` and ``x`` of the files byte for byte, and the root attributes apart from
``created``.

Usage::

    python benchmarks/campaign_resume.py RUN [--n 1000000] [--workers 2] [--dask]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from _common import header, provenance, results_dir

import simulators
from surrogates.models import registry

CHUNK = 20_000


def _digest(path: Path) -> tuple[str, dict]:
    """SHA-256 of theta and x (read chunk by chunk) and the root attributes but ``created``."""
    h = hashlib.sha256()
    with h5py.File(path, "r") as f:
        for name in ("theta", "x"):
            d = f[name]
            for s in range(0, d.shape[0], 50_000):
                h.update(np.ascontiguousarray(d[s : s + 50_000]).tobytes())
        attrs = {k: str(v) for k, v in f.attrs.items() if k != "created"}
    return h.hexdigest(), attrs


def _generate(run: str, n: int, out: str, workers: int, executor, resume: bool) -> None:
    model = registry.get(_family(run)).load(run, device="cpu")
    simulators.generate(model.as_simulator(), n, out, seed=7, chunk_size=CHUNK, workers=workers,
                        executor=executor, resume=resume, progress=None)  # fmt: skip


def _family(run: str) -> str:
    import json

    return json.loads((Path(run) / "model.json").read_text())["model_type"]


def _child(args: argparse.Namespace, out: Path, resume: bool) -> subprocess.Popen:
    cmd = [sys.executable, __file__, args.run, "--n", str(args.n), "--workers", str(args.workers),
           "--child", str(out)] + (["--resume"] if resume else [])  # fmt: skip
    return subprocess.Popen(cmd, start_new_session=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a trained model folder")
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--dask", action="store_true", help="also on a Dask LocalCluster of 2 workers")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _generate(args.run, args.n, args.child, args.workers, None, args.resume)
        return
    lines = [header(provenance(modules=("torch", "h5py"))).rstrip()]
    with tempfile.TemporaryDirectory(dir=os.environ.get("CAMPAIGN_TMP")) as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        assert _child(args, tmp / "whole.h5", False).wait() == 0
        lines.append(f"uninterrupted: {args.n:,} rows, {args.workers} workers, "
                     f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
        proc = _child(args, tmp / "killed.h5", False)
        parts, quarter = tmp / "killed.h5.parts", args.n // CHUNK // 4
        while len(list(parts.glob("chunk-*.h5"))) < quarter and proc.poll() is None:
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        done = len(list(parts.glob("chunk-*.h5")))
        lines.append(f"killed (SIGKILL) with {done} of {args.n // CHUNK} chunks finished; "
                     f"final file present: {(tmp / 'killed.h5').exists()}")  # fmt: skip
        assert _child(args, tmp / "killed.h5", True).wait() == 0
        ref = _digest(tmp / "whole.h5")
        same = _digest(tmp / "killed.h5") == ref
        lines.append(f"resumed file identical to the uninterrupted one: {same}")
        if args.dask:
            from dask.distributed import Client, LocalCluster

            with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as c:
                _generate(args.run, args.n, str(tmp / "dask.h5"), 1, c.get_executor(), False)
            same_dask = _digest(tmp / "dask.h5") == ref
            lines.append(f"Dask LocalCluster (2 workers) file identical: {same_dask}")
    text = "\n".join(lines)
    print(text)
    (results_dir("campaign_resume") / "campaign_resume.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
