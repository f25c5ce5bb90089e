"""Bad outputs and faults, command by command: one line, exit 2, nothing of the user's lost.

``TABLE`` holds one case per (writing command, fault). Each case runs in a fresh folder that also
holds files of the user's; a snapshot of every path with its bytes, taken before and after, shows
that nothing was changed or left behind (a run stopped by a full disk keeps only its finished
parts, for ``--resume``). Cases run in-process through :func:`surrogates.cli.main` (fast); those in
``SUBPROCESS``, and the read-only ones (a read-only bind mount in a private mount namespace), run as
real processes, to see that no traceback reaches the user.

Then: after a full disk or too little free space, ``--resume`` gives the uninterrupted file; a real
full disk (a size-limited tmpfs, where the machine allows a private mount namespace); the kill
matrix (SIGKILL, SIGTERM, SIGINT at two points of ``simulate`` and ``sample``, then ``--resume``,
compared with an uninterrupted run); and the report swap of ``evaluate --overwrite``.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

import simulators
from simulators import part_files
from surrogates import report_folder
from surrogates.cli import build_parser, main

CLI = [sys.executable, "-m", "surrogates"]
ARCH = ["--arch", "transforms=2", "--arch", "hidden=16", "--epochs", "1", "--batch-size", "256",
        "--no-progress"]  # fmt: skip
#: the kill matrix's runs: 40 chunks of slcp, and a reference file of the same
KILL_SIM = ["slcp", "--n", "400000", "--chunk-size", "10000", "--seed", "3"]


# ---------------------------------------------------------------------------------------------
# Inputs, the user's folder, snapshots


@dataclass(frozen=True)
class Inputs:
    folder: Path
    moons: Path  # 1200 rows
    moons2: Path  # 1200 rows, another seed
    like: Path  # 30000 rows: three chunks to sample
    empty: Path  # no rows
    run: Path  # a trained flow


def _zero_rows(src: Path, dst: Path) -> None:
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        for name in ("theta", "x"):
            row = f[name].shape[1:]
            g.create_dataset(
                name, (0, *row), f[name].dtype, chunks=(1, *row), maxshape=(None, *row)
            )
        for key, value in f.attrs.items():
            g.attrs[key] = value
        g.attrs["n"] = 0


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    d = tmp_path_factory.mktemp("inputs")
    sim = simulators.get("two_moons")
    moons, moons2, like, empty = d / "moons.h5", d / "moons2.h5", d / "like.h5", d / "empty.h5"
    simulators.generate(sim, 1200, moons, seed=0, chunk_size=200)
    simulators.generate(sim, 1200, moons2, seed=1, chunk_size=200)
    simulators.generate(sim, 30_000, like, seed=2)
    _zero_rows(moons, empty)
    run = d / "run"
    argv = ["train", "flow", "--data", str(moons), "--out", str(run), "--device", "cpu", *ARCH]
    assert main(argv) == 0
    return Inputs(d, moons, moons2, like, empty, run)


def _user_folder(tmp_path: Path) -> Path:
    """The user's folder: a few files of theirs the commands must never touch."""
    work = tmp_path / "work"
    (work / "adir").mkdir(parents=True)
    (work / "notes.txt").write_text("the user's notes\n")
    (work / "keep.h5").write_bytes(b"the user's data, not even HDF5\n")
    (work / "adir" / "mine.txt").write_text("mine\n")
    (work / "ro").mkdir()
    (work / "ro" / "mine.txt").write_text("mine too\n")
    return work


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every path under ``roots`` with its kind, mode and bytes."""
    out: dict[str, tuple] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                st = p.lstat()
                if stat.S_ISLNK(st.st_mode):
                    out[str(p)] = ("link", os.readlink(p))
                elif stat.S_ISDIR(st.st_mode):
                    out[str(p)] = ("dir", stat.S_IMODE(st.st_mode))
                else:
                    out[str(p)] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes())
    return out


def _same_dataset(a: Path, b: Path) -> None:
    """Byte-identical ``theta``/``x`` and equal attributes (but the creation time)."""
    with h5py.File(a, "r") as f, h5py.File(b, "r") as g:
        assert sorted(f) == sorted(g)
        for name in f:
            assert f[name].dtype == g[name].dtype and f[name].shape == g[name].shape
            assert f[name][...].tobytes() == g[name][...].tobytes(), name
        skip = {"created"}
        fa = {k: v for k, v in f.attrs.items() if k not in skip}
        ga = {k: v for k, v in g.attrs.items() if k not in skip}
        assert fa.keys() == ga.keys()
        for k in fa:
            assert np.array_equal(fa[k], ga[k]), k


def _one_line(rc: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------------------------------------
# Read-only locations: a read-only bind mount (root, or a private user namespace), or chmod


def _mount_namespace_works() -> bool:
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        return False
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        probe = ('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && '
                 '! touch "$1/x" 2>/dev/null')  # fmt: skip
        try:
            proc = subprocess.run(["unshare", "-rm", "sh", "-c", probe, "sh", d],
                                  capture_output=True, timeout=30)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return False
        return proc.returncode == 0 and not os.path.exists(os.path.join(d, "x"))


MOUNT_NS = _mount_namespace_works()
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ---------------------------------------------------------------------------------------------
# The table: every writing command against every fault class

KIND = {"simulate": "file", "sample": "file", "score": "file", "evaluate": "folder",
        "train": "folder", "demo": "folder"}  # fmt: skip
NAME = {"simulate": "out.h5", "sample": "out.h5", "score": "out.csv", "evaluate": "out",
        "train": "out", "demo": "out"}  # fmt: skip


def _argv(command: str, inputs: Inputs | None, out: Path) -> list[str]:
    o = str(out)
    if command == "simulate":
        return ["simulate", "two_moons", "--n", "30000", "--chunk-size", "5000", "--seed", "1",
                "--out", o, "--no-progress"]  # fmt: skip
    assert inputs is not None
    return {
        "sample": ["sample", str(inputs.run), "--like", str(inputs.like), "--out", o,
                   "--no-progress"],
        "evaluate": ["evaluate", str(inputs.moons), str(inputs.moons2), "--out", o,
                     "--max-samples", "60"],
        "score": ["score", str(inputs.run), "--data", str(inputs.moons), "--out", o,
                  "--device", "cpu"],
        "train": ["train", "flow", "--data", str(inputs.moons), "--out", o, "--device", "cpu",
                  *ARCH],
        "demo": ["demo", "--quick", "--workers", "1", "--device", "cpu", "--out", o],
    }[command]  # fmt: skip


@dataclass
class Case:
    argv: list[str]
    expect: str  # a regular expression the one line must match
    parts: Path | None = None  # a full disk keeps this folder of finished parts (and only it)
    readonly: Path | None = None  # run with this folder read-only


Usage = namedtuple("Usage", "total used free")
# h5py reports a full disk as HDF5 does: an OSError without errno, the errno in the text
_H5_ENOSPC = ("Can't write data (file write failed: time = Mon Jan  1 00:00:00 2024, filename = "
              "'x.h5', file descriptor = 5, errno = 28, error message = 'No space left on device',"
              " buf = 0x0, total write size = 65536, bytes this sub-write = 65536, bytes actually"
              " written = 18446744073709551615, offset = 0)")  # fmt: skip


def _fill_disk(m: pytest.MonkeyPatch, at: str) -> None:
    """The disk fills up while the third part is written, or when the final file is assembled."""
    if at == "part":
        real, seen = part_files.write_file, {"parts": 0}

        def write_file(path, data):
            seen["parts"] += 1
            if seen["parts"] == 3:
                Path(path).write_bytes(data[: len(data) // 2])  # what fitted
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            real(path, data)

        m.setattr(part_files, "write_file", write_file)
        return
    real_create = part_files.create

    def create(f, name, *args, **kwargs):  # the final file's x: as h5py reports HDF5's failure
        if name == "x" and not Path(f.filename).name.startswith("chunk-"):
            raise OSError(_H5_ENOSPC)
        return real_create(f, name, *args, **kwargs)

    m.setattr(part_files, "create", create)


def _little_free_space(m: pytest.MonkeyPatch) -> None:
    m.setattr(shutil, "disk_usage", lambda path: Usage(10**12, 10**12 - 20_000, 20_000))


def _failing_writer(m: pytest.MonkeyPatch, module, name: str) -> None:
    """``module.name`` writes part of its file, then the disk is full."""

    def write(*args, **kwargs):
        target = next(a for a in args if isinstance(a, (str, Path)))
        Path(target).write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    m.setattr(module, name, write)


def _earlier_report(folder: Path) -> None:
    """What an earlier ``evaluate`` left: its files, listed in its manifest, and a user's file."""
    folder.mkdir()
    for name in ("metrics.json", "report.html", "x_histograms.png", "x_corner.png"):
        (folder / name).write_text(f"earlier {name}\n")
    (folder / report_folder.MANIFEST).write_text(
        '{"format": "simsurrogates-report", "files": ["metrics.json", "report.html", '
        '"x_corner.png", "x_histograms.png"]}\n'
    )
    (folder / "my_plot.png").write_text("the user's own figure\n")


