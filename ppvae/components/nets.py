"""Encoder and decoder networks.

An encoder maps a batch ``(B, *event_shape)`` to ``(B, out_dim)`` features (the guide decides what they mean);
a decoder maps ``(B, latent_dim)`` to ``(B, *out_shape)`` raw outputs (the likelihood decides what they mean).
Shapes are checked at construction so a mismatch between data and network fails with a message, not deep
inside a matmul.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..registry import DECODERS, ENCODERS, Component, int_list_option, int_option

_ACTIVATIONS = {"relu": nn.ReLU, "softplus": nn.Softplus, "elu": nn.ELU, "tanh": nn.Tanh, "gelu": nn.GELU}


def _activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name]()
    except (KeyError, TypeError):
        raise ValueError(f"unknown activation {name!r}; choose one of: {', '.join(sorted(_ACTIVATIONS))}") from None


def _mlp(sizes: list[int], activation: str) -> nn.Sequential:
    _activation(activation)  # checked even when there is no hidden layer to use it, so the spec stays honest
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(_activation(activation))
    return nn.Sequential(*layers)


def _hidden(hidden) -> list[int]:
    return int_list_option(hidden, 1, "hidden layer sizes")


@ENCODERS.register("mlp")
class MLPEncoder(Component, nn.Module):
    """Flatten the input and apply a multilayer perceptron (Kingma & Welling 2014 used one hidden layer)."""

    def __init__(self, event_shape, out_dim: int, *, hidden=(400,), activation: str = "relu"):
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.hidden = _hidden(hidden)
        self.activation = activation
        self.net = _mlp([math.prod(self.event_shape), *self.hidden, out_dim], activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


@DECODERS.register("mlp")
class MLPDecoder(Component, nn.Module):
    """A multilayer perceptron from z to the likelihood's parameters, reshaped to ``out_shape``."""

    def __init__(self, latent_dim: int, out_shape, *, hidden=(400,), activation: str = "relu"):
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.hidden = _hidden(hidden)
        self.activation = activation
        self.net = _mlp([latent_dim, *self.hidden, math.prod(self.out_shape)], activation)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(*z.shape[:-1], *self.out_shape)


def _check_image_shape(event_shape, who: str) -> tuple[int, int, int]:
    if len(event_shape) != 3 or event_shape[1] < 4 or event_shape[2] < 4:
        kind = who.split()[-1]  # encoder or decoder
        shape = "the data has event shape" if kind == "encoder" else \
            "its output (the data's shape, the likelihood's parameters per pixel stacked on the channels) has shape"
        raise ValueError(
            f"the {who} needs images of shape (channels, height, width), at least 4 x 4 (e.g. (1, 28, 28) or "
            f"(3, 30, 45)), but {shape} {tuple(event_shape)}; use {kind} 'mlp' for vector data"
        )
    return tuple(int(s) for s in event_shape)


class _ConvNet(Component, nn.Module):
    """Shared option handling of the conv encoder and decoder (28 -> 14 -> 7 for MNIST; any size from 4 x 4)."""

    def _set_options(self, shape, who: str, channels, hidden: int, activation: str) -> tuple[int, ...]:
        c, h, w = _check_image_shape(shape, who)
        self.channels = _hidden(channels)
        if len(self.channels) != 2:
            raise ValueError(f"{who} channels must list two sizes, got {self.channels}")
        self.hidden = int_option(hidden, 1, f"{who} hidden")
        self.activation = activation
        return (c, h, w)


@ENCODERS.register("conv")
class ConvEncoder(_ConvNet):
    """Two stride-2 convolutions (28 -> 14 -> 7 for MNIST; each halves a side, rounding down) and a linear layer,
    as in DCGAN-style VAEs. Any number of channels (grey, RGB) and any height and width from 4."""

    def __init__(self, event_shape, out_dim: int, *, channels=(32, 64), hidden: int = 256, activation: str = "relu"):
        super().__init__()
        self.event_shape = self._set_options(event_shape, "conv encoder", channels, hidden, activation)
        c, h, w = self.event_shape
        c1, c2 = self.channels
        self.net = nn.Sequential(
            nn.Conv2d(c, c1, 4, stride=2, padding=1), _activation(activation),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), _activation(activation),
            nn.Flatten(),
            nn.Linear(c2 * (h // 2 // 2) * (w // 2 // 2), self.hidden), _activation(activation),
            nn.Linear(self.hidden, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@DECODERS.register("conv")
class ConvDecoder(_ConvNet):
    """The mirror of :class:`ConvEncoder`: linear layer, then two stride-2 transposed convolutions from
    (ceil(h / 4), ceil(w / 4)) to (4 ceil(h / 4), 4 ceil(w / 4)), cropped to (h, w) where a side is not a
    multiple of 4."""

    def __init__(self, latent_dim: int, out_shape, *, channels=(64, 32), hidden: int = 256, activation: str = "relu"):
        super().__init__()
        self.out_shape = self._set_options(out_shape, "conv decoder", channels, hidden, activation)
        c, h, w = self.out_shape
        c1, c2 = self.channels
        h4, w4 = -(-h // 4), -(-w // 4)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, self.hidden), _activation(activation),
            nn.Linear(self.hidden, c1 * h4 * w4), _activation(activation),
            nn.Unflatten(1, (c1, h4, w4)),
            nn.ConvTranspose2d(c1, c2, 4, stride=2, padding=1), _activation(activation),
            nn.ConvTranspose2d(c2, c, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[:-1]
        _, h, w = self.out_shape
        out = self.net(z.reshape(-1, z.shape[-1]))[..., :h, :w]  # (4 ceil(h/4), 4 ceil(w/4)) -> (h, w)
        return out.reshape(*batch, *self.out_shape)
