"""``surrogates simulate``: write a dataset file from a simulator or a recipe."""

from __future__ import annotations

import argparse
import time
import tomllib
from pathlib import Path
from typing import Any

from simulators.base import SimulatorInputError, parse_setting

__all__ = ["add_parser", "load_recipe", "run"]

_RECIPE_KEYS = {"simulator", "n", "seed", "out", "chunk_size", "compression", "config"}


def _rate(r: float) -> str:
    """Rows per second for people: 3 significant digits below 100 (an N-body run takes seconds)."""
    return f"{r:,.0f}" if r >= 100 else f"{r:.3g}"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate a dataset into an HDF5 file",
        description="Simulate N rows (theta from the prior, x from the simulator) into F.h5. "
        "Chunks are seeded from --seed, so the file is the same for any --workers and after "
        "--resume.",
    )
    p.add_argument("simulator", nargs="?", help="simulator name (see `surrogates info --list`)")
    p.add_argument("--recipe", type=Path, help="a dataset recipe (TOML), e.g. datasets/slcp.toml")
    p.add_argument("--n", type=int, help="number of rows")
    p.add_argument("--out", type=Path, help="output file (.h5)")
    p.add_argument("--seed", type=int, help="root seed (default 0)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a simulator setting"
    )
    p.add_argument("--chunk-size", type=int, help="rows per chunk (default: about 2 MiB of x)")
    p.add_argument("--compression", choices=("gzip", "lzf"), help="default gzip")
    par = p.add_mutually_exclusive_group()
    par.add_argument("--workers", type=int, default=1, help="processes on this machine")
    par.add_argument("--scheduler", help="address of a Dask scheduler to run chunks on")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _type_name(value: Any) -> str:
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
            dict: "a table", list: "an array"}.get(type(value), type(value).__name__)  # fmt: skip


def _check_types(path: Path, recipe: dict[str, Any]) -> None:
    """One line naming the key for a value of the wrong type or range."""

    def bad(key: str, want: str) -> SimulatorInputError:
        value = recipe[key]
        return SimulatorInputError(
            f"recipe {path}: {key} must be {want}, got {value!r} ({_type_name(value)})"
        )

    def integer(key: str, low: int) -> None:
        value = recipe.get(key)
        if key in recipe and (type(value) is not int or value < low):
            raise bad(key, f"an integer ≥ {low}")

    for key in ("simulator", "out"):
        if key in recipe and (not isinstance(recipe[key], str) or not recipe[key]):
            raise bad(key, "a non-empty string")
    integer("n", 1)
    integer("seed", 0)
    integer("chunk_size", 1)
    if "compression" in recipe and recipe["compression"] not in ("gzip", "lzf"):
        raise bad("compression", '"gzip" or "lzf"')
    if "config" in recipe and not isinstance(recipe["config"], dict):
        raise bad("config", "a table of simulator settings ([config])")


def _check_setting(path: Path, key: str, value: Any, defaults: dict[str, Any]) -> None:
    """A ``[config]`` value must have its default's type (an integer passes for a float)."""
    if key not in defaults or defaults[key] is None:
        return  # an unknown key is the simulator's to name, with the known ones
    default = defaults[key]
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = type(value) is int
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise SimulatorInputError(
            f"recipe {path}: config.{key} must be {_type_name(default)} like its default "
            f"{default!r}, got {value!r} ({_type_name(value)})"
        )


def _resolve_out(path: Path, out: str) -> Path:
    """The recipe's ``out`` inside the recipe's folder; an absolute or escaping path is refused."""
    folder = path.parent
    where = f"recipe {path}: out = {out!r}"
    if Path(out).is_absolute():
        raise SimulatorInputError(
            f"{where} is an absolute path; a recipe writes inside its own folder "
            "(give a relative path, or --out)"
        )
    resolved = (folder / out).resolve()
    if not resolved.is_relative_to(folder.resolve()):
        raise SimulatorInputError(
            f"{where} points outside the recipe's folder {folder}; give a path inside it, or --out"
        )
    return folder / out