def _recipe(work: Path, text: str) -> list[str]:
    folder = work / "recipes"
    folder.mkdir()
    (folder / "r.toml").write_text(text)
    return ["simulate", "--recipe", str(folder / "r.toml"), "--no-progress"]


def arrange(command: str, fault: str, work: Path, inputs: Inputs, m: pytest.MonkeyPatch) -> Case:
    """Sets up ``fault`` for ``command`` in the user's folder ``work``."""
    out = work / NAME[command]
    argv = _argv(command, inputs, out)

    def at(target: Path, *extra: str) -> list[str]:
        return [*_argv(command, inputs, target), *extra]

    if fault == "path through a file":
        return Case(at(work / "notes.txt" / NAME[command]),
                    r"notes\.txt.*(is a file, not a folder|Not a directory)")  # fmt: skip
    if fault == "wrong kind":  # a folder where a file goes, or a file where a folder goes
        if KIND[command] == "file":
            return Case(at(work / "adir", "--overwrite"), r"adir is a folder; a file is expected")
        flag = [] if command == "train" else ["--overwrite"]
        return Case(at(work / "notes.txt", *flag), r"notes\.txt is a file")
    if fault == "missing parent":
        return Case(at(work / "no" / "such" / NAME[command]), r"no/such does not exist")
    if fault == "read-only":
        return Case(at(work / "ro" / NAME[command]), r"Read-only file system|Permission denied",
                    readonly=work / "ro")  # fmt: skip
    if fault == "existing output":
        if command == "train":
            shutil.copytree(inputs.run, out)
            return Case(argv, r"already holds a training run; pass --resume")
        if KIND[command] == "file":
            return Case(at(work / "keep.h5"), r"keep\.h5 exists; pass --overwrite")
        return Case(at(work / "adir"), r"adir is not empty; pass --overwrite")
    if fault == "a user's file under a report's name":
        (work / "adir" / "metrics.json").write_text("the user's metrics\n")
        return Case(at(work / "adir", "--overwrite"), r"adir holds metrics\.json, which no")
    if fault == "recipe out escapes":
        text = 'simulator = "two_moons"\nn = 100\nout = "../../escaped.h5"\n'
        return Case(_recipe(work, text), r"r\.toml: out = '\.\./\.\./escaped\.h5' points outside")
    if fault == "recipe out absolute":
        text = f'simulator = "two_moons"\nn = 100\nout = "{work / "abs.h5"}"\n'
        return Case(_recipe(work, text), r"r\.toml: out = .*abs\.h5' is an absolute path")
    if fault == "recipe n as a string":
        text = 'simulator = "two_moons"\nn = "100"\nout = "x.h5"\n'
        return Case(_recipe(work, text), r"r\.toml: n must be an integer ≥ 1, got '100' \(a str")
    if fault == "recipe config as a number":
        text = 'simulator = "two_moons"\nn = 100\nout = "x.h5"\nconfig = 5\n'
        return Case(_recipe(work, text), r"r\.toml: config must be a table")
    if fault == "recipe setting of the wrong type":
        text = 'simulator = "gaussian_linear"\nn = 100\nout = "x.h5"\n[config]\ndim = "3"\n'
        return Case(_recipe(work, text), r"r\.toml: config\.dim must be an integer")
    if fault == "zero rows":
        empty = str(inputs.empty)
        argv = [empty if a in (str(inputs.moons2), str(inputs.like)) else a for a in argv]
        if command in ("score", "train"):
            argv[argv.index("--data") + 1] = empty
        return Case(argv, r"empty\.h5.*(no rows|n = 0|holds 0 rows)")
    if fault == "too little free space":
        _little_free_space(m)
        return Case(argv, r"not enough free space for .*out\.h5.*--resume", parts=out)
    if fault == "free space gone at assembly":

        def usage(path):  # plenty while the parts are written, then another writer takes it
            free = 20_000 if len(list(Path(path).glob("chunk-*.h5"))) == 6 else 10**12
            return Usage(10**12, 10**12 - free, free)

        m.setattr(shutil, "disk_usage", usage)
        return Case(argv, r"not enough free space for .*out\.h5: .*the finished chunks are kept "
                          r".*--resume", parts=out)  # fmt: skip
    if fault == "disk full in a part":
        _fill_disk(m, "part")
        return Case(argv, r"no space left on the device of .*out\.h5; 2 finished chunk\(s\) "
                          r"are kept .*--resume", parts=out)  # fmt: skip
    if fault == "disk full at assembly":
        _fill_disk(m, "assembly")
        return Case(argv, r"no space left .*out\.h5; 6 finished chunk\(s\).*--resume", parts=out)
    if fault == "disk full":
        if command == "score":
            _failing_writer(m, np, "savetxt")
            return Case(argv, r"no space left on the device of .*out\.csv")
        from surrogates import report

        _earlier_report(out)
        _failing_writer(m, report, "write_html")
        return Case([*argv, "--overwrite"], r"no space left on the device of .*out; the earlier")
    raise AssertionError(fault)


