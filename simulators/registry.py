"""The simulator registry: built-in simulators by name, and user registration."""

from __future__ import annotations

import importlib
from typing import Any

from .base import Simulator, SimulatorInputError

__all__ = ["available", "get", "register"]

# Imported on first use, so that `import simulators` stays cheap.
_BUILTIN: dict[str, str] = {
    "two_moons": "simulators.toy.two_moons:TwoMoons",
    "gaussian_linear": "simulators.toy.gaussian_linear:GaussianLinear",
    "slcp": "simulators.toy.slcp:SLCP",
    "lotka_volterra": "simulators.toy.lotka_volterra:LotkaVolterra",
    "calorimeter": "simulators.calorimeter.simulator:Calorimeter",
    "nbody": "simulators.nbody.simulator:NBody",
}
_REGISTERED: dict[str, type[Simulator]] = {}


def register(cls: type[Simulator]) -> type[Simulator]:
    """Class decorator adding a simulator under ``cls.name``."""
    _REGISTERED[cls.name] = cls
    return cls


def available() -> list[str]:
    """Names of all simulators that :func:`get` accepts."""
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def simulator_class(name: str) -> type[Simulator]:
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in _BUILTIN:
        raise SimulatorInputError(
            f"unknown simulator {name!r}; available: {', '.join(available())}"
        )
    module, _, attr = _BUILTIN[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def get(name: str, **config: Any) -> Simulator:
    """Builds the simulator registered as ``name`` with the given settings.

    Example:
        >>> import simulators
        >>> simulators.get("calorimeter", particle="photon").x_shape
        (368,)
    """
    return simulator_class(name)(**config)
