"""Priors p(z) over the latent space.

A prior is a module that returns a Pyro distribution with event shape ``(latent_dim,)`` and batch shape
``(batch_size,)`` (so it lines up with the guide inside the data plate, which analytic-KL objectives need).
Generation samples from the same object. A new prior is one subclass plus one ``@PRIORS.register`` line.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from torch import nn

from ..registry import PRIORS, Component, int_list_option, int_option
from .likelihoods import inverse_softplus


class Prior(Component, nn.Module):
    """Base class: ``prior(batch_size)`` is the distribution of z for a batch.

    Built from the latent size and the data's event shape (which only data-space priors such as the
    VampPrior use); options are keyword-only.
    """

    #: whether the VAE must call ``attach_guide`` (priors defined through the guide, e.g. the VampPrior)
    needs_guide = False

    def __init__(self, latent_dim: int, event_shape=()):
        super().__init__()
        self.latent_dim = int_option(latent_dim, 1, "latent_dim")

    def forward(self, batch_size: int) -> dist.TorchDistribution:
        raise NotImplementedError


@PRIORS.register("normal")
class StandardNormal(Prior):
    r"""The isotropic standard normal prior of Kingma & Welling (2014).

    .. math:: p(z) = \prod_{d=1}^{D} \mathcal{N}(z_d; 0, 1)

    KL(q || p) to a diagonal Gaussian guide is analytic, so ``TraceMeanField_ELBO`` uses the closed form.
    """

    def __init__(self, latent_dim: int, event_shape=()):
        super().__init__(latent_dim)
        # Buffers, not parameters: they follow the module to the device but are never trained.
        self.register_buffer("loc", torch.zeros(self.latent_dim))
        self.register_buffer("scale", torch.ones(self.latent_dim))

    def forward(self, batch_size: int) -> dist.TorchDistribution:
        shape = (batch_size, self.latent_dim)
        return dist.Normal(self.loc.expand(shape), self.scale.expand(shape)).to_event(1)


def _expand(d: dist.TorchDistribution, batch_size: int) -> dist.TorchDistribution:
    # Line the prior up with the guide inside the data plate: batch shape (batch_size,).
    return d.expand([batch_size])


def _positive(name: str, value, strict: bool = True) -> float:
    value = float(value)
    if not (value > 0 if strict else value >= 0):
        raise ValueError(f"prior {name} must be > 0, got {value:g}")
    return value


def _count(name: str, value) -> int:
    return int_option(value, 1, f"prior {name}")


@PRIORS.register("conditional")
class ClassConditionalNormal(Prior):
    r"""A learned Gaussian per class, the conditional prior of a CVAE (Sohn et al. 2015):

    .. math:: p_\theta(z \mid y) = \prod_d \mathcal{N}(z_d; \mu_{y,d}, \sigma_{y,d}^2), \quad
              \sigma_{y,d} = \mathrm{softplus}(\rho_{y,d})

    ``prior(batch_size, y)`` takes the labels (any shape; enumerated classes broadcast). Starts at N(0, I) for
    every class. The model passes the number of classes; a model without labels cannot use it.
    """

    conditional = True

    def __init__(self, latent_dim: int, event_shape=(), num_classes: int | None = None):
        super().__init__(latent_dim)
        if num_classes is None:
            raise ValueError("prior 'conditional' is p(z | y), a Gaussian per class, so it needs a model that "
                             "conditions on a class label (model.name = \"cvae\" or \"m2\")")
        self.num_classes = int_option(num_classes, 2, "number of classes")
        self.loc = nn.Parameter(torch.zeros(self.num_classes, self.latent_dim))
        self.raw_scale = nn.Parameter(torch.full((self.num_classes, self.latent_dim), inverse_softplus(1.0)))

    def forward(self, batch_size: int, y: torch.Tensor | None = None) -> dist.TorchDistribution:
        if y is None:
            raise ValueError("the conditional prior p(z | y) needs the class labels y")
        scale = torch.nn.functional.softplus(self.raw_scale[y])
        return dist.Normal(self.loc[y], scale).to_event(1)


@PRIORS.register("learned_normal")
class LearnedNormal(Prior):
    r"""A diagonal Gaussian with learned mean and scale (empirical Bayes on the prior's moments).

    .. math:: p_\theta(z) = \prod_d \mathcal{N}(z_d; \mu_d, \sigma_d^2), \quad \sigma_d = \exp(\rho_d)

    Still conjugate to the Gaussian guide, so the KL stays analytic. Initialised at N(0, I).
    """

    def __init__(self, latent_dim: int, event_shape=()):
        super().__init__(latent_dim)
        self.loc = nn.Parameter(torch.zeros(self.latent_dim))
        self.log_scale = nn.Parameter(torch.zeros(self.latent_dim))

    def forward(self, batch_size: int) -> dist.TorchDistribution:
        return _expand(dist.Normal(self.loc, self.log_scale.exp()).to_event(1), batch_size)


@PRIORS.register("laplace")
class LaplacePrior(Prior):
    r"""Independent Laplace latents, a heavier-tailed, sparsity-favouring prior.

    .. math:: p(z) = \prod_d \frac{1}{2b} \exp(-|z_d| / b)

    torch registers a closed-form KL(Normal || Laplace), so ``TraceMeanField_ELBO`` uses it.
    """

    def __init__(self, latent_dim: int, event_shape=(), *, scale: float = 1.0):
        super().__init__(latent_dim)
        self.scale = _positive("scale", scale)
        self.register_buffer("_loc", torch.zeros(self.latent_dim))

    def forward(self, batch_size: int) -> dist.TorchDistribution:
        return _expand(dist.Laplace(self._loc, self.scale).to_event(1), batch_size)


@PRIORS.register("student_t")
class StudentTPrior(Prior):
    r"""Independent Student-t latents with ``df`` degrees of freedom, fixed or learned.

    .. math:: p(z) = \prod_d \frac{\Gamma(\frac{\nu+1}{2})}{\sqrt{\nu\pi}\,\Gamma(\frac{\nu}{2})}
              \left(1 + \frac{z_d^2}{\nu}\right)^{-\frac{\nu+1}{2}}

    Heavy tails let rare data sit far out in latent space without a large KL penalty (cf. Abiri & Ohlsson
    2020, "Variational auto-encoders with Student's t-prior"). With ``learn_df`` one shared nu is learned,
    kept positive by a softplus. There is no closed-form KL to a Gaussian guide: ``TraceMeanField_ELBO``
    falls back to the Monte Carlo term log q(z) - log p(z) for it.
    """

    def __init__(self, latent_dim: int, event_shape=(), *, df: float = 3.0, learn_df: bool = False):
        super().__init__(latent_dim)
        self.df = _positive("df (degrees of freedom)", df)
        self.learn_df = bool(learn_df)
        raw = torch.tensor(inverse_softplus(self.df))  # so the initial nu is exactly df (stable for large df)
        self.raw_df = nn.Parameter(raw) if self.learn_df else None
        self.register_buffer("_loc", torch.zeros(self.latent_dim))

    def current_df(self) -> torch.Tensor:
        return nn.functional.softplus(self.raw_df) if self.learn_df else torch.tensor(self.df)

    def forward(self, batch_size: int) -> dist.TorchDistribution:
        df = self.current_df().to(self._loc)
        return _expand(dist.StudentT(df, self._loc, torch.ones_like(self._loc)).to_event(1), batch_size)


@PRIORS.register("mixture")
class MixtureOfGaussians(Prior):
    r"""A mixture of K diagonal Gaussians with learned weights, means and scales.

    .. math:: p(z) = \sum_{k=1}^K \pi_k \, \mathcal{N}(z; \mu_k, \mathrm{diag}\,\sigma_k^2)

    A multimodal prior that can give each cluster of the data its own mode (Dilokthanakul et al. 2016;
    Tomczak & Welling 2018 compare it with the VampPrior). Means start spread as N(0, I) draws so the
    components do not start identical; weights start uniform.
    """

    def __init__(self, latent_dim: int, event_shape=(), *, components: int = 10, init_scale: float = 1.0):
        super().__init__(latent_dim)
        self.components = _count("components (K)", components)
        self.init_scale = _positive("init_scale", init_scale)
        self.logits = nn.Parameter(torch.zeros(self.components))
        self.locs = nn.Parameter(torch.randn(self.components, self.latent_dim))
        self.log_scales = nn.Parameter(torch.full((self.components, self.latent_dim), math.log(self.init_scale)))

    def forward(self, batch_size: int) -> dist.TorchDistribution:
        comp = dist.Normal(self.locs, self.log_scales.exp()).to_event(1)
        return _expand(dist.MixtureSameFamily(dist.Categorical(logits=self.logits), comp), batch_size)


@PRIORS.register("vamp")
class VampPrior(Prior):
    r"""The VampPrior (Tomczak & Welling 2018): the guide's posteriors at K learned pseudo-inputs.

    .. math:: p(z) = \frac{1}{K} \sum_{k=1}^K q_\phi(z \mid u_k)

    It approximates the aggregate posterior, the prior that maximises the ELBO. It needs the guide, which
    the VAE attaches after building both (:meth:`attach_guide`); the guide is held by reference, not as a
    submodule, so its weights are saved once, under the guide. Pseudo-inputs start as uniform noise in
    [0, 1], like image data.
    """

    needs_guide = True

    def __init__(self, latent_dim: int, event_shape, *, components: int = 50):
        super().__init__(latent_dim)
        self.components = _count("components (K)", components)
        self.pseudo_inputs = nn.Parameter(torch.rand(self.components, *event_shape))
        self._guide = None

    def attach_guide(self, guide: nn.Module) -> None:
        # Mixture components must be scorable at a batch of z; Gaussian components are, flow components
        # would need one inverse flow pass per (z, pseudo-input) pair.
        if getattr(guide, "registry_name", None) != "normal":
            raise ValueError(f"the VampPrior needs the 'normal' (mean-field Gaussian) guide, got "
                             f"{getattr(guide, 'registry_name', type(guide).__name__)!r}")
        object.__setattr__(self, "_guide", guide)  # a plain reference: not a registered submodule

    def forward(self, batch_size: int) -> dist.TorchDistribution:
        if self._guide is None:
            raise RuntimeError("the VampPrior has no guide: build it through ppvae.VAE, or call attach_guide")
        components = self._guide.posterior(self.pseudo_inputs)  # batch shape (K,), event shape (latent_dim,)
        weights = dist.Categorical(logits=torch.zeros(self.components, device=self.pseudo_inputs.device))
        return _expand(dist.MixtureSameFamily(weights, components), batch_size)


@PRIORS.register("flow")
class FlowPrior(Prior):
    r"""A normalizing-flow prior: a stack of affine coupling layers (RealNVP, Dinh et al. 2017) over N(0, I).

    .. math:: z = f_L \circ \dots \circ f_1(\epsilon), \quad \epsilon \sim \mathcal{N}(0, I), \quad
              \log p(z) = \log \mathcal{N}(f^{-1}(z); 0, I) - \sum_l \log |\det J_{f_l}|

    Coupling layers invert in one pass, so both scoring the guide's z and sampling for generation are cheap;
    the coordinates are reversed between layers so every one gets transformed. Built from Pyro's transforms.
    """

    def __init__(self, latent_dim: int, event_shape=(), *, flows: int = 4, hidden=(64,)):
        super().__init__(latent_dim)
        if self.latent_dim < 2:
            raise ValueError("the flow prior needs latent_dim >= 2 (coupling layers split z in two)")
        self.flows = _count("flows", flows)
        self.hidden = int_list_option(hidden, 1, "prior hidden sizes")
        self.layers = nn.ModuleList(T.affine_coupling(self.latent_dim, hidden_dims=self.hidden)
                                    for _ in range(self.flows))
        self.register_buffer("_loc", torch.zeros(self.latent_dim))
        self.register_buffer("_reverse", torch.arange(self.latent_dim - 1, -1, -1))

    def forward(self, batch_size: int) -> dist.TorchDistribution:
        transforms = []
        for layer in self.layers:
            transforms += [layer, T.Permute(self._reverse)]
        base = dist.Normal(self._loc, torch.ones_like(self._loc)).to_event(1).expand([batch_size])
        return dist.TransformedDistribution(base, transforms[:-1])
