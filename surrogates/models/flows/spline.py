"""The rational-quadratic spline within one bin (Durkan et al., 2019, arXiv:1906.04032): the
forward map with its log-derivative (eq. 4, 5) for training, and the closed-form inverse (eq. 6-8)
shared by the eager and the compiled spline inverses."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["bin_forward", "bin_inverse"]


def bin_forward(
    x: Tensor,
    x0: Tensor,
    y0: Tensor,
    x1: Tensor,
    y1: Tensor,
    d0: Tensor,
    d1: Tensor,
    bound: float,
) -> tuple[Tensor, Tensor]:
    """(s(x), log s'(x)), given x's bin: knots (x0, y0), (x1, y1) and knot derivatives d0, d1.
    The identity (log-derivative 0) outside [-B, B]."""
    inside = (x > -bound) & (x <= bound)
    dx, dy = x1 - x0, y1 - y0
    s = dy / dx
    z = torch.where(inside, (x - x0) / dx, 0.0)
    zz = z * (1 - z)
    den = s + (d0 + d1 - 2 * s) * zz
    y = y0 + dy * (s * z * z + d0 * zz) / den
    num = s * s * (2 * s * zz + d0 * (1 - z).square() + d1 * z * z)
    ladj = torch.where(inside, (num / den.square()).log(), 0.0)
    return torch.where(inside, y, x), ladj


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
