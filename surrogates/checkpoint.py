"""Safe, atomic checkpoints: no pickle of code, one clear error for anything wrong.

A saved model is a directory holding

* ``model.safetensors``: the ``state_dict`` (tensors only),
* ``model.json``: ``format``, ``format_version``, ``model_type``, the SHA-256 of the weights
  file and the model's ``config`` (architecture, preprocessing state, dataset metadata).

Trainer checkpoints (optimizer, schedule, RNG states, position in the epoch) are single
``torch.save`` files of tensors and plain containers, loaded with ``weights_only=True``.
Every file is written to a temporary name in the same directory, flushed and renamed with
:func:`os.replace`, so a kill at any moment leaves either the old or the new file, never half of
one.

Example:
    >>> import tempfile, torch
    >>> d = tempfile.mkdtemp()
    >>> _ = save_model(d, model_type="flow", config={"a": 1}, state_dict={"w": torch.ones(2)})
    >>> load_model(d, model_type="flow")[0]
    {'a': 1}
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from simulators.errors import UserError

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "Persistent",
    "atomic_write",
    "load_model",
    "load_state",
    "read_meta",
    "save_model",
    "save_state",
]

#: bumped whenever the saved layout changes incompatibly
FORMAT_VERSION = 1
_FORMAT = "simsurrogates-model"
WEIGHTS, CONFIG = "model.safetensors", "model.json"
#: what every trainer checkpoint holds
_STATE_KEYS = ("model", "optimizers", "generator", "counters", "config")


class CheckpointError(UserError):
    """A checkpoint that cannot be loaded: missing, truncated, of another model type or version."""


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file and :func:`os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_model(
    directory: str | os.PathLike,
    *,
    model_type: str,
    config: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
) -> str:
    """Saves a model's weights and JSON configuration into ``directory``.

    Returns:
        The SHA-256 hex digest of the weights file (it identifies the checkpoint).
    """
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    blob = st_save(tensors)
    digest = hashlib.sha256(blob).hexdigest()
    meta = {
        "format": _FORMAT,
        "format_version": FORMAT_VERSION,
        "model_type": model_type,
        "weights_sha256": digest,
        "config": config,
    }
    directory = Path(directory)
    try:  # strict JSON: NaN/Infinity are not JSON, and a model that holds them is broken
        text = json.dumps(meta, indent=1, allow_nan=False)
    except ValueError:
        where = _nonfinite_key(config, "config") or "config"
        raise CheckpointError(
            f"{directory}: not saved: the model's {where} is NaN or infinite "
            "(did training diverge, or the data hold NaN/inf?)"
        ) from None
    atomic_write(directory / WEIGHTS, blob)
    # the JSON names the weights' hash, so a mismatched pair is detected on load
    atomic_write(directory / CONFIG, text.encode())
    return digest


def _nonfinite_key(value: Any, where: str) -> str | None:
    """The path (``config.preprocessing.mean[3]``) of the first non-finite number in ``value``."""
    if isinstance(value, float) and not math.isfinite(value):
        return where
    items = value.items() if isinstance(value, dict) else None
    if isinstance(value, (list, tuple)):
        items = ((f"[{i}]", v) for i, v in enumerate(value))
    for key, v in items or ():
        sub = f"{where}{key}" if str(key).startswith("[") else f"{where}.{key}"
        if (found := _nonfinite_key(v, sub)) is not None:
            return found
    return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"holds {name}, which is not JSON")


def read_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """Reads and checks ``model.json`` of a saved model (without the weights)."""
    path = Path(directory) / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{directory}: no saved model here (missing {CONFIG})")
    try:
        meta = json.loads(path.read_text(), parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable or truncated JSON ({exc})") from None
    except ValueError as exc:  # from _no_constant
        raise CheckpointError(f"{path}: {exc}; the model is broken, retrain it") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise CheckpointError(f"{path}: not a simsurrogates model file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {meta.get('format_version')} is not supported "
            f"(this version reads {FORMAT_VERSION})"
        )
    return meta


def load_model(
    directory: str | os.PathLike, *, model_type: str | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Loads ``(config, state_dict)`` saved by :func:`save_model`, on the CPU.

    Raises:
        CheckpointError: missing or truncated files, a weights/config mismatch, another format
            version, or (when ``model_type`` is given) a checkpoint of another model type.
    """
    meta = read_meta(directory)
    if model_type is not None and meta.get("model_type") != model_type:
        raise CheckpointError(
            f"{directory}: checkpoint holds a {meta.get('model_type')!r} model, not {model_type!r}"
        )
    wpath = Path(directory) / WEIGHTS
    if not wpath.is_file():
        raise CheckpointError(f"{directory}: missing weights file {WEIGHTS}")
    blob = wpath.read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta.get("weights_sha256"):
        raise CheckpointError(f"{wpath}: weights are truncated or do not match {CONFIG}")
    try:
        tensors = st_load(blob)
    except Exception:  # safetensors raises its own error types; the message is ours
        raise CheckpointError(
            f"{wpath}: not a readable safetensors file (corrupted, or written by another program)"
        ) from None
    return meta["config"], tensors


