"""The self-contained HTML page of an evaluation report (figures embedded, no scripts)."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_html"]

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid
#ccc;padding-bottom:.2em}table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}th{background:#f3f5f8}
td.num{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#666;font-size:.9em}
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#444}.ok{color:#1b7f3b}.bad{color:#b3261e}
"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(rows: list[tuple[str, Any, str]]) -> str:
    body = "".join(
        f"<tr><td>{html.escape(k)}</td><td class='num'>{_fmt(v)}</td>"
        f"<td class='muted'>{html.escape(note)}</td></tr>"
        for k, v, note in rows
    )
    return f"<table><tr><th>metric</th><th>value</th><th>reading</th></tr>{body}</table>"


def _headline(summary: dict[str, Any]) -> list[tuple[str, Any, str]]:
    m, kind = summary["metrics"], summary["kind"]
    rows: list[tuple[str, Any, str]] = []
    if kind == "calorimeter":
        for key, label in (
            ("classifier_low_level", "low-level"),
            ("classifier_high_level", "high-level"),
        ):
            rows.append(
                (
                    f"classifier AUC ({label})",
                    m[key]["auc"],
                    "0.5 = indistinguishable, 1 = fully separable",
                )
            )
            rows.append((f"classifier JSD ({label})", m[key]["jsd"], "bits; 0 = identical"))
        fd = f"{m['frechet_high_level_inf']:.3g} ± {m['frechet_high_level_inf_error']:.2g}"
        rows.append(
            (
                "Fréchet distance (high-level), N → ∞",
                fd,
                "standardized, extrapolated in 1/N; 0 = same means and covariances",
            )
        )
        rows.append(
            (
                "Fréchet distance (high-level), plug-in",
                m["frechet_high_level"],
                "biased upwards at finite N",
            )
        )
        rows.append(("separation power, mean", m["separation_power_mean"], "0 = identical"))
        rows.append(("separation power, max", m["separation_power_max"], "worst feature"))
    elif kind == "nbody":
        rows.append(
            (
                "P(k) χ² per k-bin",
                m["power_chi2_per_bin"],
                "≈ 1 when the mean spectra agree within their errors",
            )
        )
        rows.append(("P(k) mean |ratio − 1|", m["power_ratio_mean_abs_dev"], "0 = identical"))
        rows.append(("pixel PDF separation power", m["pixel_pdf_separation_power"], ""))
        rows.append(("peak-height separation power", m["peak_separation_power"], ""))
        rows.append(("peaks per field (reference)", m["peaks_per_field_reference"], ""))
        rows.append(("peaks per field (candidate)", m["peaks_per_field_candidate"], ""))
        resp = m.get("response") or {}
        if resp.get("reference") and resp.get("candidate"):
            for j, (b_r, b_c) in enumerate(
                zip(resp["reference"]["exponents"], resp["candidate"]["exponents"], strict=True)
            ):
                se = np.hypot(resp["reference"]["exponent_se"][j],
                              resp["candidate"]["exponent_se"][j])  # fmt: skip
                note = f"reference b = {b_r:.3g}, candidate {b_c:.3g} (± {se:.2g})"
                rows.append((f"low-k power ∝ θ{j}^b: b candidate / reference", b_c / b_r, note))
        if "cross_correlation_mean" in m:
            r = np.asarray(m["cross_correlation_mean"], dtype=float)
            rows.append(
                (
                    "cross-correlation r(k), mean over k",
                    float(np.nanmean(r)),
                    "matched pairs; ≈ 0 unless the candidate shares the phases",
                )
            )
    else:
        rows.append(
            (
                "C2ST accuracy on (θ, x)",
                m["c2st_joint"],
                "0.5 = indistinguishable, 1 = fully separable",
            )
        )
        rows.append(("MMD² on (θ, x)", m["mmd2_joint"], "unbiased; ≈ 0 when the same"))
        rows.append(("MMD permutation p-value", m["mmd_p_value"], "small = different"))
        rows.append(("Fréchet distance of x", m["frechet_x"], "standardized"))
        rows.append(
            (
                "NaN rows (reference / candidate)",
                f"{m['nan_fraction_reference']:.3g} / {m['nan_fraction_candidate']:.3g}",
                "fraction of rows dropped",
            )
        )
    return rows


def _condition(value: float, speed: dict[str, Any]) -> str:
    if speed["unit"] == "showers":
        from .speed import format_energy

        return format_energy(value)
    return f"{speed['parameter']} ≈ {value:.4g}"


def _speed_html(speed: dict[str, Any]) -> list[str]:
    """The speed section: how it was measured, a plain verdict, the table per θ bin."""
    if "note" in speed:
        return [f"<p class='muted'>{html.escape(speed['note'])}</p>"]
    unit, threads, bins = speed["unit"], speed["threads"], speed["bins"]
    threads_text = ", ".join(map(str, threads))
    parts = [
        f"<p class='muted'>Surrogate: {html.escape(speed['path'])}; {speed['batch']:,} rows per "
        f"call after a warm-up; torch threads {threads_text}. Simulator: one "
        f"process (one core), {html.escape(speed['simulator_batch'])}, on the same θ rows. "
        "Best of repeated calls, wall clock, CPU. Speed-up: surrogate on one thread over the "
        "simulator on one core. Whole spectrum: total rows over total time of generating this "
        "file's θ (rows per bin as in the reference file).</p>"
    ]
    slow = speed["slower_than_simulator"]
    if slow:
        where = (
            "at every condition measured"
            if len(slow) == len(bins)
            else f"at {len(slow)} of {len(bins)} conditions ("
            + ", ".join(_condition(v, speed) for v in slow)
            + ")"
        )
        parts.append(
            f"<p class='bad'>The surrogate is slower than the simulator {where}: there, "
            "running the simulator is faster.</p>"
        )
    else:
        parts.append("<p class='ok'>The surrogate is faster than the simulator at every "
                     "condition measured.</p>")  # fmt: skip
    spec = speed["spectrum"]
    verdict = "faster" if spec["speedup"] >= 1 else "slower"
    parts.append(f"<p>Over the whole spectrum the surrogate is {verdict}: speed-up "
                 f"{spec['speedup']:.3g}×.</p>")  # fmt: skip
    parts.append(
        f"<table><tr><th>{html.escape(speed['parameter'])}</th><th>rows in file</th>"
        "<th>simulator, 1 core (rows per call)</th><th>surrogate, 1 thread</th>"
        "<th>speed-up</th></tr>"
    )
    for b in bins:
        cls = "num bad" if b["speedup"] < 1 else "num"
        parts.append(
            f"<tr><td>{html.escape(_condition(b['theta'], speed))}</td>"
            f"<td class='num'>{b['count']:,}</td><td class='num'>"
            f"{b['simulator']['rows_per_s']:,.0f} ({b['simulator']['rows']:,})</td>"
            f"<td class='num'>{b['surrogate']['rows_per_s']:,.0f}</td>"
            f"<td class='{cls}'>{b['speedup']:.3g}×</td></tr>"
        )
    parts.append(
        f"<tr><th>whole spectrum</th><td class='num'>{sum(b['count'] for b in bins):,}</td>"
        f"<td class='num'>{spec['simulator_rows_per_s']:,.0f}</td>"
        f"<td class='num'>{spec['surrogate_rows_per_s']:,.0f}</td>"
        f"<td class='num'>{spec['speedup']:.3g}×</td></tr></table>"
    )
    for t, r in speed.get("more_threads", {}).items():
        parts.append(
            f"<p>On {t} threads the surrogate draws {r['rows_per_s']:,.0f} {unit}/s "
            f"(at {html.escape(_condition(r['theta'], speed))}; its cost does not depend on "
            "θ), against the simulator's one core above: a simulator file is generated with one "
            "process per core (<code>--workers</code>), so compare per core.</p>"
        )
    parts.append(f"<p class='muted'>Rates in {unit} per second.</p>")
    return parts


def _figure_html(caption: str, path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def write_html(summary: dict[str, Any], figures: list[tuple[str, Path]], path: Path) -> Path:
    """Writes the self-contained report page (figures embedded as base64 PNG)."""
    ref, cand = summary["reference"], summary["candidate"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>Evaluation: {html.escape(Path(cand['path']).name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Evaluation report: {html.escape(summary['simulator'])}</h1>",
        f"<p class='muted'>created {summary['created']}, seed {summary['seed']}, "
        f"{summary['n']:,} rows per file, {summary['seconds']} s</p>",
        "<h2>Files</h2><table><tr><th></th><th>file</th><th>written by</th><th>seed</th></tr>",
    ]
    for label, f in (("reference", ref), ("candidate", cand)):
        meta = f["meta"]
        parts.append(
            f"<tr><td>{label}</td><td>{html.escape(f['path'])}</td>"
            f"<td>{html.escape(str(meta.get('simulator')))}</td>"
            f"<td>{html.escape(str(meta.get('seed')))}</td></tr>"
        )
    parts.append("</table>")
    cond = summary["conditions"]
    if cond["matched"]:
        parts.append("<p class='ok'>Conditions matched: both files hold the same θ row by row.</p>")
    else:
        agree = cond.get("theta_distributions_agree")
        cls, word = ("ok", "agree") if agree else ("bad", "DIFFER")
        parts.append(
            f"<p class='{cls}'>Conditions not matched row by row; the θ distributions {word} "
            "(Kolmogorov–Smirnov test per parameter, 1 % level, Bonferroni), and the metrics "
            "compare the joint distributions of (θ, x).</p>"
        )
    if cond.get("simulator_config_differs"):
        parts.append(
            "<p class='bad'>The simulator settings of the two files differ (see "
            "metrics.json); the comparison is across configurations.</p>"
        )
    parts.append("<h2>Headline metrics</h2>")
    parts.append(_table(_headline(summary)))
    speed = summary.get("speed")
    if speed:
        parts.append("<h2>Sampling speed</h2>")
        parts += _speed_html(speed)
    feats = summary["metrics"].get("features")
    if feats:
        parts.append(
            "<h2>Per-feature comparison</h2><p class='muted'>Noise: the separation "
            "power expected from sampling alone for two samples of one distribution; "
            "values well above it are real differences.</p><table><tr><th>feature</th>"
            "<th>separation power</th><th>noise</th><th>Wasserstein / σ<sub>ref</sub>"
            "</th></tr>"
        )
        for name, v in feats.items():
            flag = (
                " class='num bad'"
                if v["separation_power"] > 3 * v["separation_power_noise"]
                else " class='num'"
            )
            parts.append(
                f"<tr><td>{html.escape(name)}</td><td{flag}>"
                f"{_fmt(v['separation_power'])}</td><td class='num'>"
                f"{_fmt(v['separation_power_noise'])}</td><td class='num'>"
                f"{_fmt(v['wasserstein_over_std'])}</td></tr>"
            )
        parts.append("</table>")
    if figures:
        parts.append("<h2>Figures</h2>")
        parts += [_figure_html(caption, p) for caption, p in figures]
    parts.append("<p class='muted'>All numbers are in metrics.json next to this page.</p>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
