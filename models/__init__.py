"""Generative models p(x, z) written as Pyro programs."""

from .vae import VAE

__all__ = ["VAE"]
