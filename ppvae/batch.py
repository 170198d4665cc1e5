"""Batches: mappings of tensors that share a leading example axis, and the few operations every layer uses.

A batch holds ``x`` always, and ``y`` (labels), ``labeled``, ``mask``, ``lengths`` or other keys where the data
have them. Reading a key the data lack is a one-line error naming the key.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import torch


class BatchKeyError(KeyError, ValueError):
    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


class Batch(dict):
    """A batch: a dict of tensors sharing the leading example axis; a missing key is a one-line error."""

    def __missing__(self, key):
        raise BatchKeyError(f"the model reads batch[{key!r}] but the data provide only {', '.join(map(repr, self))}; "
                            f"choose a dataset with {key!r} (labels are 'y'), or a model that does not need it")


def as_batch(data) -> Batch:
    """A tensor ``x`` is the batch ``{"x": x}``; a mapping is kept (as a :class:`Batch`)."""
    if isinstance(data, Batch):
        return data
    if isinstance(data, Mapping):
        return Batch(data)
    if torch.is_tensor(data):
        return Batch(x=data)
    raise TypeError(f"a batch is a tensor x or a mapping of tensors such as {{'x': x, 'y': y}}, got "
                    f"{type(data).__name__}")


def batch_size(batch) -> int:
    rows = getattr(batch, "rows", None)  # a program's arguments know their rows (their values may be packed)
    return rows if rows else next(iter(as_batch(batch).values())).shape[0]


def take(batch, index) -> Batch:
    """The examples ``index`` (a slice or index tensor) of every tensor in the batch."""
    return Batch({k: v[index] for k, v in as_batch(batch).items()})


def batches(batch, size: int):
    """Consecutive slices of at most ``size`` examples; ``size`` (a batch size) must be an integer >= 1."""
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {size!r}")
    batch = as_batch(batch)
    n = batch_size(batch)
    for start in range(0, n, size):
        yield take(batch, slice(start, start + size))


def to_device(batch, device) -> Batch:
    return Batch({k: v.to(device) for k, v in as_batch(batch).items()})


def one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Float one-hot vectors of integer labels, shape (*y.shape, num_classes), as ``F.one_hot(y).float()`` gives
    but without its check of the labels' range on the host (a training step stays free of host reads; the labels
    are checked once, before training)."""
    return (y.unsqueeze(-1) == torch.arange(num_classes, device=y.device)).float()


__all__ = ["one_hot", "Batch", "BatchKeyError", "as_batch", "batch_size", "take", "batches", "to_device"]
