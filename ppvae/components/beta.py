"""Beta: the weight of the KL term, E_q[log p(x|z)] - beta * KL(q(z|x) || p(z)), and its relatives.

A schedule maps training progress (in epochs, fractional within an epoch) to beta. The trainer applies beta to
any program with one handler (:class:`ppvae.inference.objectives.KLScale`), which scales every latent site of
the model and the guide, so log p(z) - log q(z|x) and hence the KL, and nothing else. The rules that rewrite the
KL term instead of scaling it (capacity, free bits, beta-TCVAE) are objectives
(:class:`ppvae.inference.objectives.KLRule`); their old names in the beta section still name them (an alias).
"""

from __future__ import annotations

import math

from ..registry import BETAS, Component, int_option


class BetaSchedule(Component):
    """``schedule(epoch, num_epochs)`` is beta after ``epoch`` (fractional) of ``num_epochs`` epochs."""

    def __call__(self, epoch: float, num_epochs: int) -> float:
        raise NotImplementedError

    def log_values(self, epoch: float, num_epochs: int) -> dict[str, float]:
        """What the metrics record about the KL weighting at this point of training."""
        return {"beta": self(epoch, num_epochs)}


def check_nonnegative(name: str, value: float) -> float:
    value = float(value)
    if not value >= 0:
        raise ValueError(f"beta {name} must be >= 0, got {value}")
    return value


def check_positive(name: str, value: float) -> float:
    value = float(value)
    if not value > 0:
        raise ValueError(f"beta {name} must be > 0, got {value:g}")
    return value


@BETAS.register("constant")
class ConstantBeta(BetaSchedule):
    """beta(t) = value. ``value=1`` is the ELBO; ``value>1`` is the beta-VAE of Higgins et al. (2017)."""

    def __init__(self, *, value: float = 1.0):
        self.value = check_nonnegative("value", value)

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
        self.value = check_nonnegative("value", value)
        self.start = check_nonnegative("start", start)
        self.warmup_epochs = check_positive("warmup_epochs", warmup_epochs)

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
        self.value = check_nonnegative("value", value)
        if not 0 < float(ratio) <= 1:
            raise ValueError(f"beta ratio must be in (0, 1], got {ratio}")
        self.cycles, self.ratio = int_option(cycles, 1, "beta cycles"), float(ratio)

    def __call__(self, epoch: float, num_epochs: int) -> float:
        # In units of cycles, rounded so that float error at a cycle boundary restarts at 0 rather than ending at 1.
        position = round(epoch * self.cycles / num_epochs, 9)
        tau = position - math.floor(position)
        return self.value * min(1.0, tau / self.ratio)


def make_beta(beta) -> BetaSchedule:
    """Accept a number (constant beta), a schedule's name (``"cyclical"``), a spec dict, or a schedule. The old
    names of the KL-rewriting objectives (capacity, free_bits, tcvae) build those objectives (an alias)."""
    if isinstance(beta, BetaSchedule) or (isinstance(beta, Component) and BETAS.holds(beta)):
        return beta  # a schedule, or a KL-rewriting objective under its old beta name
    if isinstance(beta, str):
        return BETAS.build(beta)
    if isinstance(beta, dict):
        opts = dict(beta)
        return BETAS.build(opts.pop("name", "constant"), **opts)
    if isinstance(beta, (int, float)) and not isinstance(beta, bool):
        return ConstantBeta(value=beta)
    raise TypeError(f"beta must be a number, a schedule name, a dict with a 'name', or a BetaSchedule; got {beta!r}")
