"""The input side of issue 28: one validation gate for every dataset a command or ``fit`` reads,
the resume contract, checked API inputs, no global seeding, our own checkpoint messages.

Each case asserts the exception type (or exit status 2 with one stderr line and no traceback)
and that the message names the file, attribute, argument or flag at fault.
"""

from __future__ import annotations

import fractions
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.distributions import Independent, Uniform

import simulators
from simulators.base import BoxUniform, SimulatorInputError, check_theta, outside_support
from simulators.dataset import check_dataset
from simulators.errors import UserError
from surrogates.checkpoint import CheckpointError, load_model, load_state, read_meta, save_model
from surrogates.cli import main
from surrogates.inference import NPE
from surrogates.models import Flow, registry
from surrogates.training import CHECKPOINT, METRICS

SMALL = {"transforms": 2, "hidden": [16]}
TRAIN = {"max_steps": 4, "progress": False, "device": "cpu"}
CLI_ARCH = ["--arch", "transforms=2", "--arch", "hidden=16", "--device", "cpu", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Good two-moons files (300 rows in 3 chunks; another seed) and a folder for runs."""
    root = tmp_path_factory.mktemp("gate")
    sim = simulators.get("two_moons")
    good = simulators.generate(sim, 300, root / "good.h5", seed=0, chunk_size=100)
    other = simulators.generate(sim, 300, root / "other.h5", seed=1, chunk_size=100)
    return {"root": root, "good": good, "other": other}


def faulty(data, name, mutate):
    """A copy of the good file with one thing broken by ``mutate(h5py.File)``."""
    path = data["root"] / f"{name}.h5"
    if not path.exists():
        shutil.copy(data["good"], path)
        with h5py.File(path, "r+") as f:
            mutate(f)
    return path


def _set(f, name, index, value):
    a = f[name][...]
    a[index] = value
    f[name][...] = a


def _replace(f, name, array):
    del f[name]
    chunks = (min(100, len(array)), *array.shape[1:]) if len(array) else None
    f.create_dataset(name, data=array, chunks=chunks)


def _zero_rows(f):
    _replace(f, "theta", np.zeros((0, 2), np.float32))
    _replace(f, "x", np.zeros((0, 2), np.float32))
    f.attrs["n"] = 0


#: fault -> (mutation, fragments every message must contain)
FAULTS = {
    "prior_not_json": (lambda f: f.attrs.__setitem__("prior", "{'type': box"),
                       ["attribute prior", "not valid JSON"]),
    "config_not_json": (lambda f: f.attrs.__setitem__("simulator_config", "[1,"),
                        ["attribute simulator_config", "not valid JSON"]),
    "config_wrong_type": (lambda f: f.attrs.__setitem__("simulator_config", "5"),
                          ["attribute simulator_config must be dict"]),
    "missing_attribute": (lambda f: f.attrs.__delitem__("seed"), ["lacks attribute", "seed"]),
    "row_counts_differ": (lambda f: _replace(f, "x", f["x"][:295]),
                          ["x has 295 rows, theta has 300"]),
    "x_shape_disagrees": (lambda f: f.attrs.__setitem__("x_shape", "[3]"),
                          ["attribute x_shape says (3,)"]),
    "theta_not_float": (lambda f: _replace(f, "theta", f["theta"][...].astype(np.int32)),
                        ["theta has dtype int32"]),
    "zero_rows": (_zero_rows, ["holds no rows"]),
    "nan_in_x": (lambda f: _set(f, "x", (17, 1), np.nan), ["NaN/inf", "1 ", "row 17"]),
    "inf_in_theta": (lambda f: _set(f, "theta", (142, 0), np.inf), ["NaN/inf", "row 142"]),
    "theta_outside_prior": (lambda f: _set(f, "theta", 205, [5.0, 0.0]),
                            ["outside the support of the prior", "row 205 = [5.0, 0.0]"]),
}  # fmt: skip


def assert_names(message: str, path: Path, fragments: list[str]) -> None:
    assert path.name in message, message
    for fragment in fragments:
        assert fragment in message, message


@pytest.fixture(scope="module")
def untrained_run(data):
    """An untrained flow saved to a run folder (enough for ``sample``)."""
    run = data["root"] / "untrained"
    Flow.for_dataset(data["good"], device="cpu", **SMALL).save(run)
    return run


# ---------------------------------------------------------------------------- 1. the gate
@pytest.mark.parametrize("fault", FAULTS)
def test_the_gate_refuses_a_faulty_file_naming_file_and_fault(data, fault):
    mutate, fragments = FAULTS[fault]
    path = faulty(data, fault, mutate)
    with pytest.raises(SimulatorInputError) as exc:
        check_dataset(path)
    assert_names(str(exc.value), path, fragments)
    with pytest.raises(SimulatorInputError) as exc:  # info's check is the same gate
        simulators.verify(path)
    assert_names(str(exc.value), path, fragments)
    with pytest.raises(UserError) as exc:  # fit and for_dataset call it before any work
        Flow.for_dataset(path, device="cpu", **SMALL)
    assert_names(str(exc.value), path, fragments)


@pytest.mark.parametrize("command", ["train", "sample", "info"])
@pytest.mark.parametrize("fault", FAULTS)
def test_every_reading_command_refuses_a_faulty_file_in_one_line(
    data, untrained_run, fault, command, tmp_path, capsys
):
    path = faulty(data, fault, FAULTS[fault][0])
    out = tmp_path / "out"
    argv = {
        "train": ["train", "flow", "--data", str(path), "--out", str(out), *CLI_ARCH],
        "sample": ["sample", str(untrained_run), "--like", str(path), "--out", str(out)],
        "info": ["info", str(path)],
    }[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert_names(err, path, FAULTS[fault][1])
    assert not out.exists()  # refused before any work


def cli(*args: str, code: int = 2) -> str:
    """Runs the real command line; asserts the exit status, one stderr line, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "surrogates", *args], capture_output=True,
                          text=True, env=ENV, timeout=120)  # fmt: skip
    assert proc.returncode == code, proc.stderr
    if code == 2:
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    return proc.stderr if code == 2 else proc.stdout


