"""Generative models p(x, z) written as Pyro programs, one family a file.

Every module of this folder is imported here, so a new family is one file that registers itself
(``@MODELS.register("name")``): nothing else names it.
"""

import importlib
import pkgutil

from .cvae import CVAE
from .factor_vae import FactorVAE
from .m2 import M2
from .sequence import SequenceLM, SequenceVAE
from .vae import VAE

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["VAE", "CVAE", "M2", "FactorVAE", "SequenceVAE", "SequenceLM"]
