"""The variational autoencoder (Kingma & Welling 2014; Rezende et al. 2014) as a Pyro program.

    model:  z ~ p(z),  x ~ p(x | decoder(z))          guide:  z ~ q(z | x) = guides.*(encoder(x))

Trained with SVI on Trace_ELBO, which maximises
    ELBO(x) = E_q[log p(x | z)] - beta * KL(q(z | x) || p(z)),
where beta scales the latent site ``z`` in both programs: the trainer's one handler does it
(:class:`~ppvae.inference.objectives.KLScale`), so the programs know nothing of beta. Prior, likelihood, networks
and guide are swappable by name (``prior="normal"``), by import path (``prior="my_priors:LaplacePrior"``), by spec
dict, or by passing a built module.
"""

from __future__ import annotations

import operator

import pyro
import torch
from pyro.distributions.kl import kl_divergence
from torch import nn

from ppvae.batch import as_batch
from ppvae.components.likelihoods import chunks
from ppvae.components.priors import StandardNormal
from ppvae.guides import IAFGuide, MeanFieldGaussianGuide
from ppvae.inference.contract import Model, data_plate, spec_value
from ppvae.inference.objectives import ELBO_OBJECTIVES
from ppvae.registry import (
    DECODERS,
    ENCODERS,
    GUIDES,
    LIKELIHOODS,
    MODELS,
    PRIORS,
    brief,
    component,
    describe,
    int_option,
    registered_name,
)

_COMPONENTS = ("encoder", "decoder", "guide", "prior", "likelihood")


def event_shape_option(event_shape) -> tuple[int, ...]:
    """The shape of one example, checked: a tuple of positive ints such as (1, 28, 28) or (784,)."""
    try:
        shape = tuple(operator.index(s) for s in event_shape)
    except TypeError:
        shape = None
    if not shape or min(shape) < 1:
        raise ValueError(f"event_shape is the shape of one example, a tuple of positive ints such as (1, 28, 28) or "
                         f"(784,) (data.event_shape gives it); got {brief(event_shape)}")
    return shape


