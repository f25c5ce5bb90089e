"""Simulators that write HDF5 training data in one resumable, reproducible format.

numpy/scipy only: nothing here imports torch.
"""

from .base import (
    BoxUniform,
    Discrete,
    LogNormal,
    LogUniform,
    Normal,
    Prior,
    Simulator,
    SimulatorInputError,
)
from .errors import UserError
from .registry import available, get, register

__all__ = [
    "BoxUniform",
    "Dataset",
    "Discrete",
    "LogNormal",
    "LogUniform",
    "Normal",
    "Prior",
    "Simulator",
    "SimulatorInputError",
    "UserError",
    "available",
    "check_dataset",
    "generate",
    "get",
    "open_dataset",
    "register",
    "verify",
]

__version__ = "0.1.0"


def __getattr__(name: str):
    # The HDF5 layer imports h5py; load it only when used.
    if name in ("Dataset", "check_dataset", "open_dataset", "verify"):
        from . import dataset

        return getattr(dataset, name)
    if name == "generate":
        from .generation import generate

        return generate
    raise AttributeError(name)
