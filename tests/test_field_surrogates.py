"""Convolutional backbones of the VAE and the GAN for fields (C, H, W) on a periodic box.

What is guaranteed, and tested here in float64 (k = number of stride-2 stages):
* the encoder's / critic's last feature map commutes with periodic shifts by multiples of 2^k
  (a shift by 2^k s of the field shifts the map by s);
* the decoder's / generator's stages after its first linear layer commute with every periodic
  shift of their grid (a shift by s gives the field shifted by 2^k s), for both upsamplings,
  and with per-pixel noise maps when stage i's map is shifted by 2^(i+1) s along;
* the noise maps enter as predicted: not at all while their scales are zero (as initialized),
  and a change of the last stage's map at one pixel changes the field only within the output
  convolution's reach, by exactly the scaled and modulated change passed through it;
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


@pytest.mark.parametrize("noise", [False, True])
@pytest.mark.parametrize("upsample", ["nearest", "transposed"])
def test_decoder_stages_commute_with_every_grid_shift(upsample, noise):
    torch.manual_seed(0)
    dec = ConvDecoder(6, (4, 3), 2, image_size=(16, 8), context=2, upsample=upsample,
                      noise=noise).double()  # fmt: skip
    h = torch.randn(3, 4, 4, 2, generator=_g(), dtype=torch.float64)  # the (H/4, W/4) grid
    c = torch.randn(3, 2, generator=_g(1), dtype=torch.float64)
    maps = None
    if noise:  # scales away from their initial zeros, so the maps count
        assert dec.noise_shapes == [(8, 4), (16, 8)] and dec.noise_features == 160
        with torch.no_grad():
            for scale in dec.noise_scales:
                scale.copy_(torch.randn(scale.shape, generator=_g(4), dtype=torch.float64))
        maps = [torch.randn(3, *s, generator=_g(5 + i), dtype=torch.float64)
                for i, s in enumerate(dec.noise_shapes)]  # fmt: skip
        assert not torch.allclose(dec.from_grid(h, c, maps), dec.from_grid(h, c))
    y = dec.from_grid(h, c, maps)
    assert y.shape == (3, 2, 16, 8)
    z = torch.randn(3, 6, generator=_g(2), dtype=torch.float64)
    flat = None if maps is None else torch.cat([m.flatten(1) for m in maps], dim=1)
    grid = dec.linear(z).unflatten(1, (4, 4, 2))
    assert torch.equal(dec(z, c, flat), dec.from_grid(grid, c, maps))
    for s in [(1, 0), (0, 1), (3, -1)]:
        # stage i's grid is 2^(i+1) times the small one: its map shifts by 2^(i+1) s
        shifted = None if maps is None else [
            m.roll((2 ** (i + 1) * s[0], 2 ** (i + 1) * s[1]), (-2, -1)) for i, m in enumerate(maps)
        ]  # fmt: skip
        ys = dec.from_grid(h.roll(s, (-2, -1)), c, shifted)
        assert torch.allclose(ys, y.roll((4 * s[0], 4 * s[1]), (-2, -1)), rtol=0, atol=1e-12)
        if noise:  # the test can fail: the grid shifted, the maps left in place
            ys = dec.from_grid(h.roll(s, (-2, -1)), c, maps)
            assert not torch.allclose(ys, y.roll((4 * s[0], 4 * s[1]), (-2, -1)), atol=1e-6)


@pytest.mark.parametrize("upsample", ["nearest", "transposed"])
def test_decoder_noise_maps_enter_scaled_per_channel_before_film(upsample):
    """Stage i's pre-activation is FiLM(u_i + s_i ⊗ n_i, c). With the identity as activation
    the last stage is affine in its map, so a change δ at one pixel changes the field by the
    output convolution (without bias) of (1 + γ(c)) s δ at that pixel: computed here by hand.
    With a nonlinear activation the change stays within the 3×3 periodic neighbourhood."""
    torch.manual_seed(0)
    z = torch.randn(3, 6, generator=_g(), dtype=torch.float64)
    c = torch.randn(3, 2, generator=_g(1), dtype=torch.float64)
    noise = torch.randn(3, 160, generator=_g(2), dtype=torch.float64)
    for act in (nn.Identity, nn.SiLU):
        dec = ConvDecoder(6, (4, 3), 2, image_size=(16, 8), context=2, upsample=upsample,
                          activation=act, noise=True).double()  # fmt: skip
        # initial zero scales: the maps change nothing, exactly
        plain = ConvDecoder(6, (4, 3), 2, image_size=(16, 8), context=2, upsample=upsample,
                            activation=act).double()  # fmt: skip
        missing, unexpected = plain.load_state_dict(dec.state_dict(), strict=False)
        assert not missing and unexpected == ["noise_scales.0", "noise_scales.1"]
        assert torch.equal(dec(z, c, noise), dec(z, c)) and torch.equal(dec(z, c), plain(z, c))
        # gradients reach the scales even at zero (∂y/∂s_i is linear in the map)
        dec(z, c, noise).square().mean().backward()
        assert all(torch.all(s.grad != 0) for s in dec.noise_scales)
        with torch.no_grad():
            dec.noise_scales[1].copy_(torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64))
            y = dec(z, c, noise)
            maps = dec.split_noise(noise)
            assert [m.shape for m in maps] == [(3, 8, 4), (3, 16, 8)]
            other = noise.clone()
            other[:, 32 + 0 * 8 + 1] += 0.7  # the last stage's map at pixel (0, 1)
            diff = dec(z, c, other) - y
        assert diff.abs().amax(dim=(0, 1))[0, 1] > 0
        near = torch.zeros(16, 8, dtype=torch.bool)  # the 3×3 periodic neighbourhood
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                near[di % 16, (1 + dj) % 8] = True
        assert torch.all(diff[..., ~near] == 0) and torch.all(diff[..., near].abs() > 0)
        if act is nn.Identity:
            gamma = dec.films[1].linear(c)[:, :3].detach()
            d = torch.zeros(3, 3, 16, 8, dtype=torch.float64)
            d[:, :, 0, 1] = (1 + gamma) * dec.noise_scales[1].detach() * 0.7
            padded = torch.nn.functional.pad(d, (1, 1, 1, 1), mode="circular")
            expect = torch.nn.functional.conv2d(padded, dec.out.weight.detach())
            assert torch.allclose(diff, expect, rtol=0, atol=1e-12)
    # noise for a decoder without maps, or of the wrong size: one clear error
    with pytest.raises(ValueError, match="takes no noise"):
        plain(z, c, noise)
    with pytest.raises(ValueError, match=r"noise must have shape \(N, 160\)"):
        dec(z, c, noise[:, :-1])
    with pytest.raises(ValueError, match="noise maps must have shapes"):
        dec(z, c, [torch.zeros(3, 8, 4), torch.zeros(3, 8, 8)])


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
