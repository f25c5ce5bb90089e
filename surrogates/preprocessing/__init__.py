"""The preprocessing layer: invertible maps between data space and a model's feature space.

A preprocessor is fitted once on training data, saved with the model (as JSON) and applied on the
fly to every batch; :func:`default_preprocessing` picks one by the kind of data.

* :mod:`.base`: the :class:`Preprocessor` contract and :func:`from_dict`;
* :mod:`.vectors`: :class:`Standardize` (per-feature) and :class:`LinearAdjust`;
* :mod:`.showers`: :class:`ShowerPreprocessing`, CaloFlow-style normalization of calorimeter
  showers;
* :mod:`.fields`: :class:`FieldPreprocessing`, fields (C, H, W) with translation-invariant
  statistics;
* :mod:`.defaults`: :func:`default_preprocessing`.

Example:
    >>> import torch
    >>> pre = Standardize().fit(torch.randn(100, 3).double() * 5, torch.rand(100, 2).double())
    >>> x, theta = torch.randn(4, 3).double(), torch.rand(4, 2).double()
    >>> y, ladj = pre.forward(x, theta)
    >>> torch.allclose(pre.inverse(y, theta), x)
    True
"""

from __future__ import annotations

from .base import LOGIT_EPS, Preprocessor, from_dict
from .defaults import default_preprocessing
from .fields import FieldPreprocessing
from .showers import ShowerPreprocessing, layer_sizes_of
from .vectors import LinearAdjust, Standardize

__all__ = [
    "LOGIT_EPS",
    "FieldPreprocessing",
    "LinearAdjust",
    "Preprocessor",
    "ShowerPreprocessing",
    "Standardize",
    "default_preprocessing",
    "from_dict",
    "layer_sizes_of",
]
