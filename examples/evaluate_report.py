"""Evaluation reports: simulator vs simulator ("same") and simulator vs a trained flow surrogate.

Runs the whole command-line path a user would take:

1. ``surrogates simulate``-equivalent: two two-moons files from different seeds;
2. ``surrogates train flow`` on the first and ``surrogates sample --like`` it (matched conditions);
3. ``surrogates evaluate`` for (simulator, simulator) and (simulator, surrogate);
4. in the full mode also two calorimeter photon files (classifier AUC, separation powers, FPD);
5. if Chromium is installed, a headless screenshot of every ``report.html`` next to it.

The "same" report must show C2ST ≈ 0.5 and a large MMD p-value; the surrogate report shows how far
a briefly trained flow is from the simulator, and its sampling speed-up.

Usage::

    python examples/evaluate_report.py --quick   # about a minute on 2 CPU cores
    python examples/evaluate_report.py           # larger files, longer training, calorimeter

Results: ``examples/output/evaluate_report[_quick]/`` (one folder per report, summary.json).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

import simulators
from surrogates.cli import main as cli


def screenshot(report: Path) -> Path | None:
    """Renders report.html in headless Chromium; returns the PNG path, or None without Chromium."""
    exe = next(
        (p for p in ("chromium", "chromium-browser", "google-chrome") if shutil.which(p)), None
    )
    if exe is None:
        return None
    shot = report.with_name("screenshot.png")
    subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1200,3000", f"--screenshot={shot}", report.resolve().as_uri()],
        capture_output=True, timeout=180, check=True,
    )  # fmt: skip
    return shot


def run_report(ref: Path, cand: Path, out: Path, seed: int) -> dict:
    assert cli(["evaluate", str(ref), str(cand), "--out", str(out), "--seed", str(seed),
                "--overwrite"]) == 0  # fmt: skip
    summary = json.loads((out / "metrics.json").read_text())
    shot = screenshot(out / "report.html")
    summary["screenshot"] = str(shot) if shot else None
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small files, short training")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n, epochs = (3000, 5) if args.quick else (20_000, 40)
    root = Path(__file__).resolve().parent / "output"
    root = root / ("evaluate_report_quick" if args.quick else "evaluate_report")
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    sim = simulators.get("two_moons")
    ref, other = root / "moons_ref.h5", root / "moons_other.h5"
    simulators.generate(sim, n, ref, seed=1, overwrite=True)
    simulators.generate(sim, n, other, seed=2, overwrite=True)
    run_dir, sample = root / "flow_run", root / "moons_flow.h5"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    assert cli(["train", "flow", "--data", str(ref), "--out", str(run_dir), "--epochs",
                str(epochs), "--device", "cpu", "--no-progress"]) == 0  # fmt: skip
    assert cli(["sample", str(run_dir), "--like", str(ref), "--out", str(sample),
                "--seed", str(args.seed), "--overwrite", "--no-progress"]) == 0  # fmt: skip

    results = {
        "moons_sim_vs_sim": run_report(ref, other, root / "moons_sim_vs_sim", args.seed),
        "moons_sim_vs_flow": run_report(ref, sample, root / "moons_sim_vs_flow", args.seed),
    }
    if not args.quick:
        calo = simulators.get("calorimeter", particle="photon")
        c1, c2 = root / "calo_1.h5", root / "calo_2.h5"
        simulators.generate(calo, 5000, c1, seed=1, overwrite=True)
        simulators.generate(calo, 5000, c2, seed=2, overwrite=True)
        results["calo_sim_vs_sim"] = run_report(c1, c2, root / "calo_sim_vs_sim", args.seed)

    print(f"\n{'report':<22} {'headline':<58} screenshot")
    for name, s in results.items():
        m = s["metrics"]
        if s["kind"] == "calorimeter":
            head = (f"AUC low {m['classifier_low_level']['auc']:.3f}, high "
                    f"{m['classifier_high_level']['auc']:.3f}, max S "
                    f"{m['separation_power_max']:.3g}")  # fmt: skip
        else:
            head = f"C2ST {m['c2st_joint']:.3f}, MMD p {m['mmd_p_value']:.3f}"
            if s.get("speed") and "speedup" in s["speed"]:
                head += f", speed-up {s['speed']['speedup']:.3g}x"
        print(f"{name:<22} {head:<58} {s['screenshot'] or '(no chromium)'}")
    summary = {k: {"metrics": v["metrics"], "speed": v["speed"]} for k, v in results.items()}
    (root / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"done in {time.perf_counter() - t0:.0f} s; reports in {root}")


if __name__ == "__main__":
    main()
