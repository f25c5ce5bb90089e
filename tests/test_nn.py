"""surrogates.nn: the MLP builder, embeddings, periodic convolutions, conv encoder/decoder."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from surrogates.nn import (
    ConvDecoder,
    ConvEncoder,
    PeriodicConv2d,
    build_embedding,
    mlp,
)

# ---------------------------------------------------------------------------------------------
# mlp


def _reference(in_features, hidden, out, activation, dropout):
    layers, width = [], in_features
    for h in hidden:
        layers += [nn.Linear(width, h), activation()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    return nn.Sequential(*layers, nn.Linear(width, out))


@pytest.mark.parametrize(
    ("hidden", "activation", "dropout"),
    [((16, 8), nn.ReLU, 0.0), ((5,), nn.LeakyReLU, 0.2), ((), nn.GELU, 0.0)],
)
def test_mlp_generator_init_is_bit_identical_to_a_hand_built_reference(hidden, activation, dropout):
    torch.manual_seed(0)
    net = mlp(7, hidden, 3, activation=activation, dropout=dropout,
              generator=torch.Generator().manual_seed(1))  # fmt: skip
    after = torch.rand(1)  # the global generator advanced exactly as by the reference
    torch.manual_seed(0)
    ref = _reference(7, hidden, 3, activation, dropout)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in ref:
            if isinstance(layer, nn.Linear):
                bound = 1 / layer.in_features**0.5
                layer.weight.uniform_(-bound, bound, generator=g)
                layer.bias.uniform_(-bound, bound, generator=g)
    assert torch.equal(after, torch.rand(1))
    assert [type(m) for m in net] == [type(m) for m in ref]
    assert not isinstance(net[-1], (activation, nn.Dropout))
    a, b = net.state_dict(), ref.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    # a different generator seed gives different weights
    other = mlp(7, hidden, 3, activation=activation, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(other[0].weight, net[0].weight)


def test_mlp_without_generator_keeps_torch_default_init():
    torch.manual_seed(5)
    net = mlp(4, (6, 6), 2, activation=nn.ELU)
    torch.manual_seed(5)
    ref = _reference(4, (6, 6), 2, nn.ELU, 0.0)
    a, b = net.state_dict(), ref.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="dropout"):
        mlp(4, (6,), 2, dropout=1.0)


# state-dict keys of saved estimators: these must not change
EMBEDDING_KEYS = [
    ({"type": "mlp", "hidden": [8, 8]}, (5,), ["net.0", "net.2", "net.4"]),
    ({"type": "power_spectrum", "n_bins": 4, "hidden": [8]}, (8, 8), ["mlp.0", "mlp.2"]),
    (
        {"type": "deepset", "phi": [8, 8], "rho": [8]},
        (6, 2),
        ["phi.0.0", "phi.0.2", "rho.0", "rho.2"],
    ),
    ({"type": "cnn", "channels": [4, 4]}, (8, 8), ["net.0", "net.3", "net.8"]),
]


@pytest.mark.parametrize(("spec", "x_shape", "linears"), EMBEDDING_KEYS)
def test_embedding_state_dict_keys_are_stable(spec, x_shape, linears):
    emb = build_embedding(spec, x_shape)
    keys = {k.rsplit(".", 1)[0] for k, v in emb.state_dict().items() if v.dim() >= 2}
    assert keys == set(linears)
    rebuilt = build_embedding(emb.config, x_shape)
    rebuilt.load_state_dict(emb.state_dict())
    x = torch.randn(3, *x_shape)
    emb.eval(), rebuilt.eval()
    assert torch.equal(rebuilt(x), emb(x))


# ---------------------------------------------------------------------------------------------
# periodic convolutions


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_periodic_conv_commutes_with_periodic_shifts(kernel_size):
    torch.manual_seed(0)
    conv = PeriodicConv2d(2, 3, kernel_size).double()
    x = torch.randn(4, 2, 8, 16, dtype=torch.float64)
    y = conv(x)
    assert y.shape == (4, 3, 8, 16)
    for shift in [(1, 0), (0, 3), (5, -7), (8, 16)]:
        y_s = conv(x.roll(shift, (-2, -1)))
        assert torch.allclose(y_s, y.roll(shift, (-2, -1)), rtol=0, atol=1e-12)


def test_strided_periodic_conv_commutes_with_even_shifts():
    torch.manual_seed(0)
    conv = PeriodicConv2d(1, 2, 3, stride=2).double()
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    y = conv(x)
    assert y.shape == (2, 2, 8, 8)
    y_s = conv(x.roll((4, -6), (-2, -1)))
    assert torch.allclose(y_s, y.roll((2, -3), (-2, -1)), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="odd"):
        PeriodicConv2d(1, 1, 2)


# ---------------------------------------------------------------------------------------------
# encoder / decoder


@pytest.mark.parametrize("image_size", [32, 64, (16, 32)])
@pytest.mark.parametrize("upsample", ["nearest", "transposed"])
def test_encoder_decoder_shapes_film_and_gradients(image_size, upsample):
    torch.manual_seed(0)
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    enc = ConvEncoder(2, (4, 8, 8), 5, image_size=image_size, context=3)
    dec = ConvDecoder(5, (8, 8, 4), 2, image_size=image_size, context=3, upsample=upsample)
    x, c = torch.randn(6, 2, h, w), torch.randn(6, 3)
    z = enc(x, c)
    out = dec(z, c)
    assert z.shape == (6, 5) and enc.out_features == 5
    assert out.shape == (6, 2, h, w)
    # the context changes both outputs
    c2 = c + 1.0
    assert not torch.allclose(enc(x, c2), z)
    assert not torch.allclose(dec(z, c2), out)
    # gradients reach every parameter, the FiLM layers included
    out.square().mean().backward()
    for name, p in [*enc.named_parameters(), *dec.named_parameters()]:
        assert p.grad is not None and torch.any(p.grad != 0), name


def test_unconditioned_blocks_and_bad_arguments():
    enc = ConvEncoder(1, (4,), 3, image_size=8)
    dec = ConvDecoder(3, (4,), 1, image_size=8)
    assert dec(enc(torch.randn(2, 1, 8, 8))).shape == (2, 1, 8, 8)
    assert not any("film" in k for k in [*enc.state_dict(), *dec.state_dict()])
    for size in [48, 3, (32, 24), 4]:
        with pytest.raises(ValueError, match="powers of two"):
            ConvEncoder(1, (4, 4, 4), 3, image_size=size)
        with pytest.raises(ValueError, match="powers of two"):
            ConvDecoder(3, (4, 4, 4), 1, image_size=size)
    conditioned = ConvEncoder(1, (4,), 3, image_size=8, context=2)
    with pytest.raises(ValueError, match="context"):
        conditioned(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="upsample"):
        ConvDecoder(3, (4,), 1, image_size=8, upsample="bilinear")
