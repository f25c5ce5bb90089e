"""The default preprocessing of a dataset, chosen by the kind of data it holds.

Example:
    >>> pre = default_preprocessing({"simulator": "nbody"}, (2, 32, 32), spatial=True)
    >>> type(pre).__name__, pre.transform
    ('FieldPreprocessing', 'log')
    >>> type(default_preprocessing({"simulator": "two_moons"}, (2,))).__name__
    'Standardize'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import Preprocessor
from .fields import FieldPreprocessing
from .showers import ShowerPreprocessing, layer_sizes_of
from .vectors import Standardize

__all__ = ["default_preprocessing"]


def default_preprocessing(
    meta: dict[str, Any], x_shape: Sequence[int], *, spatial: bool = False
) -> Preprocessor:
    r"""An unfitted preprocessor for data described by ``meta`` with sample shape ``x_shape``.

    * calorimeter showers (``meta["simulator"] == "calorimeter"``):
      :class:`~.showers.ShowerPreprocessing` with the simulator's layer sizes and readout
      threshold (built from ``meta["simulator_config"]``);
    * fields for a spatial (convolutional) model (``spatial=True``, ``x_shape`` (H, W) or
      (C, H, W)): :class:`~.fields.FieldPreprocessing` with the ``"log"`` map, which keeps the
      shape and the translation symmetry. For ``nbody`` density contrasts the shift is fixed
      at 2, :math:`t = \log(2 + \delta)`: δ ≥ -1 with equality in an empty cell, which the
      rows the shift would be fitted on may lack and a later field may hold (log(1 + δ) is then
      -inf); the price is that a generated pixel may fall below δ = -1;
    * anything else, fields for a flat vector model included: :class:`~.vectors.Standardize`.

    Args:
        meta: dataset metadata (``simulator``, ``simulator_config``, ...); may be empty.
        x_shape: shape of one sample x.
        spatial: whether the model consumes samples as fields (C, H, W) rather than vectors.
    """
    if meta.get("simulator") == "calorimeter":
        import simulators

        sim = simulators.get("calorimeter", **meta.get("simulator_config", {}))
        return ShowerPreprocessing(layer_sizes_of(sim), threshold=sim.config.get("threshold_mev"))
    if spatial and len(x_shape) in (2, 3):
        return FieldPreprocessing("log", shift=2.0 if meta.get("simulator") == "nbody" else None)
    return Standardize()
