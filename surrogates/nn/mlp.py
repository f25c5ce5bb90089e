r"""The one multilayer perceptron builder of the package.

Every dense network (flow embeddings, observation embeddings, evaluation classifiers) is built
by :func:`mlp`, so layer order, state-dict keys and initialization are the same everywhere.

Example:
    >>> import torch
    >>> net = mlp(3, (16, 16), 2, generator=torch.Generator().manual_seed(0))
    >>> net(torch.randn(5, 3)).shape
    torch.Size([5, 2])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["mlp"]


def mlp(
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    *,
    activation: type[nn.Module] = nn.ReLU,
    dropout: float = 0.0,
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    r"""A dense network ``[Linear, activation, (Dropout)] * len(hidden)`` then a final ``Linear``.

    No activation follows the last layer. With ``generator=None`` the layers keep PyTorch's
    default initialization (drawn from the global generator, so a network built under a given
    global seed is the same as one built layer by layer). With a generator, every weight and
    bias is then redrawn from it, layer by layer, weight before bias:

    .. math::
        W, b \sim \mathcal{U}\left(-n_\text{in}^{-1/2}, n_\text{in}^{-1/2}\right),

    PyTorch's default scale, drawn from an explicit source of randomness.

    Args:
        in_features: input dimension.
        hidden: widths of the hidden layers (may be empty: one linear layer).
        out_features: output dimension.
        activation: activation class placed after every hidden layer.
        dropout: dropout probability after every hidden activation (0: no dropout layers).
        generator: source of the initial weights (a CPU generator), or ``None``.

    Returns:
        The network; its linear layers sit at the indices a hand-built ``nn.Sequential`` of the
        same layers would give them, so state-dict keys are ``"0.weight"``, ``"2.weight"``, ...
        (``"0.weight"``, ``"3.weight"``, ... with dropout).

    Example:
        >>> net = mlp(4, (8,), 1, activation=nn.GELU)
        >>> [type(m).__name__ for m in net]
        ['Linear', 'GELU', 'Linear']
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    layers: list[nn.Module] = []
    width = int(in_features)
    for h in hidden:
        layers += [nn.Linear(width, int(h)), activation()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = int(h)
    layers.append(nn.Linear(width, int(out_features)))
    net = nn.Sequential(*layers)
    if generator is not None:
        with torch.no_grad():
            for layer in net:
                if isinstance(layer, nn.Linear):
                    bound = layer.in_features**-0.5
                    layer.weight.uniform_(-bound, bound, generator=generator)
                    layer.bias.uniform_(-bound, bound, generator=generator)
    return net
