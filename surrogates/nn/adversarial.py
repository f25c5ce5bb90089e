r"""Building blocks of adversarial training: minibatch standard deviation, the gradient penalty,
sample statistics and truncated latents (torch only).

* :class:`MinibatchStd` -- appends to every row the mean over features of the standard
  deviation within its group of rows, so a critic sees the diversity of a batch and can
  penalize a collapsed generator (Karras et al., 2018, *Progressive growing of GANs*,
  arXiv:1710.10196, sec. 3).
* :func:`gradient_penalty` -- the two-sided penalty of WGAN-GP (Gulrajani et al., 2017,
  arXiv:1704.00028, eq. 3) on points between real and generated rows.
* :func:`energy_distance` -- the unbiased energy distance between two samples (Székely & Rizzo,
  2013, *Energy statistics*, J. Stat. Plan. Inference 143:1249), a two-sample statistic with no
  tuning parameter.
* :func:`wasserstein_1d` -- the 1-d Wasserstein-1 distance of two equal-size samples.
* :func:`power_spectrum_error` -- how far two sets of 2-d fields are apart in their mean power
  spectrum (a field GAN's validation statistic).
* :func:`truncated_normal` -- standard-normal latents truncated to [-t, t] (the truncation trick,
  Brock et al., 2019, arXiv:1809.11096), drawn by the inverse CDF: one uniform per component.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x, y = torch.randn(200, 2, generator=g), torch.randn(200, 2, generator=g) + 3.0
    >>> bool(energy_distance(x, y) > 1.0), bool(energy_distance(x, x[torch.randperm(200)]) < 0.1)
    (True, True)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .embeddings import power_spectrum

__all__ = [
    "LeakyReLU02",
    "MinibatchStd",
    "energy_distance",
    "gradient_penalty",
    "power_spectrum_error",
    "truncated_normal",
    "wasserstein_1d",
]


class LeakyReLU02(nn.LeakyReLU):
    """LeakyReLU with slope 0.2 for negative inputs (the usual GAN activation, Radford et al.,
    2016, arXiv:1511.06434), as a class for :func:`~surrogates.nn.mlp`."""

    def __init__(self) -> None:
        super().__init__(0.2)


class MinibatchStd(nn.Module):
    r"""Appends the minibatch standard deviation to every row (Karras et al., 2018).

    Rows are split into consecutive groups of ``group_size`` (a last group of one row joins the
    one before it). For a group G and feature j,
    :math:`s_j = \sqrt{\mathrm{Var}_{i \in G}[h_{ij}] + 10^{-8}}`; every row of G gets the
    extra feature :math:`\bar s = \frac{1}{H} \sum_j s_j`. A batch of near-identical rows (a
    collapsed generator) has a small :math:`\bar s`, which the critic can tell from real batches.
    Rows in one group must come from one source (all real or all generated).

    Args:
        group_size: rows per group (at least 2).

    Example:
        >>> h = torch.cat([torch.zeros(4, 3), torch.randn(4, 3)])
        >>> out = MinibatchStd(4)(h)
        >>> out.shape, float(out[0, -1]) < 1e-3 < float(out[-1, -1])
        (torch.Size([8, 4]), True)
    """

    def __init__(self, group_size: int = 4):
        super().__init__()
        if group_size < 2:
            raise ValueError(f"group_size must be at least 2, got {group_size}")
        self.group_size = int(group_size)

    def forward(self, h: Tensor) -> Tensor:
        n, size = len(h), self.group_size
        if n < 2:
            return torch.cat([h, torch.zeros_like(h[:, :1])], dim=1)
        if n % size == 0:  # equal groups: a view (about half the time of the general path)
            hg = h.reshape(n // size, size, -1)
            var = (hg - hg.mean(dim=1, keepdim=True)).square().mean(dim=1)
            s = torch.sqrt(var + 1e-8).mean(dim=1).repeat_interleave(size)
            return torch.cat([h, s[:, None]], dim=1)
        last = (n - 2) // self.group_size  # a last group of one row joins the one before
        group = (torch.arange(n, device=h.device) // self.group_size).clamp_max(last)
        groups = last + 1
        count = torch.zeros(groups, dtype=h.dtype, device=h.device).index_add_(
            0, group, torch.ones(n, dtype=h.dtype, device=h.device)
        )[:, None]
        mean = torch.zeros(groups, h.shape[1], dtype=h.dtype, device=h.device)
        mean = mean.index_add(0, group, h) / count
        dev = (h - mean[group]) ** 2
        var = torch.zeros_like(mean).index_add(0, group, dev) / count
        s = torch.sqrt(var + 1e-8).mean(dim=1)
        return torch.cat([h, s[group][:, None]], dim=1)


def gradient_penalty(
    critic: Callable[[Tensor, Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    c: Tensor,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""The WGAN-GP penalty :math:`E[(\lVert \nabla_{\hat y} D(\hat y, c) \rVert_2 - 1)^2]`.

    With :math:`\hat y = \epsilon y_\text{real} + (1 - \epsilon) y_\text{fake}`,
    :math:`\epsilon \sim U(0, 1)` per row (drawn on the CPU from ``generator``). The gradient is
    that of :math:`\sum_i D(\hat y_i, c_i)` with respect to each :math:`\hat y_i` (for a critic
    with :class:`MinibatchStd` it includes what a row changes in the others' scores, as in
    Karras et al.), with ``create_graph=True`` so the penalty trains the critic. Multiply by
    λ (10 in Gulrajani et al.) in the critic's loss.

    Args:
        critic: ``critic(y, c)`` -> one score per row, shape (N,).
        real, fake: rows of the same shape, (N, features) or e.g. fields (N, C, H, W); ``fake``
            detached from its generator. The norm is over all axes but the first.
        c: the rows' conditions (N, context), not differentiated.
        generator: source of ε.

    Returns:
        The penalty, a scalar.
    """
    # one ε per row, broadcast over the row's other axes: fields (N, C, H, W) work as vectors
    shape = (len(real),) + (1,) * (real.dim() - 1)
    eps = torch.rand(shape, generator=generator, dtype=real.dtype).to(real.device)
    y = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    with torch.enable_grad():
        score = critic(y, c)
        (grad,) = torch.autograd.grad(score.sum(), y, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def _mean_off_diagonal(d: Tensor) -> Tensor:
    n = len(d)
    return d.sum() / (n * (n - 1))  # the diagonal is zero


def energy_distance(x: Tensor, y: Tensor) -> Tensor:
    r"""The unbiased energy distance between samples x (m, d) and y (n, d):

    .. math::
        \frac{2}{mn} \sum_{i,j} \lVert x_i - y_j \rVert
        - \frac{1}{m(m-1)} \sum_{i \ne j} \lVert x_i - x_j \rVert
        - \frac{1}{n(n-1)} \sum_{i \ne j} \lVert y_i - y_j \rVert.

    Its expectation is :math:`2 E\lVert X - Y \rVert - E\lVert X - X' \rVert - E\lVert Y - Y'
    \rVert \ge 0`, zero only when the two distributions are equal (whatever m and n, so values
    from batches of different sizes are comparable); an estimate may be slightly negative.
    Computed in float64.

    Args:
        x, y: samples with at least two rows each.
    """
    if len(x) < 2 or len(y) < 2:
        raise ValueError("energy_distance needs at least two rows in each sample")
    x, y = x.flatten(1).double(), y.flatten(1).double()
    return (
        2 * torch.cdist(x, y).mean()
        - _mean_off_diagonal(torch.cdist(x, x))
        - _mean_off_diagonal(torch.cdist(y, y))
    )


def wasserstein_1d(a: Tensor, b: Tensor) -> Tensor:
    r"""The Wasserstein-1 distance of two empirical 1-d distributions of equal size n:
    :math:`\frac{1}{n} \sum_i |a_{(i)} - b_{(i)}|` over the sorted values (differentiable).

    Example:
        >>> float(wasserstein_1d(torch.tensor([0.0, 1.0]), torch.tensor([3.0, 2.0])))
        2.0
    """
    if a.shape != b.shape or a.dim() != 1:
        raise ValueError(f"wasserstein_1d needs two 1-d samples of one size, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")  # fmt: skip
    return (torch.sort(a).values - torch.sort(b).values).abs().mean()


def truncated_normal(
    shape: tuple[int, ...],
    bound: float,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""Standard-normal draws conditioned on :math:`|z| \le` ``bound``, on the CPU:
    :math:`z = \Phi^{-1}(\Phi(-t) + u (\Phi(t) - \Phi(-t)))`, :math:`u \sim U(0, 1)`.

    Example:
        >>> z = truncated_normal((10_000,), 0.5, generator=torch.Generator().manual_seed(0))
        >>> float(z.abs().max()) <= 0.5
        True
    """
    if not bound > 0:
        raise ValueError(f"the truncation bound must be positive, got {bound}")
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    t = torch.tensor(float(bound), dtype=torch.float64)
    lo, hi = torch.special.ndtr(-t), torch.special.ndtr(t)
    z = torch.special.ndtri((lo + u * (hi - lo)).clamp(1e-300, 1 - 1e-16))
    return z.clamp(-t, t).to(dtype)


def power_spectrum_error(real: Tensor, fake: Tensor) -> Tensor:
    r"""Mean over the radial k bins (fundamental to Nyquist, bins holding modes) of
    :math:`|\log \bar P_\text{fake}(k) / \bar P_\text{real}(k)|`, with :math:`\bar P` the mean
    power spectrum (:func:`~surrogates.nn.embeddings.power_spectrum`) of all fields of a set.

    Args:
        real, fake: 2-d fields (N, H, W) and (M, H, W), computed in float64.

    Example:
        >>> import torch
        >>> x = torch.randn(8, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> round(float(power_spectrum_error(x, 2 * x)), 6)  # log 4: twice x has 4 times the power
        1.386294
    """
    h, w = real.shape[-2:]
    real_p, fake_p = (power_spectrum(f.double(), min(h, w) // 2, 2).mean(0) for f in (real, fake))
    keep = real_p > 0  # bins holding no mode (the lowest) are zero
    return (fake_p[keep].log() - real_p[keep].log()).abs().mean()
