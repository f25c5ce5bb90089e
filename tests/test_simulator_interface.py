"""The simulator interface, checked for every toy simulator: registry, config, validation, seeds."""

from __future__ import annotations

import json

import numpy as np
import pytest

import simulators
from simulators.base import SimulatorInputError, parse_setting

TOY = ["two_moons", "gaussian_linear", "slcp", "lotka_volterra"]


def test_registry_lists_builtins() -> None:
    names = simulators.available()
    assert names == sorted(names)
    assert set(TOY) <= set(names)


def test_unknown_simulator_lists_available_names() -> None:
    with pytest.raises(SimulatorInputError) as err:
        simulators.get("three_moons")
    msg = str(err.value)
    assert "three_moons" in msg
    for name in TOY:
        assert name in msg


@pytest.mark.parametrize("name", TOY)
def test_unknown_setting_rejected(name: str) -> None:
    with pytest.raises(SimulatorInputError, match="unknown setting"):
        simulators.get(name, no_such_setting=1)


@pytest.mark.parametrize("name", TOY)
def test_config_is_json_and_rebuilds_same_simulator(name: str) -> None:
    sim = simulators.get(name)
    text = json.dumps(sim.config)
    again = simulators.get(name, **json.loads(text))
    theta = sim.prior.sample(5, np.random.default_rng(0))
    x1 = sim.simulate(theta, np.random.default_rng(1))
    x2 = again.simulate(theta, np.random.default_rng(1))
    np.testing.assert_array_equal(x1, x2)


@pytest.mark.parametrize("name", TOY)
def test_shapes_dtype_and_names(name: str) -> None:
    sim = simulators.get(name)
    rng = np.random.default_rng(0)
    theta = sim.prior.sample(7, rng)
    assert theta.shape == (7, len(sim.param_names)) == (7, sim.prior.dim)
    assert np.all(sim.prior.contains(theta))
    x = sim.simulate(theta, rng)
    assert x.shape == (7, *sim.x_shape)
    assert x.dtype == sim.x_dtype == np.float32
    assert np.all(np.isfinite(x))  # failures are NaN but must not occur at these draws
    assert sim.simulate(theta[:0], rng).shape == (0, *sim.x_shape)
    ll = sim.log_likelihood(theta, x)
    assert ll.shape == (7,) and np.all(np.isfinite(ll))


@pytest.mark.parametrize("name", TOY)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_theta_rejected(name: str, bad: float) -> None:
    sim = simulators.get(name)
    theta = sim.prior.sample(3, np.random.default_rng(0))
    theta[1, 0] = bad
    with pytest.raises(SimulatorInputError, match="theta contains 1 NaN or infinite"):
        sim.simulate(theta, np.random.default_rng(0))


@pytest.mark.parametrize("name", TOY)
def test_wrong_shape_rejected(name: str) -> None:
    sim = simulators.get(name)
    p = sim.prior.dim
    rng = np.random.default_rng(0)
    for theta in (np.zeros(p), np.zeros((3, p + 1)), np.zeros((2, 3, p))):
        with pytest.raises(SimulatorInputError, match="theta must have shape"):
            sim.simulate(theta, rng)


@pytest.mark.parametrize("name", TOY)
def test_out_of_prior_rejected(name: str) -> None:
    sim = simulators.get(name)
    theta = sim.prior.sample(4, np.random.default_rng(0))
    if name == "gaussian_linear":
        pytest.skip("a normal prior has no boundary")
    # Just outside the support of the last parameter, in row 2.
    theta[2, -1] = sim.prior.high[-1] + 1e-3 if np.isfinite(sim.prior.high[-1]) else -1e-3
    with pytest.raises(SimulatorInputError, match=r"row 2 .* outside the prior"):
        sim.simulate(theta, np.random.default_rng(0))


@pytest.mark.parametrize("name", TOY)
def test_rng_must_be_a_generator(name: str) -> None:
    sim = simulators.get(name)
    theta = sim.prior.sample(2, np.random.default_rng(0))
    with pytest.raises(SimulatorInputError, match="Generator"):
        sim.simulate(theta, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", TOY)
def test_seeds_determine_output(name: str) -> None:
    sim = simulators.get(name)
    theta = sim.prior.sample(20, np.random.default_rng(0))
    a = sim.simulate(theta, np.random.default_rng(42))
    b = sim.simulate(theta, np.random.default_rng(42))
    c = sim.simulate(theta, np.random.default_rng(43))
    np.testing.assert_array_equal(a, b)
    assert np.all(np.any(a != c, axis=-1))  # every row changes with the seed


def test_parse_setting_types() -> None:
    defaults = simulators.get("gaussian_linear").defaults
    assert parse_setting("dim=5", defaults) == ("dim", 5)
    key, value = parse_setting("prior_variance=1", defaults)
    assert (key, value, type(value)) == ("prior_variance", 1.0, float)
    with pytest.raises(SimulatorInputError, match="type int"):
        parse_setting("dim=2.5", defaults)
    with pytest.raises(SimulatorInputError, match="type float"):
        parse_setting("noise_variance=abc", defaults)
    with pytest.raises(SimulatorInputError, match="known settings: dim, noise_variance"):
        parse_setting("dims=3", defaults)
    with pytest.raises(SimulatorInputError, match="key=value"):
        parse_setting("dim", defaults)
    lv = simulators.get("lotka_volterra").defaults
    assert parse_setting("noise_scale=0.2", lv) == ("noise_scale", 0.2)


def test_parsed_setting_changes_the_simulator() -> None:
    sim = simulators.get("gaussian_linear")
    key, value = parse_setting("dim=3", sim.defaults)
    small = simulators.get("gaussian_linear", **{key: value})
    assert small.x_shape == (3,) and small.param_names == ("theta1", "theta2", "theta3")


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("gaussian_linear", {"dim": 0}),
        ("gaussian_linear", {"dim": 2.0}),
        ("gaussian_linear", {"noise_variance": -0.1}),
        ("gaussian_linear", {"prior_variance": float("nan")}),
        ("lotka_volterra", {"noise_scale": 0}),
        ("lotka_volterra", {"noise_scale": "big"}),
    ],
)
def test_bad_setting_values_rejected(name: str, config: dict) -> None:
    key = next(iter(config))
    with pytest.raises(SimulatorInputError, match=key):
        simulators.get(name, **config)
