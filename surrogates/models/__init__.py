"""Conditional generative surrogates p(x | θ) sharing one interface (:class:`Surrogate`)."""

from __future__ import annotations

from .base import Surrogate, SurrogateSimulator
from .flow import Flow

__all__ = ["Flow", "Surrogate", "SurrogateSimulator"]
