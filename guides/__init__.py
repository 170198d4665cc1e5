"""Amortized guides q(z | x): Pyro programs whose ``pyro.sample`` sites match the model's latent sites."""

from .flow import IAFGuide
from .gaussian import MeanFieldGaussianGuide

__all__ = ["IAFGuide", "MeanFieldGaussianGuide"]
