"""Shared helpers for benchmark scripts: where results go, their provenance, peak memory.

Every result file under ``benchmarks/results/<script>/`` records how it was made: the command,
the commit (``+dirty`` when the working tree differs from it), the date, the machine and the
package versions. Text output starts with :func:`header` (``# key: value`` lines, so that
``bash benchmarks/run_all.sh``, which tees a script's output into its folder, keeps them);
JSON files carry the same dict under the key ``"provenance"``.

    from _common import header, provenance, results_dir

    prov = provenance(modules=("torch", "zuko"))
    print(header(prov))
    out = results_dir("my_script") / "my_script.json"
    out.write_text(json.dumps({"provenance": prov, "rows": rows}, indent=1))
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import shlex
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

__all__ = [
    "RESULTS",
    "ROOT",
    "git_commit",
    "header",
    "machine",
    "peak_rss_mib",
    "provenance",
    "results_dir",
    "versions",
]

#: the repository root and the results tree, ``benchmarks/results/<script>/``
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

#: import names whose distribution is named differently
_DISTRIBUTIONS = {"sklearn": "scikit-learn"}


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def results_dir(script: str) -> Path:
    """``benchmarks/results/<script>/`` (created): where ``script``'s result files go."""
    path = RESULTS / script
    path.mkdir(parents=True, exist_ok=True)
    return path


def git_commit(root: Path = ROOT) -> str:
    """``git rev-parse HEAD`` of ``root``, with ``+dirty`` when ``git status --porcelain``
    lists anything; ``"unknown (no git)"`` outside a repository or without git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
        status = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True,
                                text=True, timeout=30, check=True).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return head + ("+dirty" if status.strip() else "")


def machine() -> str:
    """Host name, processor, logical CPUs, OS; the GPU where torch is imported and sees one."""
    cpu = platform.processor() or platform.machine()
    text = f"{platform.node()} | {cpu} | {os.cpu_count()} logical CPUs | {platform.platform()}"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        text += f" | GPU {torch.cuda.get_device_name(0)}"
    return text


def _version(name: str) -> str:
    try:
        return metadata.version(_DISTRIBUTIONS.get(name, name))
    except metadata.PackageNotFoundError:
        module = sys.modules.get(name)
        return getattr(module, "__version__", "missing") if module else "missing"


def versions(modules: Sequence[str] = ()) -> str:
    """Python, this package and the given packages (by import name), without importing them."""
    names = ["simsurrogates", *(m for m in modules if m != "simsurrogates")]
    return f"Python {platform.python_version()}, " + ", ".join(f"{m} {_version(m)}" for m in names)


def _command(argv: Sequence[str]) -> str:
    argv = list(argv)
    if argv:
        script = Path(argv[0])
        try:
            argv[0] = str(script.resolve().relative_to(ROOT))
        except ValueError:
            pass
    return shlex.join(["python", *argv])


def provenance(argv: Sequence[str] | None = None, modules: Sequence[str] = ()) -> dict[str, str]:
    """How a result was made: ``command`` (``argv``, default ``sys.argv``, script path relative
    to the repository), ``commit`` (:func:`git_commit`), ``date`` (UTC), ``machine``
    (:func:`machine`) and ``versions`` (:func:`versions` of ``modules``)."""
    return {
        "command": _command(sys.argv if argv is None else argv),
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": machine(),
        "versions": versions(modules),
    }


def header(prov: dict[str, str]) -> str:
    """The provenance as ``# key: value`` lines (no trailing newline): a text result's head."""
    return "\n".join(f"# {k}: {v}" for k, v in prov.items())
