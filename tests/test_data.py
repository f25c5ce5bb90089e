"""Streaming datasets into torch: every row once per epoch, fixed splits, reproducible shuffles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import simulators
from simulators import BoxUniform, Simulator, SimulatorInputError
from surrogates.data import H5Batches, load_arrays


class Counter(Simulator):
    """θ is a row id (given), x repeats it: lets a test see which rows came back."""

    name = "test_counter"

    def __init__(self, **config):
        super().__init__(**config)
        self.param_names = ("id",)
        self.x_shape = (2,)
        self.prior = BoxUniform([0], [1e6])

    def _simulate(self, theta, rng):
        return np.repeat(theta, 2, axis=1)


@pytest.fixture
def path(tmp_path):
    theta = np.arange(1037, dtype=np.float64)[:, None]
    return simulators.generate(
        Counter(), 1037, tmp_path / "c.h5", seed=0, theta=theta, chunk_size=100
    )


def ids(batches):
    out = [t[:, 0].numpy() for t, _ in batches]
    return np.concatenate(out).astype(int) if out else np.zeros(0, int)


def test_each_row_once_and_batches_consistent(path):
    ds = H5Batches(path, split="all", batch_size=64, seed=1)
    batches = list(ds)
    got = ids(batches)
    assert sorted(got) == list(range(1037))
    assert len(batches) == len(ds) == 17
    assert all(len(t) == 64 for t, _ in batches[:-1])
    for t, x in batches:
        assert t.dtype == torch.float32 and x.shape == (len(t), 2)
        torch.testing.assert_close(x[:, 0], t[:, 0])  # rows stay paired under shuffling
    assert not np.array_equal(got, np.sort(got))  # shuffled


def test_splits_are_disjoint_deterministic_and_sized(path):
    train = ids(H5Batches(path, split="train", val_fraction=0.2, batch_size=50))
    val = ids(H5Batches(path, split="val", val_fraction=0.2, batch_size=50, seed=7))
    assert set(train).isdisjoint(val) and len(train) + len(val) == 1037
    assert 150 < len(val) < 265  # binomial(1037, 0.2): mean 207, sd 13
    again = ids(H5Batches(path, split="val", val_fraction=0.2, batch_size=9, seed=3))
    assert sorted(again) == sorted(val)
    other = ids(H5Batches(path, split="val", val_fraction=0.2, split_seed=1))
    assert sorted(other) != sorted(val)
    t, _ = load_arrays(path, split="val", val_fraction=0.2)
    assert sorted(t[:, 0].astype(int)) == sorted(val)


def test_shuffle_depends_on_seed_and_epoch_only(path):
    a = H5Batches(path, batch_size=64, seed=1)
    b = H5Batches(path, batch_size=64, seed=1)
    np.testing.assert_array_equal(ids(a), ids(b))
    a.set_epoch(1)
    assert not np.array_equal(ids(a), ids(b))
    b.set_epoch(1)
    np.testing.assert_array_equal(ids(a), ids(b))
    unshuffled = ids(H5Batches(path, split="all", shuffle=False, batch_size=64))
    np.testing.assert_array_equal(unshuffled, np.arange(1037))


def test_dataloader_workers_each_read_their_own_chunks(path):
    ds = H5Batches(path, split="all", batch_size=64, seed=2)
    loader = DataLoader(ds, batch_size=None, num_workers=2)
    got = ids(loader)
    assert sorted(got) == list(range(1037))


def test_drop_invalid_skips_nan_rows(tmp_path):
    class WithNaN(Counter):
        name = "test_counter_nan"
        allow_nan = True

        def _simulate(self, theta, rng):
            x = super()._simulate(theta, rng)
            x[theta[:, 0] % 10 == 3] = np.nan
            return x

    theta = np.arange(200, dtype=np.float64)[:, None]
    path = simulators.generate(WithNaN(), 200, tmp_path / "n.h5", seed=0, theta=theta)
    got = ids(H5Batches(path, split="all", drop_invalid=True))
    assert len(got) == 180 and not np.any(got % 10 == 3)
    t, x = load_arrays(path, drop_invalid=True)
    assert len(t) == 180 and np.isfinite(x).all()


def test_bad_arguments(path):
    with pytest.raises(SimulatorInputError, match="split"):
        H5Batches(path, split="test")
    with pytest.raises(SimulatorInputError, match="val_fraction"):
        H5Batches(path, val_fraction=1.0)
    with pytest.raises(SimulatorInputError, match="batch_size"):
        H5Batches(path, batch_size=0)
