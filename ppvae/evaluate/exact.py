"""Closed forms for the linear-Gaussian VAE, which is probabilistic PCA (Tipping & Bishop 1999).

    z ~ N(0, I_L),   x | z ~ N(W z + b, sigma^2 I_D)   =>   x ~ N(b, C),  C = W W^T + sigma^2 I_D
    posterior:  z | x ~ N(M^{-1} W^T (x - b), sigma^2 M^{-1}),  M = W^T W + sigma^2 I_L

A VAE with a one-layer linear decoder (``decoder={"name": "mlp", "hidden": []}``), the standard normal prior
and a Gaussian likelihood is this model, so its exact log-likelihood is known; estimators and diagnostics are
checked against it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def linear_gaussian_parameters(vae) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W, b, sigma) of a linear-Gaussian VAE; a clear error for any other VAE."""
    layers = [m for m in vae.decoder.modules() if isinstance(m, nn.Linear)]
    lik = vae.likelihood
    if (len(layers) != 1 or getattr(lik, "registry_name", "") != "gaussian"
            or getattr(vae.prior, "registry_name", "") != "normal"
            or getattr(lik, "learn_scale", "none") in ("pixel", "decoder") or len(vae.event_shape) != 1):
        raise ValueError("exact log-likelihood needs a linear-Gaussian VAE: vector data, prior 'normal', decoder "
                         "'mlp' with hidden = [], likelihood 'gaussian' with a fixed or global scale")
    sigma = F.softplus(lik.raw_scale) + lik.min_scale if lik.learn_scale == "global" else torch.tensor(lik.scale)
    return layers[0].weight.detach(), layers[0].bias.detach(), sigma.detach().reshape(())


def gaussian_log_likelihood(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, sigma) -> torch.Tensor:
    """log N(x; b, W W^T + sigma^2 I) per row of ``x``, in float64."""
    x, w, b = x.double(), w.double(), b.double()
    cov = w @ w.T + float(sigma) ** 2 * torch.eye(x.shape[-1], dtype=torch.float64)
    return torch.distributions.MultivariateNormal(b, covariance_matrix=cov).log_prob(x)


def linear_gaussian_log_likelihood(vae, x: torch.Tensor) -> torch.Tensor:
    """The exact log p(x) per example of a linear-Gaussian VAE."""
    w, b, sigma = linear_gaussian_parameters(vae)
    return gaussian_log_likelihood(x, w, b, sigma)


def ppca_mle(x: torch.Tensor, latent_dim: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Maximum-likelihood pPCA (Tipping & Bishop 1999, eq. 7-8): (W, b, sigma) with W = U (Lambda - sigma^2)^(1/2)
    over the top ``latent_dim`` eigenpairs of the sample covariance, sigma^2 the mean discarded eigenvalue."""
    x = x.double()
    b = x.mean(0)
    cov = (x - b).T @ (x - b) / x.shape[0]
    evals, evecs = torch.linalg.eigh(cov)
    evals, evecs = evals.flip(0), evecs.flip(1)
    sigma2 = evals[latent_dim:].mean()
    w = evecs[:, :latent_dim] * (evals[:latent_dim] - sigma2).clamp(min=0).sqrt()
    return w, b, math.sqrt(float(sigma2))


@torch.no_grad()
def set_exact_posterior_guide(vae) -> None:
    """Make a linear encoder's mean-field guide equal the exact posterior (W must have orthogonal columns,
    so that M, and hence the posterior covariance, is diagonal)."""
    w, b, sigma = (t.double() for t in linear_gaussian_parameters(vae))
    m = w.T @ w + sigma**2 * torch.eye(w.shape[1], dtype=torch.float64)
    if (m - torch.diag(torch.diagonal(m))).abs().max() > 1e-6 * m.abs().max():
        raise ValueError("the exact posterior is diagonal only when W has orthogonal columns")
    layers = [mod for mod in vae.encoder.modules() if isinstance(mod, nn.Linear)]
    if len(layers) != 1 or getattr(vae.q, "registry_name", "") != "normal":
        raise ValueError("set_exact_posterior_guide needs the 'normal' guide with a linear encoder (hidden = [])")
    enc, latent = layers[0], w.shape[1]
    proj = w.T / torch.diagonal(m)[:, None]  # M^{-1} W^T
    std = sigma / torch.diagonal(m).sqrt()
    raw = torch.log(torch.expm1(std - vae.q.min_scale))  # softplus^{-1}
    enc.weight.zero_()
    enc.weight[:latent] = proj.float()
    enc.bias[:latent] = (-proj @ b).float()
    enc.bias[latent:] = raw.float()
    assert torch.allclose(F.softplus(enc.bias[latent:]) + vae.q.min_scale, std.float(), rtol=1e-4)
