"""Amortized guides q(z | x): Pyro programs whose ``pyro.sample`` sites match the model's latent sites.

Every module of this folder is imported here, so a new guide is one file that registers itself.
"""

import importlib
import pkgutil

from .flow import IAFGuide
from .gaussian import MeanFieldGaussianGuide

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["IAFGuide", "MeanFieldGaussianGuide"]