@MODELS.register("vae")
class VAE(Model):
    """The VAE of Kingma & Welling (2014) as a Pyro program: z ~ p(z), x ~ p(x | decoder(z)), guide q(z | x), each
    part (encoder, decoder, guide, prior, likelihood) a registered component swappable by name or object."""

    def __init__(self, event_shape, latent_dim: int = 20, *, encoder="mlp", decoder="mlp", guide="normal",
                 prior="normal", likelihood="bernoulli"):
        super().__init__()
        self.event_shape = event_shape_option(event_shape)
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
        if getattr(self.prior, "needs_guide", False):
            self.prior.attach_guide(self.q)

    @classmethod
    def from_spec(cls, spec: dict, event_shape) -> VAE:
        """The VAE a spec describes (``[model]``, ``[encoder]``, ... ``[likelihood]``) for data of ``event_shape``."""
        options = {k: v for k, v in spec["model"].items() if k not in ("name", "event_shape")}
        try:
            return cls(event_shape, **options, **{k: spec[k] for k in _COMPONENTS})
        except TypeError as e:
            raise ValueError(f"{cls.__name__} cannot be built from a spec ({e}); a VAE subclass with its own __init__ "
                             f"must take the VAE's arguments (event_shape, latent_dim, encoder, decoder, guide, prior, "
                             f"likelihood) and pass them on, or define its own from_spec(spec, event_shape)") from None

    @property
    def encoder(self) -> nn.Module:
        return self.q.encoder

    def _decoder_out_shape(self) -> tuple[int, ...]:
        # The likelihood says how many numbers it needs per data dimension; they stack on the first axis.
        k = self.likelihood.params_per_dim
        return (k * self.event_shape[0], *self.event_shape[1:])

    def model(self, batch) -> None:
        x = as_batch(batch)["x"]
        pyro.module("decoder", self.decoder)
        pyro.module("prior", self.prior)
        pyro.module("likelihood", self.likelihood)
        with data_plate(x.shape[0]):
            z = pyro.sample("z", self.prior(x.shape[0]))
            pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)

    def guide(self, batch) -> torch.Tensor:
        return self.q(as_batch(batch)["x"])

    # ---- the direct loss: Trace_ELBO's estimator without building traces ------------------------------------
    def supports_direct_loss(self, objective: dict) -> bool:
        """Whether :meth:`direct_terms` are this program's ELBO terms under ``objective``: the stock programs (not a
        subclass's own ``model`` or ``guide``), a guide from ``ppvae.guides``, one particle of an ELBO."""
        stock = type(self).model is VAE.model and type(self).guide is VAE.guide
        known_guide = type(self.q) in (MeanFieldGaussianGuide, IAFGuide)
        return stock and known_guide and objective.get("num_particles", 1) == 1 and objective["name"] in ELBO_OBJECTIVES

    def direct_terms(self, batch, objective: dict) -> tuple[torch.Tensor, torch.Tensor]:
        r"""The two terms of Trace_ELBO's surrogate loss for the stock program on one particle, summed over the
        batch, from the same modules in the same order of random draws, without the two Pyro traces (which cost
        more than the network at small batches):

            recon = log p(x | z),   kl = log q(z | x) - log p(z),   z = rsample(q(z | x))

        with the KL in closed form where registered under TraceMeanField_ELBO. beta weighs them where the training
        loss does (:func:`~ppvae.inference.objectives.beta_weighted`); tested equal to Pyro's loss and gradients
        under :class:`~ppvae.inference.objectives.KLScale` on the same draws; only valid where
        :meth:`supports_direct_loss` says so.
        """
        x = as_batch(batch)["x"]
        q = self.q.posterior(x)
        gaussian = type(self.q) is MeanFieldGaussianGuide and type(self.prior) is StandardNormal
        if gaussian:  # q.rsample()'s own draw, kept: log q(z) - log p(z) below needs its standard normal eps
            loc, scale = q.base_dist.loc, q.base_dist.scale
            eps = torch.empty_like(loc).normal_()
            z = loc + eps * scale
        else:
            z = q.rsample()
        recon = self.likelihood.log_prob_sum(self.decoder(z), x)
        if objective["name"] == "TraceMeanField_ELBO":
            try:
                return recon, kl_divergence(q, self.prior(x.shape[0])).sum()
            except NotImplementedError:
                pass
        if gaussian:
            # log N(z; loc, scale) - log N(z; 0, 1) = (z^2 - eps^2) / 2 - log scale, with z = loc + scale * eps
            kl = (0.5 * (z.square() - eps.square()) - scale.log()).sum()
        else:
            p = self.prior(x.shape[0])
            kl = (q.log_prob(z) - p.log_prob(z)).sum()
        return recon, kl

    # ---- using a trained model -------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, n: int) -> torch.Tensor:
        """E[x | z] for n draws z ~ p(z): the usual picture of 'samples' from a VAE."""
        return self.decode(self.prior(int_option(n, 1, "generate's n (how many samples)")).sample())

    @torch.no_grad()
    def encode(self, x) -> torch.Tensor:
        """A point summary of q(z | x) (the posterior mean for a Gaussian guide)."""
        return self.q.encode(as_batch(x)["x"])

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z] for codes ``z`` of shape (N, latent_dim)."""
        if not torch.is_tensor(z) or z.ndim != 2 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"decode takes codes z of shape (N, {self.latent_dim}) (N codes of latent_dim "
                             f"{self.latent_dim}), got {brief(z)}")
        return self.likelihood.mean(self.decoder(z))

    @torch.no_grad()
    def reconstruct(self, x) -> torch.Tensor:
        return self.decode(self.encode(x))

    def check_data(self, batch) -> None:
        """Fail with a clear message if ``x`` cannot be modelled: wrong shape, or outside the support."""
        check_x(as_batch(batch)["x"], self.event_shape, self.likelihood, type(self).__name__)

    def spec(self) -> dict:
        """The spec sections that rebuild this VAE (its architecture, not its weights)."""
        extra = {k: spec_value(v, f"{type(self).__name__} argument {k!r}")  # a subclass's own arguments
                 for k, v in self.__dict__.get("_ppvae_init", {}).items()
                 if k not in ("event_shape", "latent_dim", *_COMPONENTS)}
        return {
            "model": {"name": registered_name(self), "event_shape": list(self.event_shape),
                      "latent_dim": self.latent_dim, **extra},
            **part_sections(self.encoder, self.decoder, self.q, self.prior, self.likelihood),
        }


def part_sections(encoder, decoder, guide, prior, likelihood) -> dict:
    """The spec sections of a VAE's parts, each rebuilt by name and options from its structural arguments."""
    return {"encoder": describe(encoder, structural=2), "decoder": describe(decoder, structural=2),
            "guide": describe(guide, structural=2), "prior": describe(prior, structural=2),
            "likelihood": describe(likelihood, structural=1)}


def check_x(x: torch.Tensor, event_shape: tuple, likelihood, who: str) -> None:
    """Refuse data a likelihood over ``event_shape`` cannot score: wrong shape or dtype, non-finite values, or
    values outside the likelihood's support; one line saying which and where."""
    if tuple(x.shape[1:]) != tuple(event_shape):
        raise ValueError(
            f"the data has event shape {tuple(x.shape[1:])} but this {who} was built for {tuple(event_shape)}; "
            f"build the {who} with event_shape={tuple(x.shape[1:])} (in a spec it is taken from the data)"
        )
    if not x.is_floating_point():
        raise ValueError(f"the {who}'s likelihoods score real-valued data, but x has dtype {x.dtype}; convert it "
                         f"(x.float()) or use a model for integer tokens")
    for start, part in zip(range(0, x.shape[0], 1024), chunks(x)):  # chunks: no data-sized temporaries
        finite = torch.isfinite(part)
        if finite.all():
            continue
        bad = sum(int((~torch.isfinite(p)).sum()) for p in chunks(x))
        first = tuple(int(i) for i in (~finite).nonzero()[0])
        first = (first[0] + start, *first[1:])
        raise ValueError(
            f"the data contain {bad} non-finite value(s) (NaN or inf), the first at index {first}; "
            f"remove or impute them before training"
        )
    likelihood.check_support(x)