LOCATION = ("path through a file", "wrong kind", "missing parent", "read-only", "existing output")
RECIPE = ("recipe out escapes", "recipe out absolute", "recipe n as a string",
          "recipe config as a number", "recipe setting of the wrong type")  # fmt: skip
TABLE = [
    *[(c, f) for f in LOCATION for c in KIND
      if not (f == "missing parent" and c in ("train", "demo"))],  # these create parents
    ("evaluate", "a user's file under a report's name"),
    *[("simulate", f) for f in RECIPE],
    *[(c, "zero rows") for c in ("sample", "evaluate", "score", "train")],
    *[(c, f) for f in ("too little free space", "disk full in a part") for c in ("simulate",
                                                                              "sample")],
    ("simulate", "disk full at assembly"),
    ("simulate", "free space gone at assembly"),
    ("score", "disk full"),
    ("evaluate", "disk full"),
]  # fmt: skip
#: run in a real process too: no traceback reaches a real stderr
SUBPROCESS = {("simulate", "path through a file"), ("evaluate", "wrong kind"),
              ("score", "zero rows"), ("demo", "path through a file")}  # fmt: skip

# One process runs all of them (torch is imported once): each case's stderr goes, at the file
# descriptor, to its own file, and what escapes ``main`` is printed as the interpreter would.
_DRIVER = r"""
import json, os, sys, traceback
from surrogates.cli import main
jobs, codes = json.load(open(sys.argv[1])), []
for job in jobs:
    sys.stderr.flush()
    fd, saved = os.open(job["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), os.dup(2)
    os.dup2(fd, 2)
    try:
        code = main(job["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(fd)
        os.close(saved)
    codes.append(code)
json.dump(codes, open(sys.argv[2], "w"))
"""
# Read-only folders are read-only bind mounts in a private mount namespace.
_BATCH = """
jobs=$1 codes=$2; shift 2
for d in "$@"; do mount --bind "$d" "$d" && mount -o remount,bind,ro "$d" || exit 97; done
exec "$PY" -c "$DRIVER" "$jobs" "$codes"
"""


