"""Default training and architecture settings of :class:`~surrogates.inference.NPE`, by the
number of training simulations.

Each was chosen by measurement with ``benchmarks/npe_vs_sbi.py``; the measurements, commands and
results files are in ``docs/decisions/`` (001-003, 005). Figures measured before commit 4a9537f
used a weaker C2ST (``docs/decisions/004-c2st-protocol.md``).

Example:
    >>> default_train_config(900)["lr"], default_hidden(900), default_transforms(900)
    (0.012, [64, 64], 3)
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["default_hidden", "default_train_config", "default_transforms"]


def default_train_config(n_train: int) -> dict[str, Any]:
    """The default training settings for ``n_train`` training simulations.

    Tuned on the toy tasks of ``benchmarks/npe_vs_sbi.py``: Adam at 4·10⁻³, halved after 5
    epochs without validation improvement, early stopping after 10 (or when the rate would be
    halved below 1/32 of its start), and batches of a quarter of the data, 64 to 256 rows.
    Against ``sbi``'s defaults (batch 200, learning rate 5·10⁻⁴, patience 20 epochs) this takes
    a fraction of the steps.

    Below 2,048 training simulations validation and the final weights use a moving average of
    the weights (decay 0.99), at 1.2·10⁻², halved after 3 epochs without improvement, stopping
    after 6 or below 1/4 of the rate. There the validation loss of the raw weights jumps by
    0.1-0.2 nats from one epoch to the next (two moons at 10³), so the plateau rules reacted to
    noise and stopped early. There batches are a sixteenth of the data, 64 to 128 rows (11-23
    steps an epoch from 724 rows on), so that 6 epochs without improvement span about the
    average's horizon of 100 steps: with 4 steps an epoch (batches of 256 at 10³) training
    stopped after 70-460 steps, on the lag of the average rather than on convergence, and the
    quality of a replicate followed the length of its run.

    Chosen by measurement: ``docs/decisions/001-npe-training-defaults.md`` and, over
    independent replicates, ``docs/decisions/010-npe-small-budget-robustness.md``.
    """
    small = n_train < 2048
    rows = max(n_train, 1) / (16 if small else 4)
    batch = int(min(256, max(64, 2 ** round(math.log2(rows)))))
    config = {"lr": 4e-3, "batch_size": batch, "schedule": "plateau", "patience": 10,
              "min_lr_factor": 1 / 32, "max_epochs": 1000, "clip_grad": 5.0,
              "progress": False}  # fmt: skip
    if small:
        config.update(lr=1.2e-2, ema=0.99, patience=6, min_lr_factor=1 / 4)
    return config


def default_hidden(n_train: int) -> list[int]:
    """The default conditioner widths: 64 x 64 below 5,000 training simulations, 128 x 128 from
    there on. Chosen by measurement: ``docs/decisions/002-npe-architecture-defaults.md``."""
    return [128, 128] if n_train >= 5000 else [64, 64]


def default_transforms(n_train: int) -> int:
    """The default number of spline transforms: 3. Chosen by measurement:
    ``docs/decisions/002-npe-architecture-defaults.md``."""
    return 3
