"""The preprocessing layer: exact inverses in float64, correct log-Jacobians, saved state."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from surrogates.preprocessing import (
    LOGIT_EPS,
    FieldPreprocessing,
    LinearAdjust,
    ShowerPreprocessing,
    Standardize,
    default_preprocessing,
    from_dict,
    layer_sizes_of,
)
from surrogates.preprocessing.base import _logit

# CaloChallenge dataset-1 photons: radial x alpha bins of the non-empty layers 0, 1, 2, 3, 12
PHOTON_LAYERS = [8 * 1, 16 * 10, 19 * 10, 5 * 1, 5 * 1]
THRESHOLD = 0.0153  # MeV, a readout threshold


def synthetic_showers(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Showers with the photon layout: sparse, non-zero voxels >= THRESHOLD, some empty layers."""
    g = np.random.default_rng(seed)
    e_inc = np.exp(g.uniform(np.log(256.0), np.log(4.2e6), n))
    x = g.gamma(0.3, 1.0, (n, sum(PHOTON_LAYERS))) * (e_inc[:, None] / 400.0)
    x[g.random(x.shape) < 0.6] = 0.0
    x[:5, :8] = 0.0  # an empty first layer
    x[x < THRESHOLD] = 0.0
    return torch.tensor(x), torch.tensor(e_inc[:, None])


def test_photon_layer_layout_matches_binning_file(shared_dir):
    import xml.etree.ElementTree as ET

    root = ET.parse(shared_dir / "data/calochallenge/binning_dataset_1_photons.xml").getroot()
    sizes = []
    for layer in root.iter("Layer"):
        n_r = len(layer.get("r_edges").split(",")) - 1
        if n_r:
            sizes.append(n_r * int(layer.get("n_bin_alpha")))
    assert sizes == PHOTON_LAYERS and sum(sizes) == 368


