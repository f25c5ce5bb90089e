"""Embedding networks (surrogates.nn.embeddings) and their joint training with NPE."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Uniform

from surrogates.inference import NPE
from surrogates.nn import build_embedding, power_spectrum

SPECS = [
    ("identity", (5,), 5),
    ({"type": "mlp", "hidden": [16], "out": 7}, (5,), 7),
    ({"type": "mlp", "out": 4}, (3, 4), 4),
    ({"type": "cnn", "channels": [4, 8], "out": 6}, (16, 16), 6),
    ({"type": "cnn", "channels": [4], "out": 6}, (2, 12, 10), 6),
    ({"type": "power_spectrum", "n_bins": 6, "out": 5}, (16, 16), 5),
    ({"type": "power_spectrum", "n_bins": 4, "out": 5}, (8, 8, 8), 5),
    ({"type": "deepset", "phi": [8, 8], "out": 3}, (10, 2), 3),
    ({"type": "deepset", "out": 3}, (10,), 3),
]


@pytest.mark.parametrize(
    ("spec", "x_shape", "out"), SPECS, ids=[str(s[1]) + str(s[0])[:20] for s in SPECS]
)
def test_output_shape_gradients_and_config_round_trip(spec, x_shape, out):
    torch.manual_seed(0)
    emb = build_embedding(spec, x_shape)
    x = torch.randn(6, *x_shape)
    h = emb(x)
    assert h.shape == (6, out) and emb.out_features == out
    params = list(emb.parameters())
    if params:
        h.square().sum().backward()
        assert all(p.grad is not None and torch.any(p.grad != 0) for p in params)
    rebuilt = build_embedding(emb.config, x_shape)
    rebuilt.load_state_dict(emb.state_dict())
    emb.eval(), rebuilt.eval()
    torch.testing.assert_close(rebuilt(x), emb(x))


def test_deepset_is_permutation_invariant_and_order_sensitive_mlp_is_not():
    torch.manual_seed(0)
    x = torch.randn(4, 10, 2, dtype=torch.float64)
    perm = torch.randperm(10)
    ds = build_embedding({"type": "deepset"}, (10, 2)).double()
    torch.testing.assert_close(ds(x), ds(x[:, perm]))
    mlp = build_embedding("mlp", (10, 2)).double()
    assert not torch.allclose(mlp(x), mlp(x[:, perm]))


def test_power_spectrum_of_a_plane_wave_sits_in_one_bin():
    # cos(2π k0 x / n) has all its power at |k| = k0: one bin, zero elsewhere
    n, k0, bins = 32, 5, 8
    i = torch.arange(n, dtype=torch.float64)
    field = torch.cos(2 * math.pi * k0 * i / n)[None, :, None].expand(1, n, n)
    p = power_spectrum(field, bins, 2)[0]
    expected_bin = int(k0 / (n / 2) * bins)
    assert p.argmax().item() == expected_bin
    assert torch.all(p[torch.arange(bins) != expected_bin] < 1e-20)
    # Parseval: total power of the mode is n² / 2 (orthonormal FFT), over its two rfft entries
    assert p[expected_bin].item() > 0


def test_power_spectrum_is_translation_invariant():
    torch.manual_seed(0)
    f = torch.randn(3, 16, 16, dtype=torch.float64)
    shifted = torch.roll(f, shifts=(3, 7), dims=(1, 2))
    torch.testing.assert_close(power_spectrum(f, 6, 2), power_spectrum(shifted, 6, 2))


def test_unknown_embedding_is_rejected():
    with pytest.raises(ValueError, match="unknown embedding"):
        build_embedding("transformer", (3,))
    with pytest.raises(ValueError, match="bad options"):
        build_embedding({"type": "mlp", "width": 3}, (3,))


def test_embedding_is_trained_jointly_with_the_flow():
    # θ ~ U[0,1]², x: a set of 8 noisy copies of θ; after training the DeepSets weights moved
    # and the posterior concentrates near the true θ (prior std is 0.29 per coordinate).
    g = torch.Generator().manual_seed(0)
    prior = Independent(Uniform(torch.zeros(2), torch.ones(2)), 1)
    theta = torch.rand(2000, 2, generator=g)
    x = theta[:, None, :] + 0.1 * torch.randn(2000, 8, 2, generator=g)
    npe = NPE(
        prior,
        embedding={"type": "deepset", "phi": [32, 32], "out": 8},
        transforms=2,
        hidden=(32, 32),
    )
    npe.fit(theta[:10], x[:10], max_epochs=1)  # builds the network
    before = {k: v.clone() for k, v in npe.net.embedding.state_dict().items()}
    npe = NPE(
        prior,
        embedding={"type": "deepset", "phi": [32, 32], "out": 8},
        transforms=2,
        hidden=(32, 32),
    )
    npe.fit(theta, x, max_epochs=15)
    after = npe.net.embedding.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)
    s = npe.sample((500,), x[0], generator=g)
    assert torch.linalg.norm(s.mean(0) - theta[0]).item() < 0.1
    assert s.std(0).max().item() < 0.15
