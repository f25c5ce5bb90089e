"""Flow: every configuration is invertible, has the right log-det, trains, saves and learns.

Resuming an interrupted fit is tested for every kind in ``test_training.py``.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
from zuko.transforms import MonotonicRQSTransform
from zuko.utils import unpack

from surrogates.checkpoint import CheckpointError
from surrogates.models import Flow
from surrogates.models.flows.transforms import (
    KINDS,
    RQSCouplingTransform,
    _PackedRQS,
    coupling_masks,
    coupling_nsf,
)

SMALL = {"transforms": 2, "hidden": [16, 16], "bins": 4}
CONFIGS = [{"kind": k} for k in KINDS] + [{"kind": "coupling", "embedding": [8, 4]}]
IDS = [*KINDS, "coupling+embedding"]


def banana(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """θ ~ U(-1, 1); x1 | θ ~ N(θ, s(θ)²), s = 0.3 + 0.2 θ²; x2 | x1, θ ~ N(0.5 x1² + θ, 0.2²)."""
    theta = rng.uniform(-1, 1, (n, 1))
    s = 0.3 + 0.2 * theta[:, 0] ** 2
    x1 = theta[:, 0] + s * rng.standard_normal(n)
    x2 = 0.5 * x1**2 + theta[:, 0] + 0.2 * rng.standard_normal(n)
    return theta, np.stack([x1, x2], axis=1)


def banana_log_prob(x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    s = 0.3 + 0.2 * theta[:, 0] ** 2
    z1 = (x[:, 0] - theta[:, 0]) / s
    z2 = (x[:, 1] - 0.5 * x[:, 0] ** 2 - theta[:, 0]) / 0.2
    return -0.5 * (z1**2 + z2**2) - np.log(s) - np.log(0.2) - math.log(2 * math.pi)


def banana_entropy() -> float:
    """E_θ[H(x | θ)] = E_θ[log s(θ)] + log 0.2 + log(2πe), by quadrature over θ."""
    t = np.linspace(-1, 1, 200_001)
    return float(np.mean(np.log(0.3 + 0.2 * t**2))) + math.log(0.2) + math.log(2 * math.pi * math.e)


def make(
    config: dict, n: int = 256, seed: int = 0, dim: int = 3
) -> tuple[Flow, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    theta = rng.uniform(-1, 1, (n, 2))
    x = np.concatenate([theta, theta[:, :1] ** 2], 1)[:, :dim] + 0.3 * rng.standard_normal((n, dim))
    model = Flow.for_dataset((theta, x), seed=seed, device="cpu", **{**SMALL, **config})
    return model, theta, x


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_invertible_in_float64(config):
    model, theta, _ = make(config)
    net = model.net.double()
    c = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        z = net.to_latent(y, c)
        assert torch.allclose(net.from_latent(z, c), y, atol=1e-9)
        assert torch.allclose(net.to_latent(net.from_latent(y, c), c), y, atol=1e-9)
    # and through the preprocessing: sample -> data -> log_prob is finite, x -> y -> x exact
    x = model.sample(theta[:64], generator=torch.Generator().manual_seed(3))
    assert x.dtype == np.float64 and np.isfinite(model.log_prob(x, theta[:64])).all()


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_log_prob_equals_change_of_variables_with_autograd_jacobian(config):
    model, theta, x = make(config)
    model.net.double()
    xt, tt = torch.tensor(x[:4]), torch.tensor(theta[:4])
    lp = model.log_prob(xt, tt)
    normal = torch.distributions.Normal(0.0, 1.0)
    for i in range(4):

        def full(r, i=i):
            y, _ = model.pre.forward(r[None], tt[i : i + 1])
            return model.net.to_latent(y, model.pre.condition(tt[i : i + 1]))[0]

        jac = torch.autograd.functional.jacobian(full, xt[i])
        want = normal.log_prob(full(xt[i])).sum() + torch.linalg.slogdet(jac)[1]
        assert torch.allclose(lp[i], want, atol=1e-8), (lp[i], want)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_gradient_reaches_every_parameter(config):
    model, theta, x = make(config)
    batch = (torch.tensor(theta, dtype=torch.float32), torch.tensor(x, dtype=torch.float32))
    loss = model.net.loss(batch, generator=torch.Generator().manual_seed(0))
    loss.backward()
    names = [
        n for n, p in model.net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not names, f"no gradient reaches {names}"


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_save_load_round_trip_gives_identical_samples(config, tmp_path):
    model, theta, x = make(config)
    model.fit((theta, x), max_steps=3, progress=False)  # weights away from the initialization
    model.save(tmp_path / "m")
    back = Flow.load(tmp_path / "m", device="cpu")
    assert back.arch == model.arch
    a = model.sample(theta[:32], generator=torch.Generator().manual_seed(7))
    b = back.sample(theta[:32], generator=torch.Generator().manual_seed(7))
    assert a.dtype == np.float32 and np.array_equal(a, b)
    assert np.array_equal(model.log_prob(x[:32], theta[:32]), back.log_prob(x[:32], theta[:32]))


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_deterministic_under_a_seed(config):
    m1, theta, _ = make(config, seed=0)
    m2, _, _ = make(config, seed=0)
    m3, _, _ = make(config, seed=1)
    s1 = m1.sample(theta[:16], generator=torch.Generator().manual_seed(0))
    s2 = m2.sample(theta[:16], generator=torch.Generator().manual_seed(0))
    s3 = m1.sample(theta[:16], generator=torch.Generator().manual_seed(1))
    assert np.array_equal(s1, s2) and not np.array_equal(s1, s3)
    p1 = torch.cat([p.flatten() for p in m1.net.parameters()])
    p3 = torch.cat([p.flatten() for p in m3.net.parameters()])
    assert not torch.equal(p1, p3)
    # the global generator is neither used nor reseeded
    state = torch.get_rng_state()
    make(config, seed=5)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("slope", [1e-3, 1e-2])
@pytest.mark.parametrize("grad", [False, True])
def test_packed_spline_is_zukos_spline(grad, slope):
    """Same knots, values, log-derivatives and inverse as zuko's MonotonicRQSTransform."""
    k = 5
    g = torch.Generator().manual_seed(0)
    phi = 4 * torch.randn(64, 3, 3 * k - 1, dtype=torch.float64, generator=g)
    phi.requires_grad_(grad)
    ours = _PackedRQS(phi, k, slope=slope)
    ref = MonotonicRQSTransform(*unpack(phi, [(k,), (k,), (k - 1,)]), slope=slope)
    for name in ("horizontal", "vertical", "derivatives"):
        assert torch.allclose(getattr(ours, name), getattr(ref, name), atol=1e-12), name
    y = 6 * torch.rand(64, 3, dtype=torch.float64, generator=g) - 3  # inside and outside [-5, 5]
    y[0] = torch.tensor([-7.0, 5.5, 0.0])
    (a, la), (b, lb) = ours.call_and_ladj(y), ref.call_and_ladj(y)
    assert torch.allclose(a, b, atol=1e-12) and torch.allclose(la, lb, atol=1e-10)
    assert torch.allclose(ours.inv(a), y, atol=1e-10)
    assert torch.equal(a[0, :2], y[0, :2])  # identity outside the bound
    # the bin-local inverse is bit-identical to zuko's inverse over the full knots
    fresh = _PackedRQS(phi.detach(), k, slope=slope)
    assert torch.equal(fresh._inverse(y), MonotonicRQSTransform._inverse(ours, y).detach())


