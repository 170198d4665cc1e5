"""Models a user writes, for the contract tests: none of them is ppvae's stock program.

Loaded by the tests by file path (``tests/user_models.py:HierarchicalVAE``), as a user would name them.
"""

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

import ppvae


def _mlp(a, h, b):
    return nn.Sequential(nn.Linear(a, h), nn.ReLU(), nn.Linear(h, b))


class HierarchicalVAE(ppvae.Model):
    """Two stochastic layers, z2 -> z1 -> x (a ladder-free hierarchical VAE), written as plain Pyro."""

    def __init__(self, event_shape, z1_dim: int = 8, z2_dim: int = 4, hidden: int = 64):
        super().__init__()
        self.event_shape = tuple(event_shape)
        d = int(torch.tensor(self.event_shape).prod())
        self.z1_dim, self.z2_dim = z1_dim, z2_dim
        self.p_z1 = _mlp(z2_dim, hidden, 2 * z1_dim)  # p(z1 | z2)
        self.p_x = _mlp(z1_dim, hidden, d)  # p(x | z1), Bernoulli logits
        self.q_z1 = _mlp(d, hidden, 2 * z1_dim)  # q(z1 | x)
        self.q_z2 = _mlp(z1_dim, hidden, 2 * z2_dim)  # q(z2 | z1)

    @staticmethod
    def _normal(out):
        loc, raw = out.chunk(2, -1)
        return dist.Normal(loc, F.softplus(raw) + 1e-4).to_event(1)

    def model(self, batch):
        x = batch["x"].flatten(1)
        with pyro.plate("data", x.shape[0]):
            z2 = pyro.sample("z2", dist.Normal(x.new_zeros(self.z2_dim), 1.0).to_event(1))
            z1 = pyro.sample("z1", self._normal(self.p_z1(z2)))
            pyro.sample("x", dist.Bernoulli(logits=self.p_x(z1), validate_args=False).to_event(1), obs=x)

    def guide(self, batch):
        x = batch["x"].flatten(1)
        with pyro.plate("data", x.shape[0]):
            z1 = pyro.sample("z1", self._normal(self.q_z1(x)))
            pyro.sample("z2", self._normal(self.q_z2(z1)))

    @torch.no_grad()
    def encode(self, x):
        return self._normal(self.q_z1(x.flatten(1))).mean

    @torch.no_grad()
    def decode(self, z1):
        return torch.sigmoid(self.p_x(z1)).view(*z1.shape[:-1], *self.event_shape)

    @torch.no_grad()
    def reconstruct(self, x):
        return self.decode(self.encode(x))

    @torch.no_grad()
    def generate(self, n):
        z2 = torch.randn(n, self.z2_dim, device=self.p_x[0].weight.device)
        return self.decode(self._normal(self.p_z1(z2)).sample())


class BareVAE(ppvae.Model):
    """Only the two programs: no generate, encode, decode or reconstruct."""

    def __init__(self, event_shape, latent_dim: int = 4):
        super().__init__()
        d = int(torch.tensor(tuple(event_shape)).prod())
        self.latent_dim = latent_dim
        self.enc = _mlp(d, 32, 2 * latent_dim)
        self.dec = _mlp(latent_dim, 32, d)

    def model(self, batch):
        x = batch["x"].flatten(1)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.dec(z), validate_args=False).to_event(1), obs=x)

    def guide(self, batch):
        x = batch["x"].flatten(1)
        with pyro.plate("data", x.shape[0]):
            loc, raw = self.enc(x).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, F.softplus(raw) + 1e-4).to_event(1))


class LaplaceVAE(ppvae.VAE):
    """The stock VAE with only its model overridden: a Laplace prior, no new parameters."""

    def model(self, batch, beta=1.0):
        x = batch["x"]
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Laplace(x.new_zeros(self.latent_dim), 1.0).to_event(1))
            pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)


class OwnPlateVAE(ppvae.VAE):
    """A model that opens its own data plate around the stock guide's site (the guide must compose inside)."""

    def guide(self, batch, beta=1.0):
        x = batch["x"]
        with pyro.plate("data", x.shape[0]):
            return self.q(x)


class LabelledVAE(BareVAE):
    """Reads the labels: the batch key 'y' must be in the data."""

    batch_keys = ("x", "y")

    def model(self, batch):
        pyro.deterministic("y_seen", batch["y"].float())
        return super().model(batch)


class UndeclaredLabelVAE(BareVAE):
    """Reads batch['y'] without declaring it."""

    def guide(self, batch):
        batch["y"]
        return super().guide(batch)


class WrongSiteVAE(BareVAE):
    def guide(self, batch):
        x = batch["x"].flatten(1)
        with pyro.plate("data", x.shape[0]):
            loc, raw = self.enc(x).chunk(2, -1)
            pyro.sample("w", dist.Normal(loc, F.softplus(raw) + 1e-4).to_event(1))


class DiscreteLatentVAE(ppvae.Model):
    """A Bernoulli code (not reparameterizable): Trace_ELBO cannot train it, TraceEnum_ELBO sums it out."""

    def __init__(self, event_shape):
        super().__init__()
        d = int(torch.tensor(tuple(event_shape)).prod())
        self.dec = nn.Linear(1, d)
        self.enc = nn.Linear(d, 1)

    def model(self, batch):
        x = batch["x"].flatten(1)
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Bernoulli(x.new_tensor(0.5)), infer={"enumerate": "parallel"})
            logits = self.dec(c.unsqueeze(-1))
            pyro.sample("x", dist.Bernoulli(logits=logits, validate_args=False).to_event(1), obs=x)

    def guide(self, batch):
        x = batch["x"].flatten(1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Bernoulli(logits=self.enc(x).squeeze(-1)), infer={"enumerate": "parallel"})


