"""Fast conditional generative surrogates for simulators, and neural posterior estimation.

Example:
    >>> import simulators
    >>> from surrogates import Flow
    >>> data = simulators.open_dataset("datasets/calo_photons.h5")  # doctest: +SKIP
    >>> model = Flow.for_dataset(data).fit(data)  # doctest: +SKIP
    >>> x = model.sample(data.theta[:10])  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = ["GAN", "VAE", "Flow", "__version__"]

__version__ = "0.1.0"


def __getattr__(name: str):
    # torch and zuko load on first use, so the CLI starts fast for commands that need neither.
    from .models import registry

    for family in registry.names():
        cls = registry.get(family)
        if cls.__name__ == name:
            return cls
    raise AttributeError(name)
