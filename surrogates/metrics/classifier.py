r"""Classifier AUC as in the Fast Calorimeter Simulation Challenge 2022.

A dense network learns to separate reference showers (label 0) from candidate showers (label 1).
The data are split 60/20/20 into training, validation and test sets; the weights of the epoch with
the best validation accuracy are kept; the statistic is the ROC AUC on the test set. AUC 0.5 means
the classifier cannot tell the samples apart, 1.0 that it separates them perfectly.

The challenge also reports a Jensen–Shannon divergence estimated from the classifier: after
calibrating its outputs on the validation set (isotonic regression), the optimal classifier's
binary cross-entropy satisfies :math:`\mathrm{BCE} = \log 2 - \mathrm{JSD}`, so

.. math:: \widehat{\mathrm{JSD}} = 1 - \mathrm{BCE}_\text{test} / \log 2 \in [0, 1]

in bits (0: identical, 1: disjoint). References: Krause et al., *CaloChallenge 2022: A Community
Challenge for Fast Calorimeter Simulation*, arXiv:2410.21611; Krause & Shih, *CaloFlow*,
arXiv:2106.05285.

Inputs: :func:`low_level_inputs` (``log10 E_inc`` and ``voxel / E_inc``) or any feature matrix, for
instance the high-level features stacked by :func:`stack_features`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..device import resolve_device
from ..nn import mlp
from .training import fit_binary_classifier, predict_logits

__all__ = [
    "ClassifierResult",
    "classifier_auc",
    "isotonic_calibration",
    "low_level_inputs",
    "roc_auc",
    "stack_features",
]


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    r"""Area under the ROC curve by the rank (Mann–Whitney U) formula.

    .. math:: \mathrm{AUC} = \frac{R_1 - n_1 (n_1 + 1) / 2}{n_1 n_0}

    where :math:`R_1` is the sum of the (mid-)ranks of the positive scores; ties count one half.
    It equals the probability that a random positive scores above a random negative.

    Args:
        scores: classifier outputs (N,); larger means "more likely label 1".
        labels: 0/1 labels (N,).
    """
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(bool)
    n1 = int(labels.sum())
    n0 = len(labels) - n1
    if n1 == 0 or n0 == 0:
        raise ValueError("roc_auc needs both labels present")
    ranks = rankdata(scores)  # average ranks for ties
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def isotonic_calibration(scores: np.ndarray, labels: np.ndarray):
    """Fits a non-decreasing map from scores to P(label = 1) (pool-adjacent-violators).

    Args:
        scores: classifier outputs of the calibration set (N,).
        labels: their 0/1 labels (N,).

    Returns:
        A function mapping new scores to calibrated probabilities (piecewise constant, flat
        beyond the calibration range).
    """
    order = np.argsort(scores, kind="stable")
    s = np.asarray(scores, dtype=np.float64)[order]
    y = np.asarray(labels, dtype=np.float64)[order]
    # Blocks of (sum of y, count, largest score); merged while they violate monotonicity.
    sums: list[float] = []
    counts: list[float] = []
    tops: list[float] = []
    for yi, si in zip(y, s, strict=True):
        sums.append(yi)
        counts.append(1.0)
        tops.append(si)
        while len(sums) > 1 and sums[-2] / counts[-2] >= sums[-1] / counts[-1]:
            last_sum, last_count, last_top = sums.pop(), counts.pop(), tops.pop()
            sums[-1] += last_sum
            counts[-1] += last_count
            tops[-1] = last_top
    values = np.asarray(sums) / np.asarray(counts)
    edges = np.asarray(tops)

    def calibrate(new_scores: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(edges, np.asarray(new_scores, dtype=np.float64), side="left")
        return values[np.minimum(idx, len(values) - 1)]

    return calibrate


def low_level_inputs(showers: np.ndarray, e_inc: np.ndarray) -> np.ndarray:
    """The challenge's low-level classifier inputs: ``[log10 E_inc, voxels / E_inc]``.

    Args:
        showers: voxel energies (N, V), same unit as ``e_inc``.
        e_inc: incident energies (N,) or (N, 1), positive.

    Returns:
        Array (N, V + 1), float64.
    """
    e = np.asarray(e_inc, dtype=np.float64).reshape(-1, 1)
    x = np.asarray(showers, dtype=np.float64).reshape(len(e), -1)
    if np.any(e <= 0):
        raise ValueError("incident energies must be positive")
    return np.concatenate([np.log10(e), x / e], axis=1)


def stack_features(features: Mapping[str, np.ndarray], names: Sequence[str] | None = None):
    """Stacks a dict of per-event features into a matrix (N, F); multi-column entries are flattened.

    Returns:
        ``(matrix, column_names)``.
    """
    names = list(features) if names is None else list(names)
    cols, labels = [], []
    for name in names:
        v = np.asarray(features[name], dtype=np.float64)
        v = v.reshape(len(v), -1)
        cols.append(v)
        labels += [name] if v.shape[1] == 1 else [f"{name}[{i}]" for i in range(v.shape[1])]
    return np.concatenate(cols, axis=1), labels


@dataclass
class ClassifierResult:
    """Outcome of :func:`classifier_auc`.

    Attributes:
        auc: test ROC AUC (0.5: indistinguishable).
        jsd: Jensen–Shannon divergence estimate in bits from the calibrated test BCE, in [0, 1].
        accuracy: test accuracy of the uncalibrated classifier at threshold 0.5.
        best_epoch: epoch whose weights were used.
        n_train: training samples per class.
        n_test: test samples in total.
    """

    auc: float
    jsd: float
    accuracy: float
    best_epoch: int
    n_train: int
    n_test: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def classifier_auc(
    reference: np.ndarray,
    candidate: np.ndarray,
    *,
    seed: int = 0,
    hidden: Sequence[int] = (512, 512),
    dropout: float = 0.0,
    epochs: int = 50,
    batch_size: int = 1000,
    lr: float = 2e-4,
    patience: int | None = 10,
    split: tuple[float, float, float] = (0.6, 0.2, 0.2),
    device: str | torch.device | None = "cpu",
) -> ClassifierResult:
    """Trains a dense classifier between two samples and scores it on a held-out test set.

    The defaults follow the challenge's evaluation: two hidden layers of 512 with leaky ReLU,
    Adam at learning rate 2·10⁻⁴, batches of 1000, up to 50 epochs, 60/20/20 split. Inputs are
    z-scored with the mean and standard deviation of the reference part of the training set.
    Classes are balanced by subsampling the larger sample.

    Args:
        reference: reference inputs (N, D), e.g. :func:`low_level_inputs` of simulated showers.
        candidate: candidate inputs (M, D).
        seed: seeds subsampling, split, initial weights and batch order.
        hidden: hidden layer widths.
        dropout: dropout probability after each hidden layer.
        epochs: maximum epochs.
        batch_size: mini-batch size.
        lr: Adam learning rate.
        patience: stop after this many epochs without a better validation accuracy.
        split: fractions for training, validation and test.
        device: torch device (``"auto"`` picks CUDA when present).

    Returns:
        A :class:`ClassifierResult`.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    ref = ref.reshape(len(ref), -1)
    cand = cand.reshape(len(cand), -1)
    if ref.shape[1] != cand.shape[1]:
        raise ValueError(f"reference has {ref.shape[1]} features, candidate {cand.shape[1]}")
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(cand))):
        raise ValueError("classifier inputs contain NaN or infinite values")
    if len(split) != 3 or not np.isclose(sum(split), 1.0) or min(split) <= 0:
        raise ValueError("split must be three positive fractions summing to one")
    rng = np.random.default_rng(seed)
    n = min(len(ref), len(cand))
    ref = ref[rng.permutation(len(ref))[:n]]
    cand = cand[rng.permutation(len(cand))[:n]]
    n_tr = round(split[0] * n)
    n_va = round(split[1] * n)
    if n_tr < 2 or n_va < 1 or n - n_tr - n_va < 1:
        raise ValueError(f"too few samples ({n} per class) for a train/validation/test split")

    mean = ref[:n_tr].mean(axis=0)
    std = ref[:n_tr].std(axis=0)
    std[std == 0] = 1.0

    def part(lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.concatenate([ref[lo:hi], cand[lo:hi]])
        y = np.concatenate([np.zeros(hi - lo), np.ones(hi - lo)])
        return (
            torch.from_numpy(((x - mean) / std).astype(np.float32)).to(dev),
            torch.from_numpy(y.astype(np.float32)).to(dev),
        )

    dev = resolve_device(device)
    x_tr, y_tr = part(0, n_tr)
    x_va, y_va = part(n_tr, n_tr + n_va)
    x_te, y_te = part(n_tr + n_va, n)
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    model = mlp(ref.shape[1], hidden, 1, activation=nn.LeakyReLU, dropout=dropout, generator=gen)
    fit = fit_binary_classifier(
        model.to(dev),
        x_tr,
        y_tr,
        x_va,
        y_va,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        select="accuracy",
        generator=gen,
    )
    s_va = predict_logits(fit.model, x_va).double().cpu().numpy()
    s_te = predict_logits(fit.model, x_te).double().cpu().numpy()
    l_va = y_va.cpu().numpy()
    l_te = y_te.cpu().numpy()
    auc = roc_auc(s_te, l_te)
    # A block that is pure on the validation set is not certain on the test set: bound the
    # calibrated probabilities by the rule of succession, or one such event costs ~16 nats.
    eps = 1.0 / (len(l_va) + 2)
    p = np.clip(isotonic_calibration(s_va, l_va)(s_te), eps, 1 - eps)
    bce = -np.mean(l_te * np.log(p) + (1 - l_te) * np.log1p(-p))
    jsd = float(np.clip(1.0 - bce / np.log(2.0), 0.0, 1.0))
    accuracy = float(np.mean((s_te > 0) == (l_te > 0.5)))
    return ClassifierResult(auc, jsd, accuracy, fit.best_epoch, n_tr, len(l_te))
