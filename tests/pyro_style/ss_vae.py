"""The semi-supervised M2 model written the way Pyro's example writes it (``examples/vae/ss_vae_M2.py``): a plain
``nn.Module`` with ``model(xs, ys=None)`` and ``guide(xs, ys=None)`` over flattened images and one-hot labels, a
sibling helper module imported as ``from utils.custom_mlp import ...``, a ``classifier`` method, and its extra
classification loss as a second pair of programs, ``model_classify`` / ``guide_classify``, scaled by
``aux_loss_multiplier``. Nothing in it knows about ppvae."""

import pyro
import pyro.distributions as dist
import torch
import torch.nn as nn
from utils.custom_mlp import MLP, Exp


class SSVAE(nn.Module):
    def __init__(self, output_size=10, input_size=784, z_dim=50, hidden_layers=(500,), config_enum=None,
                 use_cuda=False, aux_loss_multiplier=None):
        super().__init__()
        self.output_size = output_size
        self.input_size = input_size
        self.z_dim = z_dim
        self.hidden_layers = hidden_layers
        self.allow_broadcast = config_enum == "parallel"
        self.use_cuda = use_cuda
        self.aux_loss_multiplier = aux_loss_multiplier
        self.setup_networks()

    def setup_networks(self):
        hidden = list(self.hidden_layers)
        self.encoder_y = MLP([self.input_size] + hidden + [self.output_size], activation=nn.Softplus,
                             output_activation=nn.Softmax, allow_broadcast=self.allow_broadcast)
        self.encoder_z = MLP([self.input_size + self.output_size] + hidden + [[self.z_dim, self.z_dim]],
                             activation=nn.Softplus, output_activation=[None, Exp],
                             allow_broadcast=self.allow_broadcast)
        self.decoder = MLP([self.z_dim + self.output_size] + hidden + [self.input_size], activation=nn.Softplus,
                           output_activation=nn.Sigmoid, allow_broadcast=self.allow_broadcast)
        if self.use_cuda:
            self.cuda()

    def model(self, xs, ys=None):
        pyro.module("ss_vae", self)
        batch_size = xs.size(0)
        options = dict(dtype=xs.dtype, device=xs.device)
        with pyro.plate("data"):
            zs = pyro.sample("z", dist.Normal(torch.zeros(batch_size, self.z_dim, **options),
                                              torch.ones(batch_size, self.z_dim, **options)).to_event(1))
            uniform = torch.ones(batch_size, self.output_size, **options) / self.output_size
            ys = pyro.sample("y", dist.OneHotCategorical(uniform), obs=ys)
            loc = self.decoder([zs, ys])
            pyro.sample("x", dist.Bernoulli(loc, validate_args=False).to_event(1), obs=xs)
            return loc

    def guide(self, xs, ys=None):
        with pyro.plate("data"):
            if ys is None:
                ys = pyro.sample("y", dist.OneHotCategorical(self.encoder_y(xs)))
            loc, scale = self.encoder_z([xs, ys])
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def classifier(self, xs):
        """One-hot guesses of the digits."""
        alpha = self.encoder_y(xs)
        _, index = torch.topk(alpha, 1)
        return torch.zeros_like(alpha).scatter_(1, index, 1.0)

    def model_classify(self, xs, ys=None):
        pyro.module("ss_vae", self)
        with pyro.plate("data"):
            if ys is not None:
                alpha = self.encoder_y(xs)
                with pyro.poutine.scale(scale=self.aux_loss_multiplier):
                    pyro.sample("y_aux", dist.OneHotCategorical(alpha), obs=ys)

    def guide_classify(self, xs, ys=None):
        pass
