"""Conditional neural spline flows: spline kernels (:mod:`.spline`), transforms
(:mod:`.transforms`), their compiled sampling path (:mod:`.fast_sampling`), the torch network
(:mod:`.net`) and the user-facing :class:`Flow` (:mod:`.flow`); imports point in that order."""

from __future__ import annotations

from .flow import Flow, FlowArch
from .net import FlowNet
from .transforms import ACTIVATIONS, KINDS

__all__ = ["ACTIVATIONS", "KINDS", "Flow", "FlowArch", "FlowNet"]
