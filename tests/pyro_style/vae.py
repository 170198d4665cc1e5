"""A variational autoencoder written the way Pyro's examples write one (``examples/vae/vae.py``): a plain
``nn.Module`` whose ``model(x)`` and ``guide(x)`` take the images, with its own site names ("latent", "obs"), a
constructor of keyword defaults and a ``reconstruct_img`` helper. Nothing in it knows about ppvae."""

import pyro
import pyro.distributions as dist
import torch
import torch.nn as nn


class Encoder(nn.Module):
    """q(z | x) as a diagonal Gaussian: a loc and a positive scale per latent dimension."""

    def __init__(self, z_dim, hidden_dim):
        super().__init__()
        self.hidden = nn.Linear(784, hidden_dim)
        self.to_loc = nn.Linear(hidden_dim, z_dim)
        self.to_log_scale = nn.Linear(hidden_dim, z_dim)
        self.act = nn.Softplus()

    def forward(self, x):
        h = self.act(self.hidden(x.reshape(-1, 784)))
        return self.to_loc(h), torch.exp(self.to_log_scale(h))


class Decoder(nn.Module):
    """p(x | z): Bernoulli means of the 784 pixels."""

    def __init__(self, z_dim, hidden_dim):
        super().__init__()
        self.hidden = nn.Linear(z_dim, hidden_dim)
        self.to_pixels = nn.Linear(hidden_dim, 784)
        self.act = nn.Softplus()

    def forward(self, z):
        return torch.sigmoid(self.to_pixels(self.act(self.hidden(z))))


class VAE(nn.Module):
    def __init__(self, z_dim=50, hidden_dim=400, use_cuda=False):
        super().__init__()
        self.encoder = Encoder(z_dim, hidden_dim)
        self.decoder = Decoder(z_dim, hidden_dim)
        if use_cuda:
            self.cuda()
        self.use_cuda = use_cuda
        self.z_dim = z_dim

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            loc = torch.zeros(x.shape[0], self.z_dim, dtype=x.dtype, device=x.device)
            scale = torch.ones(x.shape[0], self.z_dim, dtype=x.dtype, device=x.device)
            z = pyro.sample("latent", dist.Normal(loc, scale).to_event(1))
            probs = self.decoder(z)
            # grey levels scored as relaxed Bernoulli values
            pyro.sample("obs", dist.Bernoulli(probs, validate_args=False).to_event(1), obs=x.reshape(-1, 784))
            return probs

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.encoder(x)
            pyro.sample("latent", dist.Normal(loc, scale).to_event(1))

    def reconstruct_img(self, x):
        loc, scale = self.encoder(x)
        z = dist.Normal(loc, scale).sample()
        return self.decoder(z)
