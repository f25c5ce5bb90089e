"""The rational-quadratic spline's closed-form inverse within one bin (Durkan et al., 2019,
arXiv:1906.04032, eq. 6-8), shared by the eager and the compiled spline inverses."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["bin_inverse"]


def bin_inverse(
    y: Tensor,
    x0: Tensor,
    y0: Tensor,
    x1: Tensor,
    y1: Tensor,
    d0: Tensor,
    d1: Tensor,
    bound: float,
) -> Tensor:
    """x with s(x) = y, given y's bin: knots (x0, y0), (x1, y1) and knot derivatives d0, d1.
    The identity outside [-B, B]. The root is taken in the form that is stable as c -> 0."""
    inside = (y > -bound) & (y <= bound)
    dx, dy = x1 - x0, y1 - y0
    s = dy / dx
    yr = torch.where(inside, y - y0, 0.0)
    w = (d0 + d1 - 2 * s) * yr
    a = dy * (s - d0) + w
    b = dy * d0 - w
    c = -s * yr
    z = 2 * c / (-b - (b * b - 4 * a * c).sqrt())
    return torch.where(inside, x0 + z * dx, y)
