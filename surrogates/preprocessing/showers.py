r"""Preprocessing of calorimeter showers: CaloFlow-style energy normalization.

:class:`ShowerPreprocessing` follows Krause & Shih (2021, arXiv:2106.05285). With incident energy
:math:`E` and layer energies :math:`E_0, \dots, E_{L-1}`:

.. math::
    u_0 = \frac{\sum_k E_k}{s E}, \qquad
    u_k = \frac{E_{k-1}}{\sum_{j \ge k-1} E_j} \ (k = 1, \dots, L-1), \qquad
    v_{k,j} = \frac{x_{k,j}}{E_k},

every fraction then mapped by :math:`\mathrm{logit}(\epsilon + (1 - 2\epsilon) f)` with
:math:`\epsilon = 10^{-6}` and standardized. The L layer features are standardized *given the
incident energy*: with mean :math:`m_k(c)` and standard deviation :math:`s_k(c)` of the logit
fitted per energy bin and interpolated linearly in c = standardized log E (constant beyond the
outer bins; with ``voxel_knots`` the voxel features too, which the GAN uses). The spread of
the response narrows from 2.7 to 0.1 global standard deviations
between 256 MeV and 4 TeV (dataset-1 photons); standardized per energy it is about one at every
energy, so a model with a per-feature noise scale (a VAE's decoder σ, a GAN's energy term) does
not have to learn a 30-fold change of scale to get the resolution right
(``docs/decisions/008-conditional-layer-standardization.md``). Voxels below the readout threshold
:math:`\delta` (zeros) are first dequantized to :math:`0.1 \delta \cdot U(0, 1)`, a decade below
the threshold: with noise up to δ the zeros' density in log x peaked at log δ, where the data
have almost no voxels, and a flow smoothing over that edge put ~45 times too many voxels just
above δ (``docs/decisions/011-shower-zero-band.md``). On the way back everything below
:math:`0.9995 \delta` is set to zero (a margin for round-off), so
``inverse(forward(x)) == x`` exactly (in float64) for data whose non-zero voxels are all
:math:`\ge \delta`. The feature vector holds :math:`L + n_\text{voxels}` numbers for
:math:`n_\text{voxels}` data values (the voxel fractions of a layer sum to one), so it is *not*
a bijection: ``log_prob`` of a shower model is the density of the normalized features, and
samples renormalize each layer's fractions. The condition is the standardized log E.

Example:
    >>> import torch
    >>> x = torch.rand(50, 6).double() + 0.1
    >>> e = 2 * x.sum(1, keepdim=True)
    >>> pre = ShowerPreprocessing([2, 4], threshold=0.1).fit(x, e)
    >>> y, _ = pre.forward(x, e)
    >>> torch.allclose(pre.inverse(y, e), x)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import LOGIT_EPS, Preprocessor, _as, _logit, _std, _unlogit

__all__ = ["KNOTS", "MIN_BIN_ROWS", "ZERO_BAND", "ShowerPreprocessing", "layer_sizes_of"]

#: at most this many knots of the energy-dependent standardization of the layer features
KNOTS = 32
#: fewest training rows behind a knot (smaller bins merge with the next)
MIN_BIN_ROWS = 50
#: zeros are dequantized below this fraction of the threshold, a decade under the smallest hit
#: (``docs/decisions/011-shower-zero-band.md``); models saved before the setting used 0.999
ZERO_BAND = 0.1


def layer_sizes_of(sim: Any) -> list[int]:
    """Voxels per layer of a calorimeter simulator (from ``sim.geometry.layer_slices``).

    Layers without voxels are left out: they carry no feature.

    Args:
        sim: a calorimeter simulator (``simulators.get("calorimeter", ...)``).
    """
    sizes = []
    for s in sim.geometry.layer_slices:
        start, stop = (s.start, s.stop) if isinstance(s, slice) else (s[0], s[1])
        if stop > start:  # layers without voxels carry no feature
            sizes.append(int(stop - start))
    return sizes


class ShowerPreprocessing(Preprocessor):
    r"""CaloFlow-style normalization of calorimeter showers (see the module notes).

    Args:
        layer_sizes: voxels per layer, in the order of the shower vector.
        threshold: readout threshold δ in the units of x (MeV); ``None`` fits it as the smallest
            non-zero voxel value of the training data.
        eps: ε of the logit.
        energy_scale: s in :math:`u_0 = \sum_k E_k / (s E)`; ``None`` fits it as 1.5 times the
            largest deposited fraction seen in training, so :math:`u_0 < 1` leaves headroom.
        zero_band: zeros are dequantized to ``zero_band`` · δ · U(0, 1) (:data:`ZERO_BAND`);
            0 keeps them exact (a model without a density, the GAN), so an empty voxel's
            feature is :meth:`empty_value`.
        voxel_knots: standardize the voxel features per incident energy too, as the layer
            features are (interpolated between the same knots); otherwise globally.

    Features: ``[u_0, ..., u_{L-1}, v_{0,0}, ..., v_{L-1,n-1}]``; :attr:`split` = L, so a
    two-stage model learns the layer energies first and the voxels given them.
    """

    kind = "shower"
    bijective = False

    def __init__(
        self,
        layer_sizes: Sequence[int],
        threshold: float | None = None,
        eps: float = LOGIT_EPS,
        energy_scale: float | None = None,
        zero_band: float = ZERO_BAND,
        voxel_knots: bool = False,
    ):
        self.layer_sizes = [int(n) for n in layer_sizes]
        if not self.layer_sizes or min(self.layer_sizes) < 1:
            raise ValueError("layer_sizes must be a non-empty list of positive voxel counts")
        self.threshold, self.eps, self.energy_scale = threshold, float(eps), energy_scale
        if not 0 <= zero_band <= 0.999:
            raise ValueError(f"zero_band must be in [0, 0.999], got {zero_band}")
        self.zero_band = float(zero_band)
        self.voxel_knots = bool(voxel_knots)
        self.n_layers, self.n_voxels = len(self.layer_sizes), sum(self.layer_sizes)
        self.features, self.context, self.split = self.n_layers + self.n_voxels, 1, self.n_layers
        self.mean = self.std = torch.zeros(0)
        self.theta_mean, self.theta_std = 0.0, 1.0
        #: knots in c, and the layer features' mean and std there, shape (K,), (K, L), (K, L);
        #: empty: the layer features are standardized globally (models saved before this)
        self.knots = self.knot_mean = self.knot_std = torch.zeros(0)
        # layer index of every voxel
        self._layer_of = torch.repeat_interleave(
            torch.arange(self.n_layers), torch.tensor(self.layer_sizes)
        )

    def _layer_sum(self, x: Tensor) -> Tensor:
        out = torch.zeros(len(x), self.n_layers, dtype=x.dtype, device=x.device)
        return out.index_add_(1, self._layer_of.to(x.device), x)

    def _dequantize(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype)
        # noise below zero_band δ <= 0.999 δ and the cut at 0.9995 δ: margins for round-off
        return torch.where(x > 0, x, self.zero_band * self.threshold * u.to(x.device))

    def _fractions(self, x: Tensor, theta: Tensor) -> Tensor:
        """Energy fractions in [0, 1], shape (N, L + n_voxels), of dequantized showers."""
        e_layer = self._layer_sum(x)
        # E_k / sum_{j >= k} E_j: reverse cumulative sums
        tail = torch.flip(torch.cumsum(torch.flip(e_layer, [1]), 1), [1])
        u0 = tail[:, :1] / (self.energy_scale * theta[:, :1])
        # empty layers exist only without dequantization (zero_band=0): fractions of nothing are 0
        u = e_layer[:, :-1] / torch.where(tail[:, :-1] > 0, tail[:, :-1], 1.0)
        e_voxel = e_layer[:, self._layer_of.to(x.device)]
        v = x / torch.where(e_voxel > 0, e_voxel, 1.0)
        return torch.cat([u0, u, v], dim=1)

    def fit(self, x, theta, *, generator=None):
        x, theta = x.double().flatten(1), theta.double()
        if x.shape[1] != self.n_voxels:
            raise ValueError(
                f"showers have {x.shape[1]} voxels, layer_sizes sum to {self.n_voxels}"
            )
        if self.threshold is None:
            pos = x[x > 0]
            self.threshold = float(pos.min()) if len(pos) else 1e-6
        xq = self._dequantize(x, generator)
        if self.energy_scale is None:
            ratio = xq.sum(dim=1) / theta[:, 0]
            self.energy_scale = float(1.5 * ratio.max())
        y, _ = _logit(self._fractions(xq, theta), self.eps)
        self.mean, self.std = y.mean(dim=0), _std(y)
        lt = torch.log(theta[:, 0])
        self.theta_mean, self.theta_std = float(lt.mean()), float(_std(lt[:, None])[0])
        self._fit_knots(
            self.condition(theta)[:, 0], y if self.voxel_knots else y[:, : self.n_layers]
        )
        return self

    def _fit_knots(self, c: Tensor, y: Tensor) -> None:
        """Per-bin mean and std of the layer features: one bin per distinct energy where there
        are few (dataset 1: 15), else :data:`KNOTS` quantile bins, each knot at its bin's median
        c. Bins of fewer than :data:`MIN_BIN_ROWS` rows are merged into the next."""
        values = torch.unique(c)
        if len(values) <= KNOTS:
            edges = torch.cat([values, values[-1:] + 1])
        else:
            q = torch.linspace(0, 1, KNOTS + 1, dtype=c.dtype)
            edges = torch.unique(torch.quantile(c, q))
            edges[-1] = edges[-1] + 1
        knots, means, stds, start = [], [], [], 0
        for i in range(1, len(edges)):
            rows = (c >= edges[start]) & (c < edges[i])
            if int(rows.sum()) < MIN_BIN_ROWS and i < len(edges) - 1:
                continue
            if int(rows.sum()) < 2:  # a last bin too small to merge forward
                break
            knots.append(c[rows].median())
            means.append(y[rows].mean(dim=0))
            stds.append(_std(y[rows]))
            start = i
        if not knots:
            return
        self.knots = torch.stack(knots)
        self.knot_mean, self.knot_std = torch.stack(means), torch.stack(stds)

    def _stats(self, c: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and std of every feature for each row (N, features): the layer features' (and
        with :attr:`voxel_knots` the voxels') by linear interpolation between the knots in c,
        the others' global."""
        n = len(c)
        mean = _as(self.mean, like).expand(n, -1)
        std = _as(self.std, like).expand(n, -1)
        if not len(self.knots):
            return mean, std
        k = _as(self.knots, like)
        c = c.to(like.dtype).clamp(k[0], k[-1])
        hi = torch.searchsorted(k, c.contiguous()).clamp(min(1, len(k) - 1), len(k) - 1)
        lo = (hi - 1).clamp_min(0)
        w = torch.where(k[hi] > k[lo], (c - k[lo]) / (k[hi] - k[lo]), torch.zeros_like(c))
        # the two knots' weights as a (N, K) matrix: one product per statistic, not four
        # gathers of (N, features), which dominate sampling when the voxels are knotted too
        weights = torch.zeros(n, len(k), dtype=like.dtype, device=like.device)
        weights.scatter_add_(1, lo[:, None], (1 - w)[:, None]).scatter_add_(
            1, hi[:, None], w[:, None]
        )
        km, ks = _as(self.knot_mean, like), _as(self.knot_std, like)
        L = km.shape[1]  # the knotted features come first
        mean = torch.cat([weights @ km, mean[:, L:]], dim=1)
        std = torch.cat([weights @ ks, std[:, L:]], dim=1)
        return mean, std

    def forward(self, x, theta, *, generator=None):
        x = self._dequantize(x.flatten(1), generator)
        f = self._fractions(x, theta)
        y, ladj = _logit(f, self.eps)
        mean, std = self._stats(self.condition(theta)[:, 0], y)
        y = (y - mean) / std
        return y, (ladj - torch.log(std)).sum(dim=1)

    def inverse(self, y, theta):
        mean, std = self._stats(self.condition(theta)[:, 0], y)
        f = _unlogit(y * std + mean, self.eps)
        L = self.n_layers
        e_tot = f[:, 0] * self.energy_scale * theta[:, 0]
        layers, rest = [], e_tot
        for k in range(L - 1):
            layers.append(f[:, 1 + k] * rest)
            rest = rest - layers[-1]
        layers.append(rest.clamp_min(0.0))
        e_layer = torch.stack(layers, dim=1)
        idx = self._layer_of.to(y.device)
        v = f[:, L:]
        norm = self._layer_sum(v)[:, idx]
        # the voxel fractions of a layer sum to one (exactly so for data); renormalize samples
        v = torch.where(norm > 0, v / norm.clamp_min(1e-300), 1.0 / _as(self._sizes(), v)[idx])
        x = v * e_layer[:, idx]
        return torch.where(x >= 0.9995 * self.threshold, x, torch.zeros_like(x))

    def empty_value(self, c: Tensor | None = None) -> Tensor:
        """Per feature, shape (features,), or with the conditions c (N,) per row, (N,
        features) in c's dtype: an empty voxel's feature without dequantization (the standardized
        logit(ε), the smallest a voxel feature can be), and -inf for the layer features.
        With :attr:`voxel_knots` it depends on the energy, and c is required."""
        lo = _logit(torch.zeros((), dtype=torch.float64), self.eps)[0]
        L = self.n_layers
        if c is None:
            if self.voxel_knots:
                raise ValueError("with voxel_knots an empty voxel's value depends on c")
            head = torch.full((L,), -torch.inf, dtype=torch.float64)
            return torch.cat([head, ((lo - self.mean) / self.std)[L:]])
        like = torch.zeros((), dtype=c.dtype, device=c.device)
        mean, std = self._stats(c, like)
        empty = (lo.to(like) - mean) / std
        empty[:, :L] = -torch.inf
        return empty

    def _sizes(self) -> Tensor:
        return torch.tensor(self.layer_sizes, dtype=torch.float64)

    def condition(self, theta):
        return (torch.log(theta[:, :1]) - self.theta_mean) / self.theta_std

    def to_dict(self):
        return {
            "kind": self.kind,
            "layer_sizes": self.layer_sizes,
            "threshold": self.threshold,
            "eps": self.eps,
            "energy_scale": self.energy_scale,
            "zero_band": self.zero_band,
            "voxel_knots": self.voxel_knots,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "theta_mean": self.theta_mean,
            "theta_std": self.theta_std,
            "knots": self.knots.tolist(),
            "knot_mean": self.knot_mean.tolist(),
            "knot_std": self.knot_std.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShowerPreprocessing:
        self = cls(d["layer_sizes"], d["threshold"], d["eps"], d["energy_scale"],
                   d.get("zero_band", 0.999), d.get("voxel_knots", False))  # fmt: skip
        self.mean = torch.tensor(d["mean"], dtype=torch.float64)
        self.std = torch.tensor(d["std"], dtype=torch.float64)
        self.theta_mean, self.theta_std = d["theta_mean"], d["theta_std"]
        for key in ("knots", "knot_mean", "knot_std"):  # absent in models saved before them
            setattr(self, key, torch.tensor(d.get(key, []), dtype=torch.float64))
        return self
