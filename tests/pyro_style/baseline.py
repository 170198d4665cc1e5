"""The deterministic baseline of Pyro's conditional VAE example (``examples/cvae/baseline.py``): a network from
the visible quadrants of a digit to all its pixels, trained before the CVAE and passed to its constructor."""

import torch
import torch.nn as nn


class BaselineNet(nn.Module):
    def __init__(self, hidden_1, hidden_2):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(784, hidden_1), nn.ReLU(), nn.Linear(hidden_1, hidden_2), nn.ReLU(),
                                    nn.Linear(hidden_2, 784))

    def forward(self, x):
        return torch.sigmoid(self.layers(x.view(-1, 784)))