def test_faulty_files_through_the_real_entry_point(data, tmp_path):
    nan = faulty(data, "nan_in_x", FAULTS["nan_in_x"][0])
    err = cli("train", "flow", "--data", str(nan), "--out", str(tmp_path / "r"), *CLI_ARCH)
    assert "nan_in_x.h5: 1 of 300 row(s) hold NaN/inf" in err and "--drop-nonfinite" in err
    rows = faulty(data, "row_counts_differ", FAULTS["row_counts_differ"][0])
    assert "x has 295 rows, theta has 300" in cli("info", str(rows))
    assert not (tmp_path / "r").exists()


def test_drop_nonfinite_skips_and_counts_the_rows(data, tmp_path, capsys, caplog):
    path = faulty(data, "nan_in_x", FAULTS["nan_in_x"][0])
    assert check_dataset(path, "drop").n_dropped == 1
    model = Flow.for_dataset(path, device="cpu", drop_nonfinite=True, **SMALL)
    with caplog.at_level(logging.WARNING, logger="surrogates.models.base"):
        model.fit(path, drop_nonfinite=True, run_dir=tmp_path / "api", **TRAIN)
    assert model.n_dropped == 1 and "skipped 1 of 300 rows" in caplog.text
    assert np.isfinite(model.result.best_val_loss)
    json.loads((tmp_path / "api" / "model.json").read_text(), parse_constant=pytest.fail)
    argv = ["train", "flow", "--data", str(path), "--out", str(tmp_path / "cli"), *CLI_ARCH]
    assert main([*argv, "--max-steps", "3", "--drop-nonfinite"]) == 0
    assert "skipping 1 of 300 rows" in capsys.readouterr().out


