"""Objectives: the Pyro ELBO estimators a spec can name.

The names are Pyro's own class names (and ``IWAE``), so a reader can look them up in Pyro's documentation.
Every objective gives ``differentiable_loss(model, guide, x, beta=...)``: the negative bound summed over the
batch, in nats.
"""

from __future__ import annotations

import math

import torch
from pyro.infer import ELBO, RenyiELBO, Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.util import get_dependent_plate_dims, torch_sum

from .registry import OBJECTIVES


def _particles(num_particles) -> int:
    if int(num_particles) != num_particles or int(num_particles) < 1:
        raise ValueError(f"objective num_particles must be an integer >= 1, got {num_particles}")
    return int(num_particles)


def _register(cls: type[ELBO]) -> None:
    def build(*, num_particles: int = 1, vectorize_particles: bool = True) -> ELBO:
        # max_plate_nesting=1: the data plate is the only plate, so Pyro need not trace the model to find it.
        elbo = cls(num_particles=_particles(num_particles), vectorize_particles=bool(vectorize_particles),
                   max_plate_nesting=1)
        elbo.spec = lambda: {"name": cls.__name__, "num_particles": int(num_particles),
                             "vectorize_particles": bool(vectorize_particles)}
        return elbo

    build.__doc__ = cls.__doc__
    OBJECTIVES.register(cls.__name__)(build)


_register(Trace_ELBO)  # E_q[log p(x,z) - log q(z|x)], Monte Carlo with reparameterized z
_register(TraceMeanField_ELBO)  # the same with KL(q || p) in closed form where one is registered


@OBJECTIVES.register("IWAE")
class IWAE(RenyiELBO):
    r"""The importance-weighted bound of Burda et al. (2016), Pyro's ``RenyiELBO`` at alpha = 0:

    .. math:: \mathcal{L}_K(x) = \mathbb{E}_{z_{1:K} \sim q(z|x)}
              \Big[\log \frac{1}{K} \sum_{k=1}^K \frac{p(x, z_k)}{q(z_k \mid x)}\Big]
              \;\le\; \log p(x)

    L_1 is the ELBO and L_K rises with K towards log p(x). The log-mean-exp is taken per example (the data
    plate is independent), with the K particles vectorised. ``RenyiELBO`` only gives ``loss_and_grads``;
    ``differentiable_loss`` here is the same estimate as a tensor, valid for reparameterized guides.
    """

    def __init__(self, *, num_particles: int = 5, vectorize_particles: bool = True):
        super().__init__(alpha=0.0, num_particles=_particles(num_particles), max_plate_nesting=1,
                         vectorize_particles=bool(vectorize_particles))

    def spec(self) -> dict:
        return {"name": "IWAE", "num_particles": self.num_particles, "vectorize_particles": self.vectorize_particles}

    def log_weights(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """log p(x, z_k) - log q(z_k | x) for each particle and example: shape (K, batch)."""
        weights = []
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            sum_dims = get_dependent_plate_dims(model_trace.nodes.values())
            w = 0.0
            for site in model_trace.nodes.values():
                if site["type"] == "sample":
                    w = w + torch_sum(site["log_prob"], sum_dims)
            for name, site in guide_trace.nodes.items():
                if site["type"] == "sample":
                    if not site["fn"].has_rsample:
                        raise ValueError(f"IWAE needs a reparameterized guide, but site {name!r} is not")
                    w = w - torch_sum(site["log_prob"], sum_dims)
            weights.append(w)
        if self.vectorize_particles and self.num_particles > 1:
            return weights[0]
        return torch.stack(weights)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        log_w = self.log_weights(model, guide, *args, **kwargs)
        return -(torch.logsumexp(log_w, 0) - math.log(self.num_particles)).sum()
