"""Guides conditioned on a class label: q(z | x, y) for the CVAE and M2, and M2's classifier q(y | x)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConditionalEncoder(nn.Module):
    r"""Features of x and a one-hot label y, for a guide q(z | x, y):

    .. math:: h(x, y) = W\,[\mathrm{relu}(f(x)), \mathrm{onehot}(y)] + b

    ``f`` is any registered encoder (it sees x alone, with ``features`` outputs), so y enters at its last hidden
    layer. The registered guide (``normal``, ``iaf``) reads its parameters off h as it would off an encoder of x.
    The input is the pair ``(x, onehot)``; the one-hot may carry leading dimensions (enumerated classes, shape
    ``(C, 1, C)``), which broadcast against the examples: f(x) runs once whatever the number of classes.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, out_dim: int, features: int):
        super().__init__()
        self.encoder = encoder
        self.num_classes = int(num_classes)
        self.head = nn.Linear(int(features) + self.num_classes, int(out_dim))

    def forward(self, inputs) -> torch.Tensor:
        x, onehot = inputs
        h = F.relu(self.encoder(x))
        shape = torch.broadcast_shapes(h.shape[:-1], onehot.shape[:-1])
        return self.head(torch.cat([h.expand(*shape, -1), onehot.expand(*shape, -1)], -1))


def seen_label_logits(logits: torch.Tensor, y: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    r"""q(y | x) where the label is unknown, the point mass at the label where it is known (``seen``).

    Under TraceEnum_ELBO, which sums over every class weighted by q(y | x), a point mass turns the row's term into
    the labelled bound L(x, y): the other classes get weight exp(-1e30) = 0. A finite -1e30 rather than -inf keeps
    their 0 * log q terms at 0 instead of NaN.
    """
    point = torch.full_like(logits, -1e30).scatter_(-1, y.unsqueeze(-1), 0.0)
    return torch.where(seen.unsqueeze(-1), point, logits)