def test_arrays_pass_the_same_gate(data):
    with simulators.open_dataset(data["good"]) as ds:
        theta, x = ds.theta[:], ds.x[:]
    x[3, 0] = np.inf
    with pytest.raises(UserError, match=r"theta/x: 1 of 300 row\(s\) hold NaN/inf .*row 3"):
        Flow.for_dataset((theta, x), device="cpu", **SMALL)
    model = Flow.for_dataset((theta, x), device="cpu", drop_nonfinite=True, **SMALL)
    with pytest.raises(UserError, match=r"row 3.*drop_nonfinite=True"):
        model.fit((theta, x), **TRAIN)
    assert model.fit((theta, x), drop_nonfinite=True, **TRAIN).n_dropped == 1
    with pytest.raises(UserError, match="theta has 300 rows, x has 299"):
        model.fit((theta, x[:-1]), **TRAIN)


def test_npe_drops_and_counts_through_the_gate(data, monkeypatch):
    import simulators.dataset as gate
    from surrogates.inference import simulations

    calls = []
    real_check, real_arrays = gate.Dataset.check, simulations.check_arrays
    monkeypatch.setattr(
        gate.Dataset, "check", lambda self, *a, **k: calls.append(a) or real_check(self, *a, **k)
    )
    monkeypatch.setattr(simulations, "check_arrays",
                        lambda *a, **k: calls.append(a[2:]) or real_arrays(*a, **k))  # fmt: skip
    path = faulty(data, "nan_in_x", FAULTS["nan_in_x"][0])
    npe = NPE(None, transforms=1, hidden=(8,)).fit(path, max_steps=2, progress=False)
    assert npe.n_dropped == 1
    with simulators.open_dataset(path) as ds:
        theta, x = ds.theta[:], ds.x[:]
    prior = Independent(Uniform(-torch.ones(2), torch.ones(2)), 1)
    assert NPE(prior, transforms=1, hidden=(8,)).fit(theta, x, max_steps=2).n_dropped == 1
    assert calls[0][0] == "drop" and calls[-1] == ("drop",)


def test_model_json_never_holds_nan(tmp_path):
    target = tmp_path / "m"
    with pytest.raises(CheckpointError, match=r"config\.pre\.mean\[1\] is NaN or infinite"):
        save_model(target, model_type="flow", config={"pre": {"mean": [0.0, float("nan")]}},
                   state_dict={"w": torch.ones(1)})  # fmt: skip
    assert not target.exists() or not any(target.iterdir())  # nothing written
    save_model(target, model_type="flow", config={"a": 1.0}, state_dict={"w": torch.ones(1)})
    text = (target / "model.json").read_text().replace('"a": 1.0', '"a": NaN')
    (target / "model.json").write_text(text)
    with pytest.raises(CheckpointError, match=r"model\.json: holds NaN"):
        read_meta(target)


# ---------------------------------------------------------------------------- 2. resume
def test_api_resume_refuses_another_dataset_and_other_settings(data, tmp_path):
    run = tmp_path / "run"
    Flow.for_dataset(data["good"], device="cpu", **SMALL).fit(data["good"], run_dir=run, **TRAIN)
    again = Flow.for_dataset(data["good"], device="cpu", **SMALL)
    with pytest.raises(CheckpointError) as exc:
        again.fit(data["other"], run_dir=run, resume=True)
    assert "good.h5" in str(exc.value) and "other.h5" in str(exc.value)
    with pytest.raises(CheckpointError, match=r"max_steps=5 disagrees .*max_steps=4"):
        again.fit(data["good"], run_dir=run, resume=True, max_steps=5)
    # settings left out take the stored values: the finished run is not extended
    assert again.fit(data["good"], run_dir=run, resume=True).result.steps == 4


