"""Priors p(z) over the latent space.

A prior is a module that returns a Pyro distribution with event shape ``(latent_dim,)`` and batch shape
``(batch_size,)`` (so it lines up with the guide inside the data plate, which analytic-KL objectives need).
Generation samples from the same object. A new prior is one subclass plus one ``@PRIORS.register`` line.
"""

from __future__ import annotations

import torch
from torch import nn

import pyro.distributions as dist

from .registry import PRIORS, Component


class Prior(Component, nn.Module):
    """Base class: ``prior(batch_size)`` is the distribution of z for a batch."""

    def __init__(self, latent_dim: int):
        super().__init__()
        if int(latent_dim) <= 0:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim}")
        self.latent_dim = int(latent_dim)

    def forward(self, batch_size: int) -> dist.TorchDistribution:
        raise NotImplementedError


@PRIORS.register("normal")
class StandardNormal(Prior):
    r"""The isotropic standard normal prior of Kingma & Welling (2014).

    .. math:: p(z) = \prod_{d=1}^{D} \mathcal{N}(z_d; 0, 1)

    KL(q || p) to a diagonal Gaussian guide is analytic, so ``TraceMeanField_ELBO`` uses the closed form.
    """

    def __init__(self, latent_dim: int):
        super().__init__(latent_dim)
        # Buffers, not parameters: they follow the module to the device but are never trained.
        self.register_buffer("loc", torch.zeros(self.latent_dim))
        self.register_buffer("scale", torch.ones(self.latent_dim))

    def forward(self, batch_size: int) -> dist.TorchDistribution:
        shape = (batch_size, self.latent_dim)
        return dist.Normal(self.loc.expand(shape), self.scale.expand(shape)).to_event(1)
