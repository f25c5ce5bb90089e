"""`surrogates train` / `surrogates sample` end to end, and the surrogate as a drop-in simulator."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

import simulators
from surrogates.cli import main
from surrogates.models import Flow

ARCH = [
    "--arch",
    "transforms=2",
    "--arch",
    "hidden=16",
    "--epochs",
    "2",
    "--batch-size",
    "128",
    "--no-progress",
]


@pytest.fixture(scope="module")
def moons(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "moons.h5"
    simulators.generate(simulators.get("two_moons"), 1200, path, seed=0, chunk_size=200)
    return path


@pytest.fixture(scope="module")
def run_dir(moons, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "flow"
    assert (
        main(["train", "flow", "--data", str(moons), "--out", str(out), "--device", "cpu", *ARCH])
        == 0
    )
    return out


def test_train_writes_model_checkpoint_and_metrics(run_dir, capsys):
    names = {p.name for p in run_dir.iterdir()}
    assert {"model.json", "model.safetensors", "metrics.csv", "trainer.ckpt"} <= names
    model = Flow.load(run_dir)
    assert model.meta["simulator"] == "two_moons" and model.result is None
    assert model.arch["transforms"] == 2 and model.arch["hidden"] == [16]
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("step,epoch,train_loss,val_loss") and len(lines) == 3


def test_sample_like_reference_gives_same_schema_and_conditions(moons, run_dir, tmp_path):
    out = tmp_path / "g.h5"
    assert (
        main(["sample", str(run_dir), "--like", str(moons), "--out", str(out), "--no-progress"])
        == 0
    )
    summary = simulators.verify(out)
    assert summary is not None
    with simulators.open_dataset(moons) as ref, simulators.open_dataset(out) as gen:
        assert np.array_equal(ref.theta[:], gen.theta[:])
        assert gen.x.shape == ref.x.shape and gen.param_names == ref.param_names
        assert gen.meta["simulator"] == "surrogate:two_moons"
        assert np.isfinite(gen.x[:]).all() and not np.array_equal(gen.x[:], ref.x[:])
    # the same seed gives the same file contents
    out2 = tmp_path / "g2.h5"
    main(["sample", str(run_dir), "--like", str(moons), "--out", str(out2), "--no-progress"])
    with h5py.File(out, "r") as a, h5py.File(out2, "r") as b:
        assert np.array_equal(a["x"][...], b["x"][...])


@pytest.mark.filterwarnings("ignore:torch.compile failed:RuntimeWarning")
def test_fast_sampling_writes_the_eager_samples_up_to_rounding(moons, run_dir, tmp_path):
    paths = {}
    for fast in (None, "float32"):
        paths[fast] = tmp_path / f"g_{fast}.h5"
        extra = ["--fast", fast] if fast else []
        argv = ["sample", str(run_dir), "--like", str(moons), "--out", str(paths[fast])]
        assert main([*argv, "--no-progress", *extra]) == 0
    with h5py.File(paths[None], "r") as a, h5py.File(paths["float32"], "r") as b:
        np.testing.assert_allclose(b["x"][...], a["x"][...], atol=1e-4)


def test_resume_of_a_finished_run_and_refusal_to_clobber(moons, run_dir, capsys):
    before = (run_dir / "model.safetensors").read_bytes()
    args = ["train", "flow", "--data", str(moons), "--out", str(run_dir), "--device", "cpu", *ARCH]
    assert main(args) == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    assert (run_dir / "model.safetensors").read_bytes() == before


def test_train_with_a_weight_average_and_a_bad_decay(moons, tmp_path, capsys):
    args = ["train", "flow", "--data", str(moons), "--device", "cpu", *ARCH]
    assert main([*args, "--out", str(tmp_path / "a"), "--ema", "0.9"]) == 0
    assert Flow.load(tmp_path / "a").arch["hidden"] == [16]
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "b"), "--ema", "1.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "ema must be in (0, 1)" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "b").exists()


def test_user_errors_are_one_line_exit_2(tmp_path, moons):
    proc = subprocess.run(
        [sys.executable, "-m", "surrogates", "sample", str(tmp_path), "--like", str(moons),
         "--out", str(tmp_path / "g.h5")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "no saved model here" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("nope=1", "unknown Flow setting 'nope'; known: kind, transforms"),
        ("transforms=x", "transforms must be an integer, got 'x'"),
        ("kind=maf", "kind must be one of coupling, autoregressive, two_stage"),
        ("hidden", "an architecture setting is KEY=VALUE"),
    ],
)
def test_bad_arch_settings_are_one_line_and_exit_2(moons, tmp_path, setting, message):
    proc = subprocess.run(
        [sys.executable, "-m", "surrogates", "train", "flow", "--data", str(moons),
         "--out", str(tmp_path / "run"), "--arch", setting],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # nothing written


def test_as_simulator_is_a_drop_in_replacement(run_dir, tmp_path):
    model = Flow.load(run_dir, device="cpu")
    sim = model.as_simulator()
    assert isinstance(sim, simulators.Simulator)
    base = simulators.get("two_moons")
    assert sim.param_names == base.param_names and sim.x_shape == base.x_shape
    assert sim.config["checkpoint"] == model.checkpoint_hash
    rng = np.random.default_rng(0)
    theta = base.prior.sample(5, rng)
    a = sim.simulate(theta, np.random.default_rng(1))
    assert np.array_equal(a, sim.simulate(theta, np.random.default_rng(1)))  # pure given rng
    with pytest.raises(simulators.SimulatorInputError, match="outside the prior"):
        sim.simulate(np.full((1, 2), 99.0), rng)
    path = simulators.generate(sim, 300, tmp_path / "s.h5", seed=3, chunk_size=100)
    simulators.verify(path)
    with simulators.open_dataset(path) as d:
        assert d.x.shape == (300, 2) and np.isfinite(d.x[:]).all()
    assert torch.get_num_threads() >= 1


def test_score_writes_scores_and_p_values_that_flag_shifted_events(
    moons, run_dir, tmp_path, capsys
):
    ref, odd = tmp_path / "ref.h5", tmp_path / "odd.h5"
    simulators.generate(simulators.get("two_moons"), 400, ref, seed=7)
    with simulators.open_dataset(ref) as data:
        theta, x = data.theta[...].astype(np.float64), data.x[...]
    # the same conditions, events moved far off the moons: a flow must find them unlikely
    shifted = simulators.get("two_moons")
    simulators.generate(shifted, 400, odd, seed=8, theta=theta)
    with h5py.File(odd, "r+") as f:
        f["x"][...] = x + 1.5
    out = tmp_path / "s.csv"
    assert (
        main(["score", str(run_dir), "--data", str(odd), "--ref", str(ref), "--out", str(out)]) == 0
    )
    table = np.loadtxt(out, delimiter=",", skiprows=1)
    assert table.shape == (400, 3)
    assert np.mean(table[:, 2] < 0.05) > 0.9  # shifted events get small p-values
    assert main(["score", str(run_dir), "--data", str(ref), "--out", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    other = tmp_path / "other.csv"
    args = ["score", str(run_dir), "--data", str(ref), "--out", str(other)]
    assert main([*args, "--stage", "1"]) == 2  # a coupling flow has no first stage
    assert "two_stage" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([*args, "--neighbours", "0"])
    assert exc.value.code == 2 and not other.exists()
