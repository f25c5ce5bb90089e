"""Shared helpers for benchmark scripts: machine/version banner, peak memory."""

from __future__ import annotations

import os
import platform
import resource
import sys

__all__ = ["banner", "peak_rss_mib"]


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def banner(*modules: str) -> str:
    """One line naming the machine and the versions of the given modules."""
    versions = []
    for name in modules:
        try:
            mod = __import__(name)
            versions.append(f"{name} {getattr(mod, '__version__', '?')}")
        except ImportError:
            versions.append(f"{name} missing")
    cpu = platform.processor() or platform.machine()
    return (
        f"# {platform.node()} | {cpu} | {os.cpu_count()} cores | Python "
        f"{sys.version.split()[0]} | " + ", ".join(versions)
    )