class NoBroadcastVAE(BareVAE):
    """Reshapes with the batch size, so it cannot run under a leading particle dimension."""

    def model(self, batch):
        x = batch["x"].flatten(1)
        n = x.shape[0]
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent_dim), 1.0).to_event(1))
            logits = self.dec(z.reshape(n, self.latent_dim))
            pyro.sample("x", dist.Bernoulli(logits=logits, validate_args=False).to_event(1), obs=x)


class MyLaplacePrior(nn.Module):
    """A user's prior: a plain nn.Module following the component convention (structural args, then options)."""

    def __init__(self, latent_dim, event_shape=(), *, scale: float = 1.0):
        super().__init__()
        self.latent_dim, self.scale = latent_dim, scale
        self.register_buffer("_loc", torch.zeros(latent_dim))

    def forward(self, batch_size):
        return dist.Laplace(self._loc, self.scale).to_event(1).expand([batch_size])


class Nets(nn.Module):
    """The parameters of the two plain functions below (Pyro's examples' style)."""

    def __init__(self, d: int = 784, latent_dim: int = 4):
        super().__init__()
        self.d, self.latent_dim = d, latent_dim
        self.enc = _mlp(d, 32, 2 * latent_dim)
        self.dec = _mlp(latent_dim, 32, d)


nets = Nets(d=64)  # module-level, as in Pyro's examples; ppvae.from_functions(model, guide, nets)


def function_model(batch):
    pyro.module("nets", nets)
    x = batch["x"].flatten(1)
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(nets.latent_dim), 1.0).to_event(1))
        pyro.sample("x", dist.Bernoulli(logits=nets.dec(z), validate_args=False).to_event(1), obs=x)


def function_guide(batch):
    x = batch["x"].flatten(1)
    with pyro.plate("data", x.shape[0]):
        loc, raw = nets.enc(x).chunk(2, -1)
        pyro.sample("z", dist.Normal(loc, F.softplus(raw) + 1e-4).to_event(1))


class ScaledVAE(BareVAE):
    """A setting that changes the program: the observation's weight."""

    def __init__(self, event_shape, latent_dim: int = 4, obs_scale: float = 1.0, hidden=None):
        super().__init__(event_shape, latent_dim)
        self.obs_scale = obs_scale
        self.hidden = hidden  # None: the default width

    def model(self, batch):
        with pyro.poutine.scale(scale=self.obs_scale):
            return super().model(batch)


class BatchNormVAE(BareVAE):
    """An encoder with batch norm: buffers that every training-mode pass updates."""

    def __init__(self, event_shape, latent_dim: int = 4):
        super().__init__(event_shape, latent_dim)
        d = int(torch.tensor(tuple(event_shape)).prod())
        self.enc = nn.Sequential(nn.Linear(d, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 2 * latent_dim))


class GaussianGrid(ppvae.Model):
    """z_np ~ N(0, 1), x_np ~ N(z_np, 1) over a data plate and a feature plate; the guide is the exact
    posterior N(x/2, 1/2), so every importance weight is p(x) = prod_p N(x_np; 0, 2) exactly."""

    max_plate_nesting = 2

    def __init__(self):
        super().__init__()
        self.unused = nn.Linear(1, 1)  # a module with a parameter, as the trainer needs one

    def model(self, batch):
        x = batch["x"]
        with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("feat", x.shape[1], dim=-1):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(self, batch):
        x = batch["x"]
        with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("feat", x.shape[1], dim=-1):
            pyro.sample("z", dist.Normal(x / 2, 0.5 ** 0.5))


class GlobalLatent(GaussianGrid):
    """One latent shared by all examples: no per-example importance weight exists."""

    def model(self, batch):
        x = batch["x"]
        shift = pyro.sample("shift", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("feat", x.shape[1], dim=-1):
            pyro.sample("x", dist.Normal(shift, 1.0), obs=x)

    def guide(self, batch):
        pyro.sample("shift", dist.Normal(0.0, 1.0))


class FixedNoiseVAE(ppvae.Model):
    """A VAE whose reparameterization noise is a fixed function of the example (not drawn at random), so that
    its gradient on a batch is deterministic: used to check that several processes take one process's steps.

    The guide's sample is ``loc + scale * eps(x)`` with ``eps(x)`` a fixed pseudo-random map of x; its density is
    the Normal's (``Delta(..., log_density)``), so the ELBO estimator is the usual reparameterized one.
    """

    def __init__(self, event_shape, latent_dim: int = 4, hidden: int = 32):
        super().__init__()
        self.event_shape = tuple(event_shape)
        d = int(torch.tensor(self.event_shape).prod())
        self.latent_dim = latent_dim
        self.enc = _mlp(d, hidden, 2 * latent_dim)
        self.dec = _mlp(latent_dim, hidden, d)
        self.register_buffer("mix", torch.randn(d, latent_dim, generator=torch.Generator().manual_seed(0)))

    def model(self, batch):
        x = batch["x"].flatten(1)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.dec(z), 0.5).to_event(1), obs=x)

    def guide(self, batch):
        x = batch["x"].flatten(1)
        loc, raw = self.enc(x).chunk(2, -1)
        scale = F.softplus(raw) + 1e-4
        eps = torch.sin(1000.0 * (x @ self.mix))  # fixed "noise", in [-1, 1]
        z = loc + scale * eps
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Delta(z, log_density=dist.Normal(loc, scale).log_prob(z).sum(-1), event_dim=1))
