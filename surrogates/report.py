"""The evaluation report: compare a candidate dataset file with a reference file.

:func:`evaluate` reads two files in the package's HDF5 format (e.g. a simulator file and a file
sampled from a surrogate with ``surrogates sample --like``), chooses the metrics from the simulator
named in the files' metadata, and writes into one folder:

* ``metrics.json``: every number, with the settings that produced it;
* one PNG per figure;
* ``report.html``: a single self-contained page (figures embedded as base64, no scripts, no
  external resources) that opens in any browser without a server;
* ``report_manifest.json``: the list of these files, so that ``overwrite=True`` replaces them
  and nothing else (the folder is built beside its destination and swapped in whole).

Metrics by simulator:

* ``calorimeter``: classifier AUC (and JSD) on low-level inputs and on high-level features,
  separation power and Wasserstein distance per high-level feature, Fréchet distance of the
  high-level features; average shower per layer and feature histograms;
* ``nbody``: mean power spectra with their ratio and χ², pixel-PDF and peak-count separation,
  cross-correlation of matched pairs; spectra and example fields;
* anything else (toy simulators, user simulators): C2ST on the joint (θ, x), MMD permutation test,
  per-dimension separation power and Wasserstein distance, Fréchet distance; histograms and a
  corner plot.

Conditions: when both files hold the same θ row by row (``surrogates sample --like``), the pairs are
"matched"; otherwise the θ distributions are compared like features, since metrics on the joint
(θ, x) only make sense when both θ samples follow one distribution.

Speed: when the candidate was written by a surrogate whose run folder is still present, its
rows per second are measured as a user runs it in bulk (the family's fastest exact-enough path,
batch :data:`SPEED_BATCH`, one torch thread and all threads, after a warm-up) against the
simulator in one process on the same θ rows (:mod:`surrogates.speed`). For showers the cost of
the simulator grows with the incident energy, so the table is per incident energy of the
reference file, with the time-weighted rate over its spectrum and a figure of speed-up against
energy; other data get one bin.

Example:
    >>> from surrogates.report import evaluate
    >>> summary = evaluate("sim.h5", "flow.h5", "report/", seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import simulators
from simulators.base import SimulatorInputError
from simulators.outputs import check_output_location

from . import metrics as M
from .report_folder import building, check_names
from .report_html import write_html

__all__ = ["evaluate"]

REPORT_VERSION = 1
#: the figures each kind of report writes (a file of the user's under one of these names is refused)
FIGURES = {
    "calorimeter": (
        "average_shower_reference.png",
        "average_shower_candidate.png",
        "features.png",
        "speedup.png",
    ),
    "nbody": ("power_spectra.png", "fields.png", "pixel_peaks.png"),
    "generic": ("x_histograms.png", "x_corner.png"),
}
#: at most this many field cells per file are read for N-body statistics (float64: 400 MB)
_MAX_FIELD_CELLS = 50_000_000


def _base_simulator(meta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The physics simulator behind a file: itself, or the one a surrogate was trained on."""
    name = str(meta.get("simulator", ""))
    config = dict(meta.get("simulator_config") or {})
    if name.startswith("surrogate:"):
        return name.split(":", 1)[1], dict(config.get("base_config") or {})
    return name, config


