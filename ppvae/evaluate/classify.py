"""A small supervised classifier, the yardstick for semi-supervised models and for data augmentation.

The network is a registered encoder (by default the same MLP as M2's q(y | x)) with one output per class,
trained by Adam on cross-entropy for a fixed number of steps, so two training sets compare at equal compute.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import ENCODERS, component, int_option

DEFAULT_NET = {"name": "mlp", "hidden": [400]}


def train_classifier(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, net=None, steps: int = 1000,
                     batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0, seed: int = 0,
                     extra: tuple[torch.Tensor, torch.Tensor] | None = None, extra_share: float = 0.5) -> nn.Module:
    """A classifier of ``x`` (N, *event) into ``num_classes`` trained on labels ``y`` (N,) for ``steps`` Adam
    steps on batches drawn uniformly with replacement; deterministic for a seed. With ``extra`` (x', y'), e.g.
    synthetic examples, each batch draws ``extra_share`` of its rows from them and the rest from (x, y)."""
    steps, batch_size = int_option(steps, 1, "steps"), int_option(batch_size, 1, "batch_size")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"train_classifier needs as many labels as examples (at least one), got {len(x)} and {len(y)}")
    if not 0.0 <= extra_share < 1.0:
        raise ValueError(f"extra_share must be in [0, 1), got {extra_share}")
    torch.manual_seed(seed)
    model = component(ENCODERS, net or DEFAULT_NET, tuple(x.shape[1:]), num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    n_extra = round(batch_size * extra_share) if extra is not None else 0
    model.train()
    for _ in range(steps):
        rows = torch.randint(len(x), (batch_size - n_extra,), generator=g)
        xb, yb = x[rows], y[rows]
        if n_extra:
            more = torch.randint(len(extra[0]), (n_extra,), generator=g)
            xb, yb = torch.cat([xb, extra[0][more]]), torch.cat([yb, extra[1][more]])
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def accuracy(classifier, x: torch.Tensor, y: torch.Tensor, chunk: int = 2000) -> float:
    """The share of examples whose most probable class (``classifier(x)``'s largest output) is the label."""
    right = sum(int((classifier(x[s:s + chunk]).argmax(-1) == y[s:s + chunk]).sum()) for s in range(0, len(x), chunk))
    return right / len(x)
