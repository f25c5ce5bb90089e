"""The one small training loop shared by the evaluation classifiers (C2ST and classifier AUC).

Why not the package's shared trainer: an evaluation classifier follows a fixed, published protocol
(architecture, optimizer, split, early stopping), is thrown away after scoring, and must never write
a checkpoint or resume. Keeping its loop here, written once, keeps the protocol visible in one place
and the metrics independent of changes to how surrogates are trained.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..nn import mlp

__all__ = [
    "ClassifierFit",
    "StackedMLP",
    "fit_binary_classifier",
    "predict_logits",
]


class StackedMLP(nn.Module):
    """``n_members`` independent ReLU networks of one logit, evaluated in one batched product.

    Member k maps ``x[k]`` of shape (B, D) to logits (B,); the input is (K, B, D), the output
    (K, B). Cross-validation folds trained side by side this way cost about as much as one fold:
    at these widths the time goes to launching operations, not to arithmetic.

    Args:
        n_members: number of networks K.
        in_features: input dimension D.
        hidden: widths of the hidden layers.
        generator: source of the initial weights (CPU), drawn member by member as
            :func:`surrogates.nn.mlp` draws them.
    """

    def __init__(
        self,
        n_members: int,
        in_features: int,
        hidden: Sequence[int],
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        nets = [mlp(in_features, hidden, 1, generator=generator) for _ in range(n_members)]
        linears = [[m for m in net if isinstance(m, nn.Linear)] for net in nets]
        self.weights = nn.ParameterList(
            torch.stack([ls[i].weight.detach().T for ls in linears]) for i in range(len(linears[0]))
        )
        self.biases = nn.ParameterList(
            torch.stack([ls[i].bias.detach()[None] for ls in linears])
            for i in range(len(linears[0]))
        )

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = torch.relu(x)
        return x.squeeze(-1)


@dataclass
class ClassifierFit:
    """A fitted classifier and its training record.

    For a :class:`StackedMLP` every field but ``model`` and ``epochs_run`` holds one entry per
    member: ``best_epoch`` a list, the histories lists of per-member lists.

    Attributes:
        model: the network with the weights of the best validation epoch, in eval mode.
        best_epoch: index (from 0) of the epoch whose weights were kept.
        epochs_run: number of epochs trained before stopping.
        val_loss: validation binary cross-entropy after each epoch.
        val_accuracy: validation accuracy after each epoch.
    """

    model: nn.Module
    best_epoch: int | list[int]
    epochs_run: int
    val_loss: list[float] | list[list[float]]
    val_accuracy: list[float] | list[list[float]]


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, batch_size: int = 65536) -> Tensor:
    """Logits of ``model`` on ``x`` in batches: (N, D) to (N,), or (K, N, D) to (K, N) for a
    :class:`StackedMLP`."""
    model.eval()
    if x.shape[-2] == 0:
        return x.new_zeros(x.shape[:-1])
    if isinstance(model, StackedMLP):
        return torch.cat(
            [model(x[:, i : i + batch_size]) for i in range(0, x.shape[1], batch_size)], 1
        )
    chunks = [model(x[i : i + batch_size]).squeeze(-1) for i in range(0, len(x), batch_size)]
    return torch.cat(chunks)


def fit_binary_classifier(
    model: nn.Module,
    x_train: Tensor,
    y_train: Tensor,
    x_val: Tensor,
    y_val: Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    patience: int | None = None,
    select: str = "loss",
    weight_decay: float = 0.0,
    generator: torch.Generator,
) -> ClassifierFit:
    """Trains ``model`` with Adam on binary cross-entropy, keeping the best validation epoch.

    Tensors must already sit on the model's device. Labels are 0 (reference) and 1 (candidate).
    A :class:`StackedMLP` of K members takes a leading K axis on every tensor; each member keeps
    its own best epoch and patience, and training ends when every member has stopped. Adam acts
    elementwise and the loss is the sum of the members' mean losses, so no member's data or
    labels affect another member's weights.

    Args:
        model: network mapping (B, D) to (B, 1) logits, or a :class:`StackedMLP`; trained in
            place.
        x_train: training inputs (N, D), or (K, N, D).
        y_train: training labels (N,) or (K, N), float.
        x_val: validation inputs (M, D) or (K, M, D), used for model selection and early
            stopping.
        y_val: validation labels (M,) or (K, M).
        epochs: maximum number of passes over the training set.
        batch_size: mini-batch size.
        lr: Adam learning rate.
        patience: stop after this many epochs without improvement (``None``: never stop early).
        select: ``"loss"`` (lowest validation BCE) or ``"accuracy"`` (highest validation accuracy).
        weight_decay: Adam weight decay.
        generator: the only source of randomness for the mini-batch order (on the CPU).

    Returns:
        The model with the best weights restored, and the validation history.
    """
    if select not in ("loss", "accuracy"):
        raise ValueError(f"select must be 'loss' or 'accuracy', got {select!r}")
    stacked = isinstance(model, StackedMLP)
    if not stacked:
        x_train, y_train, x_val, y_val = x_train[None], y_train[None], x_val[None], y_val[None]

    def forward(x: Tensor) -> Tensor:
        return model(x) if stacked else model(x[0]).squeeze(-1)[None]

    # foreach: one kernel per step for all members' tensors (the single-network path unchanged)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=lr, weight_decay=weight_decay, foreach=True if stacked else None
    )
    k, n = y_train.shape
    members = torch.arange(k, device=x_train.device)[:, None]
    best_score = torch.full((k,), float("inf"), dtype=torch.float64)
    best_epoch = torch.zeros(k, dtype=torch.long)
    active = torch.ones(k, dtype=torch.bool)  # members still within their patience
    best_state = copy.deepcopy(model.state_dict())
    val_loss: list[list[float]] = []
    val_acc: list[list[float]] = []
    epoch = 0
    for epoch in range(epochs):
        model.train()
        order = torch.stack([torch.randperm(n, generator=generator) for _ in range(k)])
        order = order.to(x_train.device)
        for i in range(0, n, batch_size):
            idx = order[:, i : i + batch_size]
            optimizer.zero_grad(set_to_none=True)
            logits = forward(x_train[members, idx])
            # members see equal batch sizes: k times the mean is the sum of their means
            loss = nn.functional.binary_cross_entropy_with_logits(logits, y_train[members, idx])
            (loss * k).backward()
            optimizer.step()
        logits = predict_logits(model, x_val) if stacked else predict_logits(model, x_val[0])[None]
        vl = nn.functional.binary_cross_entropy_with_logits(logits, y_val, reduction="none")
        vl = vl.mean(1).double().cpu()
        va = ((logits > 0).to(y_val.dtype) == y_val).double().mean(1).cpu()
        val_loss.append(vl.tolist())
        val_acc.append(va.tolist())
        score = vl if select == "loss" else -va
        better = (score < best_score) & active
        if better.any():
            best_score = torch.where(better, score, best_score)
            best_epoch[better] = epoch
            if stacked:
                keep = better.to(x_train.device)
                for name, value in model.state_dict().items():
                    best_state[name][keep] = value[keep]
            else:
                best_state = copy.deepcopy(model.state_dict())
        if patience is not None:
            active &= better | (epoch - best_epoch < patience)
            if not active.any():
                break
    model.load_state_dict(best_state)
    model.eval()
    if stacked:
        return ClassifierFit(
            model,
            best_epoch.tolist(),
            epoch + 1,
            [list(v) for v in zip(*val_loss, strict=True)],
            [list(v) for v in zip(*val_acc, strict=True)],
        )
    return ClassifierFit(
        model, int(best_epoch[0]), epoch + 1, [v[0] for v in val_loss], [v[0] for v in val_acc]
    )
