"""The HDF5 dataset format: reproducibility, resumption, safety of existing files, verification."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest

import simulators
from simulators import BoxUniform, Simulator, SimulatorInputError
from simulators.dataset import FORMAT_VERSION, REQUIRED_ATTRS
from simulators.generation import default_chunk_size


class Noisy(Simulator):
    """x = θ + N(0, 1) noise, with an optional NaN row when θ_0 > 0.9."""

    name = "test_noisy"
    defaults = {"dim": 3, "nan_above": 2.0}

    def __init__(self, **config):
        super().__init__(**config)
        self.param_names = tuple(f"t{i}" for i in range(self._config["dim"]))
        self.x_shape = (self._config["dim"], 2)
        self.prior = BoxUniform([-1] * self._config["dim"], [1] * self._config["dim"])

    def _simulate(self, theta, rng):
        x = theta[:, :, None] + rng.standard_normal((len(theta), *self.x_shape))
        x[theta[:, 0] > self._config["nan_above"]] = np.nan
        return x


class NoisyWithNaN(Noisy):
    name = "test_noisy_nan"
    allow_nan = True


class Aliased(Noisy):
    name = "test_aliased"
    h5_aliases = {"conditions": "theta", "events": "x"}


def read(path):
    with h5py.File(path, "r") as f:
        return f["theta"][...], f["x"][...]


def test_round_trip_metadata_and_lazy_reading(tmp_path):
    sim = Noisy()
    path = simulators.generate(sim, 1000, tmp_path / "a.h5", seed=5, chunk_size=300)
    with simulators.open_dataset(path) as data:
        assert len(data) == 1000 and data.chunk_size == 300
        assert isinstance(data.x, h5py.Dataset)  # lazy: nothing read yet
        assert data.theta.shape == (1000, 3) and data.x.shape == (1000, 3, 2)
        assert data.x.chunks == (300, 3, 2) and data.x.compression == "gzip"
        assert data.theta.dtype == np.float32
        for key in REQUIRED_ATTRS:
            assert key in data.meta
        assert data.meta["format_version"] == FORMAT_VERSION
        assert data.meta["simulator_config"] == {"dim": 3, "nan_above": 2.0}
        assert data.meta["param_names"] == ["t0", "t1", "t2"]
        theta, x = data.theta[...], data.x[...]
    assert np.all(np.abs(theta) <= 1)
    # x - θ is the standard normal noise: a wrong seeding or row mix-up breaks these moments.
    noise = x - theta[:, :, None]
    assert abs(noise.mean()) < 0.05 and abs(noise.std() - 1) < 0.05


def test_chunk_seeds_follow_seedsequence_spawn(tmp_path):
    sim = Noisy()
    path = simulators.generate(sim, 250, tmp_path / "a.h5", seed=11, chunk_size=100)
    theta, x = read(path)
    for i, (start, stop) in enumerate([(0, 100), (100, 200), (200, 250)]):
        rng = np.random.default_rng(np.random.SeedSequence(11).spawn(3)[i])
        t = sim.prior.sample(stop - start, rng)
        np.testing.assert_array_equal(theta[start:stop], t.astype(np.float32))
        np.testing.assert_array_equal(x[start:stop], sim.simulate(t, rng))


def test_identical_for_any_number_of_workers(tmp_path):
    sim = Noisy()
    a = simulators.generate(sim, 700, tmp_path / "a.h5", seed=3, chunk_size=64)
    b = simulators.generate(sim, 700, tmp_path / "b.h5", seed=3, chunk_size=64, workers=2)
    with ThreadPoolExecutor(3) as ex:
        c = simulators.generate(sim, 700, tmp_path / "c.h5", seed=3, chunk_size=64, executor=ex)
    for other in (b, c):
        for u, v in zip(read(a), read(other), strict=True):
            np.testing.assert_array_equal(u, v)
    d = simulators.generate(sim, 700, tmp_path / "d.h5", seed=4, chunk_size=64)
    assert not np.array_equal(read(a)[1], read(d)[1])


def test_resume_after_interruption_is_bit_identical(tmp_path):
    sim = Noisy()
    full = simulators.generate(sim, 1000, tmp_path / "full.h5", seed=9, chunk_size=100)
    out = tmp_path / "out.h5"
    parts = tmp_path / "out.h5.parts"

    class Failing(Noisy):
        """Dies on its seventh chunk, as a killed run would."""

        calls = 0

        def _simulate(self, theta, rng):
            if self.calls == 6:
                raise RuntimeError("killed")
            self.calls += 1
            return super()._simulate(theta, rng)

    with pytest.raises(RuntimeError):
        simulators.generate(Failing(), 1000, out, seed=9, chunk_size=100)
    assert not out.exists()
    assert len(list(parts.glob("chunk-*.h5"))) == 6
    (parts / "chunk-000007.h5").write_bytes(b"half a file")  # a torn, unpublished write
    with pytest.raises(SimulatorInputError, match="resume=True"):
        simulators.generate(sim, 1000, out, seed=9, chunk_size=100)
    with pytest.raises(SimulatorInputError, match="differs in seed"):
        simulators.generate(sim, 1000, out, seed=10, chunk_size=100, resume=True)
    simulators.generate(sim, 1000, out, seed=9, chunk_size=100, resume=True)
    assert not parts.exists()
    for u, v in zip(read(full), read(out), strict=True):
        np.testing.assert_array_equal(u, v)


def test_existing_file_is_never_overwritten_without_permission(tmp_path):
    sim = Noisy()
    path = simulators.generate(sim, 100, tmp_path / "a.h5", seed=1)
    before = path.read_bytes()
    with pytest.raises(SimulatorInputError, match="exists; pass overwrite=True"):
        simulators.generate(sim, 100, path, seed=2)
    assert path.read_bytes() == before
    simulators.generate(sim, 100, path, seed=2, overwrite=True)
    assert path.read_bytes() != before
    assert [p.name for p in tmp_path.iterdir()] == ["a.h5"]  # no temporary files left


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n must be a positive integer"),
        ({"n": -5}, "n must be a positive integer"),
        ({"n": 2.5}, "n must be a positive integer"),
        ({"seed": -1}, "seed must be"),
        ({"theta": np.full((10, 3), np.nan)}, "NaN"),
        ({"theta": np.full((10, 3), 5.0)}, "outside the prior"),
        ({"theta": np.zeros((10, 2))}, "shape"),
        ({"theta": np.zeros((9, 3))}, "theta has 9 rows"),
        ({"compression": "zstd"}, "compression"),
    ],
)
def test_bad_arguments_are_rejected_before_any_work(tmp_path, kwargs, message):
    args = {"n": 10, "seed": 0, **kwargs}
    with pytest.raises(SimulatorInputError, match=message):
        simulators.generate(Noisy(), path=tmp_path / "a.h5", **args)
    assert list(tmp_path.iterdir()) == []


def test_given_conditions_are_simulated_in_order(tmp_path):
    theta = np.linspace(-1, 1, 30).reshape(10, 3)
    path = simulators.generate(Noisy(), 10, tmp_path / "a.h5", seed=0, theta=theta)
    t, _ = read(path)
    np.testing.assert_array_equal(t, theta.astype(np.float32))
    with simulators.open_dataset(path) as data:
        assert data.meta["theta_source"] == "given"


def test_nan_rows_fail_verification_unless_the_simulator_allows_them(tmp_path):
    theta = np.array([[0.95, 0, 0], [0.1, 0, 0]])
    with pytest.raises(SimulatorInputError, match="NaN"):
        simulators.generate(Noisy(nan_above=0.9), 2, tmp_path / "a.h5", seed=0, theta=theta)
    assert not (tmp_path / "a.h5").exists()
    path = simulators.generate(
        NoisyWithNaN(nan_above=0.9), 2, tmp_path / "b.h5", seed=0, theta=theta
    )
    assert simulators.verify(path)["nan_rows"] == 1


def test_aliases_are_hard_links(tmp_path):
    path = simulators.generate(Aliased(), 50, tmp_path / "a.h5", seed=0)
    with h5py.File(path, "r") as f:
        assert f["events"].id == f["x"].id and f["conditions"].id == f["theta"].id
        np.testing.assert_array_equal(f["events"][...], f["x"][...])


def test_verify_detects_damage(tmp_path):
    path = simulators.generate(Noisy(), 2000, tmp_path / "a.h5", seed=0, chunk_size=500)
    summary = simulators.verify(path)
    assert summary["n"] == 2000 and summary["chunks"] == 4 and summary["nan_rows"] == 0
    truncated = tmp_path / "t.h5"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SimulatorInputError, match=r"t\.h5"):
        simulators.verify(truncated)
    text = tmp_path / "x.h5"
    text.write_text("not hdf5")
    with pytest.raises(SimulatorInputError, match="not a readable HDF5 file"):
        simulators.verify(text)
    with pytest.raises(SimulatorInputError, match="does not exist"):
        simulators.verify(tmp_path / "missing.h5")
    other = tmp_path / "o.h5"
    with h5py.File(other, "w") as f:
        f["theta"] = np.zeros((3, 1))
    with pytest.raises(SimulatorInputError, match="not a simsurrogates dataset"):
        simulators.verify(other)
    wrong = tmp_path / "w.h5"
    shutil.copy(path, wrong)
    with h5py.File(wrong, "a") as f:
        f.attrs["n"] = 1999
    with pytest.raises(SimulatorInputError, match="theta has shape"):
        simulators.verify(wrong)
    newer = tmp_path / "v.h5"
    shutil.copy(path, newer)
    with h5py.File(newer, "a") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(SimulatorInputError, match="upgrade"):
        simulators.verify(newer)


def test_default_chunk_size_targets_a_few_mebibytes():
    sim = Noisy(dim=3)
    assert default_chunk_size(sim, 10**7) == 10_000
    assert default_chunk_size(sim, 77) == 77
    big = Noisy(dim=3)
    big.x_shape = (256, 256)
    assert default_chunk_size(big, 10**6) == 2 * 2**20 // (256 * 256 * 4)


def test_spec_json_records_the_run(tmp_path):
    out = tmp_path / "a.h5"
    parts = tmp_path / "a.h5.parts"

    class Stop(Noisy):  # fails in its second chunk: the first is kept for resume
        calls = 0

        def _simulate(self, theta, rng):
            Stop.calls += 1
            if Stop.calls > 1:
                raise RuntimeError("stop")
            return super()._simulate(theta, rng)

    with pytest.raises(RuntimeError):
        simulators.generate(Stop(), 10, out, seed=1, chunk_size=5)
    spec = json.loads((parts / "spec.json").read_text())
    assert spec["seed"] == 1 and spec["n"] == 10 and spec["simulator"] == "test_noisy"
    # a run that fails before its first chunk is finished leaves nothing behind
    with pytest.raises(RuntimeError):
        simulators.generate(Stop(), 10, tmp_path / "b.h5", seed=1, chunk_size=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5.parts"]
