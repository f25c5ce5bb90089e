"""``surrogates evaluate``: metrics, figures and a self-contained HTML report for two files."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="compare a candidate file with a reference file: metrics.json, figures, report.html",
        description="Compare CANDIDATE.h5 (e.g. sampled from a surrogate with `surrogates sample "
        "--like REFERENCE.h5`) with REFERENCE.h5. The metrics follow the simulator in the files' "
        "metadata: classifier AUC, separation powers and Fréchet distance for the calorimeter; "
        "power spectra, pixel PDF and peak counts for N-body fields; C2ST and MMD otherwise. "
        "Writes metrics.json, PNG figures and one self-contained report.html into --out.",
    )
    p.add_argument("reference", type=Path, metavar="REFERENCE.h5", help="the reference dataset")
    p.add_argument("candidate", type=Path, metavar="CANDIDATE.h5", help="the dataset to judge")
    p.add_argument("--out", type=Path, required=True, help="output folder for the report")
    p.add_argument("--seed", type=int, default=0, help="seed of classifiers and tests (default 0)")
    p.add_argument(
        "--device",
        default="cpu",
        choices=("auto", "cpu", "cuda"),
        help="device of the evaluation classifiers (default cpu)",
    )
    p.add_argument(
        "--max-samples",
        type=int,
        default=20_000,
        metavar="N",
        help="use at most the first N rows of each file (default 20000)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier report in --out (only its files; others in --out stay)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from simulators.base import SimulatorInputError

    from ..report import evaluate

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SimulatorInputError("--device cuda: no CUDA device is available")
    summary = evaluate(
        args.reference,
        args.candidate,
        args.out,
        seed=args.seed,
        device=args.device,
        max_samples=args.max_samples,
        overwrite=args.overwrite,
    )
    m = summary["metrics"]
    if summary["kind"] == "calorimeter":
        line = (
            f"classifier AUC {m['classifier_low_level']['auc']:.3f} (low-level), "
            f"{m['classifier_high_level']['auc']:.3f} (high-level)"
        )
    elif summary["kind"] == "nbody":
        line = f"P(k) chi2/bin {m['power_chi2_per_bin']:.2f}"
    else:
        line = f"C2ST {m['c2st_joint']:.3f}, MMD p-value {m['mmd_p_value']:.3f}"
    print(f"{line}; report in {Path(args.out) / 'report.html'}")
    return 0
