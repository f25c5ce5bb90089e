"""The one place where a device name becomes a :class:`torch.device`."""

from __future__ import annotations

import torch

from simulators.errors import UserError

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/``None`` -> CUDA when available, else CPU; anything else as given.

    Raises:
        UserError: an unknown device name, or CUDA asked for where there is none.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"device must be auto, cpu or cuda[:N], got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was requested but CUDA is not available")
    return dev
