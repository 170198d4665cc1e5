r"""FactorVAE (Kim & Mnih 2018, "Disentangling by Factorising"): the VAE's ELBO with a penalty on the total
correlation of the aggregate posterior, estimated by a discriminator.

.. math:: \mathcal{L} = \mathrm{ELBO}(x) - \gamma\, \mathrm{KL}\Big(q(z) \,\Big\|\, \prod_j q(z_j)\Big),
          \qquad \mathrm{KL}\Big(q(z) \,\Big\|\, \prod_j q(z_j)\Big) \approx
          \mathbb{E}_{q(z)}\Big[\log \frac{D(z)}{1 - D(z)}\Big]

D(z) is the probability that z was drawn from q(z) = E_x q(z | x) rather than from the product of its marginals;
samples of the product come from permuting each dimension of a batch of codes across the batch (the paper's
Algorithm 2). D is trained by its own optimiser to tell the two apart (cross-entropy), the VAE to make the
density ratio small: D's parameters form their own group, and neither loss moves the other's parameters
(:mod:`ppvae.inference.loss`). The paper permutes a second batch's codes; here the same batch's, detached, so a
step costs one batch. Its dSprites setting: gamma = 35 (their Figure 5 sweeps 10 to 100), D an MLP of 6 x 1000
units with leaky ReLU, D's Adam at lr 1e-4, betas (0.5, 0.9).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ppvae.batch import as_batch
from ppvae.registry import MODELS, int_list_option

from .vae import VAE


@MODELS.register("factor_vae")
class FactorVAE(VAE):
    """FactorVAE (Kim & Mnih 2018): the VAE plus gamma times a discriminator's estimate of the total correlation of
    q(z), the discriminator trained by its own optimiser to tell q(z) from its dimension-wise permutation."""

    #: the discriminator trains on its own loss with its own optimiser
    parameter_groups = {"discriminator": ("discriminator",)}
    group_optimizers = {"discriminator": {"name": "adam", "lr": 1e-4, "betas": [0.5, 0.9]}}
    losses = ({"loss": "tc_penalty"}, {"loss": "discriminator_loss", "group": "discriminator"})

    def __init__(self, event_shape, latent_dim: int = 10, *, gamma: float = 35.0,
                 discriminator_hidden=(1000, 1000, 1000, 1000, 1000, 1000), **parts):
        super().__init__(event_shape, latent_dim, **parts)
        self.gamma = float(gamma)
        if not self.gamma >= 0:
            raise ValueError(f"model.gamma (the weight of the total-correlation penalty) must be >= 0, got {gamma!r}")
        hidden = int_list_option(discriminator_hidden, 1, "model.discriminator_hidden")
        layers, width = [], self.latent_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        self.discriminator = nn.Sequential(*layers, nn.Linear(width, 1))  # the logit of D(z)

    def _codes(self, batch) -> torch.Tensor:
        return self.q.posterior(as_batch(batch)["x"]).rsample()

    def tc_penalty(self, batch) -> torch.Tensor:
        """gamma * sum over the batch of log D(z) / (1 - D(z)), z ~ q(z | x): the total-correlation estimate."""
        return self.gamma * self.discriminator(self._codes(batch)).sum()

    def discriminator_loss(self, batch) -> torch.Tensor:
        """Cross-entropy of D telling codes z ~ q(z) (label 1) from dimension-wise permuted ones (label 0)."""
        with torch.no_grad():
            z = self._codes(batch)
        permuted = torch.stack([z[torch.randperm(z.shape[0], device=z.device), j] for j in range(z.shape[1])], 1)
        real, fake = self.discriminator(z), self.discriminator(permuted)
        return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real), reduction="sum")
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake), reduction="sum"))

    @torch.no_grad()
    def total_correlation(self, batch) -> float:
        """The discriminator's estimate of KL(q(z) || prod_j q(z_j)) on a batch, in nats."""
        return float(self.discriminator(self._codes(batch)).mean())
