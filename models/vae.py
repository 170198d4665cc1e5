"""The variational autoencoder (Kingma & Welling 2014; Rezende et al. 2014) as a Pyro program.

    model:  z ~ p(z),  x ~ p(x | decoder(z))          guide:  z ~ q(z | x) = guides.*(encoder(x))

Trained with SVI on Trace_ELBO, which maximises
    ELBO(x) = E_q[log p(x | z)] - beta * KL(q(z | x) || p(z)),
where beta scales the latent site ``z`` in both programs. Prior, likelihood, networks and guide are swappable
by name (``prior="normal"``), by spec dict, or by passing a built module.
"""

from __future__ import annotations

import torch
from torch import nn

import pyro

from ppvae.beta import kl_weight
from ppvae.build import component
from ppvae.registry import DECODERS, ENCODERS, GUIDES, LIKELIHOODS, PRIORS, int_option


class VAE(nn.Module):
    def __init__(self, event_shape, latent_dim: int = 20, *, encoder="mlp", decoder="mlp", guide="normal",
                 prior="normal", likelihood="bernoulli"):
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)
        self.latent_dim = int_option(latent_dim, 1, "latent_dim")
        self.prior = component(PRIORS, prior, self.latent_dim, self.event_shape)
        self.likelihood = component(LIKELIHOODS, likelihood, self.event_shape)
        self.decoder = component(DECODERS, decoder, self.latent_dim, self._decoder_out_shape())
        if isinstance(guide, nn.Module):
            self.q = guide
        else:  # the guide decides how many features its encoder must produce
            options = {"name": guide} if isinstance(guide, str) else guide
            width = GUIDES.get(options.get("name")).encoder_out_dim(self.latent_dim, options)
            self.q = component(GUIDES, guide, component(ENCODERS, encoder, self.event_shape, width), self.latent_dim)
        if self.prior.needs_guide:
            self.prior.attach_guide(self.q)

    @property
    def encoder(self) -> nn.Module:
        return self.q.encoder

    def _decoder_out_shape(self) -> tuple[int, ...]:
        # The likelihood says how many numbers it needs per data dimension; they stack on the first axis.
        k = self.likelihood.params_per_dim
        return (k * self.event_shape[0], *self.event_shape[1:])

    def model(self, x: torch.Tensor, beta: float = 1.0) -> None:
        pyro.module("decoder", self.decoder)
        pyro.module("prior", self.prior)
        pyro.module("likelihood", self.likelihood)
        with pyro.plate("data", x.shape[0]):
            with kl_weight(beta):
                z = pyro.sample("z", self.prior(x.shape[0]))
            pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)

    def guide(self, x: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
        return self.q(x, beta)

    # ---- using a trained model -------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, n: int) -> torch.Tensor:
        """E[x | z] for n draws z ~ p(z): the usual picture of 'samples' from a VAE."""
        return self.decode(self.prior(n).sample())

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """A point summary of q(z | x) (the posterior mean for a Gaussian guide)."""
        return self.q.encode(x)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.likelihood.mean(self.decoder(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def check_data(self, x: torch.Tensor) -> None:
        """Fail with a clear message if ``x`` cannot be modelled: wrong shape, or outside the support."""
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"the data has event shape {tuple(x.shape[1:])} but this VAE was built for {self.event_shape}; "
                f"build the VAE with event_shape={tuple(x.shape[1:])} (in a spec it is taken from the data)"
            )
        finite = torch.isfinite(x)
        if not finite.all():
            bad = int((~finite).sum())
            first = tuple(int(i) for i in (~finite).nonzero()[0])
            raise ValueError(
                f"the data contain {bad} non-finite value(s) (NaN or inf), the first at index {first}; "
                f"remove or impute them before training"
            )
        self.likelihood.check_support(x)

    def spec(self) -> dict:
        """The spec sections that rebuild this VAE (its architecture, not its weights)."""
        return {
            "model": {"event_shape": list(self.event_shape), "latent_dim": self.latent_dim},
            "encoder": self.encoder.spec(),
            "decoder": self.decoder.spec(),
            "guide": self.q.spec(),
            "prior": self.prior.spec(),
            "likelihood": self.likelihood.spec(),
        }
