"""Output locations, checked before any work; disk-full errors told apart from other I/O errors.

Every command that writes calls :func:`check_output_location` first, so a location that cannot be
written fails in one line before hours of work, and leaves nothing behind. The check names the path
as the user spelled it and says what is wrong with it: a path through a regular file, a folder
where a file is expected (or the reverse), a missing parent folder, a folder or file system that
cannot be written, an existing output without ``overwrite``.

Example:
    >>> from simulators.outputs import check_output_location
    >>> check_output_location("out.h5", kind="file")  # doctest: +SKIP
    PosixPath('/home/me/out.h5')
"""

from __future__ import annotations

import errno
import os
import re
import stat
import uuid
from pathlib import Path
from typing import Literal

from .base import SimulatorInputError

__all__ = ["check_output_location", "format_bytes", "is_disk_full"]

#: errno values that mean "the device is full" (a quota counts as full)
_FULL = {errno.ENOSPC, errno.EDQUOT}
# h5py reports HDF5's write failures as OSError without errno, the errno inside the text.
_H5_ERRNO = re.compile(r"errno = (\d+)")


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the device (or a quota) is full.

    An ``OSError`` with that errno, or HDF5's report of a failed write as h5py raises it (an
    ``OSError`` or a ``RuntimeError`` whose text holds ``errno = 28``).
    """
    if not isinstance(exc, (OSError, RuntimeError)):
        return False
    if getattr(exc, "errno", None) in _FULL:
        return True
    text = str(exc)
    if any(int(m) in _FULL for m in _H5_ERRNO.findall(text)):
        return True
    return "No space left on device" in text or "Disk quota exceeded" in text


def format_bytes(n: float) -> str:
    """``1234567`` → ``'1.2 MB'`` (decimal units, as ``df -H`` prints them)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _probe(folder: Path, name: str, shown: str) -> None:
    """Creates and removes a temporary file in ``folder``, named as the writer's temporaries are.

    A real write is the only honest test: permissions, a read-only mount, ACLs, a full inode table
    and names too long for the file system all show up here, and ``os.access`` misses some of them.
    """
    probe = folder / f".{name}.{uuid.uuid4().hex}.tmp"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise SimulatorInputError(f"cannot write in {shown}: {exc.strerror or exc}") from None
    os.close(fd)
    probe.unlink()


def _first_existing(path: Path) -> Path:
    """The nearest ancestor of ``path`` (or itself) that exists, following no missing parts."""
    for p in (path, *path.parents):
        if os.path.lexists(p):
            return p
    return Path(path.anchor or ".")


def check_output_location(
    path: str | os.PathLike,
    *,
    kind: Literal["file", "folder"] = "file",
    overwrite: bool = False,
    parents: bool = False,
) -> Path:
    """Checks that ``path`` can be written as a file or folder, before any work.

    Args:
        path: the output as the user gave it.
        kind: ``"file"`` (a dataset, a CSV) or ``"folder"`` (a report, a run folder).
        overwrite: an existing output may be replaced; without it an existing file or a non-empty
            folder is refused (callers with their own rules for existing outputs pass ``True``).
        parents: missing parent folders will be created (then the nearest existing ancestor must
            be a writable folder); without it a missing parent is refused.

    Returns:
        The absolute path.

    Raises:
        SimulatorInputError: (a :class:`~simulators.errors.UserError`) one line naming the path
            and what is wrong with it; nothing is created.
    """
    shown = str(path)
    path = Path(os.path.abspath(path))
    found = _first_existing(path)
    if found != path:  # some part of the path is missing: what blocks it?
        blocked = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), None)
        if blocked is not None or (found.exists() and not found.is_dir()):
            blocked = blocked or found
            raise SimulatorInputError(f"cannot write {shown}: {blocked} is a file, not a folder")
        if not found.exists():  # a dangling symbolic link on the way
            raise SimulatorInputError(f"cannot write {shown}: {found} is a broken symbolic link")
        if path.parent != found and not parents:
            missing = Path(shown).parent
            raise SimulatorInputError(
                f"cannot write {shown}: output folder {missing} does not exist"
            )
        _probe(found, path.name, str(found))
        return path
    if kind == "file":
        if path.is_dir():
            raise SimulatorInputError(f"{shown} is a folder; a file is expected here")
        if path.exists() and not stat.S_ISREG(path.stat().st_mode):
            raise SimulatorInputError(f"{shown} is not a regular file")
        if os.path.lexists(path) and not overwrite:
            raise SimulatorInputError(f"{shown} exists; pass overwrite=True to replace it")
        _probe(path.parent, path.name, str(path.parent))
        return path
    if kind != "folder":
        raise ValueError(f"kind must be 'file' or 'folder', got {kind!r}")
    if not path.is_dir():
        raise SimulatorInputError(f"{shown} is a file; a folder is expected here")
    if not overwrite and any(path.iterdir()):
        raise SimulatorInputError(f"{shown} is not empty; pass overwrite=True to replace it")
    _probe(path, path.name, shown)
    if path.parent != path:
        _probe(path.parent, path.name, str(path.parent))
    return path
