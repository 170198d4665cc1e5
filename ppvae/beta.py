"""Beta: the weight of the KL term, E_q[log p(x|z)] - beta * KL(q(z|x) || p(z)), and its relatives.

In Pyro the weight is applied by scaling the latent sample sites by beta in both the model and the guide
(``poutine.scale``), which scales log p(z) and log q(z|x) and hence the KL, and nothing else. A schedule maps
training progress (in epochs, fractional within an epoch) to beta.

Two objectives that are not a scaling of the KL, capacity control and free bits, are ELBO-level terms: they
live here too, as :class:`KLObjective` subclasses that turn per-example reconstruction and KL terms into a
loss, so every rule on the KL term is in this one module.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager

from pyro import poutine

from .registry import BETAS, Component, int_option


def kl_weight(beta: float) -> AbstractContextManager:
    """Context that weights the latent sites it wraps by ``beta``.

    ``poutine.scale`` refuses a zero scale, yet beta = 0 is a real setting (the start of a warm-up, or an
    autoencoder with a noisy code); masking the sites gives exactly the zero-weight objective.
    """
    if beta == 1.0:
        return poutine.scale(scale=1.0)
    if beta == 0.0:
        return poutine.mask(mask=False)
    return poutine.scale(scale=beta)


class BetaSchedule(Component):
    """``schedule(epoch, num_epochs)`` is beta after ``epoch`` (fractional) of ``num_epochs`` epochs."""

    #: True: beta scales the latent sites (poutine.scale). False: a KLObjective with its own loss.
    scaling = True

    def __call__(self, epoch: float, num_epochs: int) -> float:
        raise NotImplementedError

    def log_values(self, epoch: float, num_epochs: int) -> dict[str, float]:
        """What the metrics record about the KL weighting at this point of training."""
        return {"beta": self(epoch, num_epochs)}


def _check_nonnegative(name: str, value: float) -> float:
    value = float(value)
    if not value >= 0:
        raise ValueError(f"beta {name} must be >= 0, got {value}")
    return value


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not value > 0:
        raise ValueError(f"beta {name} must be > 0, got {value:g}")
    return value


@BETAS.register("constant")
class ConstantBeta(BetaSchedule):
    """beta(t) = value. ``value=1`` is the ELBO; ``value>1`` is the beta-VAE of Higgins et al. (2017)."""

    def __init__(self, *, value: float = 1.0):
        self.value = _check_nonnegative("value", value)

    def __call__(self, epoch: float, num_epochs: int) -> float:
        return self.value


@BETAS.register("linear")
class LinearWarmupBeta(BetaSchedule):
    r"""KL annealing (Bowman et al. 2016): beta rises linearly from ``start`` to ``value`` over
    ``warmup_epochs`` epochs, then stays at ``value``.

    .. math:: \beta(t) = \text{start} + (\text{value} - \text{start}) \min(1, t / \text{warmup\_epochs})

    Starting near zero lets the decoder learn to use z before the KL pulls q(z|x) onto the prior, a standard
    remedy for posterior collapse.
    """

    def __init__(self, *, value: float = 1.0, start: float = 0.0, warmup_epochs: float = 10.0):
        self.value = _check_nonnegative("value", value)
        self.start = _check_nonnegative("start", start)
        self.warmup_epochs = _check_positive("warmup_epochs", warmup_epochs)

    def __call__(self, epoch: float, num_epochs: int) -> float:
        frac = min(1.0, max(0.0, epoch / self.warmup_epochs))
        return self.start + (self.value - self.start) * frac


@BETAS.register("cyclical")
class CyclicalBeta(BetaSchedule):
    r"""Cyclical annealing (Fu et al. 2019): training splits into ``cycles`` equal cycles; in each, beta rises
    linearly from 0 to ``value`` over the first ``ratio`` of the cycle and stays there for the rest.

    .. math:: \tau = \frac{t \bmod (T/M)}{T/M}, \qquad \beta(t) = \text{value} \cdot \min(1, \tau / R)

    Each restart at beta = 0 lets the decoder re-learn to use z, which reduces KL vanishing in strong decoders.
    """

    def __init__(self, *, value: float = 1.0, cycles: int = 4, ratio: float = 0.5):
        self.value = _check_nonnegative("value", value)
        if not 0 < float(ratio) <= 1:
            raise ValueError(f"beta ratio must be in (0, 1], got {ratio}")
        self.cycles, self.ratio = int_option(cycles, 1, "beta cycles"), float(ratio)

    def __call__(self, epoch: float, num_epochs: int) -> float:
        # In units of cycles, rounded so that float error at a cycle boundary restarts at 0 rather than ending at 1.
        position = round(epoch * self.cycles / num_epochs, 9)
        tau = position - math.floor(position)
        return self.value * min(1.0, tau / self.ratio)


class KLObjective(BetaSchedule):
    """An ELBO-level rule on the KL term: ``loss(recon, kl, epoch, num_epochs)`` from per-example terms.

    ``recon`` has shape (batch,); ``kl`` has shape (batch, latent_dim) when ``per_dim_kl`` is set, else
    (batch,). The loss is summed over the batch like Pyro's ELBO losses.
    """

    scaling = False
    per_dim_kl = False

    def __call__(self, epoch: float, num_epochs: int) -> float:
        return 1.0

    def loss(self, recon, kl, epoch: float, num_epochs: int):
        raise NotImplementedError


@BETAS.register("capacity")
class CapacityKL(KLObjective):
    r"""Capacity-controlled KL (Burgess et al. 2018, "Understanding disentangling in beta-VAE"):

    .. math:: \mathcal{L} = \mathbb{E}_q[\log p(x \mid z)] - \gamma \, |\mathrm{KL}(q \| p) - C(t)|,
              \qquad C(t) = \text{capacity} \cdot \min(1, t / \text{anneal\_epochs})

    The KL (batch mean, nats per example) is pulled towards a target C that rises linearly, so the code is
    allowed to carry information gradually. The paper used gamma = 1000 and C up to 25 nats.
    """

    def __init__(self, *, gamma: float = 1000.0, capacity: float = 25.0, anneal_epochs: float = 50.0):
        self.gamma = _check_nonnegative("gamma", gamma)
        self.capacity = _check_nonnegative("capacity", capacity)
        self.anneal_epochs = _check_positive("anneal_epochs", anneal_epochs)

    def target(self, epoch: float) -> float:
        return self.capacity * min(1.0, max(0.0, epoch / self.anneal_epochs))

    def __call__(self, epoch: float, num_epochs: int) -> float:
        return self.gamma

    def log_values(self, epoch: float, num_epochs: int) -> dict[str, float]:
        return {"beta": self.gamma, "capacity": self.target(epoch)}

    def loss(self, recon, kl, epoch: float, num_epochs: int):
        n = recon.shape[0]
        return -recon.sum() + self.gamma * n * (kl.mean() - self.target(epoch)).abs()


@BETAS.register("free_bits")
class FreeBits(KLObjective):
    r"""Free bits (Kingma et al. 2016, appendix C): each latent dimension's KL, averaged over the minibatch,
    costs nothing below ``threshold`` nats:

    .. math:: \mathcal{L} = \mathbb{E}_q[\log p(x \mid z)] - \sum_{d} \max\big(\lambda,
              \mathbb{E}_{x \in \text{batch}} \mathrm{KL}_d(x)\big)

    so the optimiser gains nothing by pushing a dimension's KL under lambda, which keeps units from
    collapsing. Needs a prior and guide that factorize over dimensions.
    """

    per_dim_kl = True

    def __init__(self, *, threshold: float = 0.5):
        self.threshold = _check_nonnegative("threshold", threshold)

    def log_values(self, epoch: float, num_epochs: int) -> dict[str, float]:
        return {"beta": 1.0, "free_bits": self.threshold}

    def loss(self, recon, kl, epoch: float, num_epochs: int):
        n = recon.shape[0]
        return -recon.sum() + n * kl.mean(0).clamp(min=self.threshold).sum()


def make_beta(beta) -> BetaSchedule:
    """Accept a number (constant beta), a spec dict, or a schedule."""
    if isinstance(beta, BetaSchedule):
        return beta
    if isinstance(beta, dict):
        opts = dict(beta)
        return BETAS.build(opts.pop("name", "constant"), **opts)
    if isinstance(beta, (int, float)) and not isinstance(beta, bool):
        return ConstantBeta(value=beta)
    raise TypeError(f"beta must be a number, a dict with a 'name', or a BetaSchedule; got {beta!r}")
