r"""Classifier two-sample test (C2ST) as used in the simulation-based inference benchmark.

A classifier is trained to tell reference samples (label 0) from candidate samples (label 1); its
cross-validated accuracy is the statistic. Accuracy 0.5 means the classifier cannot separate the two
samples (they look like one distribution), 1.0 means it separates them perfectly.

Protocol (following Lopez-Paz & Oquab, *Revisiting classifier two-sample tests*, ICLR 2017, and
Lueckmann et al., *Benchmarking simulation-based inference*, AISTATS 2021):

* classes are balanced by subsampling the larger sample;
* inputs are z-scored with the mean and standard deviation of the *reference* sample;
* an MLP with two hidden layers of width :math:`10\,d` and ReLU activations;
* stratified :math:`K`-fold cross-validation (``K = 5``); in each fold 10 % of the training part is
  held out to choose the epoch whose weights are kept (highest validation accuracy);
* Adam for a fixed 500 epochs (batches of 1,024, rate 10⁻²), the folds trained side by side;
* the result is the mean test accuracy over the folds.

A fixed length rather than stopping after ``patience`` epochs without improvement (as
scikit-learn's ``MLPClassifier`` in sbibm does), because a patience rule stops at validation-noise
peaks and has less power: ``docs/decisions/004-c2st-protocol.md``.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(2000, 2)), rng.normal(size=(2000, 2))
    >>> 0.45 < c2st(a, b, seed=0) < 0.55
    True
"""

from __future__ import annotations

import numpy as np
import torch

from ..device import resolve_device
from .training import StackedMLP, fit_binary_classifier, predict_logits

__all__ = ["c2st", "c2st_folds"]


def _as_2d(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (N, D), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def c2st_folds(
    reference: np.ndarray,
    candidate: np.ndarray,
    *,
    seed: int = 0,
    n_folds: int = 5,
    max_samples: int | None = None,
    hidden_factor: int = 10,
    epochs: int = 500,
    batch_size: int = 1024,
    lr: float = 1e-2,
    patience: int | None = None,
    device: str | torch.device | None = "cpu",
) -> np.ndarray:
    """Test accuracy of each cross-validation fold; see :func:`c2st` for the arguments.

    Returns:
        Array of shape (n_folds,).
    """
    ref = _as_2d(reference, "reference")
    cand = _as_2d(candidate, "candidate")
    if ref.shape[1] != cand.shape[1]:
        raise ValueError(f"reference has {ref.shape[1]} features, candidate {cand.shape[1]}")
    if n_folds < 2:
        raise ValueError("n_folds must be at least 2")
    rng = np.random.default_rng(seed)
    n = min(len(ref), len(cand))
    if max_samples is not None:
        n = min(n, max_samples)
    if n < 2 * n_folds:
        raise ValueError(f"need at least {2 * n_folds} samples per class, got {n}")
    n -= n % n_folds  # equal folds, so that they train side by side
    ref = ref[rng.permutation(len(ref))[:n]]
    cand = cand[rng.permutation(len(cand))[:n]]

    mean = ref.mean(axis=0)
    std = ref.std(axis=0)
    std[std == 0] = 1.0  # constant features carry no information; leave them unscaled
    x = np.concatenate([(ref - mean) / std, (cand - mean) / std]).astype(np.float32)
    y = np.concatenate([np.zeros(n), np.ones(n)]).astype(np.float32)

    # Stratified folds: each class is shuffled and cut into n_folds equal parts.
    fold_of = np.empty(2 * n, dtype=np.int64)
    for offset in (0, n):
        fold_of[offset + rng.permutation(n)] = np.arange(n) % n_folds

    dev = resolve_device(device)
    xt = torch.from_numpy(x).to(dev)
    yt = torch.from_numpy(y).to(dev)
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    dim = x.shape[1]
    parts: list[list[np.ndarray]] = [[], [], []]  # train, validation, test rows of each fold
    for k in range(n_folds):
        test = np.flatnonzero(fold_of == k)
        train = np.flatnonzero(fold_of != k)
        # 10 % of the training part, stratified, decides when to stop.
        train = train[rng.permutation(len(train))]
        is_val = np.zeros(len(train), dtype=bool)
        for label in (0, 1):
            members = np.flatnonzero(y[train] == label)
            is_val[members[: max(1, len(members) // 10)]] = True
        for part, rows in zip(parts, (train[~is_val], train[is_val], test), strict=True):
            part.append(rows)
    tr, va, te = (torch.from_numpy(np.stack(p)).to(dev) for p in parts)
    model = StackedMLP(n_folds, dim, (hidden_factor * dim,) * 2, generator=gen).to(dev)
    fit = fit_binary_classifier(
        model,
        xt[tr],
        yt[tr],
        xt[va],
        yt[va],
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        select="accuracy",
        generator=gen,
    )
    pred = (predict_logits(fit.model, xt[te]) > 0).to(yt.dtype)
    return (pred == yt[te]).to(torch.float64).mean(1).cpu().numpy()


def c2st(
    reference: np.ndarray,
    candidate: np.ndarray,
    *,
    seed: int = 0,
    n_folds: int = 5,
    max_samples: int | None = None,
    hidden_factor: int = 10,
    epochs: int = 500,
    batch_size: int = 1024,
    lr: float = 1e-2,
    patience: int | None = None,
    device: str | torch.device | None = "cpu",
) -> float:
    """Cross-validated accuracy of a classifier separating two samples.

    Args:
        reference: samples (N, D) defining the z-scoring (e.g. reference posterior or simulator).
        candidate: samples (M, D) to compare (e.g. surrogate or estimated posterior).
        seed: seeds the subsampling, the folds, the initial weights and the batch order.
        n_folds: number of cross-validation folds.
        max_samples: use at most this many samples per class (``None``: all of the smaller one).
        hidden_factor: hidden width is ``hidden_factor * D`` (two hidden layers).
        epochs: maximum epochs per fold.
        batch_size: Adam mini-batch size.
        lr: Adam learning rate.
        patience: epochs without validation improvement before stopping (``None``: train all
            ``epochs``).
        device: torch device (``"auto"`` picks CUDA when present).

    Returns:
        Mean test accuracy in [0, 1]; 0.5 for indistinguishable samples.
    """
    return float(
        np.mean(
            c2st_folds(
                reference,
                candidate,
                seed=seed,
                n_folds=n_folds,
                max_samples=max_samples,
                hidden_factor=hidden_factor,
                epochs=epochs,
                batch_size=batch_size,
                lr=lr,
                patience=patience,
                device=device,
            )
        )
    )
