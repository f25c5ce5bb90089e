"""``examples/cosmology_inference.py``: its helpers against known answers, its errors, one tiny run.

The example's functions are imported from its file (examples are scripts, not a package). What
is checked, and would fail on a wrong implementation:

* every slice of a row becomes its own pair, in row order, with its row's θ;
* the reordering for NPE's validation split puts whole rows (boxes) on the validation positions
  :func:`surrogates.training.split_indices` draws, and keeps every pair exactly once;
* the calibration summary of the exact posterior of a conjugate Gaussian model is calibrated
  (KS p > 0.01, central coverage at nominal within binomial noise, the known posterior width),
  and that of a twice too narrow posterior is not;
* costs add up the recorded parts only, and say when one is missing;
* a surrogate's training time and rows are found where a results file records them, and "not
  recorded" otherwise;
* a missing or foreign data file gives one line on stderr and exit status 2;
* a whole quick run at toy sizes writes its results and both figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import load_example
from scipy import stats

import simulators
from surrogates.training import split_indices


@pytest.fixture(scope="module")
def example():
    return load_example("cosmology_inference")


def test_slice_pairs_keep_row_order_and_theta(example):
    theta = np.array([[0.2, 0.7], [0.4, 0.9]])
    x = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    t, s = example.slice_pairs(theta, x)
    assert t.shape == (6, 2) and s.shape == (6, 4, 4)
    for k in range(6):
        assert np.array_equal(t[k], theta[k // 3])
        assert np.array_equal(s[k], x[k // 3, k % 3])
    with pytest.raises(ValueError, match="slices must be"):
        example.slice_pairs(theta, x[:, 0])


@pytest.mark.parametrize(("rows", "slices"), [(50, 4), (37, 4), (20, 2)])
def test_validation_positions_hold_whole_rows(example, rows, slices):
    row_id = np.repeat(np.arange(rows), slices).astype(np.float64)[:, None]
    pair_id = np.arange(rows * slices)
    t, p = example.grouped_for_validation(row_id, pair_id, slices, 0.1, 0)
    assert sorted(p.tolist()) == pair_id.tolist()  # every pair once
    assert np.array_equal(t[:, 0], row_id[p, 0])  # θ travels with its slice
    train, val = (i.numpy() for i in split_indices(rows * slices, 0.1, 0))
    shared = set(t[train, 0]) & set(t[val, 0])
    n_val = len(val)
    # a row is split only when the validation size is not a multiple of the slices per row
    assert len(shared) == (0 if n_val % slices == 0 else 1)
    assert set(p[val]) == set(range(rows * slices - n_val, rows * slices))


def test_cnn_input_is_log_of_two_plus_delta(example):
    delta = np.array([-1.0, 0.0, 3.0, -2.5])
    y = example.cnn_input(delta)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[:3], np.log([1.0, 2.0, 5.0]), rtol=1e-6)
    assert y[3] == pytest.approx(np.log(1e-3), rel=1e-6)  # clipped, finite


def _gaussian_draws(scale: float, n_obs: int = 800, n: int = 200, seed: int = 0):
    """θ ~ N(0, 1), x = θ + N(0, 1): the posterior is N(x/2, 1/2); draws of N(x/2, scale²/2)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(n_obs, 2))
    x = theta + rng.normal(size=theta.shape)
    draws = x / 2 + scale * np.sqrt(0.5) * rng.normal(size=(n, n_obs, 2))
    return draws, theta


def test_calibration_summary_of_the_exact_posterior(example):
    draws, theta = _gaussian_draws(1.0)
    s = example.calibration_summary(draws, theta, np.random.default_rng(1))
    np.testing.assert_allclose(s["std"], np.sqrt(0.5), rtol=0.02)
    np.testing.assert_allclose(s["rmse"], np.sqrt(0.5), rtol=0.1)
    assert s["ranks"].shape == (800, 2) and s["ranks"].min() >= 0 and s["ranks"].max() <= 200
    assert np.all(s["ks_pvalue"] > 0.01)
    # 4 binomial standard deviations of a coverage on 800 observations
    for row, level in zip(s["central"], example.LEVELS, strict=True):
        assert np.all(np.abs(row - level) < 4 * np.sqrt(level * (1 - level) / 800))


def test_calibration_summary_flags_an_overconfident_posterior(example):
    draws, theta = _gaussian_draws(0.5)
    s = example.calibration_summary(draws, theta, np.random.default_rng(1))
    assert np.all(s["ks_pvalue"] < 0.01)
    # a central 68 % interval half as wide covers P(|z| < z_0.84 / 2) = 0.38
    expected = 2 * stats.norm.cdf(stats.norm.ppf(0.84) / 2) - 1
    assert np.all(np.abs(s["central"][0] - expected) < 4 * np.sqrt(0.25 / 800))


def test_coverage_at_reads_the_grid(example):
    levels = np.array([0.0, 0.5, 0.68, 0.95, 1.0])
    cov = np.array([0.0, 0.4, 0.6, 0.9, 1.0])
    assert example.coverage_at(levels, cov, 0.68) == 0.6
    assert example.coverage_at(levels, cov, 0.95) == 0.9
    with pytest.raises(ValueError, match="not on the coverage grid"):
        example.coverage_at(levels, cov, 0.9)


def test_route_cost_sums_recorded_parts(example):
    c = example.route_cost({"simulate": 800 * 2.5, "NPE training": 310.0})
    assert c["total"] == pytest.approx(2310.0) and c["complete"]
    c = example.route_cost({"simulate": 100.0, "surrogate training": None, "sampling": 3.0})
    assert c["total"] == pytest.approx(103.0) and not c["complete"]
    assert c["parts"]["surrogate training"] is None


