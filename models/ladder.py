r"""A two-level ladder VAE (Sønderby et al. 2016): the guide's top-down pass shares the generative model's.

    model:  z2 ~ N(0, I),  z1 ~ p(z1 | z2) = N(mu_p(z2), sigma_p(z2)^2),  x ~ p(x | decoder(z1))
    guide:  d1 = f1(x), d2 = f2(d1)  (bottom-up);  z2 ~ q(z2 | x) = N(mu(d2), sigma(d2)^2)
            z1 ~ q(z1 | x, z2): the precision-weighted mean of the bottom-up estimate N(mu(d1), sigma(d1)^2) and
            the top-down prior p(z1 | z2),

.. math:: \sigma_q^2 = \big(\sigma_{\uparrow}^{-2} + \sigma_p^{-2}\big)^{-1}, \qquad
          \mu_q = \sigma_q^2 \big(\mu_{\uparrow}\sigma_{\uparrow}^{-2} + \mu_p\sigma_p^{-2}\big)

so the guide's z1 leans on the prior where the data say little. The ELBO has one KL term per level, which
``ppvae evaluate`` reports per site; every verb (samples, codes, reconstructions) is derived from the traces.
The likelihood is swappable by name, as in the VAE.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch.nn.functional as F
from torch import nn

from ppvae.batch import as_batch
from ppvae.inference.contract import Model, data_plate
from ppvae.registry import LIKELIHOODS, MODELS, component, int_option


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


def _normal(out):
    """A diagonal Normal's (loc, scale) from a network's output: its halves, the second through softplus."""
    loc, raw = out.chunk(2, -1)
    return loc, F.softplus(raw) + 1e-4


@MODELS.register("ladder_vae")
class LadderVAE(Model):
    def __init__(self, event_shape, z1_dim: int = 16, z2_dim: int = 8, hidden: int = 400, *,
                 likelihood="bernoulli"):
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)
        self.z1_dim = int_option(z1_dim, 1, "model.z1_dim")
        self.z2_dim = int_option(z2_dim, 1, "model.z2_dim")
        self.hidden = int_option(hidden, 1, "model.hidden")
        d = math.prod(self.event_shape)
        self.likelihood = component(LIKELIHOODS, likelihood, self.event_shape)
        width = self.likelihood.params_per_dim * d
        self.up1, self.up2 = nn.Sequential(nn.Linear(d, hidden), nn.ReLU()), nn.Sequential(nn.Linear(hidden, hidden),
                                                                                         nn.ReLU())
        self.q1, self.q2 = nn.Linear(hidden, 2 * self.z1_dim), nn.Linear(hidden, 2 * self.z2_dim)
        self.p1 = _mlp(self.z2_dim, hidden, 2 * self.z1_dim)        # p(z1 | z2), shared by the guide's top-down pass
        self.decoder = _mlp(self.z1_dim, hidden, width)

    def model(self, batch):
        x = as_batch(batch)["x"]
        with data_plate(x.shape[0]):
            z2 = pyro.sample("z2", dist.Normal(x.new_zeros(self.z2_dim), x.new_ones(self.z2_dim)).to_event(1))
            z1 = pyro.sample("z1", dist.Normal(*_normal(self.p1(z2))).to_event(1))
            out = self.decoder(z1)
            pyro.sample("x", self.likelihood(out.reshape(*out.shape[:-1], -1, *self.event_shape[1:])), obs=x)

    def guide(self, batch):
        x = as_batch(batch)["x"]
        d1 = self.up1(x.flatten(-len(self.event_shape)))
        d2 = self.up2(d1)
        with data_plate(x.shape[0]):
            z2 = pyro.sample("z2", dist.Normal(*_normal(self.q2(d2))).to_event(1))
            (mu_up, s_up), (mu_p, s_p) = _normal(self.q1(d1)), _normal(self.p1(z2))
            precision_up, precision_p = s_up.pow(-2), s_p.pow(-2)
            variance = 1.0 / (precision_up + precision_p)
            pyro.sample("z1", dist.Normal(variance * (mu_up * precision_up + mu_p * precision_p),
                                          variance.sqrt()).to_event(1))