@pytest.mark.parametrize("transform", ["identity", "log", "logit"])
def test_standardize_round_trip_and_log_jacobian(transform):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 4, generator=g, dtype=torch.float64) * (1 if transform == "logit" else 7)
    theta = torch.rand(200, 2, generator=g, dtype=torch.float64) + 0.5
    pre = Standardize(transform, log_theta=True).fit(x, theta)
    y, ladj = pre.forward(x, theta)
    # standardized: zero mean, unit variance on the fitting data
    assert torch.allclose(y.mean(0), torch.zeros(4, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(y.std(0), torch.ones(4, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(pre.inverse(y, theta), x, rtol=0, atol=1e-9)
    # ladj equals log|det J| from autograd on one row
    jac = torch.autograd.functional.jacobian(lambda r: pre.forward(r[None], theta[:1])[0][0], x[0])
    assert torch.allclose(ladj[0], torch.linalg.slogdet(jac)[1], atol=1e-9)
    c = pre.condition(theta)
    assert torch.allclose(c.mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-10)


def test_standardize_state_round_trip_is_exact():
    x, theta = torch.randn(50, 3, dtype=torch.float64), torch.randn(50, 1, dtype=torch.float64)
    pre = Standardize("identity").fit(x, theta)
    back = from_dict(json.loads(json.dumps(pre.to_dict())))
    assert torch.equal(back.forward(x, theta)[0], pre.forward(x, theta)[0])
    assert torch.equal(back.condition(theta), pre.condition(theta))


def test_standardize_auto_log_picks_the_columns_that_span_decades():
    g = torch.Generator().manual_seed(1)
    n = 2000
    theta = torch.stack(
        [
            torch.exp(3 * torch.randn(n, generator=g, dtype=torch.float64)),  # log-normal: log
            torch.rand(n, generator=g, dtype=torch.float64) + 1.0,  # uniform on [1, 2]: linear
            torch.randn(n, generator=g, dtype=torch.float64),  # signed: linear
        ],
        dim=1,
    )
    x = torch.randn(n, 2, dtype=torch.float64)
    pre = Standardize(log_theta="auto").fit(x, theta)
    assert pre.log_theta == [True, False, False]
    c = pre.condition(theta)
    assert torch.allclose(c[:, 0], (theta[:, 0].log() - theta[:, 0].log().mean())
                          / theta[:, 0].log().std(), atol=1e-10)  # fmt: skip
    assert torch.allclose(c.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-10)
    back = from_dict(json.loads(json.dumps(pre.to_dict())))
    assert back.log_theta == [True, False, False]
    assert torch.equal(back.condition(theta), c)
    with pytest.raises(RuntimeError, match="fit"):
        Standardize(log_theta="auto").condition(theta)
    with pytest.raises(ValueError, match="log_theta"):
        Standardize(log_theta="sometimes")


def test_shower_round_trip_is_exact_in_float64():
    x, e = synthetic_showers(300)
    pre = ShowerPreprocessing(PHOTON_LAYERS).fit(x, e, generator=torch.Generator().manual_seed(0))
    assert pre.threshold == pytest.approx(float(x[x > 0].min()))
    assert pre.features == 368 + 5 and pre.split == 5
    y, _ = pre.forward(x, e, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(y).all()
    back = pre.inverse(y, e)
    # the dequantization noise lies below the threshold and is removed exactly
    assert torch.equal(back == 0, x == 0)
    assert torch.allclose(back, x, rtol=1e-9, atol=1e-12)
    # energy bookkeeping: total deposit is conserved through the round trip
    assert torch.allclose(back.sum(1), x.sum(1), rtol=1e-9)


def test_shower_fractions_are_calofow_normalization():
    x, e = synthetic_showers(20, seed=3)
    pre = ShowerPreprocessing(PHOTON_LAYERS, threshold=THRESHOLD, energy_scale=2.0)
    pre.mean, pre.std = torch.zeros(373, dtype=torch.float64), torch.ones(373, dtype=torch.float64)
    xq = x.clone()
    xq[xq == 0] = THRESHOLD / 2  # pretend dequantization gave this
    f = pre._fractions(xq, e)
    layers = torch.stack([c.sum(1) for c in torch.split(xq, PHOTON_LAYERS, dim=1)], 1)
    assert torch.allclose(f[:, 0], layers.sum(1) / (2.0 * e[:, 0]))
    assert torch.allclose(f[:, 1], layers[:, 0] / layers.sum(1))
    assert torch.allclose(f[:, 4], layers[:, 3] / layers[:, 3:].sum(1))
    assert torch.allclose(f[:, 5 + 8 : 5 + 168].sum(1), torch.ones(20, dtype=torch.float64))
    y, _ = pre.forward(xq, e)  # (no zeros left to dequantize)
    p = LOGIT_EPS + (1 - 2 * LOGIT_EPS) * f
    assert torch.allclose(y, torch.log(p / (1 - p)))


def test_shower_inverse_of_arbitrary_features_is_a_valid_shower():
    x, e = synthetic_showers(100)
    pre = ShowerPreprocessing(PHOTON_LAYERS).fit(x, e, generator=torch.Generator().manual_seed(0))
    y = 3 * torch.randn(100, 373, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    s = pre.inverse(y, e)
    assert torch.isfinite(s).all() and (s >= 0).all()
    assert ((s == 0) | (s >= 0.9995 * pre.threshold)).all()
    assert (s.sum(1) <= pre.energy_scale * e[:, 0] * (1 + 1e-12)).all()


def test_shower_state_round_trip_and_bad_input():
    x, e = synthetic_showers(50)
    pre = ShowerPreprocessing(PHOTON_LAYERS).fit(x, e, generator=torch.Generator().manual_seed(0))
    back = from_dict(json.loads(json.dumps(pre.to_dict())))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(back.forward(x, e, generator=g1)[0], pre.forward(x, e, generator=g2)[0])
    with pytest.raises(ValueError, match="368 voxels"):
        ShowerPreprocessing([8, 8]).fit(x, e)
    with pytest.raises(ValueError, match="unknown preprocessing"):
        from_dict({"kind": "nope"})


def test_shower_zero_band_places_zeros_below_it_and_round_trips():
    x, e = synthetic_showers(200)
    pre = ShowerPreprocessing(PHOTON_LAYERS, zero_band=0.1)
    pre.fit(x, e, generator=torch.Generator().manual_seed(0))
    xq = pre._dequantize(x, torch.Generator().manual_seed(1))
    zeros = x == 0
    assert (xq[zeros] > 0).all() and (xq[zeros] < 0.1 * pre.threshold).all()
    assert xq[zeros].max() > 0.09 * pre.threshold  # the band is filled, not a point
    assert torch.equal(xq[~zeros], x[~zeros])
    y, _ = pre.forward(x, e, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(pre.inverse(y, e), x, rtol=1e-9, atol=1e-12)
    state = json.loads(json.dumps(pre.to_dict()))
    assert from_dict(state).zero_band == 0.1
    del state["zero_band"]  # saved before the setting existed: the band it was trained with
    assert from_dict(state).zero_band == 0.999
    for bad in (1.0, -0.5):
        with pytest.raises(ValueError, match="zero_band"):
            ShowerPreprocessing(PHOTON_LAYERS, zero_band=bad)


def test_shower_zero_band_0_keeps_zeros_exact_even_in_empty_layers():
    x, e = synthetic_showers(200)
    first = slice(0, PHOTON_LAYERS[0])
    x[:50, first] = 0.0  # empty first layer: no energy to take fractions of
    pre = ShowerPreprocessing(PHOTON_LAYERS, zero_band=0.0).fit(x, e)
    y, _ = pre.forward(x, e)
    assert torch.isfinite(y).all()
    empty = pre.empty_value()
    L = len(PHOTON_LAYERS)
    assert torch.isinf(empty[:L]).all() and torch.isfinite(empty[L:]).all()
    # every empty voxel is exactly at its feature's floor, every hit above it
    at_floor = y[:, L:] == empty[L:]
    assert torch.equal(at_floor, x == 0) and (y[:, L:] >= empty[L:]).all()
    assert torch.allclose(pre.inverse(y, e), x, rtol=1e-9, atol=1e-12)


def test_shower_voxel_knots_standardize_voxels_per_energy_and_keep_the_round_trip():
    x, e = synthetic_showers(600, seed=5)
    e = torch.tensor([256.0, 4096.0, 65536.0])[torch.arange(600) % 3, None].double()
    pre = ShowerPreprocessing(PHOTON_LAYERS, threshold=THRESHOLD, zero_band=0.0,
                              voxel_knots=True).fit(x, e)  # fmt: skip
    y, _ = pre.forward(x, e)
    assert torch.allclose(pre.inverse(y, e), x, rtol=1e-9, atol=1e-12)
    L = len(PHOTON_LAYERS)
    for energy in (256.0, 4096.0, 65536.0):  # one knot per energy: mean 0, std 1 at each
        rows = y[e[:, 0] == energy]
        varies = rows.std(0) > 1e-9
        assert torch.allclose(rows.mean(0), torch.zeros_like(rows[0]), atol=1e-9)
        assert torch.allclose(rows.std(0)[varies], torch.ones_like(rows[0])[varies], atol=1e-9)
        assert varies[L:].sum() > 300  # the voxels are standardized too, not only the layers
    # an empty voxel sits exactly on its energy's floor; the floor needs the energy
    empty = pre.empty_value(pre.condition(e)[:, 0])
    assert torch.isinf(empty[:, :L]).all()
    assert torch.equal(y[:, L:] == empty[:, L:], x == 0) and (y[:, L:] >= empty[:, L:]).all()
    with pytest.raises(ValueError, match="depends on c"):
        pre.empty_value()
    loaded = ShowerPreprocessing.from_dict(pre.to_dict())
    assert loaded.voxel_knots and torch.equal(loaded.forward(x, e)[0], y)


def test_shower_layer_features_are_standardized_per_energy():
    # discrete energies: one knot each, so every energy's layer features have mean 0, std 1
    x, e = synthetic_showers(600, seed=4)
    e = torch.tensor([256.0, 4096.0, 65536.0])[torch.arange(600) % 3, None].double()
    x = x * (e / x.sum(1, keepdim=True).clamp_min(1e-9))  # response of order one at every E
    g = torch.Generator().manual_seed(0)
    pre = ShowerPreprocessing(PHOTON_LAYERS, threshold=THRESHOLD).fit(x, e, generator=g)
    assert len(pre.knots) == 3
    y, _ = pre.forward(x, e, generator=torch.Generator().manual_seed(0))
    for energy in (256.0, 4096.0, 65536.0):
        rows = y[e[:, 0] == energy, :5]
        assert torch.allclose(rows.mean(0), torch.zeros(5, dtype=y.dtype), atol=1e-9)
        assert torch.allclose(rows.std(0), torch.ones(5, dtype=y.dtype), atol=1e-9)


def test_shower_conditional_standardization_log_jacobian_and_continuity():
    # continuous energies: quantile knots, linear interpolation between them
    x, e = synthetic_showers(2000, seed=5)
    pre = ShowerPreprocessing(PHOTON_LAYERS).fit(x, e, generator=torch.Generator().manual_seed(0))
    assert 2 <= len(pre.knots) <= 32 and torch.all(pre.knots[1:] > pre.knots[:-1])
    # the map from logit fractions to features, per row: its log-det is -sum log std(c)
    c = pre.condition(e)[:, 0]
    mean, std = pre._stats(c, x)
    y1, ladj1 = pre.forward(x, e, generator=torch.Generator().manual_seed(1))
    xq = pre._dequantize(x, torch.Generator().manual_seed(1))
    t, ladj = _logit(pre._fractions(xq, e), pre.eps)
    assert torch.allclose(y1, (t - mean) / std)
    assert torch.allclose(ladj1, (ladj - torch.log(std)).sum(1))
    # the scale varies with energy and is continuous across the knots
    grid = torch.linspace(float(c.min()) - 1, float(c.max()) + 1, 4001, dtype=torch.float64)
    _, s = pre._stats(grid, torch.zeros(1, dtype=torch.float64))
    assert (s[:, :5].max(0).values / s[:, :5].min(0).values > 1.05).any()
    assert (s[1:, :5] - s[:-1, :5]).abs().max() < 0.05 * s[:, :5].max()


def test_shower_state_saved_before_the_energy_knots_loads_as_global():
    x, e = synthetic_showers(300)
    pre = ShowerPreprocessing(PHOTON_LAYERS).fit(x, e, generator=torch.Generator().manual_seed(0))
    old = {k: v for k, v in pre.to_dict().items() if not k.startswith("knot")}
    back = from_dict(json.loads(json.dumps(old)))
    y, _ = back.forward(x, e, generator=torch.Generator().manual_seed(1))
    xq = back._dequantize(x, torch.Generator().manual_seed(1))
    t, _ = _logit(back._fractions(xq, e), back.eps)
    assert torch.allclose(y, (t - pre.mean) / pre.std)
    assert torch.allclose(back.inverse(y, e), x, rtol=1e-9, atol=1e-12)


def linear_gaussian(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """y = c A + b + noise of covariance L L^T, with c (n, 3) and y (n, 2), in float64."""
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(n, 3, generator=g, dtype=torch.float64)
    a = torch.tensor([[1.0, -0.5], [0.3, 0.2], [0.0, 2.0]], dtype=torch.float64)
    chol = torch.tensor([[0.5, 0.0], [0.4, 0.2]], dtype=torch.float64)
    noise = torch.randn(n, 2, generator=g, dtype=torch.float64) @ chol.T
    return c @ a + torch.tensor([0.7, -1.0], dtype=torch.float64) + noise, c


def test_linear_adjust_whitens_a_linear_gaussian_model_exactly():
    y, c = linear_gaussian(4000, seed=0)
    adj = LinearAdjust().fit(y, c)
    r = adj.forward(y, c)[0]
    assert torch.allclose(adj.inverse(r, c), y, atol=1e-12)
    # in sample: mean exactly 0 (intercept) and covariance exactly I (N - D - 1 dof)
    assert torch.allclose(r.mean(0), torch.zeros(2, dtype=r.dtype), atol=1e-10)
    n, d = 4000, 4
    cov = r.T @ r / (n - d)
    assert torch.allclose(cov, torch.eye(2, dtype=r.dtype), atol=1e-9)
    # the coefficients and the noise are those of the model (standard errors ~0.01)
    truth = torch.tensor([[1.0, -0.5], [0.3, 0.2], [0.0, 2.0], [0.7, -1.0]], dtype=r.dtype)
    assert torch.allclose(adj.weight, truth, atol=0.05)
    chol = torch.tensor([[0.5, 0.0], [0.4, 0.2]], dtype=r.dtype)
    assert torch.allclose(adj.chol, chol, atol=0.03)
    # out of sample: standard normal residuals
    y2, c2 = linear_gaussian(4000, seed=1)
    r2 = adj.forward(y2, c2)[0]
    assert torch.allclose(torch.cov(r2.T), torch.eye(2, dtype=r.dtype), atol=0.08)


def test_linear_adjust_log_jacobian_and_state_round_trip():
    y, c = linear_gaussian(500, seed=2)
    adj = LinearAdjust().fit(y, c)
    r, ladj = adj.forward(y, c)
    jac = torch.autograd.functional.jacobian(lambda v: adj.forward(v[None], c[:1])[0][0], y[0])
    assert ladj.shape == (500,)
    assert torch.allclose(ladj, torch.logdet(jac).expand(500), atol=1e-12)
    again = LinearAdjust.from_dict(json.loads(json.dumps(adj.to_dict())))
    assert torch.equal(again.forward(y, c)[0], r)
    assert torch.equal(again.inverse(r, c), adj.inverse(r, c))
    with pytest.raises(ValueError, match="more rows"):
        LinearAdjust().fit(y[:4], c[:4])


# ---------------------------------------------------------------------------------------------
# Fields (C, H, W): pointwise map, per-channel scalar statistics


def overdensity(n: int, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """A log-normal density contrast δ = ρ/ρ̄ - 1 > -1, float64, channels at different scales."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.5, 1.0, shape[0], dtype=torch.float64)
    scale = scale.reshape(-1, *[1] * (len(shape) - 1)) if len(shape) == 3 else 0.8
    rho = torch.exp(scale * torch.randn(n, *shape, generator=g, dtype=torch.float64))
    return rho / rho.mean() - 1


FIELD_CASES = [
    ("log", (2, 4, 6)),
    ("log", (4, 4)),
    ("rodriguez", (2, 4, 6)),
    ("rodriguez", (4, 4)),
    ("identity", (3, 2, 4)),
]


@pytest.mark.parametrize(("transform", "shape"), FIELD_CASES)
def test_field_round_trip_log_jacobian_and_statistics(transform, shape):
    x = overdensity(64, shape)
    theta = torch.rand(64, 2, dtype=torch.float64) + 0.5
    pre = FieldPreprocessing(transform, log_theta=[True, False]).fit(x, theta)
    chw = shape if len(shape) == 3 else (1, *shape)
    assert pre.shape == chw and pre.features == x[0].numel() and pre.context == 2
    assert pre.bijective and pre.split is None
    y, ladj = pre.forward(x, theta)
    assert y.shape == (64, *chw) and ladj.shape == (64,)
    # one scalar mean and std per channel, over every pixel of every row
    per_channel = y.transpose(0, 1).flatten(1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(chw[0], dtype=torch.float64), atol=1e-10)
    assert torch.allclose(per_channel.std(1), torch.ones(chw[0], dtype=torch.float64), atol=1e-10)
    back = pre.inverse(y, theta)
    assert back.shape == x.shape
    assert torch.allclose(back, x, rtol=0, atol=1e-10)
    # ladj equals log|det J| of the whole row's map, from autograd
    for i in range(2):
        jac = torch.autograd.functional.jacobian(
            lambda r: pre.forward(r[None], theta[:1])[0].flatten(), x[i]
        ).reshape(x[i].numel(), x[i].numel())
        assert torch.allclose(ladj[i], torch.linalg.slogdet(jac)[1], rtol=0, atol=1e-9)
    c = pre.condition(theta)
    assert torch.allclose(c.mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-10)


@pytest.mark.parametrize("transform", ["log", "rodriguez", "identity"])
def test_field_preprocessing_commutes_with_periodic_shifts(transform):
    x = overdensity(8, (2, 8, 8), seed=3)
    theta = torch.rand(8, 1, dtype=torch.float64)
    pre = FieldPreprocessing(transform).fit(x, theta)
    y, ladj = pre.forward(x, theta)
    for shift in [(3, 0), (0, 5), (-2, 7)]:
        y_s, ladj_s = pre.forward(x.roll(shift, (-2, -1)), theta)
        assert torch.allclose(y_s, y.roll(shift, (-2, -1)), rtol=0, atol=1e-12)
        assert torch.allclose(ladj_s, ladj, rtol=0, atol=1e-9)
    # the statistics fitted on shifted fields are the same scalars
    shifted = FieldPreprocessing(transform).fit(x.roll((1, 2), (-2, -1)), theta)
    assert torch.allclose(shifted.mean, pre.mean, atol=1e-12)
    assert torch.allclose(shifted.std, pre.std, atol=1e-12)


def test_field_default_shift_and_scale():
    x = overdensity(16, (1, 8, 8))
    theta = torch.rand(16, 1, dtype=torch.float64)
    pre = FieldPreprocessing("log").fit(x, theta)
    assert pre.shift == 1.0  # log(1 + δ) = log(ρ/ρ̄)
    y, _ = pre.forward(x, theta)
    t = torch.log1p(x)
    assert torch.allclose(y, (t - t.mean()) / t.std(), atol=1e-12)
    # an empty pixel (δ = -1) needs a larger shift to stay finite
    x_empty = x.clone()
    x_empty[0, 0, 0, 0] = -1.0
    pre = FieldPreprocessing("log").fit(x_empty, theta)
    assert pre.shift == 2.0 and torch.isfinite(pre.forward(x_empty, theta)[0]).all()
    # rodriguez on ρ/ρ̄ = 1 + δ with a = mean(ρ/ρ̄) = 1: s = δ / (2 + δ)
    pre = FieldPreprocessing("rodriguez").fit(x, theta)
    assert pre.shift == 1.0 and pre.a == pytest.approx(1.0, abs=1e-12)
    y, _ = pre.forward(x, theta)
    s = x / (2 + x)
    assert torch.allclose(y, (s - s.mean()) / s.std(), atol=1e-10)
    assert FieldPreprocessing("rodriguez", a=4.0).fit(x.clamp_min(0), theta).shift == 0.0


def test_field_state_round_trip_and_bad_input():
    x = overdensity(20, (2, 4, 4))
    theta = torch.rand(20, 2, dtype=torch.float64) + 0.1
    for pre in [FieldPreprocessing("rodriguez", log_theta="auto"), FieldPreprocessing("log")]:
        pre.fit(x, theta)
        back = from_dict(json.loads(json.dumps(pre.to_dict())))
        assert isinstance(back, FieldPreprocessing)
        assert (back.shape, back.features, back.context) == (pre.shape, pre.features, pre.context)
        y, ladj = pre.forward(x, theta)
        y_b, ladj_b = back.forward(x, theta)
        assert torch.equal(y_b, y) and torch.equal(ladj_b, ladj)
        assert torch.equal(back.inverse(y, theta), pre.inverse(y, theta))
        assert torch.equal(back.condition(theta), pre.condition(theta))
    with pytest.raises(ValueError, match="transform"):
        FieldPreprocessing("sqrt")
    with pytest.raises(ValueError, match=r"x \+ shift > 0"):
        FieldPreprocessing("log", shift=0.5).fit(x - 0.6, theta)
    with pytest.raises(ValueError, match="a must be positive"):
        FieldPreprocessing("rodriguez", a=0.0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        FieldPreprocessing().fit(x.flatten(1), theta)


# ---------------------------------------------------------------------------------------------
# The default preprocessing by data kind


def test_default_preprocessing_dispatch():
    import simulators

    sim = simulators.get("calorimeter", particle="photon")
    meta = {"simulator": "calorimeter", "simulator_config": sim.config}
    pre = default_preprocessing(meta, sim.x_shape)
    assert isinstance(pre, ShowerPreprocessing)
    assert pre.layer_sizes == layer_sizes_of(sim) == PHOTON_LAYERS
    assert pre.threshold == sim.config["threshold_mev"]
    nbody = {"simulator": "nbody"}
    for shape in [(32, 32), (2, 32, 32)]:
        field = default_preprocessing(nbody, shape, spatial=True)
        assert isinstance(field, FieldPreprocessing) and field.transform == "log"
        # a flat vector model of the same data keeps per-feature standardization
        assert type(default_preprocessing(nbody, shape)) is Standardize
    assert type(default_preprocessing({}, (5,), spatial=True)) is Standardize
    assert type(default_preprocessing({}, (2, 3, 4, 4), spatial=True)) is Standardize
