"""Convolutional backbones of the VAE and the GAN for fields (C, H, W) on a periodic box.

What is guaranteed, and tested here in float64 (k = number of stride-2 stages):
* the encoder's / critic's last feature map commutes with periodic shifts by multiples of 2^k
  (a shift by 2^k s of the field shifts the map by s);
* the decoder's / generator's stages after its first linear layer commute with every periodic
  shift of their grid (a shift by s gives the field shifted by 2^k s), for both upsamplings;
* the pooled field critic's score is invariant under shifts by multiples of 2^k (and is not
  under an odd shift, nor without pooling: the test can fail);
* the gradient penalty treats a field row (C, H, W) exactly as its flattened vector.
Also: backbone shapes, the automatic choice of the conv backbone for ``nbody`` data, and the
refusal of the other backbone's settings. Training, save/load, determinism and resume of the field
models are in the contract test (``tests/test_surrogate_contract.py``, kind ``fields``); the
float64 round trip of the field preprocessing is in ``tests/test_preprocessing.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import simulators
from surrogates.models import GAN, VAE, Flow
from surrogates.models.backbones import (
    FieldCritic,
    FieldDecoder,
    FieldEncoder,
    Joint,
    gan_backbone,
    vae_backbone,
)
from surrogates.models.gan import GANArch
from surrogates.nn import ConvDecoder, ConvEncoder
from surrogates.nn.adversarial import gradient_penalty
from surrogates.preprocessing import FieldPreprocessing, Standardize

SHIFTS = [(1, 0), (0, -2), (3, 1)]  # in units of 2^k pixels of the field


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("pool", [False, True])
def test_encoder_features_commute_with_shifts_by_2k(pool):
    torch.manual_seed(0)
    enc = ConvEncoder(2, (3, 4), 5, image_size=(16, 32), context=2, pool=pool).double()
    x = torch.randn(3, 2, 16, 32, generator=_g(), dtype=torch.float64)
    c = torch.randn(3, 2, generator=_g(1), dtype=torch.float64)
    h, out = enc.features(x, c), enc(x, c)
    assert h.shape == (3, 4, 4, 8) and out.shape == (3, 5)
    for s in SHIFTS:
        xs = x.roll((4 * s[0], 4 * s[1]), (-2, -1))
        assert torch.allclose(enc.features(xs, c), h.roll(s, (-2, -1)), rtol=0, atol=1e-12)
        if pool:  # the mean over the grid forgets the shift
            assert torch.allclose(enc(xs, c), out, rtol=0, atol=1e-12)


@pytest.mark.parametrize("upsample", ["nearest", "transposed"])
def test_decoder_stages_commute_with_every_grid_shift(upsample):
    torch.manual_seed(0)
    dec = ConvDecoder(6, (4, 3), 2, image_size=(16, 8), context=2, upsample=upsample).double()
    h = torch.randn(3, 4, 4, 2, generator=_g(), dtype=torch.float64)  # the (H/4, W/4) grid
    c = torch.randn(3, 2, generator=_g(1), dtype=torch.float64)
    y = dec.from_grid(h, c)
    assert y.shape == (3, 2, 16, 8)
    z = torch.randn(3, 6, generator=_g(2), dtype=torch.float64)
    assert torch.equal(dec(z, c), dec.from_grid(dec.linear(z).unflatten(1, (4, 4, 2)), c))
    for s in [(1, 0), (0, 1), (3, -1)]:
        ys = dec.from_grid(h.roll(s, (-2, -1)), c)
        assert torch.allclose(ys, y.roll((4 * s[0], 4 * s[1]), (-2, -1)), rtol=0, atol=1e-12)


def _critic(pool: bool, group: int = 2) -> FieldCritic:
    torch.manual_seed(0)
    return FieldCritic((2, 16, 16), (4, 8), 2, nn.LeakyReLU, group, out_bias=False, pool=pool)


def test_pooled_field_critic_is_invariant_under_shifts_by_2k():
    fields = torch.randn(4, 2, 16, 16, generator=_g(), dtype=torch.float64)
    c = torch.randn(4, 2, generator=_g(1), dtype=torch.float64)
    critic = _critic(pool=True).double()
    score = critic(fields.flatten(1), c)
    assert score.shape == (4,)
    for s in SHIFTS:  # the minibatch std is computed on the shift-invariant features
        shifted = fields.roll((4 * s[0], 4 * s[1]), (-2, -1)).flatten(1)
        assert torch.allclose(critic(shifted, c), score, rtol=0, atol=1e-12)
    # not guaranteed, and not true: an odd shift, or a flattened head
    odd = fields.roll(1, -1).flatten(1)
    assert not torch.allclose(critic(odd, c), score, rtol=0, atol=1e-6)
    flat = _critic(pool=False).double()
    shifted = fields.roll(4, -1).flatten(1)
    assert not torch.allclose(flat(shifted, c), flat(fields.flatten(1), c), rtol=0, atol=1e-6)


def test_gradient_penalty_on_fields_equals_flattened():
    critic = _critic(pool=True).double()
    real = torch.randn(4, 2, 16, 16, generator=_g(), dtype=torch.float64)
    fake = torch.randn(4, 2, 16, 16, generator=_g(1), dtype=torch.float64)
    c = torch.randn(4, 2, generator=_g(2), dtype=torch.float64)

    def on_fields(y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return critic(y.flatten(1), c)

    flat = gradient_penalty(critic, real.flatten(1), fake.flatten(1), c, generator=_g(3))
    fields = gradient_penalty(on_fields, real, fake, c, generator=_g(3))
    assert torch.isfinite(flat) and torch.allclose(fields, flat, rtol=1e-12, atol=0)


@pytest.mark.parametrize("variance", ["feature", "sample"])
def test_backbone_shapes(variance):
    shape, n, latent = (3, 8, 16), 5, 6
    arch = {"latent": latent, "conv_widths": [4, 4, 8], "upsample": "transposed",
            "variance": variance, "minibatch_std": 4, "loss": "wgan",
            "critic_pool": True}  # fmt: skip
    y, c, z = torch.randn(n, 3 * 8 * 16), torch.randn(n, 2), torch.randn(n, latent)
    enc, dec = vae_backbone(shape, 2, arch, nn.SiLU)
    assert isinstance(enc, FieldEncoder) and isinstance(dec, FieldDecoder)
    assert enc(y, c).shape == (n, 2 * latent)
    assert dec(z, c).shape == (n, (2 if variance == "sample" else 1) * y.shape[1])
    gen, critic = gan_backbone(shape, 2, arch, nn.SiLU)
    assert gen(z, c).shape == y.shape and critic(gen(z, c), c).shape == (n,)
    # vectors keep the MLPs on [h, c]
    enc, dec = vae_backbone((7,), 2, {**arch, "hidden": [8]}, nn.SiLU)
    assert isinstance(enc, Joint) and enc(torch.randn(n, 7), c).shape == (n, 2 * latent)


@pytest.fixture(scope="module")
def nbody(tmp_path_factory):
    path = tmp_path_factory.mktemp("fields") / "nbody.h5"
    sim = simulators.get("nbody", n_particles=16, box_size=128.0, n_steps=2, output="slices",
                         n_slices=2)  # fmt: skip
    simulators.generate(sim, 24, path, seed=0, chunk_size=24)
    return path


def test_for_dataset_picks_the_conv_backbone_for_nbody(nbody):
    small = {"conv_widths": [4, 8], "latent": 4, "device": "cpu"}
    vae, gan = VAE.for_dataset(nbody, **small), GAN.for_dataset(nbody, **small)
    for model in (vae, gan):
        assert model.data_kind == "fields" and isinstance(model.pre, FieldPreprocessing)
        assert model.pre.shape == (2, 16, 16)  # the slices of a row are its channels
        assert model.pre.transform == "log" and model.pre.shift == 2.0  # finite if δ = -1
    assert isinstance(vae.net.encoder, FieldEncoder) and isinstance(vae.net.decoder, FieldDecoder)
    assert vae.net.log_scale.shape == (2,)  # one decoder σ per channel
    assert isinstance(gan.net.generator, FieldDecoder) and isinstance(gan.net.critic, FieldCritic)
    assert gan.arch["critic_hidden"] is None and gan.default_batch_size() < 10_000
    # the flow models the same data as a vector
    flow = Flow.for_dataset(nbody, transforms=2, hidden=[8], bins=4, device="cpu")
    assert flow.data_kind == "vectors"
    # VAE.log_prob runs on fields (IWAE bound plus the log map's log-determinant)
    with simulators.open_dataset(nbody) as ds:
        theta, x = ds.theta[:3], ds.x[:3]
    assert (x == -1).any()  # an empty cell, absent from the rows the preprocessing saw
    lp = vae.log_prob(x, theta, k=2)
    assert lp.shape == (3,) and np.isfinite(lp).all()


def test_arrays_with_the_file_meta_get_the_files_defaults(nbody):
    """Rows read (or augmented) from a file keep its defaults when its metadata come along;
    without them they are plain vectors."""
    small = {"conv_widths": [4, 8], "latent": 4, "device": "cpu"}
    with simulators.open_dataset(nbody) as ds:
        theta, x, meta = ds.theta[:], ds.x[:], dict(ds.meta)
    for cls in (VAE, GAN):
        model = cls.for_dataset((theta, x), meta=meta, **small)
        assert model.data_kind == "fields" and isinstance(model.pre, FieldPreprocessing)
        assert model.meta["simulator"] == "nbody"
        bare = cls.for_dataset((theta, x), device="cpu")
        assert bare.data_kind == "vectors"


def test_settings_of_the_other_backbone_are_refused(nbody):
    with pytest.raises(simulators.UserError, match="hidden apply to vectors and showers only"):
        VAE.for_dataset(nbody, hidden=[16], device="cpu")
    with pytest.raises(simulators.UserError, match="critic_hidden apply to vectors"):
        GAN.for_dataset(nbody, critic_hidden=[16, 16], device="cpu")
    theta = np.random.default_rng(0).uniform(0, 1, (32, 2)).astype(np.float32)
    vectors = (theta, theta + 1)
    with pytest.raises(simulators.UserError, match="conv_widths apply to fields"):
        VAE.for_dataset(vectors, conv_widths=[8], device="cpu")
    with pytest.raises(simulators.UserError, match="upsample, critic_pool apply to fields"):
        GAN.for_dataset(vectors, upsample="transposed", critic_pool=False, device="cpu")
    # sides that the stride-2 stages cannot halve exactly: one clear error
    fields = (theta, np.random.default_rng(1).uniform(0, 2, (32, 2, 12, 12)).astype(np.float32))
    with pytest.raises(simulators.UserError, match="powers of two"):
        GAN.for_dataset(fields, preprocessing=FieldPreprocessing(), device="cpu")
    # an explicit vector preprocessing keeps nbody data on the MLPs
    mlp = VAE.for_dataset(nbody, preprocessing=Standardize(), hidden=[8], device="cpu")
    assert mlp.data_kind == "vectors" and isinstance(mlp.net.encoder, Joint)


def test_arch_parsing_of_conv_settings():
    parsed = GANArch.parse(["conv_widths=8,16", "upsample=transposed", "critic_pool=false"])
    assert parsed == {"conv_widths": (8, 16), "upsample": "transposed", "critic_pool": False}
    with pytest.raises(simulators.UserError, match="upsample"):
        GANArch().replace(upsample="bilinear")
    with pytest.raises(simulators.UserError, match="conv_widths"):
        GANArch().replace(conv_widths=[])
