"""ppvae: variational autoencoders as Pyro programs, with priors, likelihoods and KL weights swappable by name."""

# Component modules first: importing them fills the registries that models and guides build from.
from . import beta, likelihoods, nets, objectives, priors  # noqa: F401
from .registry import BETAS, DECODERS, ENCODERS, GUIDES, LIKELIHOODS, OBJECTIVES, PRIORS  # noqa: F401
from .guides import MeanFieldGaussianGuide  # noqa: E402
from .models import VAE  # noqa: E402

__version__ = "0.1.0"

from .data import Dataset, dataset_from_array, load_dataset  # noqa: E402
from .evaluate import evaluate_elbo  # noqa: E402
from .latent import interpolate, lerp, slerp  # noqa: E402
from .run import Run, build_vae, load_run, resume, train, train_spec  # noqa: E402
from .spec import default_spec, load_spec  # noqa: E402
from . import diagnostics, exact, report  # noqa: E402,F401
from .report import evaluate_run  # noqa: E402