def _in_a_process(command: str, fault: str) -> bool:
    return (command, fault) in SUBPROCESS or (fault == "read-only" and MOUNT_NS)


@pytest.fixture(scope="module")
def processes(inputs, tmp_path_factory) -> dict[tuple[str, str], tuple]:
    """(rc, stderr, snapshot before, snapshot after, case) of every case run in a process."""
    import json

    root = tmp_path_factory.mktemp("processes")
    batch = [(c, f) for c, f in TABLE if _in_a_process(c, f)]
    works, cases, jobs = [], [], []
    for i, (c, f) in enumerate(batch):
        works.append(_user_folder(root / f"case{i}"))
        cases.append(arrange(c, f, works[-1], inputs, None))  # type: ignore[arg-type]
        jobs.append({"argv": cases[-1].argv, "err": str(root / f"case{i}.err")})
    before = [snapshot(w, inputs.folder) for w in works]
    (root / "jobs.json").write_text(json.dumps(jobs))
    readonly = [str(c.readonly) for c in cases if c.readonly is not None]
    cmd = ["sh", "-c", _BATCH, "sh", str(root / "jobs.json"), str(root / "codes.json"), *readonly]
    if readonly:
        cmd = ["unshare", "-rm", *cmd]
    env = {**os.environ, "PY": sys.executable, "DRIVER": _DRIVER}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    codes = json.loads((root / "codes.json").read_text())
    return {
        key: (codes[i], Path(jobs[i]["err"]).read_text(), before[i],
              snapshot(works[i], inputs.folder), cases[i])
        for i, key in enumerate(batch)
    }  # fmt: skip


