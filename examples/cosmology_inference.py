"""A surrogate in an analysis: cosmology (Ω_m, σ_8) from one projected N-body density slice.

Neural posterior estimation (:class:`surrogates.inference.NPE`) infers θ = (Ω_m, σ_8) from a single
projected density slice δ (H, W), along three routes that are all tested on the *same* held-out
simulator slices:

* **a** -- NPE trained on simulator slices, CNN embedding
  (:class:`~surrogates.nn.embeddings.CNNEmbedding`);
* **a'** -- the same slices, the power-spectrum embedding (the baseline summary,
  :class:`~surrogates.nn.embeddings.PowerSpectrumEmbedding`);
* **b** -- NPE (CNN embedding) trained on slices drawn from a trained field surrogate (a GAN or VAE
  run folder) at fresh cosmologies from the prior, as many as wanted, for the cost of sampling.

Every row of a dataset holds several slices of one box; each slice of a training row is its own
(θ, slice) training pair, and the test set is slice 0 of each held-out row. NPE's validation
split (early stopping) holds whole boxes, so no validation slice shares a box with a training
slice (:func:`grouped_for_validation`). The CNN sees
log(2 + δ), the map of the package's field preprocessing for ``nbody`` data (shift 2, so an empty
cell, or a generated pixel a little below δ = -1, stays finite); the power spectrum sees δ itself,
as the usual two-point summary does.

Reported per route: the mean posterior standard deviation per parameter on the test slices
(CNN and power-spectrum widths side by side), SBC ranks with a KS p-value per parameter (uniform
if p > 0.01; :func:`~surrogates.inference.diagnostics.sbc_uniformity`), the empirical coverage of
the 68 % and 95 % highest-posterior-density regions
(:func:`~surrogates.inference.diagnostics.expected_coverage`; nominal ± 0.05 is the target for
route b), and the cost in CPU seconds of this process (:func:`time.process_time`):

* a, a': simulating the training rows (the simulator's CPU seconds per row, measured here on two
  rows of the dataset's configuration, times the rows) plus training the NPE;
* b: simulating the rows the surrogate was trained on (counted the same way: the surrogate needed
  them; their number as its run folder's ``results.json`` records it, else route a's), the
  surrogate's training (read from that file where recorded -- ``examples/nbody_surrogates.py``
  records CPU seconds -- else "not recorded"; CPU seconds measured here in ``--quick``),
  sampling the surrogate and training the NPE.

Usage::

    python examples/cosmology_inference.py --quick     # own tiny data, inline GAN: ~3 min, 2 cores
    python examples/cosmology_inference.py             # datasets/nbody_lh_1k.h5 + a trained GAN
    python examples/cosmology_inference.py --surrogate examples/output/nbody_surrogates/vae/run

Full mode reads ``datasets/nbody_lh_1k.h5`` (recipe ``datasets/nbody_lh_1k.toml``; rows 0-799
train, 800-999 test) and the surrogate run ``examples/output/nbody_surrogates/gan/run`` (written by
``examples/nbody_surrogates.py``). Quick mode simulates a 16³-particle box (16 × 16 slices) and
trains a tiny GAN inline for a minute: a smoke test of route b, far from a faithful surrogate.
Outputs in ``--out`` (default ``examples/output/cosmology_inference[_quick]``): ``results.json``,
``corner.png`` (all routes at one test cosmology, true θ marked), ``coverage.png``; a full run
(at the protocol's sizes) also writes
``benchmarks/results/cosmology_inference/results.json`` with the command, commit, machine and
versions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy import stats

import simulators
from simulators.errors import UserError
from surrogates.checkpoint import read_meta
from surrogates.inference import NPE, expected_coverage, sbc_uniformity, torch_prior
from surrogates.inference.diagnostics import coverage_from_ranks
from surrogates.models import GAN, registry
from surrogates.plots.common import COLORS, save_figure
from surrogates.plots.posterior import plot_corner
from surrogates.training import split_indices

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import provenance, results_dir

__all__ = [
    "calibration_summary",
    "cnn_input",
    "coverage_at",
    "grouped_for_validation",
    "route_cost",
    "slice_pairs",
    "surrogate_record",
]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / "datasets" / "nbody_lh_1k.h5"
DEFAULT_SURROGATE = ROOT / "examples" / "output" / "nbody_surrogates" / "gan" / "run"
#: the two credibility levels reported in the table
LEVELS = (0.68, 0.95)
#: shift of the CNN's log map, as FieldPreprocessing for nbody data (log(2 + δ))
LOG_SHIFT = 2.0
#: per mode: rows of the row split, the NPE step budget, posterior draws per test slice for
#: widths and SBC (n_post) and for the HPD coverage (n_cov, each costs one log_prob per draw)
SETTINGS: dict[str, dict[str, Any]] = {
    # NPE steps: a CNN step (batch 256 of 64×64, channels 8-16-32-64) took 0.4 CPU s on one
    # thread of the 2-core machine beside another job (20 steps timed), so 1,200 steps stay under
    # 10 minutes per estimator: ~110 epochs of route a's pairs, ~27 of route b's; early stopping
    # ends most runs sooner. The default CNN (16-32-64 channels) cost 1.5x as much per step.
    "full": {"n_train": 800, "n_test": 200, "npe_steps": 1200, "n_post": 500, "n_cov": 100,
             "threads": None,
             "cnn": {"type": "cnn", "channels": [8, 16, 32, 64], "out": 32},
             "ps": {"type": "power_spectrum", "n_bins": 16}},
    "quick": {"n_train": 400, "n_test": 100, "npe_steps": 600, "n_post": 200, "n_cov": 50,
              "gan_steps": 600, "threads": 1,
              "cnn": {"type": "cnn", "channels": [8, 16, 32], "out": 16},
              "ps": {"type": "power_spectrum", "n_bins": 8}},
}  # fmt: skip
#: the quick mode's box: 16³ particles in 128 Mpc/h, four 32 Mpc/h slices of 16 × 16 cells
QUICK_SIM = {"n_particles": 16, "box_size": 128.0, "n_steps": 4, "output": "slices",
             "n_slices": 4, "slice_thickness": 32.0}  # fmt: skip
#: the quick mode's inline field GAN (small widths, as the contract test's field models)
QUICK_GAN = {"conv_widths": [8, 16], "latent": 16, "n_critic": 2}
#: its training: ten times the family's learning rate, for a minute's budget of steps (it stays
#: far from the simulator's power spectrum: a smoke test of route b, not a surrogate to trust)
QUICK_GAN_TRAIN = {"batch_size": 64, "lr": 1e-3}
#: NPE's validation split (its defaults), which :func:`grouped_for_validation` aligns with boxes
VAL_FRACTION, SPLIT_SEED = 0.1, 0
#: NPE learning rate, every route: the default from 2,048 training pairs on; below it the default
#: 1.2e-2 left the quick mode's CNN at the prior in σ_8 for one of two seeds (4e-3: neither)
NPE_LR = 4e-3
#: NPE batch, every route: the routes train for a fixed number of steps, so this is part of the
#: recipe (the library's default for 1,000-2,895 rows became smaller with issue 30)
NPE_BATCH = 256
LABELS = {"a": "a  simulator, CNN", "a'": "a' simulator, P(k)", "b": "b  {}, CNN"}
#: surrogate run keys that may hold its training time, most specific first
TIME_KEYS = ("train_cpu_seconds", "train_seconds")


# ----------------------------------------------------------------------------- pure helpers
def slice_pairs(theta: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every slice of every row as its own (θ, slice) pair.

    Args:
        theta: (N, P).
        x: (N, S, H, W): S slices per row.

    Returns:
        θ (N·S, P) and slices (N·S, H, W); the S pairs of row i are rows i·S ... i·S + S - 1.
    """
    theta, x = np.asarray(theta), np.asarray(x)
    if x.ndim != 4 or len(theta) != len(x):
        raise UserError(f"slices must be (N, S, H, W) with N = {len(theta)} rows of theta, "
                        f"got {x.shape}")  # fmt: skip
    s = x.shape[1]
    return np.repeat(theta, s, axis=0), x.reshape(len(x) * s, *x.shape[2:])


