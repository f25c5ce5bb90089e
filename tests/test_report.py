"""`surrogates evaluate` end to end: metrics chosen from the metadata, "same" for two simulator
runs and "different" for a perturbed file, simulator-vs-surrogate with matched conditions and the
speed comparison, a self-contained report.html, user errors, and (slow) the calorimeter AUC
acceptance test and a headless-Chromium screenshot of the report."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import simulators
from surrogates.cli import main
from surrogates.report import evaluate


@pytest.fixture(scope="module")
def moons(tmp_path_factory):
    d = tmp_path_factory.mktemp("moons")
    sim = simulators.get("two_moons")
    a, b = d / "a.h5", d / "b.h5"
    simulators.generate(sim, 1500, a, seed=1, chunk_size=500)
    simulators.generate(sim, 1500, b, seed=2, chunk_size=500)
    shifted = d / "shifted.h5"
    shutil.copy(b, shifted)
    with h5py.File(shifted, "r+") as f:  # the known perturbation: x moved by 0.15 in x0
        f["x"][:, 0] += 0.15
    return a, b, shifted


def _check_html(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    # Self-contained: no external resources, no scripts; every image is an embedded PNG.
    assert "<script" not in text and "http://" not in text and "https://" not in text
    srcs = re.findall(r"src='([^']*)'", text)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    for s in srcs:
        assert base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    return text


def test_two_simulator_runs_are_the_same(moons, tmp_path):
    a, b, _ = moons
    out = tmp_path / "rep"
    summary = evaluate(a, b, out, seed=0)
    m = summary["metrics"]
    assert summary["kind"] == "generic" and summary["n"] == 1500
    assert abs(m["c2st_joint"] - 0.5) < 0.04
    assert m["mmd_p_value"] > 0.01
    cond = summary["conditions"]
    assert cond["matched"] is False and cond["theta_distributions_agree"] is True
    for v in m["features"].values():  # within 3x of the pure-noise expectation
        assert v["separation_power"] < 3 * v["separation_power_noise"]
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["metrics"]["c2st_joint"] == m["c2st_joint"]
    assert {"x_histograms.png", "x_corner.png"} <= {p.name for p in out.iterdir()}
    text = _check_html(out / "report.html")
    assert "C2ST" in text and len(re.findall("<img", text)) == 2


def test_shifted_candidate_is_different(moons, tmp_path):
    a, _, shifted = moons
    summary = evaluate(a, shifted, tmp_path / "rep", seed=0)
    m = summary["metrics"]
    assert m["c2st_joint"] > 0.6
    assert m["mmd_p_value"] < 0.01
    assert (
        m["features"]["x0"]["separation_power"] > 5 * m["features"]["x0"]["separation_power_noise"]
    )
    assert (
        m["features"]["x1"]["separation_power"] < 3 * m["features"]["x1"]["separation_power_noise"]
    )


def test_simulator_vs_surrogate_matches_conditions_and_times_sampling(moons, tmp_path):
    a, _, _ = moons
    run_dir, sample = tmp_path / "flow", tmp_path / "flow.h5"
    arch = ["--arch", "transforms=2", "--arch", "hidden=16", "--epochs", "2", "--batch-size", "256"]
    assert main(["train", "flow", "--data", str(a), "--out", str(run_dir), "--no-progress",
                 "--device", "cpu", *arch]) == 0  # fmt: skip
    assert main(["sample", str(run_dir), "--like", str(a), "--out", str(sample),
                 "--no-progress"]) == 0  # fmt: skip
    out = tmp_path / "rep"
    assert main(["evaluate", str(a), str(sample), "--out", str(out)]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["conditions"]["matched"] is True
    assert summary["candidate"]["meta"]["simulator"] == "surrogate:two_moons"
    speed = summary["speed"]
    assert speed["surrogate_rows_per_s"] > 0 and speed["simulator_rows_per_s"] > 0
    assert speed["speedup"] == pytest.approx(
        speed["surrogate_rows_per_s"] / speed["simulator_rows_per_s"]
    )
    # toy data: one bin of all θ rows (per-energy bins: tests/test_speed.py)
    assert len(speed["bins"]) == 1 and speed["per_bin"] is False and speed["unit"] == "rows"
    assert speed["threads"][0] == 1 and speed["batch"] > 0 and speed["path"].startswith("flow")
    assert 0.5 <= summary["metrics"]["c2st_joint"] <= 1.0  # a 2-epoch flow: anything goes
    assert "Sampling speed" in _check_html(out / "report.html")


def test_nbody_report_uses_field_statistics(tmp_path):
    sim = simulators.get("nbody", n_particles=16, box_size=64.0, n_steps=2)
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    simulators.generate(sim, 6, a, seed=3)
    simulators.generate(sim, 6, b, seed=3)  # the same file again: matched, same phases
    summary = evaluate(a, b, tmp_path / "rep")
    m = summary["metrics"]
    assert summary["kind"] == "nbody" and summary["conditions"]["matched"] is True
    assert m["field_shape"] == [16, 16, 16] and m["box_size"] == 64.0
    np.testing.assert_allclose(m["power_ratio"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(m["cross_correlation_mean"], 1.0, rtol=1e-6)
    assert m["pixel_pdf_separation_power"] == 0.0
    # the same rows: the same response of the low-k power to θ
    resp = m["response"]
    assert len(resp["reference"]["exponents"]) == 2
    assert resp["candidate"]["exponents"] == pytest.approx(resp["reference"]["exponents"])
    assert {"power_spectra.png", "fields.png", "pixel_peaks.png"} <= {
        p.name for p in (tmp_path / "rep").iterdir()
    }
    _check_html(tmp_path / "rep" / "report.html")


def test_calorimeter_report_small(tmp_path):
    pytest.importorskip("simulators.calorimeter.simulator")
    sim = simulators.get("calorimeter", particle="photon")
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    simulators.generate(sim, 200, a, seed=1)
    simulators.generate(sim, 200, b, seed=2)
    summary = evaluate(a, b, tmp_path / "rep", seed=0)
    m = summary["metrics"]
    assert summary["kind"] == "calorimeter"
    # 40 test showers per class: only a loose check that the pipeline is wired.
    assert 0.3 < m["classifier_low_level"]["auc"] < 0.7
    assert 0.3 < m["classifier_high_level"]["auc"] < 0.7
    assert m["classifier_low_level"]["n_train"] == 120
    assert "E_tot/E_inc" in m["features"]
    assert m["high_level_columns"][:2] == ["log10 E_inc", "E_tot/E_inc"]
    assert {"average_shower_reference.png", "features.png"} <= {
        p.name for p in (tmp_path / "rep").iterdir()
    }


def test_user_errors_exit_2_with_one_line(moons, tmp_path, capsys):
    a, b, _ = moons
    out = tmp_path / "rep"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["evaluate", str(a), str(b), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--overwrite" in err and len(err.splitlines()) == 1
    assert main(["evaluate", str(a), str(tmp_path / "missing.h5"), "--out", str(out)]) == 2
    other = tmp_path / "slcp.h5"
    simulators.generate(simulators.get("slcp"), 50, other, seed=0)
    assert main(["evaluate", str(a), str(other), "--out", str(tmp_path / "r2")]) == 2
    assert "different simulators" in capsys.readouterr().err
    # --overwrite replaces the report and keeps unrelated files.
    assert main(["evaluate", str(a), str(b), "--out", str(out), "--overwrite"]) == 0
    assert (out / "keep.txt").exists() and (out / "report.html").exists()


def test_cli_subprocess_help_and_error():
    r = subprocess.run([sys.executable, "-m", "surrogates", "evaluate", "--help"],
                       capture_output=True, text=True, check=False)  # fmt: skip
    assert r.returncode == 0 and "--overwrite" in r.stdout
    cmd = [sys.executable, "-m", "surrogates", "evaluate", "no.h5", "no2.h5", "--out", "/tmp/no"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "does not exist" in r.stderr


# ---------------------------------------------------------------------------------------------
# Slow: acceptance numbers and the browser check


@pytest.mark.slow
def test_calorimeter_auc_acceptance_20k(tmp_path):
    """Two 20,000-shower simulator samples give AUC 0.5 ± 0.03; one layer scaled by 5 % gives a
    clearly larger AUC (challenge classifier: 2x512 leaky ReLU, 60/20/20, best validation)."""
    pytest.importorskip("simulators.calorimeter.simulator")
    from surrogates.metrics import classifier_auc, low_level_inputs

    sim = simulators.get("calorimeter", particle="photon")
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    simulators.generate(sim, 20_000, a, seed=11)
    simulators.generate(sim, 20_000, b, seed=12)
    with simulators.open_dataset(a) as da, simulators.open_dataset(b) as db:
        ea, xa = da.theta[:].astype(np.float64), da.x[:].astype(np.float64)
        eb, xb = db.theta[:].astype(np.float64), db.x[:].astype(np.float64)
    same = classifier_auc(low_level_inputs(xa, ea), low_level_inputs(xb, eb), seed=0)
    scaled = xb.copy()
    scaled[:, sim.geometry.layer_slices[1]] *= 1.05
    diff = classifier_auc(low_level_inputs(xa, ea), low_level_inputs(scaled, eb), seed=0)
    print(f"AUC same {same.auc:.4f}, layer 1 x 1.05: {diff.auc:.4f}")
    assert abs(same.auc - 0.5) < 0.03
    assert diff.auc > same.auc + 0.05


def _chromium() -> str | None:
    for name in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"):
        if Path(name).exists():
            return name
    return None


@pytest.mark.slow
def test_report_renders_in_headless_chromium(moons, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("no chromium installed")
    a, _, shifted = moons
    out = tmp_path / "rep"
    evaluate(a, shifted, out, seed=0)
    shot = out / "screenshot.png"
    r = subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1200,2000", f"--screenshot={shot}", (out / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    from matplotlib.image import imread

    img = imread(shot)
    assert img.shape[:2] == (2000, 1200)
    # A rendered page, not a blank one: many distinct colours, and images where the figures are.
    assert len(np.unique(img.reshape(-1, img.shape[-1])[::97], axis=0)) > 50
