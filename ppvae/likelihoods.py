"""Likelihoods p(x | z): turn the decoder's output into a distribution over the data.

A likelihood owns the decoder's output width (``params_per_dim`` outputs per data dimension), checks that the
data lies in its support, and builds a distribution whose event shape is the data's event shape, so the
observed site's ``log_prob`` is one number per example.
"""

from __future__ import annotations

import math

import torch
from torch import nn

import pyro.distributions as dist

from .registry import LIKELIHOODS, Component


class Likelihood(Component, nn.Module):
    """Base class. ``likelihood(decoder_output)`` returns p(x | z) with the data's event shape."""

    #: decoder outputs per data dimension (a learned-variance Gaussian needs two: mean and scale)
    params_per_dim: int = 1
    #: whether bits per dimension mean something (a density on continuous data does not give code lengths)
    discrete: bool = False

    def __init__(self, event_shape):
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)

    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:
        raise NotImplementedError

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """The expected data E[x | z], used for pictures of samples and reconstructions."""
        raise NotImplementedError

    def check_support(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` saying what is wrong if ``x`` cannot be data for this likelihood."""

    def _event(self, d: dist.TorchDistribution) -> dist.TorchDistribution:
        # The data's dimensions form one event, so log_prob is one number per example (and per particle).
        return d.to_event(len(self.event_shape))


def _check_range(x: torch.Tensor, lo: float, hi: float, what: str) -> None:
    xmin, xmax = x.min().item(), x.max().item()
    if xmin < lo or xmax > hi:
        raise ValueError(
            f"{what} likelihood needs data in [{lo:g}, {hi:g}], but the data ranges over "
            f"[{xmin:.4g}, {xmax:.4g}]; rescale the data (e.g. divide 8-bit images by 255) "
            f"or choose a likelihood for real-valued data such as 'gaussian'"
        )


@LIKELIHOODS.register("bernoulli")
class Bernoulli(Likelihood):
    r"""Independent Bernoulli pixels with logits from the decoder.

    .. math:: \log p(x \mid z) = \sum_i x_i \log \sigma(f_i(z)) + (1 - x_i) \log(1 - \sigma(f_i(z)))

    As in Kingma & Welling (2014) and Pyro's VAE example, grey levels in [0, 1] are accepted as soft targets
    (the binary cross-entropy); the result is then not a normalised density of grey-level data, which is what
    the continuous Bernoulli corrects.
    """

    discrete = True

    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:
        # validate_args=False: the support check is done once on the data set, not on every batch.
        return self._event(dist.Bernoulli(logits=out, validate_args=False))

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out)

    def check_support(self, x: torch.Tensor) -> None:
        _check_range(x, 0.0, 1.0, "the Bernoulli")


@LIKELIHOODS.register("gaussian")
class Gaussian(Likelihood):
    r"""Independent Gaussian data with decoder mean and a fixed standard deviation ``scale``.

    .. math:: \log p(x \mid z) = \sum_i \log \mathcal{N}(x_i; f_i(z), \sigma^2)

    With fixed sigma the reconstruction term is a scaled squared error plus a constant
    -D (log sigma + log(2 pi) / 2), which is why small sigma weights reconstruction against the KL.
    """

    def __init__(self, event_shape, *, scale: float = 0.1):
        super().__init__(event_shape)
        if not scale > 0:
            raise ValueError(f"gaussian likelihood scale must be > 0, got {scale}")
        self.scale = float(scale)

    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:
        return self._event(dist.Normal(out, self.scale))

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return out


def bits_per_dim(nats_per_example: float, num_dims: int) -> float:
    """Convert a negative log-likelihood per example in nats to bits per data dimension."""
    return nats_per_example / (num_dims * math.log(2.0))
