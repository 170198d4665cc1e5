"""A conditional VAE written the way Pyro's example writes it (``examples/cvae/cvae.py``): p(output | input), the
input being the visible quadrants of a digit (hidden pixels are -1) and the output the pixels it does not show.
``model(xs, ys=None)`` / ``guide(xs, ys=None)``, an unsized ``pyro.plate("data")``, a pre-trained baseline network
as a constructor argument, and, without ``ys``, the prediction as a deterministic site."""

import pyro
import pyro.distributions as dist
import torch
import torch.nn as nn


class Encoder(nn.Module):
    """A Gaussian over z from an image whose hidden pixels (-1) are filled from a second image."""

    def __init__(self, z_dim, hidden_1, hidden_2):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(784, hidden_1), nn.ReLU(), nn.Linear(hidden_1, hidden_2), nn.ReLU())
        self.loc = nn.Linear(hidden_2, z_dim)
        self.log_scale = nn.Linear(hidden_2, z_dim)

    def forward(self, x, y):
        filled = torch.where(x == -1, y, x).view(-1, 784)
        h = self.body(filled)
        return self.loc(h), torch.exp(self.log_scale(h))


class Decoder(nn.Module):
    def __init__(self, z_dim, hidden_1, hidden_2):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(z_dim, hidden_1), nn.ReLU(), nn.Linear(hidden_1, hidden_2), nn.ReLU(),
                                  nn.Linear(hidden_2, 784))

    def forward(self, z):
        return torch.sigmoid(self.body(z))


class CVAE(nn.Module):
    def __init__(self, z_dim, hidden_1, hidden_2, pre_trained_baseline_net):
        super().__init__()
        self.baseline_net = pre_trained_baseline_net
        self.prior_net = Encoder(z_dim, hidden_1, hidden_2)
        self.generation_net = Decoder(z_dim, hidden_1, hidden_2)
        self.recognition_net = Encoder(z_dim, hidden_1, hidden_2)

    def model(self, xs, ys=None):
        pyro.module("generation_net", self)
        batch_size = xs.shape[0]
        with pyro.plate("data"):
            with torch.no_grad():  # the baseline's guess conditions the prior; training does not change it
                y_hat = self.baseline_net(xs).view(xs.shape)
            prior_loc, prior_scale = self.prior_net(xs, y_hat)
            zs = pyro.sample("z", dist.Normal(prior_loc, prior_scale).to_event(1))
            loc = self.generation_net(zs)
            if ys is not None:  # training scores only the pixels the input hides
                hidden = (xs == -1).view(-1, 784)
                pyro.sample("y", dist.Bernoulli(loc[hidden].view(batch_size, -1), validate_args=False).to_event(1),
                            obs=ys[xs == -1].view(batch_size, -1))
            else:
                pyro.deterministic("y", loc.detach())
            return loc

    def guide(self, xs, ys=None):
        with pyro.plate("data"):
            if ys is None:
                y_hat = self.baseline_net(xs).view(xs.shape)
                loc, scale = self.prior_net(xs, y_hat)
            else:
                loc, scale = self.recognition_net(xs, ys)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))