def test_autoregressive_flow_is_zukos_nsf():
    """Same state-dict keys, densities and inverse as zuko.flows.NSF (old checkpoints load)."""
    import zuko

    from surrogates.models.flows.transforms import spline_flow

    arch = {"bins": 6, "transforms": 3, "hidden": [16, 16], "activation": "silu"}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ours = spline_flow(4, 3, True, arch).double()
        with torch.no_grad():
            for p in ours.parameters():
                p.add_(0.3 * torch.randn_like(p))  # away from zuko's near-identity start
    ref = zuko.flows.NSF(4, 3, bins=6, transforms=3, hidden_features=(16, 16),
                         activation=torch.nn.SiLU).double()  # fmt: skip
    ref.load_state_dict(ours.state_dict())
    g = torch.Generator().manual_seed(1)
    x, c = (torch.randn(256, d, dtype=torch.float64, generator=g) for d in (4, 3))
    assert torch.allclose(ours(c).log_prob(x), ref(c).log_prob(x), atol=1e-10)
    assert torch.allclose(ours(c).transform.inv(x), ref(c).transform.inv(x), atol=1e-10)


def test_coupling_masks_come_in_complementary_pairs():
    for features in (2, 3, 373):
        masks = coupling_masks(features, 5)
        assert len(masks) == 5
        for m in masks:  # halves as equal as possible
            assert abs(2 * int(m.sum()) - features) <= 1
        for a, b in zip(masks[0:4:2], masks[1:4:2], strict=True):
            assert torch.equal(a, ~b)
    masks = coupling_masks(373, 6)
    assert len({tuple(m.tolist()) for m in masks}) == 6  # later pairs mix other features
    assert coupling_masks(373, 4)[2].tolist() == coupling_masks(373, 6)[2].tolist()