@pytest.mark.parametrize(("command", "fault"), TABLE, ids=[f"{c}: {f}" for c, f in TABLE])
def test_every_writer_and_fault_gives_one_line_exit_2_and_costs_the_user_nothing(
    command, fault, inputs, tmp_path, monkeypatch, capsys, request
):
    if _in_a_process(command, fault):
        rc, err, before, after, case = request.getfixturevalue("processes")[command, fault]
    else:
        work = _user_folder(tmp_path)
        case = arrange(command, fault, work, inputs, monkeypatch)
        chmod = case.readonly is not None
        if chmod and ROOT:
            pytest.skip("a read-only location needs a private mount namespace (unshare)")
        before = snapshot(work, inputs.folder)
        if chmod:  # not root: permissions hold
            case.readonly.chmod(0o555)
        try:
            capsys.readouterr()
            rc, err = main(case.argv), capsys.readouterr().err
        finally:
            if chmod:
                case.readonly.chmod(0o755)
        after = snapshot(work, inputs.folder)
    line = _one_line(rc, err)
    assert line.startswith(f"surrogates {command}: error: ")
    assert re.search(case.expect, line), line
    assert [k for k in before if after.get(k) != before[k]] == []  # nothing changed or removed
    added = sorted(set(after) - set(before))
    if case.parts is None:
        assert added == []  # and nothing left behind
    else:  # only the finished parts, for --resume
        parts = f"{case.parts}.parts"
        assert added and added[0] == parts, added
        kept = re.compile(re.escape(parts) + r"/(chunk-\d{6}\.h5|spec\.json)")
        assert all(kept.fullmatch(k) for k in added[1:]), added


def test_the_table_covers_every_writing_command_and_fault_class():
    commands = {c for c, _ in TABLE}
    assert commands == set(KIND)
    for fault in LOCATION:
        covered = {c for c, f in TABLE if f == fault}
        assert covered >= {"simulate", "sample", "evaluate", "score"}, fault
    assert len(TABLE) == len(set(TABLE))


# ---------------------------------------------------------------------------------------------
# A full disk, then --resume


FULL_DISK = ("too little free space", "disk full in a part", "disk full at assembly",
             "free space gone at assembly")  # fmt: skip


@pytest.mark.parametrize("fault", FULL_DISK)
def test_after_a_full_disk_resume_gives_the_uninterrupted_file(
    fault, tmp_path, monkeypatch, capsys
):
    out, ref = tmp_path / "out.h5", tmp_path / "ref.h5"
    argv = _argv("simulate", None, out)
    with monkeypatch.context() as m:
        arrange("simulate", fault, tmp_path, None, m)  # type: ignore[arg-type]
        assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(argv) == 2  # no silent restart over the kept parts
    assert "pass --resume to continue it" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0
    simulators.generate(simulators.get("two_moons"), 30_000, ref, seed=1, chunk_size=5000)
    _same_dataset(out, ref)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5", "ref.h5"]


def test_free_space_is_projected_from_the_first_chunk(tmp_path, monkeypatch):
    # 30,000 rows in 6 chunks: the remaining parts plus the final file are about 11 chunks' size
    sim, out = simulators.get("two_moons"), tmp_path / "a.h5"
    seen = {}
    real = shutil.disk_usage

    def usage(path):
        parts = sorted(Path(path).glob("chunk-*.h5"))
        seen["part"] = parts[0].stat().st_size
        return Usage(10**12, 10**12 - 11 * seen["part"] + 1, 11 * seen["part"] - 1)

    monkeypatch.setattr(shutil, "disk_usage", usage)
    with pytest.raises(simulators.UserError, match="not enough free space"):
        simulators.generate(sim, 30_000, out, seed=1, chunk_size=5000)
    monkeypatch.setattr(shutil, "disk_usage", real)
    assert len(list((tmp_path / "a.h5.parts").glob("chunk-*.h5"))) == 1
    simulators.generate(sim, 30_000, out, seed=1, chunk_size=5000, resume=True)
    assert abs(out.stat().st_size - 6 * seen["part"]) < 0.15 * out.stat().st_size


