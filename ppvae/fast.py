"""A direct evaluation of Trace_ELBO's estimator for ppvae's own VAE program.

For the stock program of :class:`ppvae.models.VAE` (one latent site ``z`` drawn by reparameterization from the
guide, one observed site ``x``), Trace_ELBO's surrogate loss on a single particle is

    -[ log p(x | z) + beta * (log p(z) - log q(z | x)) ],   z = rsample(q(z | x))

(with the KL in closed form where registered for TraceMeanField_ELBO). This module computes exactly that from
the same modules, in the same order of random draws, without building the two Pyro traces, which costs more
than the network itself at small batch sizes. A test checks that loss and gradients equal Pyro's on the same
draws. The trainer uses it only for programs it knows (a ``VAE`` whose ``model`` and ``guide`` are not
overridden, with a guide from ``ppvae.guides``) and only when Pyro validation is off; every other program
runs through Pyro's own ELBO.
"""

from __future__ import annotations

import torch
from pyro.distributions.kl import kl_divergence

_FAST_OBJECTIVES = ("Trace_ELBO", "TraceMeanField_ELBO")


def supports_fast_path(vae, objective_spec: dict) -> bool:
    """Whether ``vae`` runs the stock program this module knows, under an objective it implements."""
    from .guides import IAFGuide, MeanFieldGaussianGuide
    from .models import VAE

    stock = type(vae).model is VAE.model and type(vae).guide is VAE.guide
    known_guide = type(vae.q) in (MeanFieldGaussianGuide, IAFGuide)
    one_particle = objective_spec.get("num_particles", 1) == 1
    return stock and known_guide and one_particle and objective_spec["name"] in _FAST_OBJECTIVES


def fast_loss(vae, x: torch.Tensor, beta: float, analytic: bool) -> torch.Tensor:
    q = vae.q.posterior(x)
    z = q.rsample()
    recon = vae.likelihood(vae.decoder(z)).log_prob(x).sum()
    if beta == 0.0:
        return -recon
    p = vae.prior(x.shape[0])
    kl = None
    if analytic:
        try:
            kl = kl_divergence(q, p).sum()
        except NotImplementedError:
            pass
    if kl is None:
        kl = (q.log_prob(z) - p.log_prob(z)).sum()
    return beta * kl - recon
