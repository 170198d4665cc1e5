"""Generative models p(x, z) written as Pyro programs."""

from .vae import VAE
from .cvae import CVAE
from .m2 import M2
from .factor_vae import FactorVAE
from .sequence import SequenceLM, SequenceVAE

__all__ = ["VAE", "CVAE", "M2", "FactorVAE", "SequenceVAE", "SequenceLM"]