@pytest.fixture(scope="module")
def slcp_reference(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("reference") / "slcp.h5"
    simulators.generate(simulators.get("slcp"), 400_000, path, seed=3, chunk_size=10_000)
    return path


_FULL_DISK = r"""
set -u
mount -t tmpfs -o size=48m tmpfs "$DISK"
"$PY" -m surrogates simulate $ARGS --out "$DISK/a.h5" --no-progress 2>"$HERE/err1" &
pid=$!
while [ ! -e "$DISK/a.h5.parts/chunk-000002.h5" ] && kill -0 $pid 2>/dev/null; do sleep 0.01; done
dd if=/dev/zero of="$DISK/fill" bs=1M 2>/dev/null
wait $pid; echo $? >"$HERE/rc1"
ls -a "$DISK/a.h5.parts" >"$HERE/parts"
rm "$DISK/fill"
"$PY" -m surrogates simulate $ARGS --out "$DISK/a.h5" --no-progress --resume 2>"$HERE/err2"
echo $? >"$HERE/rc2"
ls -a "$DISK" >"$HERE/after"
cp "$DISK/a.h5" "$HERE/a.h5"
"""


@pytest.mark.skipif(not MOUNT_NS, reason="needs a private mount namespace for a small tmpfs")
def test_a_real_full_disk_keeps_the_parts_and_resume_completes(tmp_path, slcp_reference):
    disk = tmp_path / "disk"
    disk.mkdir()
    env = {**os.environ, "DISK": str(disk), "HERE": str(tmp_path), "PY": sys.executable,
           "ARGS": " ".join(KILL_SIM)}  # fmt: skip
    subprocess.run(["unshare", "-rm", "sh", "-c", _FULL_DISK], env=env, check=True, timeout=300)
    err = (tmp_path / "err1").read_text()
    line = _one_line(int((tmp_path / "rc1").read_text()), err)
    assert re.search(r"no space left on the device of .*a\.h5; \d+ finished chunk\(s\) are kept "
                     r".*then rerun with --resume", line), line  # fmt: skip
    parts = (tmp_path / "parts").read_text().split()
    assert "spec.json" in parts and not [p for p in parts if p.endswith(".tmp")]
    assert 3 <= sum(p.startswith("chunk-") for p in parts) < 40
    assert (tmp_path / "rc2").read_text().strip() == "0", (tmp_path / "err2").read_text()
    assert (tmp_path / "after").read_text().split() == [".", "..", "a.h5"]
    _same_dataset(tmp_path / "a.h5", slcp_reference)


# ---------------------------------------------------------------------------------------------
# The kill matrix: a signal at some point, then --resume, against an uninterrupted run

SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}
POINTS = {"after the first chunk": 1, "halfway": 0.5}  # parts published before the signal


def _kills(fast: set[tuple[str, str]]) -> list:
    """Every (signal, point); those not in ``fast`` are marked slow."""
    return [pytest.param(s, p, marks=() if (s, p) in fast else pytest.mark.slow, id=f"{s} {p}")
            for s in SIGNALS for p in POINTS]  # fmt: skip


def _parts_at(point: str, n_chunks: int) -> int:
    return max(1, int(POINTS[point] * n_chunks)) if POINTS[point] < 1 else int(POINTS[point])


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(argv: list[str], parts: Path, chunks: int, sig: int) -> tuple[int, str]:
    """Starts the command, sends ``sig`` to its process group once ``chunks`` parts exist."""
    # a terminal's foreground job takes Ctrl-C; a test run started in the background of a
    # non-interactive shell ignores SIGINT, and the command would inherit that
    proc = subprocess.Popen([*CLI, *argv], start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)  # fmt: skip
    deadline = time.monotonic() + 120
    while len(list(parts.glob("chunk-*.h5"))) < chunks and time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.002)
    if proc.poll() is None:
        os.killpg(proc.pid, sig)  # the whole group, as a terminal's Ctrl-C or a job killer does
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _interrupt_mid_run(argv: list[str], out: Path, chunks: int, sig: int) -> tuple[int, str]:
    """:func:`_interrupt`, again (at most three times) when the run finished before the signal
    landed: on a loaded machine the polling test can be starved while a fast run completes."""
    for _ in range(3):
        rc, err = _interrupt(argv, Path(f"{out}.parts"), chunks, sig)
        if not out.exists():
            return rc, err
        out.unlink()  # the signal met the run's last steps: start afresh
        shutil.rmtree(f"{out}.parts", ignore_errors=True)
    return rc, err