def save_state(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Atomically saves a trainer state (tensors, numbers, strings, lists, dicts only)."""
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(path, buf.getvalue())


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Loads a trainer state with ``weights_only=True``.

    Raises:
        CheckpointError: the file is missing, truncated or holds anything but plain data.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no trainer checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch's messages advise weights_only=False: never pass them on
        raise CheckpointError(
            f"{path}: not a readable trainer checkpoint (truncated, corrupted, or holding more "
            "than tensors and plain data); delete it to start the run again"
        ) from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: trainer checkpoint of another format version")
    missing = [k for k in _STATE_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: trainer checkpoint lacks {', '.join(missing)}")
    return state


class Persistent:
    """Saving and loading shared by every trained object (surrogates, NPE).

    A class sets :attr:`model_type` and implements :meth:`config` (JSON-serializable, without
    the weights), :meth:`from_config` (an object with untrained weights of the same shapes),
    :meth:`weights` (the module whose state dict is saved) and ``to(device)``.
    """

    #: saved in checkpoints; loading a checkpoint of another type is an error
    model_type: ClassVar[str] = ""
    checkpoint_hash: str | None = None
    run_dir: str | None = None

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Self:
        raise NotImplementedError

    def weights(self) -> nn.Module:
        raise NotImplementedError

    def to(self, device: Any) -> Self:
        raise NotImplementedError

    def save(self, directory: str | os.PathLike) -> str:
        """Writes ``model.safetensors`` and ``model.json`` atomically (no pickle); returns the
        SHA-256 of the weights."""
        self.checkpoint_hash = save_model(directory, model_type=self.model_type,
                                          config=self.config(),
                                          state_dict=self.weights().state_dict())  # fmt: skip
        self.run_dir = str(Path(directory).resolve())
        return self.checkpoint_hash

    @classmethod
    def load(cls, directory: str | os.PathLike, *, device: Any = "auto") -> Self:
        """Loads what :meth:`save` wrote (safetensors + JSON, no pickle) onto ``device``.

        Raises:
            CheckpointError: missing/truncated files, another model type or format version, or
                a configuration these weights do not fit.
        """
        config, state = load_model(directory, model_type=cls.model_type)
        try:
            obj = cls.from_config(config)
            obj.weights().load_state_dict(state)
        except (KeyError, TypeError, RuntimeError, ValueError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointError(
                f"{directory}: checkpoint does not match this {cls.__name__} ({msg})"
            ) from None
        obj.checkpoint_hash = read_meta(directory)["weights_sha256"]
        obj.run_dir = str(Path(directory).resolve())
        return obj.to(device)
