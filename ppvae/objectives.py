"""Objectives: the Pyro ELBO estimators a spec can name.

The names are Pyro's own class names (and ``IWAE``), so a reader can look them up in Pyro's documentation.
Every objective gives ``differentiable_loss(model, guide, x, beta=...)``: the negative bound summed over the
batch, in nats.
"""

from __future__ import annotations

import math

import torch
from pyro.distributions.kl import kl_divergence
from pyro.distributions.util import scale_and_mask
from pyro.infer import ELBO, RenyiELBO, Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.util import get_dependent_plate_dims, torch_sum
from pyro.infer.util import is_validation_enabled

from .registry import OBJECTIVES, int_option


def _particles(num_particles) -> int:
    return int_option(num_particles, 1, "objective num_particles")


class _SyncFree:
    """The same estimator as the Pyro ELBO it is mixed into, without host synchronisation in the step.

    Pyro's ``differentiable_loss`` calls ``.item()`` on every site's log-probability sum (to report the ELBO
    separately from its surrogate) and checks the loss for NaN, each a device-to-host copy that stalls a GPU.
    For fully reparameterized guides the surrogate *is* the ELBO, so with validation off we return it as is.
    With validation on, or a guide site that needs a score-function term, Pyro's own method runs.
    """

    def differentiable_loss(self, model, guide, *args, **kwargs):
        if is_validation_enabled():
            return super().differentiable_loss(model, guide, *args, **kwargs)
        loss = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            if not all(site["fn"].has_rsample for site in guide_trace.nodes.values() if site["type"] == "sample"):
                return super().differentiable_loss(model, guide, *args, **kwargs)
            loss = loss + self._particle_loss(model_trace, guide_trace) / self.num_particles
        return loss


class _SyncFreeTraceELBO(_SyncFree, Trace_ELBO):
    __doc__ = Trace_ELBO.__doc__

    @staticmethod
    def _particle_loss(model_trace, guide_trace):
        # -(log p(x, z) - log q(z | x)), scaled and masked per site, as Trace_ELBO's surrogate for rsample sites
        model = sum(site["log_prob_sum"] for site in model_trace.nodes.values() if site["type"] == "sample")
        guide = sum(site["score_parts"].entropy_term.sum() for site in guide_trace.nodes.values()
                    if site["type"] == "sample")
        return guide - model


class _SyncFreeTraceMeanFieldELBO(_SyncFree, TraceMeanField_ELBO):
    __doc__ = TraceMeanField_ELBO.__doc__

    @staticmethod
    def _particle_loss(model_trace, guide_trace):
        # As TraceMeanField_ELBO._differentiable_loss_particle, which also calls .item() on the result.
        elbo = 0.0
        for name, model_site in model_trace.nodes.items():
            if model_site["type"] != "sample":
                continue
            if model_site["is_observed"]:
                elbo = elbo + model_site["log_prob_sum"]
                continue
            guide_site = guide_trace.nodes[name]
            try:
                kl = kl_divergence(guide_site["fn"], model_site["fn"])
                elbo = elbo - scale_and_mask(kl, scale=guide_site["scale"], mask=guide_site["mask"]).sum()
            except NotImplementedError:
                elbo = elbo + model_site["log_prob_sum"] - guide_site["score_parts"].entropy_term.sum()
        for name, guide_site in guide_trace.nodes.items():  # auxiliary guide sites
            if guide_site["type"] == "sample" and name not in model_trace.nodes:
                elbo = elbo - guide_site["score_parts"].entropy_term.sum()
        return -elbo


def _register(name: str, cls: type[ELBO]) -> None:
    def build(*, num_particles: int = 1, vectorize_particles: bool = True) -> ELBO:
        # max_plate_nesting=1: the data plate is the only plate, so Pyro need not trace the model to find it.
        elbo = cls(num_particles=_particles(num_particles), vectorize_particles=bool(vectorize_particles),
                   max_plate_nesting=1)
        elbo.spec = lambda: {"name": name, "num_particles": int(num_particles),
                             "vectorize_particles": bool(vectorize_particles)}
        return elbo

    build.__doc__ = cls.__doc__
    OBJECTIVES.register(name)(build)


_register("Trace_ELBO", _SyncFreeTraceELBO)  # E_q[log p(x,z) - log q(z|x)], Monte Carlo with reparameterized z
_register("TraceMeanField_ELBO", _SyncFreeTraceMeanFieldELBO)  # the same with KL(q || p) in closed form


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
