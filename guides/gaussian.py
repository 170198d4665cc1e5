"""The mean-field Gaussian amortized guide of Kingma & Welling (2014)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from ppvae.inference.contract import data_plate
from ppvae.registry import GUIDES, Component


@GUIDES.register("normal")
class MeanFieldGaussianGuide(Component, nn.Module):
    r"""q(z | x) = N(z; mu(x), diag sigma(x)^2), with mu and sigma read off one encoder network.

    The encoder returns 2 * latent_dim features: the mean and a pre-softplus scale. Sampling is
    reparameterized (z = mu + sigma * eps), so Trace_ELBO's gradient is the low-variance pathwise one.
    """

    def __init__(self, encoder: nn.Module, latent_dim: int, *, min_scale: float = 1e-4):
        super().__init__()
        self.encoder = encoder
        self.latent_dim = int(latent_dim)
        self.min_scale = float(min_scale)

    @staticmethod
    def encoder_out_dim(latent_dim: int, options: dict) -> int:
        return 2 * latent_dim

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        out = self.encoder(x)
        if out.shape[-1] != 2 * self.latent_dim:  # a shape check: free, no device sync
            raise ValueError(f"the normal guide needs an encoder with 2 * latent_dim = {2 * self.latent_dim} "
                             f"outputs (mean and scale of each latent dimension), but it gave {out.shape[-1]}")
        loc, raw_scale = out.split(self.latent_dim, dim=-1)
        # softplus, not exp: no overflow early in training; the floor keeps log q finite.
        return dist.Normal(loc, F.softplus(raw_scale) + self.min_scale).to_event(1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean."""
        return self.posterior(x).mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pyro.module("encoder", self)
        with data_plate(x.shape[0]):
            return pyro.sample("z", self.posterior(x))
