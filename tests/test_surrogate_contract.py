"""The contract every registered surrogate family keeps, parametrized over the registry (as zuko's
tests run over every flow): a family joins by its registry line and its entry in ``SMALL``.

For each family, on a tiny vector dataset and a tiny calorimeter shower dataset (and for the VAE
and the GAN, whose convolutional backbones take them, a tiny N-body dataset of two 16×16 slices
per row; the flow models fields as vectors, covered by the vector case): ``for_dataset``
and a few training steps; sample shape and dtype; every parameter reached by the gradient;
identical samples after save/load under one generator; ``as_simulator()`` through
``simulators.generate``; and a fit interrupted after a checkpoint and resumed ends with the
weights of an uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import simulators
from surrogates.models import registry
from surrogates.training import StepContext

#: small architectures per family and data kind, so a test runs in seconds
SMALL = {
    "flow": {
        "vectors": {"transforms": 2, "hidden": [16], "bins": 4},
        "showers": {"transforms": 2, "hidden": [16], "bins": 4, "embedding": [8]},
    },
    "vae": {
        "vectors": {"hidden": [16], "latent": 2, "warmup_steps": 3},
        "showers": {"hidden": [16], "latent": 4, "warmup_steps": 3},
        "fields": {"conv_widths": [4, 8], "latent": 4, "warmup_steps": 3},
    },
    "gan": {  # n_critic=2: the generator is updated at steps 2, 4 and 6
        "vectors": {"hidden": [16, 16], "latent": 4, "n_critic": 2},
        "showers": {"hidden": [16, 16], "latent": 4, "n_critic": 2},
        "fields": {"conv_widths": [4, 8], "latent": 4, "n_critic": 2},
    },
}
TRAIN = {"max_steps": 4, "batch_size": 64, "progress": False, "device": "cpu", "lr": 1e-2}
FAMILIES = registry.names()
KINDS = ("vectors", "showers")
#: (family, kind) pairs: every family on vectors and showers, the conv families on fields too
CASES = [
    pytest.param(f, k, id=f"{f}-{k}") for f in FAMILIES for k in (*KINDS, "fields") if k in SMALL[f]
]
#: a tiny periodic N-body box: 16³ particles, 2 steps, two 16×16 projected slices per row
NBODY = {"n_particles": 16, "box_size": 128.0, "n_steps": 2, "output": "slices", "n_slices": 2}


def test_every_family_has_small_settings():
    assert set(SMALL) == set(FAMILIES)
    assert all(set(KINDS) <= set(SMALL[f]) for f in FAMILIES)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    moons, showers = root / "moons.h5", root / "showers.h5"
    simulators.generate(simulators.get("two_moons"), 400, moons, seed=0, chunk_size=100)
    calo = simulators.get("calorimeter", particle="photon", e_max_mev=4096.0)
    simulators.generate(calo, 300, showers, seed=0, chunk_size=100)
    fields = root / "nbody.h5"
    simulators.generate(simulators.get("nbody", **NBODY), 80, fields, seed=0, chunk_size=40)
    return {"vectors": moons, "showers": showers, "fields": fields}


def build(family, kind, data, seed=0):
    cls = registry.get(family)
    return cls.for_dataset(data[kind], seed=seed, device="cpu", **SMALL[family][kind])


@pytest.mark.parametrize(("family", "kind"), CASES)
def test_train_sample_shape_and_every_parameter_learns(family, kind, data):
    model = build(family, kind, data)
    assert model.data_kind == kind  # nbody data get the convolutional backbone by themselves
    before = {k: v.detach().clone() for k, v in model.net.named_parameters()}
    model.fit(data[kind], **TRAIN)
    assert model.result.steps == TRAIN["max_steps"]
    frozen = [k for k, v in model.net.named_parameters() if torch.equal(v.detach(), before[k])]
    assert not frozen, f"no gradient reached {frozen}"
    with simulators.open_dataset(data[kind]) as ds:
        theta, x_shape = ds.theta[:7], tuple(ds.x_shape)
    x = model.sample(theta, generator=torch.Generator().manual_seed(0))
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape == (7, *x_shape)
    assert np.isfinite(x).all()
    xt = model.sample(torch.as_tensor(theta), generator=torch.Generator().manual_seed(0))
    assert isinstance(xt, torch.Tensor) and np.array_equal(xt.numpy(), x)


@pytest.mark.parametrize(("family", "kind"), CASES)
def test_save_load_gives_identical_samples(family, kind, data, tmp_path):
    model = build(family, kind, data).fit(data[kind], **TRAIN)
    model.save(tmp_path / "m")
    loaded = registry.get(family).load(tmp_path / "m", device="cpu")
    with simulators.open_dataset(data[kind]) as ds:
        theta = ds.theta[:20]
    a = model.sample(theta, generator=torch.Generator().manual_seed(3))
    b = loaded.sample(theta, generator=torch.Generator().manual_seed(3))
    assert np.array_equal(a, b)
    assert loaded.arch == model.arch and loaded.config() == model.config()


@pytest.mark.parametrize("family", FAMILIES)
def test_as_simulator_through_generate(family, data, tmp_path):
    model = build(family, "vectors", data).fit(data["vectors"], **TRAIN)
    model.save(tmp_path / "run")
    sim = model.as_simulator()
    out = tmp_path / "g.h5"
    simulators.generate(sim, 50, out, seed=1, chunk_size=25)
    with simulators.open_dataset(out) as g:
        assert g.meta["simulator"] == "surrogate:two_moons" and g.x[:].shape == (50, 2)
        assert np.isfinite(g.x[:]).all()
    again = tmp_path / "g2.h5"
    simulators.generate(sim, 50, again, seed=1, chunk_size=25)
    with simulators.open_dataset(out) as g, simulators.open_dataset(again) as h:
        assert np.array_equal(g.x[:], h.x[:])  # pure given the seed


class Killed(Exception):
    pass


@pytest.mark.parametrize(("family", "kind"), CASES)
def test_resume_after_interruption_equals_uninterrupted(family, kind, data, tmp_path, monkeypatch):
    cfg = {**TRAIN, "max_steps": 6, "val_every": 2, "checkpoint_every": 2}
    whole = build(family, kind, data).fit(data[kind], run_dir=tmp_path / "a", **cfg)

    real_step, calls = StepContext.step, {"n": 0}

    def dying_step(self, optimizer):
        calls["n"] += 1
        if calls["n"] > 3 * len(self.optimizers):  # killed in step 4, after step 2's checkpoint
            raise Killed
        real_step(self, optimizer)

    monkeypatch.setattr(StepContext, "step", dying_step)
    with pytest.raises(Killed):
        build(family, kind, data).fit(data[kind], run_dir=tmp_path / "b", **cfg)
    monkeypatch.setattr(StepContext, "step", real_step)
    resumed = build(family, kind, data).fit(data[kind], run_dir=tmp_path / "b", resume=True, **cfg)
    for (k, a), (_, b) in zip(
        whole.net.state_dict().items(), resumed.net.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k
    assert whole.result.history == resumed.result.history