def grouped_for_validation(
    theta: np.ndarray, x: np.ndarray, slices: int, val_fraction: float, split_seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reorders the pairs of :func:`slice_pairs` so that the validation split NPE draws
    (:func:`~surrogates.training.split_indices` of ``len(theta)``, ``val_fraction`` and
    ``split_seed``, as :meth:`NPE.fit` does) holds whole rows: the slices of one box are
    correlated, and a box split between training and validation would make early stopping
    trust a validation loss the network has partly seen.

    The last ``round(val_fraction · N)`` pairs (whole rows when that is a multiple of
    ``slices``; else one row is split) land on the validation positions, the rest, in order, on
    the training positions.
    """
    n = len(theta)
    if len(x) != n or n % slices:
        raise ValueError(f"need N·S pairs with S = {slices}, got {n} θ and {len(x)} x")
    train_pos, val_pos = (i.numpy() for i in split_indices(n, val_fraction, split_seed))
    order = np.empty(n, dtype=np.int64)
    order[val_pos] = np.arange(n - len(val_pos), n)
    order[train_pos] = np.arange(n - len(val_pos))
    return theta[order], x[order]


def cnn_input(delta: np.ndarray) -> np.ndarray:
    """log(2 + δ) as float32: the density contrast on the scale a CNN learns from (heavy
    tails compressed); pixels below δ = -2 + 10⁻³ (only a broken surrogate makes them) are
    clipped there rather than turned into NaN."""
    return np.log(np.maximum(LOG_SHIFT + np.asarray(delta, dtype=np.float64), 1e-3)).astype(
        np.float32
    )


def calibration_summary(
    draws: np.ndarray, theta: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Posterior widths, SBC ranks and their uniformity, central-interval coverage.

    Args:
        draws: posterior draws (n, B, P) for B observations.
        theta: their true parameters (B, P).
        rng: the rank randomization of the KS test.

    Returns:
        ``std`` (P,): the mean over observations of the posterior standard deviation;
        ``rmse`` (P,): of the posterior mean; ``ranks`` (B, P); ``ks_pvalue`` (P,);
        ``central`` (len(LEVELS), P): coverage of the central intervals at :data:`LEVELS`.
    """
    draws, theta = np.asarray(draws, np.float64), np.asarray(theta, np.float64)
    n = draws.shape[0]
    ranks = np.sum(draws < theta[None], axis=0)
    _, p = sbc_uniformity(ranks, n, rng=rng)
    return {
        "std": draws.std(axis=0, ddof=1).mean(axis=0),
        "rmse": np.sqrt(np.mean((draws.mean(axis=0) - theta) ** 2, axis=0)),
        "ranks": ranks,
        "ks_pvalue": p,
        "central": coverage_from_ranks(ranks, n, np.asarray(LEVELS)),
    }


def coverage_at(levels: np.ndarray, coverage: np.ndarray, level: float) -> float:
    """The empirical coverage at one credibility level of a coverage curve (levels must hold
    it: no interpolation between grid points)."""
    hit = np.flatnonzero(np.isclose(levels, level))
    if not len(hit):
        raise ValueError(f"level {level} is not on the coverage grid")
    return float(coverage[hit[0]])


def route_cost(parts: Mapping[str, float | None]) -> dict[str, Any]:
    """A route's cost: its parts (CPU seconds, None where not recorded), their total over the
    recorded parts, and whether every part was recorded."""
    known = [v for v in parts.values() if v is not None]
    return {"parts": dict(parts), "total": float(sum(known)),
            "complete": len(known) == len(parts)}  # fmt: skip


def surrogate_record(run_dir: str | Path, model_type: str) -> dict[str, Any]:
    """What a surrogate run recorded of its cost: its training time and simulator rows.

    Looked for in a ``results.json`` in the run folder or its two parents (as
    ``examples/nbody_surrogates.py`` writes one above ``<family>/run``): the training time as a
    top-level key or under ``models.<model_type>`` (CPU seconds first, then ``train_seconds``),
    the rows as ``n_train_rows``.

    Returns:
        ``train_seconds`` and ``training_rows`` (None where not recorded), each with a
        ``..._source`` naming the file and key, or ``"not recorded"``.
    """
    run = Path(run_dir)
    out: dict[str, Any] = {"train_seconds": None, "training_rows": None}
    out |= {"train_seconds_source": "not recorded", "training_rows_source": "not recorded"}
    for folder in (run, run.parent, run.parent.parent):
        path = folder / "results.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        models = data.get("models") if isinstance(data.get("models"), dict) else {}
        for where, entry in ((f"models.{model_type}.", models.get(model_type)), ("", data)):
            if not isinstance(entry, dict):
                continue
            key = next((k for k in TIME_KEYS if isinstance(entry.get(k), (int, float))), None)
            if key and out["train_seconds"] is None:
                out["train_seconds"] = float(entry[key])
                out["train_seconds_source"] = f"{path}: {where}{key}"
            if isinstance(entry.get("n_train_rows"), int) and out["training_rows"] is None:
                out["training_rows"] = entry["n_train_rows"]
                out["training_rows_source"] = f"{path}: {where}n_train_rows"
    return out


# ----------------------------------------------------------------------------- data
def _simulated(path: Path, sim: simulators.Simulator, n: int, seed: int) -> Path:
    """The file of ``n`` rows of ``sim`` at ``seed``: kept if one with that recipe is there."""
    if path.exists():
        try:
            with simulators.open_dataset(path) as d:
                meta = d.meta
            if (meta.get("simulator_config") == sim.config and int(meta.get("n", -1)) == n
                    and int(meta.get("seed", -1)) == seed):  # fmt: skip
                return path
        except UserError:
            pass  # a broken or foreign file there: simulated again below
    return simulators.generate(sim, n, path, seed=seed, chunk_size=100, overwrite=True)


def _read(path: Path, rows: slice, all_slices: bool) -> tuple[np.ndarray, np.ndarray, dict]:
    with simulators.open_dataset(path) as d:
        meta = dict(d.meta)
        if meta.get("simulator") != "nbody" or len(d.x_shape) != 3 or d.theta.shape[1] != 2:
            raise UserError(f"{path}: need nbody slices (N, S, H, W) with θ = (Ω_m, σ_8), got "
                            f"{meta.get('simulator')} data x {tuple(d.x.shape)}, "
                            f"θ {tuple(d.theta.shape)}")  # fmt: skip
        if rows.stop > len(d):
            raise UserError(f"{path} has {len(d)} rows; this protocol needs {rows.stop}")
        theta = d.theta[rows].astype(np.float64)
        x = d.x[rows] if all_slices else d.x[rows, 0]
    return theta, np.asarray(x, np.float32), meta


def _load_surrogate(run_dir: Path, device: str, meta: dict[str, Any]) -> Any:
    model_type = read_meta(run_dir).get("model_type")
    model = registry.get(str(model_type)).load(run_dir, device=device)
    m = model.meta
    same = {k: v for k, v in m.get("simulator_config", {}).items() if k != "design"} == {
        k: v for k, v in meta["simulator_config"].items() if k != "design"}  # fmt: skip
    if (
        m.get("simulator") != "nbody"
        or not same
        or list(m.get("x_shape", [])) != list(meta["x_shape"])
    ):
        raise UserError(f"--surrogate {run_dir}: trained on {m.get('simulator')} "
                        f"{m.get('simulator_config')} x {m.get('x_shape')}, not on the data's "
                        f"nbody {meta['simulator_config']} x {meta['x_shape']}")  # fmt: skip
    return model


# ----------------------------------------------------------------------------- one route
def train_npe(
    prior: Any, theta: np.ndarray, x: np.ndarray, embedding: dict[str, Any], *,
    names: Sequence[str], seed: int, device: str, steps: int,
) -> tuple[NPE, float]:  # fmt: skip
    """An NPE fitted on (θ, x) within ``steps`` optimizer steps; its CPU seconds."""
    t0 = time.process_time()
    # log_x=False: x is a signed field (or its log already); "auto" would only test 4,096 pixels
    npe = NPE(prior, embedding=embedding, log_x=False, seed=seed, device=device, lr=NPE_LR,
              batch_size=NPE_BATCH, max_steps=steps)  # fmt: skip
    npe.param_names = list(names)
    npe.fit(theta, x, val_fraction=VAL_FRACTION, split_seed=SPLIT_SEED)
    return npe, time.process_time() - t0


def evaluate(
    npe: NPE, theta: np.ndarray, x: np.ndarray, cfg: dict[str, Any], seed: int
) -> tuple[dict[str, Any], Any]:
    """Widths, SBC and HPD coverage of one estimator on the test slices."""
    g = torch.Generator().manual_seed(seed)
    draws = npe.sample_batched((cfg["n_post"],), x, generator=g)
    cal = calibration_summary(draws, theta, np.random.default_rng(seed))
    levels = np.unique(np.round(np.r_[np.linspace(0, 1, 21), LEVELS], 10))  # 0.95 once
    # log_prob runs the embedding once per draw: n_cov·chunk fields per call bound the memory
    chunk = max(1, 2000 // cfg["n_cov"])
    cov = expected_coverage(npe, theta, x, n_samples=cfg["n_cov"], levels=levels, generator=g,
                            chunk=chunk)  # fmt: skip
    out = {
        "posterior_std_mean": cal["std"].tolist(),
        "posterior_mean_rmse": cal["rmse"].tolist(),
        "sbc_ks_pvalue": cal["ks_pvalue"].tolist(),
        "sbc_uniform": bool(np.all(cal["ks_pvalue"] > 0.01)),
        "sbc_ranks": cal["ranks"].tolist(),
        "sbc_draws": cfg["n_post"],
        **{f"coverage_{round(100 * g_)}": coverage_at(cov.levels, cov.coverage, g_)
           for g_ in LEVELS},
        "central_coverage": {str(g_): c.tolist() for g_, c in zip(LEVELS, cal["central"],
                                                                   strict=True)},
        "coverage_curve": {"levels": cov.levels.tolist(), "coverage": cov.coverage.tolist(),
                           "draws": cfg["n_cov"]},
        "n_dropped": npe.n_dropped,
        "steps": npe.result.steps,
        "epochs": npe.result.epochs,
    }  # fmt: skip
    return out, cov


# ----------------------------------------------------------------------------- figures, table
def plot_coverage_routes(curves: Mapping[str, Any], n_obs: int, path: Path) -> Path:
    """Expected HPD coverage per route against credibility, with the 99 % binomial band of a
    calibrated estimator on ``n_obs`` test slices."""
    fig = Figure(figsize=(4.6, 4.2))
    ax = fig.subplots()
    grid = np.linspace(0, 1, 101)
    lo, hi = stats.binom.interval(0.99, n_obs, grid)
    ax.fill_between(grid, lo / n_obs, hi / n_obs, color="0.85", label="99% band (calibrated)")
    ax.plot([0, 1], [0, 1], color="0.4", lw=1, ls="--")
    for (label, c), color in zip(curves.items(), (*COLORS, "#2e8b57"), strict=False):  # as corner
        ax.plot(c.levels, c.coverage, lw=1.8, color=color, label=label)
    ax.set(xlabel="credibility level", ylabel="empirical coverage (HPD)", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"Expected coverage on {n_obs} simulator test slices", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def print_table(results: dict[str, Any]) -> None:
    names = results["param_names"]
    print(f"\n{results['data']['n_test']} held-out simulator slices ({results['mode']}); "
          f"widths = mean posterior std; coverage of HPD regions")  # fmt: skip
    print(f"{'route':<22} {'pairs':>6} " + " ".join(f"{'σ ' + n:>10}" for n in names)
          + " " + " ".join(f"{'KS p ' + n:>12}" for n in names)
          + f" {'cov68':>6} {'cov95':>6} {'CPU s':>8}")  # fmt: skip
    for r in results["routes"].values():
        cost = r["cost"]
        star = "" if cost["complete"] else "+"
        print(f"{r['label']:<22} {r['n_pairs']:>6} "
              + " ".join(f"{v:10.4f}" for v in r["posterior_std_mean"]) + " "
              + " ".join(f"{v:12.3g}" for v in r["sbc_ks_pvalue"])
              + f" {r['coverage_68']:6.2f} {r['coverage_95']:6.2f} "
              f"{cost['total']:7.0f}{star:1}")  # fmt: skip
    ratio = results["cnn_over_ps_width"]
    print("CNN / P(k) width: " + ", ".join(f"{n} {v:.2f}" for n, v in zip(names, ratio,
                                                                           strict=True))
          + f" (CNN no wider on average: {'yes' if np.mean(ratio) <= 1 else 'no'})")  # fmt: skip
    for key, r in results["routes"].items():
        parts = ", ".join(f"{k} {'not recorded' if v is None else f'{v:.0f}'}"
                          for k, v in r["cost"]["parts"].items())  # fmt: skip
        print(f"cost {key}: {parts}")
    sur = results["surrogate"]
    print(f"surrogate training time: {sur['train_seconds_source']}; its simulator rows: "
          f"{sur['training_rows']} ({sur['training_rows_source']})")  # fmt: skip
    b = results["routes"].get("b")
    if b is not None:
        ok = all(abs(b[f"coverage_{round(100 * g)}"] - g) <= 0.05 for g in LEVELS)
        print(f"route b coverage within ±0.05 of nominal: {'yes' if ok else 'NO'} "
              f"(68%: {b['coverage_68']:.2f}, 95%: {b['coverage_95']:.2f})")  # fmt: skip
    if any(not r["cost"]["complete"] for r in results["routes"].values()):
        print("+: a part was not recorded (the total is a lower bound)")


# ----------------------------------------------------------------------------- main
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="a tiny simulated box, a GAN trained inline (~3 min)"
    )
    p.add_argument("--data", type=Path, help=f"nbody slices file (default {DEFAULT_DATA})")
    p.add_argument("--surrogate", type=Path,
                   help="trained field GAN/VAE run folder (default: examples/output/"
                        "nbody_surrogates/gan/run; --quick: a GAN trained inline)")  # fmt: skip
    p.add_argument(
        "--n-surrogate",
        type=int,
        help="surrogate rows for route b (default 4 x the simulator training rows)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="output folder")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int,
                   help="torch CPU threads (default: torch's choice; --quick: 1, faster for its "
                        "tiny networks)")  # fmt: skip
    # smaller runs (the test); not part of the protocol
    for name in ("n-train", "n-test", "npe-steps", "gan-steps", "n-post", "n-cov"):
        p.add_argument(f"--{name}", type=int, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    before = torch.get_num_threads()
    try:
        threads = SETTINGS["quick" if args.quick else "full"]["threads"]
        threads = threads if args.threads is None else args.threads
        if threads is not None:
            if threads < 1:
                raise UserError(f"--threads must be at least 1, got {threads}")
            # on 16 × 16 fields a second thread costs more in synchronization than it gains
            # (5x slower on a 2-core machine busy with other work)
            torch.set_num_threads(threads)
        return run(args)
    except UserError as exc:  # every user mistake: one line, status 2, no traceback
        print(f"cosmology_inference: error: {exc}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(before)  # a caller's process (a test) keeps its setting


def run(args: argparse.Namespace) -> int:
    mode = "quick" if args.quick else "full"
    cfg = dict(SETTINGS[mode])
    resized = False
    for key in ("n_train", "n_test", "npe_steps", "gan_steps", "n_post", "n_cov"):
        value = getattr(args, key)
        resized |= value is not None
        if value is not None:
            least = 2 if key in ("n_test", "n_post", "n_cov") else 1
            if value < least:
                raise UserError(f"--{key.replace('_', '-')} must be at least {least}, got {value}")
            cfg[key] = value
    if args.n_surrogate is not None and args.n_surrogate < 1:
        raise UserError(f"--n-surrogate must be at least 1, got {args.n_surrogate}")
    if args.quick and args.data is not None and args.surrogate is None:
        # the inline GAN trains on the quick mode's own training file, never on test rows
        raise UserError(
            "--quick with --data needs --surrogate (the inline GAN trains on the "
            "quick mode's own simulations)"
        )
    suffix = "_quick" if args.quick else ""
    out = args.out or ROOT / "examples" / "output" / f"cosmology_inference{suffix}"
    n_tr, n_te, seed = cfg["n_train"], cfg["n_test"], args.seed

    # ---- data: training rows (all slices) and test slices, from one file or (quick) two
    record: dict[str, Any] = {}
    if args.quick and args.data is None:
        sim = simulators.get("nbody", **QUICK_SIM)
        out.mkdir(parents=True, exist_ok=True)
        train_path = _simulated(out / f"train_{n_tr}_{seed}.h5", sim, n_tr, 2 * seed + 1)
        test_path = _simulated(out / f"test_{n_te}_{seed}.h5", sim, n_te, 2 * seed + 2)
        theta_tr, x_tr, meta = _read(train_path, slice(0, n_tr), True)
        theta_te, x_te, _ = _read(test_path, slice(0, n_te), False)
        data_desc = {"train": str(train_path), "test": str(test_path)}
    else:
        path = args.data or DEFAULT_DATA
        if not path.is_file():
            raise UserError(f"--data {path}: no such file (make it with: surrogates simulate "
                            f"--recipe datasets/nbody_lh_1k.toml)")  # fmt: skip
        train_path = path
        theta_tr, x_tr, meta = _read(path, slice(0, n_tr), True)
        theta_te, x_te, _ = _read(path, slice(n_tr, n_tr + n_te), False)
        data_desc = {"path": str(path), "train_rows": [0, n_tr], "test_rows": [n_tr, n_tr + n_te]}
    sim = simulators.get("nbody", **meta["simulator_config"])
    names = list(sim.param_names)
    # the design's box, as the uniform prior it is marginally (a Latin hypercube has no torch twin)
    prior = torch_prior({"type": "box_uniform", "low": sim.prior.low, "high": sim.prior.high})
    model = None
    surrogate_dir = args.surrogate or (None if args.quick else DEFAULT_SURROGATE)
    if surrogate_dir is not None:  # checked before any training
        model = _load_surrogate(surrogate_dir, args.device, meta)
        record = surrogate_record(surrogate_dir, model.model_type)
        if record["training_rows"] is None:  # the protocol's: the rows route a simulates
            record.update(training_rows=n_tr, training_rows_source="assumed: route a's rows")
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.process_time()  # the simulator's cost per row, this configuration, this process
    sim.simulate(theta_tr[:2], np.random.default_rng([seed, 9]))
    sim_per_row = (time.process_time() - t0) / 2
    print(f"{mode}: {n_tr} training rows x {x_tr.shape[1]} slices, {n_te} test slices "
          f"{x_te.shape[1:]}; simulator {sim_per_row:.2f} CPU s per row", flush=True)  # fmt: skip

    if model is None:  # quick: a tiny field GAN on the training file
        print("training the quick field GAN ...", flush=True)
        t0 = time.process_time()
        model = GAN.for_dataset(train_path, seed=seed, device=args.device, **QUICK_GAN)
        model.fit(train_path, run_dir=out / "gan", max_steps=cfg["gan_steps"],
                  max_epochs=10**6, progress=False, **QUICK_GAN_TRAIN)  # fmt: skip
        surrogate_dir = out / "gan"
        record = {"train_seconds": time.process_time() - t0,
                  "train_seconds_source": "CPU seconds, measured here (inline training)",
                  "training_rows": n_tr, "training_rows_source": "exact"}  # fmt: skip

    n_slices = x_tr.shape[1]
    theta_p, x_p = grouped_for_validation(*slice_pairs(theta_tr, x_tr), n_slices, VAL_FRACTION,
                                          SPLIT_SEED)  # fmt: skip
    n_sur = args.n_surrogate or 4 * n_tr
    t0 = time.process_time()
    theta_s = sim.prior.sample(n_sur, np.random.default_rng([seed, 1]))  # fresh cosmologies
    x_s = model.sample(theta_s, batch_size=256,
                       generator=torch.Generator().manual_seed(seed + 1))  # fmt: skip
    sample_cpu = time.process_time() - t0
    theta_sp, x_sp = grouped_for_validation(*slice_pairs(theta_s, x_s), n_slices, VAL_FRACTION,
                                            SPLIT_SEED)  # fmt: skip
    print(f"surrogate ({model.model_type}): {n_sur} rows in {sample_cpu:.1f} CPU s", flush=True)

    sim_rows_cpu = sim_per_row * n_tr
    specs = {
        "a": ("simulator", cfg["cnn"], theta_p, cnn_input(x_p), cnn_input(x_te)),
        "a'": ("simulator", cfg["ps"], theta_p, x_p, x_te),
        "b": (model.model_type, cfg["cnn"], theta_sp, cnn_input(x_sp), cnn_input(x_te)),
    }
    routes: dict[str, dict[str, Any]] = {}
    estimators: dict[str, tuple[NPE, np.ndarray]] = {}
    curves: dict[str, Any] = {}
    for key, (source, emb, th, x, x_test) in specs.items():
        print(f"route {key}: NPE ({emb['type']}) on {len(th)} {source} pairs ...", flush=True)
        npe, npe_cpu = train_npe(prior, th, x, emb, names=names, seed=seed, device=args.device,
                                 steps=cfg["npe_steps"])  # fmt: skip
        res, cov = evaluate(npe, theta_te, x_test, cfg, seed + 2)
        if key == "b":
            parts = {"simulate surrogate training rows": sim_per_row * record["training_rows"],
                     "surrogate training": record["train_seconds"], "sampling": sample_cpu,
                     "NPE training": npe_cpu}  # fmt: skip
        else:
            parts = {"simulate training rows": sim_rows_cpu, "NPE training": npe_cpu}
        label = LABELS[key].format(model.model_type)
        routes[key] = {"label": label, "source": source, "embedding": npe.net.embedding.config,
                       "n_pairs": len(th), "cost": route_cost(parts), **res}  # fmt: skip
        estimators[key] = (npe, x_test)
        curves[label] = cov
        print(f"  widths {np.round(res['posterior_std_mean'], 4).tolist()}, KS p "
              f"{np.round(res['sbc_ks_pvalue'], 3).tolist()}, coverage 68/95 "
              f"{res['coverage_68']:.2f}/{res['coverage_95']:.2f}; NPE {npe_cpu:.0f} CPU s, "
              f"{res['steps']} steps", flush=True)  # fmt: skip

    # one test cosmology near the middle of the prior box for the corner plot
    mid = (sim.prior.low + sim.prior.high) / 2
    i = int(np.argmin(np.sum(((theta_te - mid) / (sim.prior.high - sim.prior.low)) ** 2, 1)))
    g = torch.Generator().manual_seed(seed + 3)
    samples = {routes[k]["label"].strip(): npe.sample((4000,), x[i], generator=g)
               for k, (npe, x) in estimators.items()}  # fmt: skip
    corner = plot_corner(samples, out / "corner.png", labels=["Ω_m", "σ_8"], truth=theta_te[i],
                         title=f"one {x_te.shape[1]}² slice: Ω_m = {theta_te[i, 0]:.3f}, "
                               f"σ_8 = {theta_te[i, 1]:.3f}")  # fmt: skip
    coverage_png = plot_coverage_routes(curves, n_te, out / "coverage.png")

    results = {
        "mode": mode,
        "param_names": names,
        "data": {**data_desc, "simulator_config": meta["simulator_config"],
                 "n_train_rows": n_tr, "slices_per_row": int(x_tr.shape[1]), "n_test": n_te,
                 "slice_shape": list(x_te.shape[1:])},
        "prior": {"type": "box_uniform", "low": sim.prior.low.tolist(),
                  "high": sim.prior.high.tolist()},
        "settings": {k: v for k, v in cfg.items()},
        "torch_threads": torch.get_num_threads(),
        "simulator_cpu_seconds_per_row": sim_per_row,
        # train_seconds: CPU seconds where measured here or recorded so, else the run's wall s
        "surrogate": {"run_dir": str(surrogate_dir), "model_type": model.model_type, **record,
                      "rows_sampled": n_sur, "sample_cpu_seconds": sample_cpu},
        "routes": routes,
        "cnn_over_ps_width": (np.asarray(routes["a"]["posterior_std_mean"])
                              / np.asarray(routes["a'"]["posterior_std_mean"])).tolist(),
        "corner_test_row": {"index": i, "theta": theta_te[i].tolist()},
        "figures": [str(corner), str(coverage_png)],
        "provenance": provenance(modules=("torch", "zuko")),
    }  # fmt: skip
    text = json.dumps(results, indent=1)
    (out / "results.json").write_text(text)
    if not args.quick and not resized:  # the kept copy is the protocol's, not a test's
        (results_dir("cosmology_inference") / "results.json").write_text(text)
    print_table(results)
    print(f"results in {out / 'results.json'}; figures {corner.name}, {coverage_png.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
