"""Sampling speed (:mod:`surrogates.speed`) and the report's speed section: the time-weighted
spectrum rate by exact arithmetic, the bins, what a timed simulator is called with (warm-up,
rows, torch threads set and restored), the speed table's speed-ups, and the section's structure
on a tiny simulator-vs-surrogate report (per-energy rows, batch and threads recorded, the
whole-spectrum figure, the demo's summary line). No timing is asserted."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

import simulators
from surrogates import speed as S
from surrogates.cli.demo import _speed_line
from surrogates.speed import Bins, Rate


def test_spectrum_rate_is_total_rows_over_total_time():
    # 10 rows at 100/s (0.1 s), 10 at 10/s (1 s), 10 at 1/s (10 s): 30 rows in 11.1 s
    assert S.spectrum_rate([100.0, 10.0, 1.0]) == pytest.approx(30 / 11.1, rel=1e-12)
    # unequal counts: 30 rows at 10/s (3 s) and 10 rows at 1/s (10 s): 40 rows in 13 s
    assert S.spectrum_rate([10.0, 1.0], [30, 10]) == pytest.approx(40 / 13, rel=1e-12)
    assert S.spectrum_rate([5.0, 5.0], [1, 7]) == pytest.approx(5.0, rel=1e-12)
    for rates, counts in (([1.0, 0.0], None), ([1.0], [1, 2]), ([1.0], [0])):
        with pytest.raises(ValueError):
            S.spectrum_rate(rates, counts)


def test_condition_bins_discrete_and_log_spaced():
    energies = 2.0 ** np.arange(8, 23)
    theta = np.repeat(energies, np.arange(1, 16))[:, None]
    bins = S.condition_bins(theta)
    assert bins.discrete and np.array_equal(bins.centers, energies)
    assert bins.counts.tolist() == list(range(1, 16))
    assert all(np.all(r == e) for r, e in zip(bins.rows, energies, strict=True))
    cont = np.random.default_rng(0).uniform(1.0, 1e4, (500, 1))
    lb = S.condition_bins(cont, n_bins=4)
    assert not lb.discrete and lb.counts.sum() == 500 and len(lb.rows) == 4
    edges = np.geomspace(cont.min(), cont.max(), 5)
    for b, rows in enumerate(lb.rows):  # every row in the log bin whose centre it is given
        assert np.all((rows >= edges[b]) & (rows <= edges[b + 1]))
        assert lb.centers[b] == pytest.approx(np.sqrt(edges[b] * edges[b + 1]))
    one = S.condition_bins(theta, discrete=False)
    assert len(one.rows) == 1 and one.counts.tolist() == [len(theta)]


class _Recorder:
    """A simulator that records what it is called with and the torch thread count meanwhile."""

    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, int]] = []

    def simulate(self, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        self.calls.append((theta.copy(), torch.get_num_threads()))
        return np.zeros((len(theta), 2))


def test_rates_by_condition_warms_up_sets_threads_and_uses_each_bins_rows():
    before = torch.get_num_threads()
    sim = _Recorder()
    bins = [np.full((3, 1), 1.0), np.full((5, 1), 7.0)]
    rates = S.rates_by_condition(sim, bins, batch=4, threads=2, reps=3)
    assert torch.get_num_threads() == before  # restored
    assert [r.rows for r in rates] == [4, 4] and [r.reps for r in rates] == [3, 3]
    assert len(sim.calls) == 1 + 2 * 3  # warm-up, then 3 timed calls per bin
    assert all(t == 2 for _, t in sim.calls)
    assert np.all(sim.calls[0][0] == 1.0)  # the warm-up on the first bin
    assert all(len(x) == 4 and np.all(x == 1.0) for x, _ in sim.calls[1:4])  # 3 rows repeated
    assert all(len(x) == 4 and np.all(x == 7.0) for x, _ in sim.calls[4:])
    # a batch per bin; automatic batches stay within [min_rows, max_rows]
    sim = _Recorder()
    rates = S.rates_by_condition(sim, bins, batch=[2, 6], threads=None, reps=1)
    assert [r.rows for r in rates] == [2, 6]
    auto = S.rates_by_condition(_Recorder(), bins, batch=None, min_rows=8, max_rows=16, reps=1)
    assert all(8 <= r.rows <= 16 for r in auto)
    with pytest.raises(ValueError):
        S.rates_by_condition(sim, bins, batch=[2], reps=1)


def test_automatic_batch_is_not_shrunk_by_one_slow_small_call():
    # a simulator costing 1 ms per row whose first call stalls for 50 ms: the batch for
    # 0.2 s per call is ~200 rows; one timed probe of 8 rows would have given ~30
    class Stalls:
        def __init__(self):
            self.calls = 0

        def simulate(self, theta, rng):
            self.calls += 1
            time.sleep(0.001 * len(theta) + (0.05 if self.calls == 1 else 0.0))
            return theta

    rates = S.rates_by_condition(Stalls(), [np.ones((4, 1))], batch=None, seconds_per_call=0.2,
                                 min_rows=8, max_rows=4096, reps=1, warmup=False)  # fmt: skip
    assert 100 <= rates[0].rows <= 260


def test_best_rate_stops_at_the_budget_after_one_call():
    calls = []
    rate = S.best_rate(lambda: calls.append(1), rows=10, reps=5, budget_s=0.0)
    assert rate.reps == 1 and len(calls) == 1 and rate.rows == 10


def test_speed_table_speedups_spectrum_and_slower_bins():
    bins = Bins(np.array([1.0, 2.0, 4.0, 8.0]), [np.ones((1, 1))] * 4, np.array([1, 1, 1, 1]),
                discrete=True)  # fmt: skip
    sim = [Rate(10, 1, r, r) for r in (400.0, 200.0, 100.0, 50.0)]
    sur = [Rate(64, 1, 200.0, 200.0)] * 4
    table = S.speed_table(bins, sur, sim, more_threads={2: Rate(64, 1, 350.0, 180.0)})
    assert [b["speedup"] for b in table["bins"]] == [0.5, 1.0, 2.0, 4.0]
    assert table["slower_than_simulator"] == [1.0]
    assert table["top"] == {"theta": [2.0, 4.0, 8.0], "speedup": [1.0, 2.0, 4.0]}
    spec = table["spectrum"]
    sim_spec = 4 / (1 / 400 + 1 / 200 + 1 / 100 + 1 / 50)
    assert spec["simulator_rows_per_s"] == pytest.approx(sim_spec)
    assert spec["surrogate_rows_per_s"] == pytest.approx(200.0)
    assert spec["speedup"] == pytest.approx(200.0 / sim_spec)
    assert table["more_threads"]["2"]["rows_per_s"] == 350.0
    assert table["more_threads"]["2"]["theta"] == 8.0  # measured at the highest bin
    with pytest.raises(ValueError):
        S.speed_table(bins, sur[:3], sim)


def test_report_speed_section_per_energy_on_a_tiny_run(tmp_path, monkeypatch):
    import surrogates.report as report
    from surrogates.models import VAE

    sim = simulators.get("calorimeter", particle="photon", e_max_mev=2048.0)  # 4 energies
    ref, cand = tmp_path / "sim.h5", tmp_path / "vae.h5"
    simulators.generate(sim, 120, ref, seed=1, progress=None)
    model = VAE.for_dataset(ref, device="cpu")
    model.fit(ref, run_dir=tmp_path / "vae", max_steps=2, batch_size=32, progress=False)
    with simulators.open_dataset(ref) as data:
        theta = data.theta[...].astype(np.float64)
    simulators.generate(model.as_simulator(), len(theta), cand, seed=0, theta=theta,
                        progress=None)  # fmt: skip
    monkeypatch.setattr(report, "SPEED_BATCH", 32)  # structure, not timing
    summary = report.evaluate(ref, cand, tmp_path / "rep", seed=0)
    speed = json.loads((tmp_path / "rep" / "metrics.json").read_text())["speed"]
    assert speed == json.loads(json.dumps(summary["speed"]))
    assert speed["unit"] == "showers" and speed["per_bin"] is True
    assert speed["batch"] == 32 and speed["threads"][0] == 1 and speed["path"].startswith("vae")
    assert [b["theta"] for b in speed["bins"]] == [256.0, 512.0, 1024.0, 2048.0]
    assert sum(b["count"] for b in speed["bins"]) == 120
    assert set(speed["more_threads"]) == {str(t) for t in speed["threads"] if t > 1}
    for b in speed["bins"]:
        assert b["surrogate"]["rows"] == 32 and b["simulator"]["rows"] >= 8
        assert b["speedup"] == pytest.approx(
            b["surrogate"]["rows_per_s"] / b["simulator"]["rows_per_s"]
        )
    spec = speed["spectrum"]
    assert spec["speedup"] == pytest.approx(speed["speedup"])
    assert spec["simulator_rows_per_s"] == pytest.approx(
        S.spectrum_rate(
            [b["simulator"]["rows_per_s"] for b in speed["bins"]],
            [b["count"] for b in speed["bins"]],
        )
    )
    assert speed["top"]["theta"] == [512.0, 1024.0, 2048.0]
    slow = [b["theta"] for b in speed["bins"] if b["speedup"] < 1]
    assert speed["slower_than_simulator"] == slow
    assert "speedup.png" in summary["figures"] and (tmp_path / "rep" / "speedup.png").exists()
    page = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert "Sampling speed" in page and "whole spectrum" in page and "2.05 GeV" in page
    assert ("slower than the simulator" in page) == bool(slow)
    line = _speed_line(speed)  # the demo prints the report's numbers
    assert f"{speed['spectrum']['speedup']:.3g}x over the spectrum" in line
    assert f"{speed['top']['speedup'][-1]:.3g}x at 2.05 GeV" in line