def load_recipe(path: Path, *, with_out: bool = True) -> dict[str, Any]:
    """Reads and checks a recipe.

    A relative ``out`` is resolved in the recipe's folder; an absolute one, or one that leaves the
    folder (``../x.h5``, a symbolic link pointing out), is refused. ``with_out=False`` (the command
    line gave ``--out``) drops the recipe's ``out`` unresolved.
    """
    try:
        recipe = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SimulatorInputError(f"recipe {path} does not exist") from None
    except IsADirectoryError:
        raise SimulatorInputError(f"recipe {path} is a folder, not a TOML file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SimulatorInputError(f"recipe {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(recipe) - _RECIPE_KEYS)
    if unknown:
        raise SimulatorInputError(f"recipe {path}: unknown key(s) {', '.join(unknown)}")
    if "simulator" not in recipe:
        raise SimulatorInputError(f"recipe {path} names no simulator")
    _check_types(path, recipe)
    if "out" in recipe:
        if with_out:
            recipe["out"] = _resolve_out(path, recipe["out"])
        else:
            del recipe["out"]
    return recipe


def _executor(address: str):
    try:
        from dask.distributed import Client
    except ImportError:
        raise SimulatorInputError(
            "--scheduler needs Dask: pip install 'dask[distributed]'"
        ) from None
    try:
        return Client(address, timeout=10).get_executor()
    except (OSError, ValueError, TimeoutError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SimulatorInputError(f"cannot reach the Dask scheduler at {address}: {msg}") from None


def run(args: argparse.Namespace) -> int:
    import simulators
    from simulators.outputs import check_output_location
    from simulators.registry import simulator_class

    recipe = load_recipe(args.recipe, with_out=args.out is None) if args.recipe else {}
    name = args.simulator or recipe.get("simulator")
    if name is None:
        raise SimulatorInputError("name a simulator or pass --recipe")
    if args.simulator and recipe and args.simulator != recipe["simulator"]:
        raise SimulatorInputError(
            f"the recipe is for {recipe['simulator']!r}, not {args.simulator!r}"
        )
    n = args.n if args.n is not None else recipe.get("n")
    out = args.out or recipe.get("out")
    if n is None or out is None:
        raise SimulatorInputError("--n and --out are required (or a recipe that sets them)")
    if n < 1:
        raise SimulatorInputError(f"--n must be a positive integer, got {n}")
    seed = args.seed if args.seed is not None else recipe.get("seed", 0)
    out = Path(out)
    check_output_location(out, kind="file", overwrite=args.overwrite)  # before any work
    config = dict(recipe.get("config", {}))
    cls = simulator_class(name)
    for key, value in config.items():
        _check_setting(args.recipe, key, value, cls.defaults)
    for item in args.set:
        key, value = parse_setting(item, cls.defaults)
        config[key] = value
    sim = cls(**config)
    executor = _executor(args.scheduler) if args.scheduler else None

    t0 = time.perf_counter()
    simulators.generate(
        sim,
        n,
        out,
        seed=seed,
        chunk_size=args.chunk_size or recipe.get("chunk_size"),
        workers=args.workers,
        executor=executor,
        resume=args.resume,
        overwrite=args.overwrite,
        compression=args.compression or recipe.get("compression", "gzip"),
        progress=None if not args.no_progress else False,
    )
    dt = time.perf_counter() - t0
    with simulators.open_dataset(out) as data:
        shapes = f"theta {data.theta.shape}, x {data.x.shape}"
    where = f"scheduler {args.scheduler}" if args.scheduler else f"{args.workers} worker(s)"
    print(
        f"wrote {out}: {n} rows of {name} ({shapes}) in {dt:.1f} s, {_rate(n / dt)} rows/s, {where}"
    )
    return 0
