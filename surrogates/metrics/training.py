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

__all__ = ["ClassifierFit", "fit_binary_classifier", "mlp", "predict_logits", "resolve_device"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Maps ``"auto"``/``None`` to CUDA when available, else CPU; passes anything else through."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def mlp(
    in_features: int,
    hidden: Sequence[int],
    *,
    activation: type[nn.Module] = nn.ReLU,
    dropout: float = 0.0,
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """A dense network with one output logit, initialized from ``generator``.

    Weights and biases are drawn from U(-1/√fan_in, 1/√fan_in), the PyTorch default scale, but
    from the given generator instead of the global one.

    Args:
        in_features: input dimension.
        hidden: widths of the hidden layers.
        activation: activation class placed after every hidden layer.
        dropout: dropout probability after every hidden activation.
        generator: source of the initial weights (CPU); ``None`` uses torch's global generator.
    """
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), activation()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, 1))
    net = nn.Sequential(*layers)
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, nn.Linear):
                bound = layer.in_features**-0.5
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
    return net


@dataclass
class ClassifierFit:
    """A fitted classifier and its training record.

    Attributes:
        model: the network with the weights of the best validation epoch, in eval mode.
        best_epoch: index (from 0) of the epoch whose weights were kept.
        epochs_run: number of epochs trained before stopping.
        val_loss: validation binary cross-entropy after each epoch.
        val_accuracy: validation accuracy after each epoch.
    """

    model: nn.Module
    best_epoch: int
    epochs_run: int
    val_loss: list[float]
    val_accuracy: list[float]


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, batch_size: int = 65536) -> Tensor:
    """Logits of ``model`` on ``x`` (N, D) in batches, shape (N,)."""
    model.eval()
    if len(x) == 0:
        return x.new_zeros(0)
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

    Args:
        model: network mapping (B, D) to (B, 1) logits; trained in place.
        x_train: training inputs (N, D).
        y_train: training labels (N,), float.
        x_val: validation inputs (M, D), used for model selection and early stopping.
        y_val: validation labels (M,).
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
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    n = len(x_train)
    best_score, best_epoch = float("inf"), 0
    best_state = copy.deepcopy(model.state_dict())
    val_loss: list[float] = []
    val_acc: list[float] = []
    epoch = 0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n, generator=generator).to(x_train.device)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x_train[idx]).squeeze(-1), y_train[idx])
            loss.backward()
            optimizer.step()
        logits = predict_logits(model, x_val)
        vl = float(loss_fn(logits, y_val))
        va = float(((logits > 0).to(y_val.dtype) == y_val).to(torch.float64).mean())
        val_loss.append(vl)
        val_acc.append(va)
        score = vl if select == "loss" else -va
        if score < best_score:
            best_score, best_epoch = score, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif patience is not None and epoch - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return ClassifierFit(model, best_epoch, epoch + 1, val_loss, val_acc)