def _check_interrupted(rc: int, err: str, sig_name: str, out: Path, n_chunks: int) -> None:
    done = len(list(Path(f"{out}.parts").glob("chunk-*.h5")))
    assert not out.exists() and 1 <= done < n_chunks, f"the signal landed after {done} chunks"
    if sig_name == "SIGINT":  # Ctrl-C: the chunks in flight finish, then one line
        lines = err.strip().splitlines()
        assert rc == 130 and len(lines) == 1 and lines[0].endswith(": interrupted"), err
    else:
        assert rc == -SIGNALS[sig_name], err


@pytest.mark.parametrize(
    ("sig", "point"),
    _kills({("SIGKILL", "after the first chunk"), ("SIGTERM", "halfway"), ("SIGINT", "halfway")}),
)
def test_simulate_killed_then_resumed_gives_the_uninterrupted_file(
    sig, point, tmp_path, slcp_reference
):
    out = tmp_path / "a.h5"
    argv = ["simulate", *KILL_SIM, "--out", str(out), "--no-progress"]
    rc, err = _interrupt_mid_run([*argv, "--workers", "2"], out, _parts_at(point, 40),
                                 SIGNALS[sig])  # fmt: skip
    _check_interrupted(rc, err, sig, out, 40)
    assert main([*argv, "--workers", "1", "--resume"]) == 0
    _same_dataset(out, slcp_reference)
    assert [p.name for p in tmp_path.iterdir()] == ["a.h5"]  # no parts, no temporaries


def _sample_resumes() -> bool:
    try:
        build_parser().parse_args(["sample", "r", "--like", "l", "--out", "o", "--resume"])
    except SystemExit:
        return False
    return True


@pytest.fixture(scope="module")
def sample_reference(inputs, tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("sample")
    like, ref = d / "like.h5", d / "ref.h5"
    simulators.generate(simulators.get("two_moons"), 200_000, like, seed=5)  # 20 chunks
    assert main(["sample", str(inputs.run), "--like", str(like), "--out", str(ref),
                 "--no-progress"]) == 0  # fmt: skip
    return like, ref


@pytest.mark.skipif(not _sample_resumes(), reason="`surrogates sample` has no --resume yet")
@pytest.mark.parametrize(
    ("sig", "point"), _kills({("SIGKILL", "after the first chunk"), ("SIGINT", "halfway")})
)
def test_sample_killed_then_resumed_gives_the_uninterrupted_file(
    sig, point, inputs, sample_reference, tmp_path
):
    like, ref = sample_reference
    out = tmp_path / "g.h5"
    argv = ["sample", str(inputs.run), "--like", str(like), "--out", str(out), "--no-progress"]
    rc, err = _interrupt_mid_run(argv, out, _parts_at(point, 20), SIGNALS[sig])
    _check_interrupted(rc, err, sig, out, 20)
    assert main([*argv, "--resume"]) == 0
    _same_dataset(out, ref)
    assert [p.name for p in tmp_path.iterdir()] == ["g.h5"]


# ---------------------------------------------------------------------------------------------
# evaluate --overwrite: only the earlier report's files are replaced, and in one swap


def _manifest(folder: Path) -> set[str]:
    import json

    return set(json.loads((folder / report_folder.MANIFEST).read_text())["files"])


def _earlier(rep: Path, *, manifest: bool = True) -> set[str]:
    """An earlier report (one figure of a kind the new one does not draw) and the user's files in
    its folder; returns the report's file names."""
    import json

    rep.mkdir()
    files = {"metrics.json", "report.html", "x_histograms.png", "features.png"}
    for name in files - {"metrics.json"}:
        (rep / name).write_text(f"earlier {name}\n")
    figures = sorted(files - {"metrics.json", "report.html"})
    (rep / "metrics.json").write_text(json.dumps({"report_version": 1, "figures": figures}))
    if manifest:
        listed = {"format": "simsurrogates-report", "files": sorted(files)}
        (rep / report_folder.MANIFEST).write_text(json.dumps(listed))
        files.add(report_folder.MANIFEST)
    (rep / "notes.txt").write_text("the user's notes\n")
    (rep / "my_plot.png").write_bytes(b"the user's own figure")
    (rep / "mine").mkdir()
    (rep / "mine" / "a.txt").write_text("deep\n")
    (rep / "link").symlink_to("notes.txt")
    return files


def _users(root: Path, report: set[str]) -> dict[str, tuple]:
    return {k: v for k, v in snapshot(root).items() if Path(k).name not in report}


def test_evaluate_overwrite_replaces_only_the_earlier_report(inputs, tmp_path):
    rep = tmp_path / "rep"
    old = _earlier(rep)
    user = _users(tmp_path, old)
    argv = ["evaluate", str(inputs.moons), str(inputs.moons2), "--out", str(rep), "--overwrite",
            "--max-samples", "60"]  # fmt: skip
    assert main(argv) == 0
    new = _manifest(rep)
    assert {"metrics.json", "report.html", "x_histograms.png", "x_corner.png"} <= new
    assert _users(tmp_path, old | new) == user  # the user's files, untouched
    assert {p.name for p in rep.iterdir()} == new | {report_folder.MANIFEST} | {
        "notes.txt",
        "my_plot.png",
        "mine",
        "link",
    }  # features.png (earlier report) is gone
    assert "earlier" not in (rep / "report.html").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]  # no temporaries beside it


