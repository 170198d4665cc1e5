"""Generative models p(x, z) written as Pyro programs."""

from .vae import VAE
from .cvae import CVAE
from .m2 import M2

__all__ = ["VAE", "CVAE", "M2"]
