"""Beta: the weight of the KL term, E_q[log p(x|z)] - beta * KL(q(z|x) || p(z)).

In Pyro the weight is applied by scaling the latent sample sites by beta in both the model and the guide
(``poutine.scale``), which scales log p(z) and log q(z|x) and hence the KL, and nothing else. A schedule maps
training progress (in epochs, fractional within an epoch) to beta.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from pyro import poutine

from .registry import BETAS, Component


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

    def __call__(self, epoch: float, num_epochs: int) -> float:
        raise NotImplementedError


def _check_nonnegative(name: str, value: float) -> float:
    value = float(value)
    if not value >= 0:
        raise ValueError(f"beta {name} must be >= 0, got {value}")
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
        if not float(warmup_epochs) > 0:
            raise ValueError(f"beta warmup_epochs must be > 0, got {warmup_epochs}")
        self.warmup_epochs = float(warmup_epochs)

    def __call__(self, epoch: float, num_epochs: int) -> float:
        frac = min(1.0, max(0.0, epoch / self.warmup_epochs))
        return self.start + (self.value - self.start) * frac


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