def refused(argv: list[str], capsys) -> str:
    """Runs the command line in this process; asserts exit 2 and one stderr line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_cli_resume_refusals(data, tmp_path, capsys):
    run = tmp_path / "run"
    base = ["train", "flow", "--out", str(run), "--device", "cpu", "--no-progress"]
    assert "run does not exist" in cli(*base, "--resume")  # formerly: a fresh run, silently
    run.mkdir()
    assert "holds no training run to resume" in refused([*base, "--resume"], capsys)
    assert not any(run.iterdir())
    assert main([*base, "--data", str(data["good"]), *CLI_ARCH, "--max-steps", "3"]) == 0
    err = refused([*base, "--resume", "--data", str(data["other"])], capsys)
    assert "good.h5" in err and "other.h5" in err and "another dataset" in err
    assert "--max-steps 9 disagrees" in refused([*base, "--resume", "--max-steps", "9"], capsys)
    err = refused([*base, "--resume", "--arch", "transforms=3"], capsys)
    assert "--arch transforms=3 disagrees" in err
    # torch's advice about weights_only never reaches the user
    torch.save({"format_version": 1, "x": fractions.Fraction(1, 2)}, run / CHECKPOINT)
    err = refused([*base, "--resume"], capsys)
    assert "trainer.ckpt: not a readable trainer checkpoint" in err and "weights_only" not in err


#: small architectures per family for the killed command-line run
KILL_ARCH = {
    "flow": ["--arch", "transforms=2", "--arch", "hidden=16"],
    "vae": ["--arch", "hidden=16", "--arch", "latent=2"],
    "gan": ["--arch", "hidden=16", "--arch", "n_critic=2"],
}


def test_every_family_has_a_kill_case():
    assert set(KILL_ARCH) == set(registry.names())


@pytest.mark.parametrize("family", registry.names())
def test_cli_resume_after_sigkill_restores_the_settings(data, tmp_path, family):
    path = simulators.generate(simulators.get("two_moons"), 2000, tmp_path / "m.h5", seed=2,
                               chunk_size=500)  # fmt: skip
    flags = [*KILL_ARCH[family], *CLI_ARCH[4:], "--max-steps", "60", "--val-every", "10",
             "--checkpoint-every", "10", "--batch-size", "512"]  # fmt: skip
    train = [sys.executable, "-m", "surrogates", "train", family, "--data", str(path)]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*train, "--out", str(killed), *flags], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    ckpt, first = killed / CHECKPOINT, None
    try:  # the run writes its step-0 checkpoint first; kill it just after the step-10 one
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            try:
                st = ckpt.stat()
            except FileNotFoundError:
                st = None
            if st is not None:
                first = first or (st.st_ino, st.st_mtime_ns)
                if (st.st_ino, st.st_mtime_ns) != first:
                    break
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert 10 <= json.loads(load_state(ckpt)["counters"])["step"] < 60  # resumed mid-run
    whole = tmp_path / "whole"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the OMP_NUM_THREADS=1 process
    try:  # --resume alone: the settings and the dataset come from the run
        assert main(["train", family, "--out", str(killed), "--resume", "--device", "cpu"]) == 0
        assert main([*train[3:], "--out", str(whole), *flags]) == 0
    finally:
        torch.set_num_threads(threads)
    assert (killed / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()
    assert (killed / METRICS).read_text() == (whole / METRICS).read_text()


# ---------------------------------------------------------------------------- 3. API inputs
@pytest.mark.parametrize("family", registry.names())
def test_surrogates_refuse_nonfinite_theta_and_theta_outside_the_prior(data, family):
    model = registry.get(family).for_dataset(data["good"], device="cpu")
    with pytest.raises(UserError, match=r"theta contains 1 NaN or infinite"):
        model.sample(np.array([[0.1, np.nan]]))
    with pytest.raises(UserError, match=r"theta row 1 = \[5\.0, 0\.0\] is outside the prior"):
        model.sample(torch.tensor([[0.0, 0.0], [5.0, 0.0]]))
    with pytest.raises(UserError, match=r"theta must have shape \(N, 2\)"):
        model.sample(np.zeros((3, 3)))
    assert model.sample(np.array([[1.0, -1.0]], np.float32)).shape == (1, 2)  # the bounds


def test_theta_stored_as_float32_stays_inside_a_bound_it_rounds_to():
    prior = BoxUniform([0.0, 0.1], [0.3, 0.5])  # 0.3 and 0.1 are not float32 numbers
    theta = np.array([[0.3, 0.1], [0.29999999999, 0.10000000001]])
    assert not outside_support(prior, theta).any()
    assert not outside_support(prior, theta.astype(np.float32)).any()  # rounded onto the bounds
    assert outside_support(prior, np.array([[0.30000001, 0.2], [0.2, 0.09999999]])).all()
    check_theta(theta.astype(np.float32), prior, 2)


@pytest.fixture(scope="module")
def npe(data):
    with simulators.open_dataset(data["good"]) as ds:
        theta, x = ds.theta[:], ds.x[:]
    prior = Independent(Uniform(-torch.ones(2), torch.ones(2)), 1)
    return NPE(prior, transforms=1, hidden=(8,)).fit(theta, x, max_steps=2, progress=False)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_npe_refuses_nonfinite_inputs_naming_the_argument(npe, bad):
    x_o = np.array([0.1, bad])
    with pytest.raises(UserError, match="x contains 1 NaN or infinite"):
        npe.sample((5,), x_o)
    with pytest.raises(UserError, match="x contains 2 NaN or infinite"):
        npe.sample_batched((5,), np.stack([x_o, x_o]))
    with pytest.raises(UserError, match="x contains 1 NaN or infinite"):
        npe.log_prob(np.zeros((2, 2)), x_o)
    with pytest.raises(UserError, match="theta contains 1 NaN or infinite"):
        npe.log_prob(np.array([[0.0, bad], [0.0, 0.0]]), np.zeros(2))
    assert np.isfinite(npe.sample((5,), np.zeros(2))).all()


# ---------------------------------------------------------------------------- 4. global state
def test_initial_weights_are_those_of_the_former_global_seeding(data):
    model = Flow.for_dataset(data["good"], seed=7, device="cpu", **SMALL)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)  # the former code path
        former = model._build()
    for (k, a), b in zip(model.net.state_dict().items(), former.state_dict().values(),
                         strict=True):  # fmt: skip
        assert torch.equal(a, b), k


def test_npe_initial_weights_are_those_of_the_former_global_seeding(npe):
    from surrogates.inference.network import NPENet
    from surrogates.nn import build_embedding

    fresh = NPE.from_config(npe.config())  # rebuilt: the initial weights of seed 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(npe.seed)  # the former code path
        emb = build_embedding(npe.embedding_spec, npe.x_shape)
        former = NPENet(npe.dim, emb, npe.net.arch, npe.support, npe.net.pre, npe.net.adjust)
    for (k, a), b in zip(fresh.net.state_dict().items(), former.state_dict().values(),
                         strict=True):  # fmt: skip
        assert torch.equal(a, b), k


def test_building_models_seeds_no_global_generator(data, npe, monkeypatch):
    def forbidden(*args):
        raise AssertionError("library code seeded a global generator")

    for name in ("manual_seed", "seed"):
        monkeypatch.setattr(torch, name, forbidden)
    monkeypatch.setattr(torch.cuda, "manual_seed_all", forbidden)
    monkeypatch.setattr(torch.cuda, "manual_seed", forbidden)
    monkeypatch.setattr(np.random, "seed", forbidden)
    cpu, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()  # noqa: NPY002
    Flow.for_dataset(data["good"], seed=3, device="cpu", **SMALL)
    NPE.from_config(npe.config())
    assert torch.equal(torch.get_rng_state(), cpu)
    assert np.array_equal(np.random.get_state()[1], np_state)  # noqa: NPY002


# ---------------------------------------------------------------------------- 5. checkpoints
def test_corrupted_checkpoints_give_our_one_line_message(untrained_run, tmp_path):
    ckpt = tmp_path / CHECKPOINT
    torch.save({"format_version": 1, "x": fractions.Fraction(1, 2)}, ckpt)
    with pytest.raises(CheckpointError) as exc:
        load_state(ckpt)
    assert "weights_only" not in str(exc.value) and "not a readable trainer checkpoint" in str(
        exc.value
    )
    ckpt.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="not a readable trainer checkpoint"):
        load_state(ckpt)
    run = tmp_path / "run"
    shutil.copytree(untrained_run, run)
    blob = b"\x10\x00\x00\x00\x00\x00\x00\x00{not safetensors"
    (run / "model.safetensors").write_bytes(blob)
    meta = json.loads((run / "model.json").read_text())
    meta["weights_sha256"] = hashlib.sha256(blob).hexdigest()  # consistent, but not weights
    (run / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as exc:
        load_model(run)
    assert "model.safetensors: not a readable safetensors file" in str(exc.value)
    assert len(str(exc.value).splitlines()) == 1
