"""Training simulations for :class:`~surrogates.inference.NPE`: checked, with invalid rows dropped.

Simulations with NaN/inf (a failed ODE solve, an overflow) are dropped and counted; a θ
outside the prior's support is an error, since the estimator's bijection cannot map it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from simulators.dataset import check_arrays
from simulators.errors import UserError

from ..preprocessing import LinearAdjust, Standardize
from .network import U_CLAMP
from .support import SupportTransform

__all__ = [
    "DatasetScan",
    "check_finite",
    "check_support",
    "fit_preprocessing",
    "observations",
    "scan_dataset",
    "valid_arrays",
]


def check_support(support: SupportTransform, theta: Tensor) -> None:
    """Raises a :class:`UserError` naming the bounds if a row of ``theta`` lies outside."""
    outside = int((~support.contains(theta)).sum())
    if outside:
        raise UserError(
            f"{outside} theta row(s) lie outside the prior's support "
            f"(low {support.low.tolist()}, high {support.high.tolist()})"
        )


def valid_arrays(theta: Any, x: Any, support: SupportTransform) -> tuple[Tensor, Tensor, int]:
    """``(theta, x)`` as float32 CPU tensors without the rows holding NaN/inf, and how many rows
    were dropped (the input gate :func:`simulators.dataset.check_arrays`, dropping)."""
    theta = torch.as_tensor(np.asarray(theta) if not isinstance(theta, Tensor) else theta)
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
    theta = theta.detach().float().reshape(len(theta), -1).cpu()
    x = x.detach().float().cpu()
    keep, check = check_arrays(theta.numpy(), x.numpy(), "drop")
    if theta.shape[1] != support.dim:
        raise UserError(f"theta must have {support.dim} columns, got {theta.shape[1]}")
    ok = torch.from_numpy(keep)
    theta, x = theta[ok], x[ok]
    check_support(support, theta)
    if len(theta) < 2:
        raise UserError(f"fit needs at least 2 valid simulations, got {len(theta)}")
    return theta, x, check.n_dropped


@dataclass
class DatasetScan:
    """What one streaming pass over a dataset file found."""

    x_shape: tuple[int, ...]
    fit_theta: Tensor
    fit_x: Tensor
    n_train: int
    n_dropped: int
    n_total: int
    fingerprint: dict[str, Any] = field(default_factory=dict)


def scan_dataset(
    path: str | os.PathLike,
    support: SupportTransform,
    *,
    val_fraction: float,
    split_seed: int,
    n_fit: int,
) -> DatasetScan:
    """The input gate's pass over ``path`` (:meth:`simulators.dataset.Dataset.check`, rows with
    NaN/inf dropped and counted), which also counts the valid training rows, checks the
    estimator's support, and keeps up to ``n_fit`` valid training rows to fit the scalers."""
    import simulators

    from ..data import split_mask

    fit_t, fit_x, n_train = [], [], 0

    def visit(i: int, t: np.ndarray, xx: np.ndarray, ok: np.ndarray) -> None:
        nonlocal n_train
        check_support(support, torch.as_tensor(t[ok]))
        keep = ok & split_mask(i, len(t), "train", val_fraction, split_seed)
        n_train += int(keep.sum())
        rows = sum(len(a) for a in fit_t)
        if rows < n_fit:
            fit_t.append(t[keep][: n_fit - rows])
            fit_x.append(xx[keep][: n_fit - rows])

    with simulators.open_dataset(path) as ds:
        x_shape = tuple(ds.x_shape)
        check = ds.check("drop", visit)
    if n_train < 1 or sum(len(a) for a in fit_t) < 2:
        raise UserError(f"{path}: fewer than 2 valid training simulations")
    return DatasetScan(x_shape, torch.as_tensor(np.concatenate(fit_t)),
                       torch.as_tensor(np.concatenate(fit_x)), n_train, check.n_dropped,
                       check.n, {"path": str(path), **check.fingerprint})  # fmt: skip


def fit_preprocessing(
    theta: Tensor, x: Tensor, support: SupportTransform, *, log_x: bool | str, adjust: bool
) -> tuple[Standardize, LinearAdjust | None]:
    """The standardization of u = T⁻¹(θ) and of x, fitted on training rows, and with
    ``adjust`` the linear adjustment of u given x
    (:class:`~surrogates.preprocessing.LinearAdjust`)."""
    u, _ = support.inverse(theta.double())
    u = u.clamp(-U_CLAMP, U_CLAMP)
    pre = Standardize(log_theta=log_x).fit(u, x.double())
    c = pre.condition(x.double()).flatten(1)
    if not adjust:
        return pre, None
    return pre, LinearAdjust().fit(pre.forward(u, u)[0], c)


def check_finite(value: Tensor, name: str) -> Tensor:
    """Raises a :class:`UserError` naming ``name`` if ``value`` holds NaN or ±inf."""
    bad = int((~torch.isfinite(value)).sum())
    if bad:
        raise UserError(f"{name} contains {bad} NaN or infinite value(s)")
    return value


def observations(x: Any, x_shape: tuple[int, ...]) -> tuple[Tensor, bool]:
    """Observations as (B, *x_shape) float32 on the CPU, and whether one was given.

    Raises:
        UserError: ``x`` of another shape, or holding NaN/inf.
    """
    xt = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float32))
    xt = check_finite(xt.detach().float().cpu(), "x")
    shape = tuple(x_shape)
    if tuple(xt.shape) == shape:
        return xt.unsqueeze(0), True
    if xt.dim() == len(shape) + 1 and tuple(xt.shape[1:]) == shape:
        return xt, len(xt) == 1
    if xt.numel() == math.prod(shape) and len(shape) == 1:
        return xt.reshape(1, *shape), True
    raise UserError(f"x must have shape {shape} or (B, *{shape}), got {tuple(xt.shape)}")
