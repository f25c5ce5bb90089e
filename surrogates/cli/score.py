"""``surrogates score``: per-event anomaly scores (−log p) of a dataset under a trained flow."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="anomaly scores and p-values of events under a trained flow",
        description="Write one row per event of F.h5: its score −log p(x | θ) under the flow in "
        "RUN/ and, with --ref, a conformal p-value against the scores of the normal reference "
        "events (held-out simulation) with the nearest conditions (small p = anomalous).",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN/", help="a trained flow's run folder")
    p.add_argument("--data", type=Path, required=True, metavar="F.h5", help="events to score")
    p.add_argument("--ref", type=Path, metavar="REF.h5", help="normal events for p-values")
    p.add_argument("--out", type=Path, required=True, metavar="SCORES.csv")
    p.add_argument(
        "--stage",
        type=int,
        choices=(1,),
        default=None,
        help="score a two-stage flow's first stage alone (showers: layer energies)",
    )
    p.add_argument(
        "--neighbours",
        type=_positive,
        default=200,
        metavar="K",
        help="reference events with the nearest conditions per p-value (default 200)",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(run=run)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    import os
    import uuid

    import numpy as np

    import simulators
    from simulators.base import SimulatorInputError
    from simulators.outputs import check_output_location, is_disk_full

    from ..anomaly import AnomalyDetector
    from ..models.flows import Flow

    check_output_location(args.out, kind="file", overwrite=args.overwrite)  # before any work
    model = Flow.load(args.run_dir, device=args.device)
    if args.stage is not None and model.arch["kind"] != "two_stage":
        raise SimulatorInputError(f"--stage needs a two_stage flow; {args.run_dir} holds a "
                                  f"{model.arch['kind']} flow")  # fmt: skip

    def read(path: Path, flag: str) -> tuple[np.ndarray, np.ndarray]:
        with simulators.open_dataset(path) as data:
            if list(data.x_shape) != list(model.meta.get("x_shape", data.x_shape)):
                raise SimulatorInputError(
                    f"{path}: x has shape {data.x_shape}, the model expects "
                    f"{tuple(model.meta['x_shape'])}"
                )
            if len(data) == 0:
                raise SimulatorInputError(f"{flag} {path} holds no rows")
            return data.theta[...], data.x[...]

    theta, x = read(args.data, "--data")
    detector = AnomalyDetector(model, stage=args.stage, neighbours=args.neighbours)
    scores = detector.score(x, theta)
    columns, header = [np.arange(len(scores)), scores], "row,score"
    if args.ref is not None:
        theta_ref, x_ref = read(args.ref, "--ref")
        detector.calibrate(x_ref, theta_ref)
        columns.append(detector.p_values(x, theta))
        header += ",p_value"
    tmp = args.out.with_name(f".{args.out.name}.{uuid.uuid4().hex}.tmp")
    fmt = ["%d", "%.6g"] + ["%.6g"] * (len(columns) - 2)
    try:
        np.savetxt(tmp, np.column_stack(columns), delimiter=",", header=header, comments="",
                   fmt=fmt)  # fmt: skip
        os.replace(tmp, args.out)
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise SimulatorInputError(f"no space left on the device of {args.out}") from None
    finally:
        tmp.unlink(missing_ok=True)
    finite = scores[np.isfinite(scores)]
    median = f"{np.median(finite):.2f}" if len(finite) else "n/a (no finite score)"
    print(
        f"wrote {args.out}: {len(scores):,} events, median score {median}"
        + (f", {np.mean(columns[2] < 0.01):.1%} with p < 0.01" if args.ref is not None else "")
    )
    return 0
