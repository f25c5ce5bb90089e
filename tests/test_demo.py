"""`surrogates demo --quick`: the README's main job, end to end, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import simulators


def test_demo_quick_runs_end_to_end_and_protects_its_output(tmp_path):
    out = tmp_path / "demo"
    cmd = [
        sys.executable,
        "-m",
        "surrogates",
        "demo",
        "--quick",
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "demo done" in proc.stdout and "report.html" in proc.stdout
    for name in ("train.h5", "test.h5", "generated.h5"):
        simulators.verify(out / name)
    with (
        simulators.open_dataset(out / "generated.h5") as gen,
        simulators.open_dataset(out / "test.h5") as test,
    ):
        assert gen.x.shape == test.x.shape
        assert (gen.theta[...] == test.theta[...]).all()  # sampled at the held-out conditions
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    auc = metrics["metrics"]["classifier_low_level"]["auc"]
    assert 0.4 < auc <= 1.0
    html = (out / "report" / "report.html").read_text()
    assert "<img" in html and "data:image/png;base64," in html
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
