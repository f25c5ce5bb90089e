"""The resume contract: a run continues only with its own settings and its own dataset.

A trainer checkpoint (``trainer.ckpt``) records the full :class:`~surrogates.training.TrainConfig`
and a record of the training data: the dataset's fingerprint (format, simulator, seed, row
count and a SHA-256 of θ, computed by the data layer: :func:`simulators.dataset.check_dataset`)
plus how it was read (e.g. ``drop_nonfinite``). Resuming

* restores the stored settings for every setting not given again and refuses a given one that
  disagrees (:func:`merge_settings`; the command line names the flag, the API the keyword),
* refuses another dataset (:func:`check_data`, naming both files),
* refuses a run folder that does not exist or holds no checkpoint (:func:`read_run`).

Settings that change where or how visibly a run executes, not what it computes
(:data:`NEUTRAL`), may differ.

Example:
    >>> merge_settings({"lr": 0.001, "max_steps": 60}, {"device": "cpu"}, source="run")
    {'lr': 0.001, 'max_steps': 60, 'device': 'cpu'}
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checkpoint import CheckpointError, load_state

__all__ = [
    "CHECKPOINT",
    "NEUTRAL",
    "StoredRun",
    "check_data",
    "merge_settings",
    "read_run",
    "stored_run",
]

CHECKPOINT = "trainer.ckpt"
#: settings that may differ between a run and its resumption
NEUTRAL = frozenset({"device", "progress", "verbose"})
#: the keys of a data record that identify the dataset (the rest say how it was read)
IDENTITY = ("format", "simulator", "seed", "n", "theta_sha256")


@dataclass(frozen=True)
class StoredRun:
    """What a run's checkpoint records: its settings and its training data (or None)."""

    checkpoint: Path
    settings: dict[str, Any]
    data: dict[str, Any] | None


def stored_run(state: dict[str, Any], checkpoint: Path) -> StoredRun:
    """The settings and data record of a loaded trainer state."""
    try:
        settings = json.loads(state["config"])
        data = json.loads(state.get("data") or "null")
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{checkpoint}: the trainer checkpoint records no settings") from None
    if not isinstance(settings, dict) or not isinstance(data, (dict, type(None))):
        raise CheckpointError(f"{checkpoint}: the trainer checkpoint records no settings")
    return StoredRun(checkpoint, settings, data)


def read_run(run_dir: str | os.PathLike) -> StoredRun:
    """The settings and data record of the run in ``run_dir``.

    Raises:
        CheckpointError: the folder does not exist, is not a folder, holds no trainer
            checkpoint, or one that cannot be read.
    """
    run = Path(run_dir)
    if not run.exists():
        raise CheckpointError(f"{run} does not exist: there is no run to resume")
    if not run.is_dir():
        raise CheckpointError(f"{run} is not a run folder")
    if not (run / CHECKPOINT).is_file():
        raise CheckpointError(f"{run} holds no training run to resume (no {CHECKPOINT})")
    return stored_run(load_state(run / CHECKPOINT), run / CHECKPOINT)


def _label(key: str, value: Any) -> str:
    return f"{key}={value!r}"


def merge_settings(
    stored: dict[str, Any],
    given: dict[str, Any],
    *,
    source: str,
    label: Callable[[str, Any], str] = _label,
) -> dict[str, Any]:
    """The stored settings, with the given ones where they agree (or are :data:`NEUTRAL`).

    Args:
        stored: the run's recorded settings.
        given: settings given again (only those actually given: an unset default must not be
            here).
        source: names the run in messages.
        label: how a setting is named in messages (``max_steps=80``; ``--max-steps 80``).

    Raises:
        CheckpointError: a given setting disagrees with the stored value.
    """
    out = dict(stored)
    for key, value in given.items():
        if key in stored and key not in NEUTRAL and not _same(stored[key], value):
            raise CheckpointError(
                f"{label(key, value)} disagrees with the value the run in {source} was started "
                f"with ({label(key, stored[key])}); leave it out to continue the run"
            )
        out[key] = value
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


def describe(data: dict[str, Any]) -> str:
    """A data record in words: its path and identity."""
    keys = ("simulator", "seed", "n")
    what = ", ".join(f"{k} {data[k]}" for k in keys if data.get(k) is not None)
    return f"{data.get('path') or 'arrays'} ({what})" if what else str(data.get("path"))


def check_data(
    stored: dict[str, Any] | None,
    given: dict[str, Any] | None,
    *,
    source: str,
    label: Callable[[str, Any], str] = _label,
) -> None:
    """Refuses to continue a run on another dataset, or reading it otherwise.

    Raises:
        CheckpointError: naming both datasets (or the reading setting that differs).
    """
    if stored is None or given is None:
        return
    if any(stored.get(k) != given.get(k) for k in IDENTITY):
        raise CheckpointError(
            f"the run in {source} was trained on {describe(stored)}; {describe(given)} is "
            "another dataset: resume with that file, or start a new run"
        )
    reading = {k: v for k, v in given.items() if k not in IDENTITY and k != "path"}
    merge_settings({k: stored[k] for k in reading if k in stored}, reading, source=source,
                   label=label)  # fmt: skip