def _publish(rep: Path, names=("metrics.json", "report.html", "x_histograms.png")) -> None:
    with report_folder.building(rep) as tmp:
        for name in names:
            (tmp / name).write_text(f"new {name}\n")


@pytest.mark.parametrize("swap", ["exchange", "file by file"])
@pytest.mark.parametrize("earlier", ["with a manifest", "from before manifests"])
def test_the_swap_replaces_the_report_files_and_nothing_else(swap, earlier, tmp_path, monkeypatch):
    rep = tmp_path / "rep"
    old = _earlier(rep, manifest=earlier == "with a manifest")
    user = _users(tmp_path, old | {report_folder.MANIFEST})
    if swap == "file by file":  # not Linux, or the destination holds the working folder
        monkeypatch.setattr(report_folder, "_can_exchange", lambda out: False)
    _publish(rep)
    assert _users(tmp_path, old | {report_folder.MANIFEST}) == user
    assert _manifest(rep) == {"metrics.json", "report.html", "x_histograms.png"}
    assert not (rep / "features.png").exists()
    assert (rep / "x_histograms.png").read_text() == "new x_histograms.png\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]


def test_a_users_file_under_a_report_name_is_refused_before_the_swap(tmp_path):
    rep = tmp_path / "rep"
    _earlier(rep)
    (rep / "x_corner.png").write_text("the user's corner plot\n")  # not in the manifest
    before = snapshot(tmp_path)
    with pytest.raises(simulators.UserError, match=r"holds x_corner\.png, which no earlier"):
        _publish(rep, ("metrics.json", "x_corner.png"))
    assert snapshot(tmp_path) == before


def test_an_interrupted_swap_leaves_the_earlier_report(tmp_path, monkeypatch):
    rep = tmp_path / "rep"
    _earlier(rep)
    before = snapshot(tmp_path)

    def interrupted(a, b):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_folder, "_exchange", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _publish(rep)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "point", ["building", pytest.param("figures written", marks=pytest.mark.slow)]
)
def test_a_killed_evaluate_leaves_the_earlier_report_and_the_next_one_cleans_up(
    point, inputs, tmp_path
):
    rep = tmp_path / "rep"
    old = _earlier(rep)
    before, user = snapshot(tmp_path), _users(tmp_path, old | {report_folder.MANIFEST})
    argv = ["evaluate", str(inputs.moons), str(inputs.moons2), "--out", str(rep), "--overwrite",
            "--max-samples", "100"]  # fmt: skip
    proc = subprocess.Popen([*CLI, *argv], start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    want = "x_histograms.png" if point == "figures written" else "."
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        tmp = [p for p in tmp_path.iterdir() if p.name.startswith(".rep.")]
        if tmp and (tmp[0] / want).exists():
            break
        time.sleep(0.002)
    assert proc.poll() is None, "evaluate finished before the kill"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if "/.rep." not in k} == before  # the earlier report
    assert len({k.split("/.rep.")[1].split("/")[0] for k in after if "/.rep." in k}) == 1
    _publish(rep)  # the next report into rep removes what the killed one left
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]
    assert _users(tmp_path, old | {report_folder.MANIFEST}) == user
