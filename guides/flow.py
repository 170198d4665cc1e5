"""An amortized normalizing-flow guide: inverse autoregressive flow conditioned on the encoder."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
import torch.nn.functional as F
from torch import nn

from ppvae.inference.contract import data_plate
from ppvae.registry import GUIDES, Component, int_list_option, int_option


@GUIDES.register("iaf")
class IAFGuide(Component, nn.Module):
    r"""q(z | x): the encoder's diagonal Gaussian pushed through ``flows`` inverse autoregressive flow steps
    (Kingma et al. 2016), each conditioned on a context vector h(x) from the same encoder.

    .. math:: z_0 \sim \mathcal{N}(\mu(x), \mathrm{diag}\,\sigma(x)^2), \quad
              z_t = \mu_t(z_{t-1}, h) + \sigma_t(z_{t-1}, h) \odot z_{t-1}, \quad
              \log q(z_T \mid x) = \log q(z_0 \mid x) - \sum_t \sum_d \log \sigma_{t,d}

    Each step is autoregressive in z, so its Jacobian is triangular and sampling with its log density is one
    pass per step (Pyro's ``ConditionalAffineAutoregressive``, in the numerically stable gated form). The
    posterior can then be correlated and skewed, which a mean-field Gaussian cannot.
    """

    def __init__(self, encoder: nn.Module, latent_dim: int, *, flows: int = 2, context_dim: int = 32,
                 hidden=(64,), min_scale: float = 1e-4):
        super().__init__()
        self.encoder = encoder
        self.latent_dim = int_option(latent_dim, 1, "latent_dim")
        self.flows = int_option(flows, 1, "iaf guide flows")
        self.context_dim = int_option(context_dim, 1, "iaf guide context_dim")
        self.hidden = int_list_option(hidden, 1, "iaf guide hidden sizes")
        self.min_scale = float(min_scale)
        self.steps = nn.ModuleList(
            T.conditional_affine_autoregressive(self.latent_dim, self.context_dim, hidden_dims=self.hidden,
                                                stable=True)
            for _ in range(self.flows))

    @staticmethod
    def encoder_out_dim(latent_dim: int, options: dict) -> int:
        return 2 * latent_dim + int_option(options.get("context_dim", 32), 1, "iaf guide context_dim")

    def _base_and_context(self, x: torch.Tensor):
        out = self.encoder(x)
        if out.shape[-1] != 2 * self.latent_dim + self.context_dim:
            raise ValueError(f"the iaf guide needs an encoder with 2 * latent_dim + context_dim = "
                             f"{2 * self.latent_dim + self.context_dim} outputs, but it gave {out.shape[-1]}")
        loc, raw_scale, context = out.split([self.latent_dim, self.latent_dim, self.context_dim], -1)
        return dist.Normal(loc, F.softplus(raw_scale) + self.min_scale).to_event(1), context

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        base, context = self._base_and_context(x)
        return dist.TransformedDistribution(base, [step.condition(context) for step in self.steps])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The base mean pushed through the flow: a point summary of q(z | x)."""
        base, context = self._base_and_context(x)
        z = base.mean
        for step in self.steps:
            z = step.condition(context)(z)
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pyro.module("encoder", self)
        with data_plate(x.shape[0]):
            return pyro.sample("z", self.posterior(x))
