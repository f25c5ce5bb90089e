"""A report folder, built beside its destination and swapped in whole.

:func:`building` yields a new temporary sibling ``.NAME.<hex>.tmp`` of the destination. When the
block ends normally it writes ``report_manifest.json`` (the list of the report's own files) and
swaps the folder in:

* no destination yet: one rename;
* a destination folder: the entries a user put there (all that the previous report's manifest does
  not list) are hard-linked into the new folder, the two folders are exchanged by one atomic
  ``renameat2(RENAME_EXCHANGE)``, and the old folder (the previous report and the extra links) is
  removed. A kill at any moment leaves the old report or the new one under the destination's name,
  with the user's files in it.

Where the exchange is not available (not Linux, a file system without it or without hard links,
or the destination holds the current working folder, which must keep existing), the report's files
are replaced one by one instead: each is then the old or the new one, and at every step the
manifest lists every report file present.

Only the previous report's files are replaced: those its manifest lists or, for a report written
before manifests, ``metrics.json``, ``report.html`` and the figures ``metrics.json`` names. A
user's file under the name of a new report file is refused (:func:`check_names`), before any work.
A block that fails removes its temporary folder; a disk that fills up is reported in one line.
Two reports written into one destination at the same time are not supported.

Example:
    >>> with building(Path("report")) as tmp:  # doctest: +SKIP
    ...     (tmp / "metrics.json").write_text("{}")
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from simulators.errors import UserError
from simulators.outputs import is_disk_full

__all__ = ["MANIFEST", "building", "check_names", "previous_report"]

MANIFEST = "report_manifest.json"
_FORMAT = "simsurrogates-report"


def _plain(name: object) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def previous_report(out: Path) -> set[str]:
    """Names of the files in ``out`` that an earlier report wrote (empty if none)."""
    if not out.is_dir():
        return set()
    names: list[object] = []
    manifest = _read_json(out / MANIFEST)
    metrics = _read_json(out / "metrics.json")
    if manifest.get("format") == _FORMAT and isinstance(manifest.get("files"), list):
        names = [*manifest["files"], MANIFEST]
    elif "report_version" in metrics and isinstance(metrics.get("figures"), list):
        names = ["metrics.json", "report.html", *metrics["figures"]]  # from before manifests
    return {n for n in names if _plain(n) and (out / n).is_file() and not (out / n).is_symlink()}


def check_names(out: Path, names: Iterable[str]) -> None:
    """Refuses when ``out`` holds a file of the user's under the name of a new report file."""
    if not out.is_dir():
        return
    old = previous_report(out)
    clash = sorted(n for n in {*names, MANIFEST} if os.path.lexists(out / n) and n not in old)
    if clash:
        raise UserError(
            f"{out} holds {', '.join(clash)}, which no earlier report wrote; move it away or "
            "write the report into another folder"
        )


@contextmanager
def building(out: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary folder to write the report into; publishes it when the block ends."""
    out = Path(os.path.realpath(out))  # a symbolic link to a folder: swap the folder itself
    _remove_stale(out)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir()
    published = False
    try:
        yield tmp
        files = sorted(p.name for p in tmp.iterdir() if p.is_file())
        _write_json(tmp / MANIFEST, {"format": _FORMAT, "files": files})
        _publish(tmp, out)
        published = True
    except BaseException as exc:
        if not published:
            shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(exc):
            raise UserError(
                f"no space left on the device of {out}; the earlier report there is unchanged"
            ) from None
        raise


def _write_json(path: Path, value: object) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(json.dumps(value, indent=1) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _remove_stale(out: Path) -> None:
    """Removes the temporary folders of a report into ``out`` that was killed."""
    pattern = re.compile(re.escape(f".{out.name}.") + r"[0-9a-f]{32}\.tmp")
    if not out.parent.is_dir():
        return
    for p in out.parent.iterdir():
        if pattern.fullmatch(p.name) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


def _publish(tmp: Path, out: Path) -> None:
    if not os.path.lexists(out):
        os.rename(tmp, out)
        return
    old = previous_report(out)
    new = {p.name for p in tmp.iterdir()}
    check_names(out, new)  # again: a file may have appeared while the report was computed
    if _can_exchange(out):
        try:
            mirrored = _mirror(out, tmp, skip=old)
            shutil.copymode(out, tmp)
            _exchange(tmp, out)
        except OSError:
            for p in tmp.iterdir():  # undo the mirror; the report's own files stay
                if p.name not in new:
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p)
                    else:
                        p.unlink()
        else:
            _settle(tmp, out, mirrored, old)
            return
    _replace_files(tmp, out, new, old)


def _can_exchange(out: Path) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        cwd, target = Path.cwd().resolve(), out.resolve()
    except OSError:
        return True
    return cwd != target and target not in cwd.parents


def _exchange(a: Path, b: Path) -> None:
    """Swaps two paths atomically (Linux ``renameat2`` with ``RENAME_EXCHANGE``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(b))


def _mirror(src: Path, dst: Path, skip: set[str]) -> set[str]:
    """Hard-links every entry of ``src`` but ``skip`` into ``dst``; returns the relative paths."""
    done: set[str] = set()

    def walk(s: Path, d: Path, rel: str) -> None:
        for entry in os.scandir(s):
            if not rel and entry.name in skip:
                continue
            r = f"{rel}{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                os.mkdir(d / entry.name)
                shutil.copymode(entry.path, d / entry.name)
                walk(Path(entry.path), d / entry.name, r + "/")
            else:
                os.link(entry.path, d / entry.name, follow_symlinks=False)
            done.add(r)

    walk(src, dst, "")
    return done


def _settle(old: Path, out: Path, mirrored: set[str], report: set[str]) -> None:
    """After the exchange: moves entries that appeared in the old folder meanwhile, removes it.

    Never raises: the new report is published; at worst the old folder stays as it is.
    """
    try:
        if _move_late_entries(old, out, mirrored, report):
            shutil.rmtree(old, ignore_errors=True)
    except OSError:
        pass


def _move_late_entries(old: Path, out: Path, mirrored: set[str], report: set[str]) -> bool:
    """Moves into ``out`` what is neither mirrored nor the old report; False if any stays."""
    moved_all = True
    for root, dirs, files in os.walk(old):
        rel = os.path.relpath(root, old)
        rel = "" if rel == "." else rel + "/"
        for name in [*dirs, *files]:
            r = f"{rel}{name}"
            if r in mirrored or (not rel and name in report):
                continue
            target = out / r
            if not os.path.lexists(target) and target.parent.is_dir():
                os.rename(old / r, target)
            else:
                moved_all = False
            if name in dirs:
                dirs.remove(name)
    return moved_all


def _replace_files(tmp: Path, out: Path, new: set[str], old: set[str]) -> None:
    """The fallback: report files replaced one by one, the manifest always covering them."""
    _write_json(out / MANIFEST, {"format": _FORMAT, "files": sorted((old | new) - {MANIFEST})})
    for name in sorted(new - {MANIFEST}):
        try:
            os.replace(tmp / name, out / name)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            staged = out / f".{name}.{uuid.uuid4().hex}.tmp"
            try:
                shutil.copyfile(tmp / name, staged)
                os.replace(staged, out / name)
            finally:
                staged.unlink(missing_ok=True)
    for name in old - new:
        (out / name).unlink(missing_ok=True)
    os.replace(tmp / MANIFEST, out / MANIFEST)
    shutil.rmtree(tmp, ignore_errors=True)
