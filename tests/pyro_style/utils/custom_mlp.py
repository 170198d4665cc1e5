"""A small MLP helper of the kind Pyro's SS-VAE example imports from a sibling folder (``utils/custom_mlp.py``):
several inputs are concatenated (broadcast against each other where asked, for enumerated labels), and the last
layer may split into several heads with their own activations."""

import torch
import torch.nn as nn


class Exp(nn.Module):
    def forward(self, value):
        return torch.exp(value)


class _Concat(nn.Module):
    def __init__(self, allow_broadcast=False):
        super().__init__()
        self.allow_broadcast = allow_broadcast

    def forward(self, inputs):
        if torch.is_tensor(inputs):
            return inputs
        if self.allow_broadcast:
            shape = torch.broadcast_shapes(*[t.shape[:-1] for t in inputs])
            inputs = [t.expand(*shape, t.shape[-1]) for t in inputs]
        return torch.cat(list(inputs), dim=-1)


class _Heads(nn.ModuleList):
    def forward(self, h):
        return [head(h) for head in self]


def _activation(kind):
    if kind is None:
        return nn.Identity()
    if kind in (nn.Softmax, nn.LogSoftmax):
        return kind(dim=-1)
    return kind() if isinstance(kind, type) else kind


class MLP(nn.Module):
    def __init__(self, sizes, activation=nn.ReLU, output_activation=None, allow_broadcast=False, use_cuda=False):
        super().__init__()
        first, hidden, last = sizes[0], sizes[1:-1], sizes[-1]
        width = first if isinstance(first, int) else sum(first)
        layers = [_Concat(allow_broadcast)]
        for size in hidden:
            linear = nn.Linear(width, size)
            nn.init.normal_(linear.weight, 0, 0.001)
            nn.init.normal_(linear.bias, 0, 0.001)
            layers += [linear, activation()]
            width = size
        if isinstance(last, int):
            layers += [nn.Linear(width, last), _activation(output_activation)]
        else:
            acts = output_activation if isinstance(output_activation, (list, tuple)) \
                else [output_activation] * len(last)
            layers.append(_Heads([nn.Sequential(nn.Linear(width, size), _activation(act))
                                  for size, act in zip(last, acts)]))
        self.net = nn.Sequential(*layers)

    def forward(self, *inputs):
        return self.net(inputs[0] if len(inputs) == 1 else inputs)