def _load(ds: simulators.Dataset, n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(ds.theta[:n], dtype=np.float64), np.asarray(ds.x[:n], dtype=np.float64)


def _finite_rows(*arrays: np.ndarray) -> np.ndarray:
    ok = np.ones(len(arrays[0]), dtype=bool)
    for a in arrays:
        ok &= np.all(np.isfinite(a.reshape(len(a), -1)), axis=1)
    return ok


# ---------------------------------------------------------------------------------------------
# Metrics per kind of simulator


def _generic(theta_r, x_r, theta_c, x_c, out, seed, device, figures) -> dict[str, Any]:
    from .plots.common import plot_histograms
    from .plots.posterior import plot_corner

    ok_r, ok_c = _finite_rows(theta_r, x_r), _finite_rows(theta_c, x_c)
    res: dict[str, Any] = {
        "nan_fraction_reference": float(1 - ok_r.mean()),
        "nan_fraction_candidate": float(1 - ok_c.mean()),
    }
    xr, xc = x_r[ok_r].reshape(ok_r.sum(), -1), x_c[ok_c].reshape(ok_c.sum(), -1)
    jr = np.concatenate([theta_r[ok_r], xr], axis=1)
    jc = np.concatenate([theta_c[ok_c], xc], axis=1)
    res["c2st_joint"] = M.c2st(jr, jc, seed=seed, device=device)
    # MMD on the joint, z-scored with the reference (the kernel has one bandwidth for all dims).
    mean, std = jr.mean(axis=0), jr.std(axis=0)
    std[std == 0] = 1
    mmd, p = M.mmd_permutation_test(
        (jr - mean) / std, (jc - mean) / std, rng=np.random.default_rng(seed)
    )
    res["mmd2_joint"], res["mmd_p_value"] = mmd, p
    res["frechet_x"] = M.frechet_distance(xr, xc)
    names = [f"x{i}" for i in range(xr.shape[1])]
    res["features"] = M.compare_features(
        dict(zip(names, xr.T, strict=True)), dict(zip(names, xc.T, strict=True))
    )
    shown = names[:16]
    figures.append(
        (
            "Distributions of x (first 16 dimensions); ratio panel: candidate / reference, "
            "grey band: reference Poisson error; S: separation power",
            plot_histograms(
                dict(zip(names, xr.T, strict=True)),
                dict(zip(names, xc.T, strict=True)),
                out / "x_histograms.png",
                names=shown,
            ),
        )
    )
    d = min(xr.shape[1], 6)
    figures.append(
        (
            "Corner plot of x (68 % and 95 % contours)",
            plot_corner(
                {"reference": xr[:, :d], "candidate": xc[:, :d]},
                out / "x_corner.png",
                labels=names[:d],
            ),
        )
    )
    return res


def _high_level_matrix(features, e_inc) -> tuple[np.ndarray, list[str]]:
    """High-level features as a matrix, with log10 E_inc first; energies as log10(1 + E/MeV),
    since they span decades and the classifier and the Fréchet distance are scale-sensitive."""
    m, cols = M.stack_features(features)
    for i, name in enumerate(cols):
        if name.startswith("E_layer"):
            m[:, i] = np.log10(1 + np.clip(m[:, i], 0, None))
    return np.concatenate([np.log10(e_inc.reshape(-1, 1)), m], axis=1), cols


def _calorimeter(theta_r, x_r, theta_c, x_c, sim, out, seed, device, figures) -> dict[str, Any]:
    from simulators.calorimeter.features import high_level_features

    from .plots.calorimeter import plot_average_shower, plot_feature_histograms

    g = sim.geometry
    res: dict[str, Any] = {}
    low_r, low_c = M.low_level_inputs(x_r, theta_r), M.low_level_inputs(x_c, theta_c)
    res["classifier_low_level"] = M.classifier_auc(low_r, low_c, seed=seed, device=device).to_dict()
    f_r = high_level_features(x_r, theta_r, g)
    f_c = high_level_features(x_c, theta_c, g)
    hl_r, cols = _high_level_matrix(f_r, theta_r)
    hl_c, _ = _high_level_matrix(f_c, theta_c)
    res["classifier_high_level"] = M.classifier_auc(hl_r, hl_c, seed=seed, device=device).to_dict()
    res["frechet_high_level"] = M.frechet_distance(hl_r, hl_c)
    fd, fd_err = M.frechet_distance_extrapolated(hl_r, hl_c, rng=np.random.default_rng(seed))
    res["frechet_high_level_inf"], res["frechet_high_level_inf_error"] = fd, fd_err
    res["features"] = M.compare_features(f_r, f_c)
    seps = [v["separation_power"] for v in res["features"].values()]
    res["separation_power_mean"] = float(np.mean(seps))
    res["separation_power_max"] = float(np.max(seps))
    res["high_level_columns"] = ["log10 E_inc", *cols]
    vmax = float(max(x_r.mean(axis=0).max(), x_c.mean(axis=0).max()))
    for label, x in (("reference", x_r), ("candidate", x_c)):
        figures.append(
            (
                f"Average {label} shower per layer",
                plot_average_shower(
                    x,
                    g,
                    out / f"average_shower_{label}.png",
                    title=f"{label}: average of {len(x)} showers",
                    vmax=vmax,
                ),
            )
        )
    figures.append(
        (
            "High-level features (bins from the reference; ratio panel: candidate / reference)",
            plot_feature_histograms({"reference": f_r, "candidate": f_c}, out / "features.png"),
        )
    )
    return res


def _nbody_fields(x: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """A batch of 2-d maps or 3-d boxes from nbody rows (first redshift only)."""
    m = x.shape[-1]
    per_row = x.reshape(len(x), len(config.get("redshifts") or [0]), -1)[:, 0]
    if config.get("output", "field3d") == "field3d":
        return per_row.reshape(-1, m, m, m)
    return per_row.reshape(-1, m, m)


def _nbody(theta_r, x_r, theta_c, x_c, config, matched, out, figures) -> dict[str, Any]:
    from .metrics.fields import compare_fields, find_peaks, power_response
    from .plots.common import plot_histograms
    from .plots.fields import plot_fields, plot_power_spectra

    box = float(config.get("box_size", x_r.shape[-1]))
    fr, fc = _nbody_fields(x_r, config), _nbody_fields(x_c, config)
    per = len(fr) // max(len(x_r), 1)  # maps per row: slices of one box are correlated
    res = compare_fields(fr, fc, box, matched=matched, group_size=max(per, 1))
    res["box_size"] = box
    res["field_shape"] = list(fr.shape[1:])
    # the response of the low-k power to θ, fitted on each file's own rows
    res["response"] = {
        "reference": power_response(theta_r, fr, box, group_size=max(per, 1)),
        "candidate": power_response(theta_c, fc, box, group_size=max(len(fc) // len(x_c), 1)),
    }
    figures.append(
        (
            "Mean power spectra (band: standard error of the reference mean) and their ratio",
            plot_power_spectra(
                res["k"],
                res["power_reference"],
                res["power_candidate"],
                out / "power_spectra.png",
                se_reference=res["power_reference_se"],
                se_candidate=res["power_candidate_se"],
            ),
        )
    )
    titles = [f"θ = ({t[0]:.3g}, {t[1]:.3g})" for t in theta_r[:4]]
    figures.append(
        (
            "Example fields (3-d boxes projected along the last axis); same colour scale"
            if fr.ndim == 4
            else "Example maps (first slice of each box); same colour scale",
            plot_fields(
                fr[:: max(per, 1)],
                fc[:: max(per, 1)],
                out / "fields.png",
                titles=titles if matched else None,
            ),
        )
    )
    n = min(len(fr), 64)
    pix = {
        "pixel value": fr[:n].reshape(-1),
        "peak height": np.concatenate([f[find_peaks(f)] for f in fr[:n]]),
    }
    pix_c = {
        "pixel value": fc[:n].reshape(-1),
        "peak height": np.concatenate([f[find_peaks(f)] for f in fc[:n]]),
    }
    figures.append(
        ("Pixel PDF and peak heights", plot_histograms(pix, pix_c, out / "pixel_peaks.png"))
    )
    return res


# ---------------------------------------------------------------------------------------------
# Conditions and speed


def _conditions(theta_r, theta_c, names) -> dict[str, Any]:
    matched = theta_r.shape == theta_c.shape and np.allclose(theta_r, theta_c, rtol=1e-6, atol=0)
    res: dict[str, Any] = {"matched": bool(matched), "parameters": list(names)}
    if not matched:
        from scipy.stats import ks_2samp

        res["theta"] = M.compare_features(
            dict(zip(names, theta_r.T, strict=True)), dict(zip(names, theta_c.T, strict=True))
        )
        # Kolmogorov–Smirnov per parameter, Bonferroni-corrected at the 1 % level.
        p = [float(ks_2samp(a, b).pvalue) for a, b in zip(theta_r.T, theta_c.T, strict=True)]
        res["theta_ks_p_values"] = p
        res["theta_distributions_agree"] = bool(min(p) > 0.01 / len(p))
    return res


#: the surrogate's rows per timed call in the speed section: bulk sampling (a flow samples in
#: blocks of 1,024 rows on the CPU, so its rate here is its rate at batch 10,000) in a report
#: that stays within about a minute on two cores
SPEED_BATCH = 2048


def _speed(cand_meta, base, theta, seed, kind, out, figures) -> dict[str, Any] | None:
    """Rows per second of the surrogate, on its fastest exact-enough path, and of its simulator
    on the same θ, per condition bin (:mod:`surrogates.speed`); CPU, this process."""
    if not str(cand_meta.get("simulator", "")).startswith("surrogate:"):
        return None
    config = cand_meta.get("simulator_config") or {}
    run_dir = config.get("run_dir") or cand_meta.get("surrogate_run")
    try:
        from .models import registry

        model = registry.get(config.get("model_type", "flow")).load(run_dir, device="cpu")
    except Exception as exc:  # a moved run folder must not sink the whole report
        return {"note": f"surrogate run {run_dir!r} could not be loaded: {exc}"}
    from . import speed as S

    t0 = time.perf_counter()
    path = S.bulk_sampling_path(model)
    bins = S.condition_bins(theta, discrete=None if kind == "calorimeter" else False)
    threads = sorted({1, S.all_threads()})
    sur = model.as_simulator()
    # Best of 3 calls per bin on one thread (a 2,048-row flow call takes ~1 s on a CPU core: with
    # one call per bin the rates of two reports of one run differed by up to 40% in a bin);
    # more threads: one call at the highest bin
    try:
        one = S.rates_by_condition(sur, bins.rows, batch=SPEED_BATCH, threads=1, reps=3,
                                   budget_s=5.0, seed=seed)  # fmt: skip
        more = {t: S.rates_by_condition(sur, bins.rows[-1:], batch=SPEED_BATCH, threads=t,
                                        reps=1, seed=seed, warmup=False)[0]
                for t in threads if t > 1}  # fmt: skip
        # the simulator's cost per row grows with energy: batches sized to ~0.25 s per call
        sim = S.rates_by_condition(base, bins.rows, batch=None, threads=None, reps=3,
                                   seconds_per_call=0.25, seed=seed)  # fmt: skip
    except SimulatorInputError as exc:  # θ outside the surrogate's training range
        return {"note": f"speed not measured: {exc}"}
    table = S.speed_table(bins, one, sim, more_threads=more)
    spec = table["spectrum"]
    res = {
        "surrogate_rows_per_s": spec["surrogate_rows_per_s"],
        "simulator_rows_per_s": spec["simulator_rows_per_s"],
        "speedup": spec["speedup"],
        "path": path,
        "batch": SPEED_BATCH,
        "threads": threads,
        "simulator_batch": "sized per bin to about 0.25 s per call (8 to 4,096 rows)",
        "parameter": str((tuple(base.param_names) or ("θ",))[0]),
        "unit": "showers" if kind == "calorimeter" else "rows",
        "per_bin": bins.discrete,
        "device": "cpu",
        **table,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if kind == "calorimeter" and len(bins.counts) > 1:
        from .plots.speed import plot_speedup

        caption = (f"Sampling speed-up of the surrogate over the simulator against incident "
                   f"energy (1 thread, batch {SPEED_BATCH}; dashed: time-weighted over the "
                   "spectrum; below 1 the simulator is faster)")  # fmt: skip
        theta_b, up = [r["theta"] for r in table["bins"]], [r["speedup"] for r in table["bins"]]
        figures.append((caption, plot_speedup(theta_b, up, out / "speedup.png",
                                              spectrum=spec["speedup"])))  # fmt: skip
    return res


# ---------------------------------------------------------------------------------------------
# Entry point


def evaluate(
    reference: str | Path,
    candidate: str | Path,
    out_dir: str | Path,
    *,
    seed: int = 0,
    device: str = "cpu",
    max_samples: int = 20_000,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Compares ``candidate`` with ``reference`` and writes metrics.json, figures and report.html.

    Args:
        reference: the reference dataset file (usually simulator output).
        candidate: the file to judge (a surrogate sample, or a second simulator run).
        out_dir: output folder; must be empty or absent unless ``overwrite``. The report is built
            in a temporary sibling folder and swapped in whole (:mod:`surrogates.report_folder`),
            so a kill leaves the earlier report or the new one.
        seed: seeds every classifier and permutation test.
        device: torch device for the classifiers (``"auto"``, ``"cpu"``, ``"cuda"``).
        max_samples: use at most the first this many rows of each file (N-body files are also
            limited to 5·10⁷ field cells).
        overwrite: replace an earlier report in ``out_dir``: only the files its manifest lists;
            a user's other files there stay.

    Returns:
        The dictionary written to ``metrics.json``.

    Raises:
        SimulatorInputError: unreadable files, incompatible shapes or simulators.
        UserError: ``out_dir`` cannot be written, is not empty without ``overwrite``, or holds a
            file of the user's under a report file's name; the disk filled up.
    """
    out = Path(out_dir)
    if max_samples < 2:
        raise SimulatorInputError("max_samples must be at least 2")
    check_output_location(out, kind="folder", overwrite=overwrite)  # before any work
    t_start = time.perf_counter()
    with simulators.open_dataset(reference) as ref, simulators.open_dataset(candidate) as cand:
        base_r, cfg_r = _base_simulator(ref.meta)
        base_c, cfg_c = _base_simulator(cand.meta)
        if base_r != base_c:
            raise SimulatorInputError(
                f"the files come from different simulators: {base_r!r} and {base_c!r}"
            )
        if ref.x_shape != cand.x_shape or ref.param_names != cand.param_names:
            raise SimulatorInputError(
                f"schemas differ: x {ref.x_shape} vs {cand.x_shape}, "
                f"parameters {ref.param_names} vs {cand.param_names}"
            )
        n = min(len(ref), len(cand), max_samples)
        if base_r == "nbody":  # whole boxes: bound the memory, not the number of rows
            n = min(n, max(2, _MAX_FIELD_CELLS // max(int(np.prod(ref.x_shape)), 1)))
        need = 2 if base_r == "nbody" else 20  # classifiers need a few rows per fold
        for ds in (ref, cand):
            if len(ds) < need:
                raise SimulatorInputError(
                    f"{ds.path} holds {len(ds)} rows; a report needs at least {need} in each file"
                )
        if n < need:
            raise SimulatorInputError(f"need at least {need} rows in each file, got {n}")
        kind = base_r if base_r in ("calorimeter", "nbody") else "generic"
        check_names(out, ("metrics.json", "report.html", *FIGURES[kind]))
        theta_r, x_r = _load(ref, n)
        theta_c, x_c = _load(cand, n)
        meta_r, meta_c = ref.meta, cand.meta
        names = ref.param_names

    with building(out) as tmp:  # swapped in whole when complete; see report_folder
        conditions = _conditions(theta_r, theta_c, names)
        conditions["simulator_config_differs"] = cfg_r != cfg_c
        figures: list[tuple[str, Path]] = []
        if kind == "calorimeter":
            sim = simulators.get(base_r, **cfg_r)
            results = _calorimeter(theta_r, x_r, theta_c, x_c, sim, tmp, seed, device, figures)
        elif kind == "nbody":
            matched = conditions["matched"]
            results = _nbody(theta_r, x_r, theta_c, x_c, cfg_r, matched, tmp, figures)
        else:
            results = _generic(theta_r, x_r, theta_c, x_c, tmp, seed, device, figures)
        try:
            base_sim = simulators.get(base_r, **cfg_r)
        except Exception:  # a user simulator not registered in this process
            base_sim = None
        speed = None
        if base_sim is not None:
            speed = _speed(meta_c, base_sim, theta_r, seed, kind, tmp, figures)

        summary: dict[str, Any] = {
            "report_version": REPORT_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "reference": {"path": str(reference), "meta": meta_r},
            "candidate": {"path": str(candidate), "meta": meta_c},
            "simulator": base_r,
            "kind": kind,
            "n": n,
            "seed": seed,
            "conditions": conditions,
            "metrics": results,
            "speed": speed,
            "figures": [p.name for _, p in figures],
            "seconds": round(time.perf_counter() - t_start, 2),
        }
        text = json.dumps(_finite(summary), indent=2, default=_json_default, allow_nan=False)
        (tmp / "metrics.json").write_text(text + "\n")
        write_html(summary, figures, tmp / "report.html")
    return summary


def _finite(value: Any) -> Any:
    """NaN and ±inf become null, so metrics.json is strict JSON that any parser reads."""
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return None
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
