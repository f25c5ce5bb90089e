"""The command line as a user meets it: real subprocesses, real kills, one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import simulators

CLI = [sys.executable, "-m", "surrogates"]


def cli(*args, cwd=None, check_rc=None):
    proc = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd)
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stderr
    return proc


def read(path):
    with h5py.File(path, "r") as f:
        return f["theta"][...], f["x"][...]


def test_kill_and_resume_gives_the_uninterrupted_file(tmp_path):
    out = tmp_path / "a.h5"
    parts = tmp_path / "a.h5.parts"
    args = ["simulate", "slcp", "--n", "1000000", "--seed", "3", "--out", out]
    proc = subprocess.Popen(
        [*CLI, *map(str, args), "--workers", "2"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not list(parts.glob("chunk-*.h5")) and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: the run and its workers
    proc.wait()
    done = len(list(parts.glob("chunk-*.h5")))
    assert not out.exists()
    assert 1 <= done < 100, f"kill landed after {done} of 100 chunks"
    cli(*args, "--workers", "2", check_rc=2)  # refuses to silently restart
    cli(*args, "--workers", "2", "--resume", check_rc=0)
    assert not parts.exists()
    ref = tmp_path / "ref.h5"
    cli(
        "simulate",
        "slcp",
        "--n",
        "1000000",
        "--seed",
        "3",
        "--out",
        ref,
        "--workers",
        "1",
        check_rc=0,
    )
    for u, v in zip(read(out), read(ref), strict=True):
        np.testing.assert_array_equal(u, v)


@pytest.fixture
def existing(tmp_path):
    path = tmp_path / "keep.h5"
    cli("simulate", "two_moons", "--n", "100", "--out", path, check_rc=0)
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simulate", "nope", "--n", "5", "--out", "{tmp}/b.h5"], "unknown simulator 'nope'"),
        (["simulate", "two_moons", "--n", "0", "--out", "{tmp}/b.h5"], "--n must be a positive"),
        (["simulate", "two_moons", "--n", "-5", "--out", "{tmp}/b.h5"], "--n must be a positive"),
        (["simulate", "two_moons", "--n", "x", "--out", "{tmp}/b.h5"], "invalid int value"),
        (
            ["simulate", "two_moons", "--n", "5", "--out", "{tmp}/b.h5", "--set", "foo=1"],
            "unknown setting 'foo'",
        ),
        (
            ["simulate", "gaussian_linear", "--n", "5", "--out", "{tmp}/b.h5", "--set", "dim=abc"],
            "expected a value of type int",
        ),
        (["simulate", "two_moons", "--n", "5", "--out", "{tmp}/keep.h5"], "pass --overwrite"),
        (["simulate", "two_moons", "--n", "5", "--out", "{tmp}/no/such/b.h5"], "does not exist"),
        (["simulate", "--recipe", "{tmp}/none.toml"], "does not exist"),
        (["info", "{tmp}/trunc.h5"], "trunc.h5"),
        (["info", "{tmp}/text.h5"], "not a readable HDF5 file"),
        (["info", "{tmp}/missing.h5"], "does not exist"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_user_errors_are_one_line_exit_2_and_touch_nothing(tmp_path, existing, args, message):
    data = existing.read_bytes()
    (tmp_path / "trunc.h5").write_bytes(data[: len(data) // 3])
    (tmp_path / "text.h5").write_text("hello")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    proc = cli(*[a.format(tmp=tmp_path) for a in args])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before


def test_out_of_prior_and_nan_theta_are_rejected_by_simulate():
    sim = simulators.get("slcp")
    rng = np.random.default_rng(0)
    with pytest.raises(simulators.SimulatorInputError, match="outside the prior"):
        sim.simulate(np.full((2, 5), 4.0), rng)
    with pytest.raises(simulators.SimulatorInputError, match="NaN"):
        sim.simulate(np.full((2, 5), np.nan), rng)


def test_recipe_and_info(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        'simulator = "gaussian_linear"\nn = 300\nseed = 2\nout = "g.h5"\n[config]\ndim = 3\n'
    )
    proc = cli("simulate", "--recipe", recipe, check_rc=0)
    assert "wrote" in proc.stdout and "300 rows of gaussian_linear" in proc.stdout
    with simulators.open_dataset(tmp_path / "g.h5") as data:
        assert data.x.shape == (300, 3) and data.meta["seed"] == 2
    info = cli("info", tmp_path / "g.h5", check_rc=0).stdout
    assert "gaussian_linear" in info and "integrity: OK" in info and "300" in info
    bad = tmp_path / "bad.toml"
    bad.write_text('simulator = "slcp"\nn = 3\nsedd = 1\n')
    proc = cli("simulate", "--recipe", bad, check_rc=2)
    assert "unknown key(s) sedd" in proc.stderr


def test_shipped_recipes_parse():
    from surrogates.cli.simulate import load_recipe

    recipes = sorted((Path(__file__).resolve().parents[1] / "datasets").glob("*.toml"))
    assert recipes, "no recipes shipped"
    for path in recipes:
        recipe = load_recipe(path)
        cls = simulators.registry.simulator_class(recipe["simulator"])
        cls(**recipe.get("config", {}))
        assert recipe["out"].parent == path.parent


def test_dask_scheduler_gives_the_same_file(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, protocol="tcp://",
        dashboard_address=None,
    ) as cluster:  # fmt: skip
        args = ["simulate", "slcp", "--n", "30000", "--seed", "3", "--chunk-size", "5000"]
        cli(*args, "--out", tmp_path / "d.h5", "--scheduler", cluster.scheduler_address,
            check_rc=0)  # fmt: skip
    cli(*args, "--out", tmp_path / "w.h5", check_rc=0)
    for u, v in zip(read(tmp_path / "d.h5"), read(tmp_path / "w.h5"), strict=True):
        np.testing.assert_array_equal(u, v)
