"""``surrogates info``: metadata, row counts and integrity of a dataset file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="show a dataset's metadata and check its integrity",
        description="Show metadata and row counts of F.h5 and verify it end to end "
        "(structure, attributes, every chunk readable, no NaN where none is allowed). "
        "With --list, list the available simulators instead.",
    )
    p.add_argument("file", nargs="?", type=Path, help="a dataset file (.h5)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--list", action="store_true", help="list the available simulators")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import simulators
    from simulators.base import SimulatorInputError

    if args.list:
        for name in simulators.available():
            print(name)
        return 0
    if args.file is None:
        raise SimulatorInputError("name a dataset file, or pass --list")
    summary = simulators.verify(args.file)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    meta = summary["meta"]
    print(f"{summary['path']}  ({summary['bytes'] / 2**20:.1f} MiB, {summary['compression']})")
    print(f"  simulator        {meta['simulator']} v{meta['simulator_version']}")
    print(f"  config           {json.dumps(meta['simulator_config'])}")
    print(f"  parameters       {', '.join(meta['param_names'])}")
    print(
        f"  rows             {summary['n']:,} in {summary['chunks']} chunks of {meta['chunk_size']}"
    )
    print(f"  theta            {tuple(summary['theta_shape'])} float32")
    print(f"  x                (N, {', '.join(map(str, summary['x_shape']))}) {summary['x_dtype']}")
    for name, shape in summary["other_datasets"].items():
        print(f"  {name:<16} {tuple(shape)}")
    print(f"  seed             {meta['seed']}   created {meta['created']}")
    print(
        f"  format           {meta['format']} v{meta['format_version']}, "
        f"package {meta['package_version']}"
    )
    nan = f", {summary['nan_rows']} row(s) with NaN (allowed)" if summary["nan_rows"] else ""
    print(f"integrity: OK (all {summary['n']:,} rows read{nan})")
    return 0