def test_surrogate_record_from_results_files(example, tmp_path):
    run = tmp_path / "nbody_surrogates" / "gan" / "run"
    run.mkdir(parents=True)
    r = example.surrogate_record(run, "gan")
    assert r["train_seconds"] is None and r["train_seconds_source"] == "not recorded"
    assert r["training_rows"] is None
    # as examples/nbody_surrogates.py writes it, above <family>/run
    results = tmp_path / "nbody_surrogates" / "results.json"
    results.write_text(json.dumps({"n_train_rows": 800, "models": {
        "vae": {"train_seconds": 5.0}, "gan": {"train_seconds": 12.5}}}))  # fmt: skip
    r = example.surrogate_record(run, "gan")
    assert r["train_seconds"] == 12.5 and "models.gan.train_seconds" in r["train_seconds_source"]
    assert r["training_rows"] == 800
    # CPU seconds recorded next to the run take precedence over wall seconds further up
    (run / "results.json").write_text(json.dumps({"train_cpu_seconds": 40.0}))
    assert example.surrogate_record(run, "gan")["train_seconds"] == 40.0


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_missing_data_is_one_line_and_status_2(example, tmp_path, capsys):
    assert example.main(["--data", str(tmp_path / "none.h5"), "--out", str(tmp_path)]) == 2
    assert "no such file" in _error_line(capsys)


def test_foreign_data_is_one_line_and_status_2(example, tmp_path, capsys):
    path = tmp_path / "moons.h5"
    simulators.generate(simulators.get("two_moons"), 20, path, seed=0)
    assert example.main(["--data", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "need nbody slices" in _error_line(capsys)
    assert example.main(["--quick", "--data", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "--surrogate" in _error_line(capsys)


def test_tiny_quick_run_writes_results_and_figures(example, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--quick", "--out", str(out), "--n-train", "12", "--n-test", "8", "--npe-steps", "3",
            "--gan-steps", "2", "--n-post", "20", "--n-cov", "10", "--n-surrogate", "8",
            "--device", "cpu"]  # fmt: skip
    assert example.main(argv) == 0
    r = json.loads((out / "results.json").read_text())
    assert set(r["routes"]) == {"a", "a'", "b"}
    assert [r["routes"][k]["n_pairs"] for k in ("a", "a'", "b")] == [48, 48, 32]
    assert r["routes"]["a'"]["embedding"]["type"] == "power_spectrum"
    b = r["routes"]["b"]
    assert b["cost"]["complete"] and set(b["cost"]["parts"]) == {
        "simulate surrogate training rows",
        "surrogate training",
        "sampling",
        "NPE training",
    }
    # route a's simulation cost is the measured per-row cost times the training rows
    sim = r["routes"]["a"]["cost"]["parts"]["simulate training rows"]
    assert sim == pytest.approx(12 * r["simulator_cpu_seconds_per_row"])
    assert all(0 <= b[f"coverage_{g}"] <= 1 for g in (68, 95))
    assert len(r["routes"]["a"]["sbc_ranks"]) == 8
    assert all(Path(f).is_file() for f in r["figures"])
    assert "CNN / P(k) width" in capsys.readouterr().out


@pytest.fixture(scope="module")
def field_run(example, tmp_path_factory):
    """A 30-row nbody file of the quick box and a GAN run trained on it for two steps, with a
    results file one level up that records its training time."""
    from surrogates.models import GAN

    root = tmp_path_factory.mktemp("cosmo")
    data = root / "nbody.h5"
    simulators.generate(simulators.get("nbody", **example.QUICK_SIM), 30, data, seed=0)
    run = root / "surrogates" / "gan" / "run"
    model = GAN.for_dataset(data, seed=0, device="cpu", **example.QUICK_GAN)
    model.fit(data, run_dir=run, max_steps=2, batch_size=16, progress=False)
    (run.parent / "results.json").write_text(json.dumps({"train_seconds": 7.0, "n_train_rows": 24}))
    return data, run


def test_given_data_and_surrogate_run(example, field_run, tmp_path):
    data, run = field_run
    out = tmp_path / "full"
    argv = ["--data", str(data), "--surrogate", str(run), "--out", str(out), "--n-train", "20",
            "--n-test", "10", "--npe-steps", "3", "--n-post", "20", "--n-cov", "10",
            "--n-surrogate", "6", "--device", "cpu"]  # fmt: skip
    assert example.main(argv) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["mode"] == "full" and r["data"]["test_rows"] == [20, 30]
    assert r["surrogate"]["model_type"] == "gan" and r["surrogate"]["train_seconds"] == 7.0
    b = r["routes"]["b"]
    assert b["n_pairs"] == 24 and b["cost"]["parts"]["surrogate training"] == 7.0
    # the surrogate's simulator rows are those its run recorded, at the measured cost per row
    simulated = b["cost"]["parts"]["simulate surrogate training rows"]
    assert simulated == pytest.approx(24 * r["simulator_cpu_seconds_per_row"])
    with simulators.open_dataset(data) as d:  # the test set is slice 0 of rows 20-29
        assert r["corner_test_row"]["theta"] == pytest.approx(
            d.theta[20 + r["corner_test_row"]["index"]].tolist()
        )


def test_surrogate_of_other_slices_is_refused(example, field_run, tmp_path, capsys):
    _, run = field_run
    other = dict(example.QUICK_SIM, n_slices=2)
    path = tmp_path / "two_slices.h5"
    simulators.generate(simulators.get("nbody", **other), 12, path, seed=1)
    argv = ["--data", str(path), "--surrogate", str(run), "--out", str(tmp_path / "o"),
            "--n-train", "8", "--n-test", "4"]  # fmt: skip
    assert example.main(argv) == 2
    assert "--surrogate" in _error_line(capsys)
