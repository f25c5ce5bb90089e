"""Where a run's numbers go: ``metrics.csv``, TensorBoard (when installed), stdout."""

from __future__ import annotations

import csv
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["METRICS", "MetricsLog", "is_tty"]

METRICS = "metrics.csv"


def is_tty() -> bool:
    """Whether stderr is a terminal (progress bars only there)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class MetricsLog:
    """Appends one row per validation interval to ``run_dir/metrics.csv`` and TensorBoard.

    Columns are the union of every row's keys in order of first appearance; a row with a new
    key (a quantity first logged late) rewrites the file from the history with the wider header.

    Args:
        run_dir: the run directory, or None to write nothing.
        verbose: print each row to stdout.
    """

    def __init__(self, run_dir: Path | None, *, verbose: bool = False):
        self.path = None if run_dir is None else run_dir / METRICS
        self.verbose = verbose
        self.fields: list[str] = []
        self.writer = _tensorboard(run_dir)

    def rewrite(self, history: Sequence[dict[str, Any]]) -> None:
        """Writes ``history`` as the whole file (a new run, or a resume from a checkpoint)."""
        self.fields = []
        for row in history:
            self.fields += [k for k in row if k not in self.fields]
        if self.path is None:
            return
        if not history:
            if self.path.exists():
                self.path.unlink()
            return
        tmp = self.path.with_name(f".{METRICS}.{os.getpid()}.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, restval="")
            w.writeheader()
            w.writerows(history)
        os.replace(tmp, self.path)

    def append(self, row: dict[str, Any], history: Sequence[dict[str, Any]]) -> None:
        """Writes ``row`` (already the last entry of ``history``)."""
        if any(k not in self.fields for k in row):
            self.rewrite(history)
        elif self.path is not None:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.fields, restval="").writerow(row)
        if self.writer is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and v == v:
                    self.writer.add_scalar(k, v, row["step"])
        if self.verbose:
            items = " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
            )
            print(items, flush=True)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _tensorboard(run_dir: Path | None) -> Any:
    if run_dir is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.utils.tensorboard import SummaryWriter
        return SummaryWriter(str(run_dir / "tensorboard"))
    except Exception:  # tensorboard is optional
        return None