@pytest.mark.parametrize("transforms", [2, 3])
def test_coupling_transforms_every_feature_with_one_conditioner_pass(transforms):
    features, context, bins = 7, 2, 4
    flow = coupling_nsf(features, context, bins=bins, transforms=transforms, hidden=[16]).double()
    layers = list(flow.transform.transforms)
    assert all(isinstance(t, RQSCouplingTransform) for t in layers)
    calls: list[int] = []

    def record(i, *_):
        calls.append(i)

    for i, (t, m) in enumerate(zip(layers, coupling_masks(features, transforms), strict=True)):
        # the conditioner sees the identity half and the context, and parameterizes the other half
        n_a = int(m.sum())
        assert t.hyper[0].in_features == n_a + context
        assert t.hyper[-1].out_features == (features - n_a) * (3 * bins - 1)
        t.hyper.register_forward_hook(partial(record, i))
    g = torch.Generator().manual_seed(0)
    c = torch.randn(32, context, dtype=torch.float64, generator=g)
    y = 2 * torch.rand(32, features, dtype=torch.float64, generator=g) - 1
    with torch.no_grad():
        z = flow(c).transform(y)
        assert sorted(calls) == list(range(transforms))  # one pass per transform
        calls.clear()
        back = flow(c).transform.inv(z)
        assert sorted(calls) == list(range(transforms))  # exact inverse in one pass too
    assert torch.allclose(back, y, atol=1e-10)
    assert ((z - y).abs() > 1e-6).all()  # no feature is left untouched


def test_a_single_feature_coupling_flow_is_a_conditional_spline():
    model, _, _ = make({"kind": "coupling"}, dim=1)
    net = model.net.double()
    c = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.randn(16, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        z = net.to_latent(y, c)
        assert torch.allclose(net.from_latent(z, c), y, atol=1e-10)
        # the map depends on the condition
        assert not torch.allclose(net.to_latent(y, c.flip(0)), z)


def test_sampling_block_size_changes_no_distribution():
    """Blocked sampling (the CPU default) draws from the same model as one pass would."""
    model, theta, _ = make({"kind": "coupling"})
    th = np.repeat(theta[:1], 4096, axis=0)
    a = model.sample(th, generator=torch.Generator().manual_seed(0), batch_size=100)
    b = model.sample(th, generator=torch.Generator().manual_seed(1), batch_size=4096)
    # same condition: equal means and sds within Monte Carlo error (sd/sqrt(n) ~ 0.016 sd)
    assert np.allclose(a.mean(0), b.mean(0), atol=0.08 * b.std(0).max())
    assert np.allclose(a.std(0), b.std(0), rtol=0.1)
    # every block draws its own latents (rows, not one column: float32 values may coincide)
    assert len(np.unique(a, axis=0)) == len(a)
    c = model.sample(th[:300], generator=torch.Generator().manual_seed(0), batch_size=100)
    assert np.array_equal(a[:300], c)  # a seed and block size reproduce the draw


def test_loading_another_type_or_corrupt_weights_fails_clearly(tmp_path):
    model, _, _ = make({"kind": "coupling"})
    model.save(tmp_path / "m")
    import json

    cfg = json.loads((tmp_path / "m/model.json").read_text())
    cfg["model_type"] = "vae"
    (tmp_path / "m/model.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="'vae' model, not 'flow'"):
        Flow.load(tmp_path / "m")


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="unknown Flow setting"):
        make({"kind": "coupling", "layers": 3})
    with pytest.raises(ValueError, match="kind must be one of"):
        make({"kind": "maf"})
    with pytest.raises(ValueError, match="coupling flows need transforms >= 2"):
        make({"kind": "coupling", "transforms": 1})  # would leave half the features untouched
    with pytest.raises(ValueError, match="bins must be >= 2"):
        make({"kind": "coupling", "bins": 1})


def _learn(kind: str, n_train: int, epochs: int) -> tuple[float, float, float]:
    rng = np.random.default_rng(0)
    theta, x = banana(n_train, rng)
    theta_te, x_te = banana(20_000, np.random.default_rng(1))
    model = Flow.for_dataset((theta, x), kind=kind, transforms=4, hidden=[64, 64], device="cpu")
    model.fit((theta, x), max_epochs=epochs, batch_size=256, lr=3e-3, patience=5, progress=False)
    nll = -float(np.mean(model.log_prob(x_te, theta_te))) / 2
    true_nll = -float(np.mean(banana_log_prob(x_te, theta_te))) / 2
    return nll, true_nll, banana_entropy() / 2


@pytest.mark.slow  # ~25-45 s each on one shared core
@pytest.mark.parametrize("kind", KINDS)
def test_learns_a_conditional_density_within_005_nats_per_dim(kind):
    nll, true_nll, entropy = _learn(kind, 20_000, 25)
    print(f"{kind}: held-out NLL {nll:.4f}, true entropy {entropy:.4f} nats/dim")
    # held-out NLL per dim vs the analytic conditional entropy per dim (and its MC estimate)
    assert abs(true_nll - entropy) < 0.02  # the test set itself is representative
    assert nll - entropy < 0.05, (nll, entropy)
    assert nll - true_nll > -0.02  # a model cannot beat the truth (up to MC noise)
