"""``surrogates sample``: draw from a trained surrogate under the conditions of a reference file.

The rows are written through the chunked, resumable writer of ``surrogates simulate``
(:func:`simulators.generate`): chunk ``i`` draws from its own seed, so the file is the same for
any ``--workers`` or Dask ``--scheduler`` and after any number of ``--resume``; a killed
campaign loses at most the chunks in flight. Workers (local processes or Dask workers) receive
the model with each chunk and write the chunk's part file beside ``--out``, so Dask workers on
other machines need a shared file system (as for ``simulate``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from simulators.base import SimulatorInputError

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="sample a trained surrogate like a reference file",
        description="Draw one x per row of the reference file's theta from the surrogate in RUN/ "
        "and write G.h5 in the same schema (a calorimeter sample is a challenge-format file).",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN", help="a trained model directory")
    p.add_argument("--like", type=Path, required=True, help="reference dataset whose theta to use")
    p.add_argument("--out", type=Path, required=True, help="output file (.h5)")
    p.add_argument("--n", type=int, help="use only the first N rows of the reference")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument(
        "--fast",
        choices=["bfloat16", "float32"],
        help="flows: compiled spline inverses, conditioners in this precision "
        "(bfloat16: about 6x faster on CPUs with AMX/AVX-512-BF16; see the README)",
    )
    par = p.add_mutually_exclusive_group()
    par.add_argument("--workers", type=int, default=1, help="processes on this machine")
    par.add_argument("--scheduler", help="address of a Dask scheduler to run chunks on")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import simulators
    from simulators.dataset import check_dataset
    from simulators.outputs import check_output_location

    from ..checkpoint import read_meta
    from ..models import registry
    from .simulate import _executor

    check_output_location(args.out, kind="file", overwrite=args.overwrite or args.resume)
    meta = read_meta(args.run_dir)
    check_dataset(args.like, "file")  # the input gate: the reference file, before any work
    name = meta.get("model_type")
    if name not in registry.FAMILIES:
        raise SimulatorInputError(f"{args.run_dir} holds an unknown model type {name!r}")
    model = registry.get(name).load(args.run_dir, device="cpu")
    if args.fast:
        if not hasattr(model, "fast_sampling"):
            raise SimulatorInputError(f"--fast applies to flows, {args.run_dir} holds a {name}")
        model.fast_sampling(args.fast)
    with simulators.open_dataset(args.like) as ref:
        n = len(ref) if args.n is None else min(args.n, len(ref))
        if n < 1:
            raise SimulatorInputError("--n must be positive and the reference non-empty")
        theta = ref.theta[:n]
        if list(ref.param_names) != list(model.meta.get("param_names", ref.param_names)):
            raise SimulatorInputError(
                f"--like has parameters {ref.param_names}, the model was trained on "
                f"{model.meta.get('param_names')}"
            )
        like_meta = ref.meta
    sim = model.as_simulator()
    attrs = {"surrogate_run": str(args.run_dir), "like": str(args.like),
             "like_simulator": json.dumps(like_meta.get("simulator"))}  # fmt: skip
    executor = _executor(args.scheduler) if args.scheduler else None
    simulators.generate(sim, n, args.out, seed=args.seed, theta=theta, overwrite=args.overwrite,
                        resume=args.resume, progress=None if not args.no_progress else False,
                        attrs=attrs, workers=args.workers, executor=executor)  # fmt: skip
    print(f"wrote {n} rows sampled from {args.run_dir} to {args.out}")
    return 0
