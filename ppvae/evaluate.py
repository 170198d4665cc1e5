"""Per-example ELBO, split into reconstruction and KL, read off traces of the model and guide programs.

    ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z))          (always with beta = 1: the honest bound)

The terms are taken from the Pyro traces, so any model/guide pair with observed and latent sites works:
observed sites sum to the reconstruction term; for each latent site the KL is analytic where Pyro has it
registered (lower variance) and log q(z) - log p(z) at the sampled z otherwise. Figures are per example in
nats; bits per dimension are given for likelihoods of discrete data.
"""

from __future__ import annotations

import math

import torch
from pyro import poutine
from pyro.distributions.kl import kl_divergence
from pyro.poutine.util import site_is_subsample

from .likelihoods import bits_per_dim


def elbo_terms(model, guide, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction, kl), each of shape (batch,), from one joint draw of the guide and model traces."""
    guide_tr = poutine.trace(guide).get_trace(x)
    model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(x)
    recon = x.new_zeros(x.shape[0])
    kl = x.new_zeros(x.shape[0])
    for name, site in model_tr.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if site["is_observed"]:
            recon = recon + site["fn"].log_prob(site["value"])
            continue
        q = guide_tr.nodes[name]["fn"]
        try:
            kl = kl + kl_divergence(q, site["fn"])
        except NotImplementedError:
            z = site["value"]
            kl = kl + q.log_prob(z) - site["fn"].log_prob(z)
    return recon, kl


@torch.no_grad()
def evaluate_elbo(vae, x: torch.Tensor, *, batch_size: int = 1000, seed: int = 0) -> dict[str, float]:
    """Mean ELBO, reconstruction and KL per example (nats) over ``x``; deterministic for a given ``seed``
    and leaves the global random state untouched, so evaluating does not change a training run."""
    was_training = vae.training
    vae.eval()
    devices = [x.device] if x.device.type == "cuda" else []
    recon_sum = kl_sum = 0.0
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(0, x.shape[0], batch_size):
            recon, kl = elbo_terms(vae.model, vae.guide, x[start:start + batch_size])
            recon_sum += recon.sum()
            kl_sum += kl.sum()
    vae.train(was_training)
    n = x.shape[0]
    recon_mean, kl_mean = float(recon_sum) / n, float(kl_sum) / n
    out = {"elbo": recon_mean - kl_mean, "recon": recon_mean, "kl": kl_mean, "num_examples": n}
    if vae.likelihood.discrete:
        out["bits_per_dim"] = bits_per_dim(-out["elbo"], math.prod(vae.event_shape))
    return out
