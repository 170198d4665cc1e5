"""ppvae: variational autoencoders as Pyro programs, with priors, likelihoods and KL weights swappable by name."""

__version__ = "0.1.0"

# Component modules first: importing them fills the registries that models and guides build from.
from . import beta, likelihoods, nets, objectives, priors  # noqa: F401
from .registry import BETAS, DECODERS, ENCODERS, GUIDES, LIKELIHOODS, OBJECTIVES, PRIORS
from .guides import IAFGuide, MeanFieldGaussianGuide
from .models import VAE

from . import diagnostics, exact, plots, report
from .data import Dataset, dataset_from_array, load_dataset
from .evaluate import evaluate_elbo
from .latent import interpolate, lerp, slerp
from .report import evaluate_run
from .run import Run, build_vae, load_run, resume, train, train_spec
from .spec import default_spec, load_spec

__all__ = [
    "VAE", "MeanFieldGaussianGuide", "IAFGuide", "Dataset", "load_dataset", "dataset_from_array",
    "train", "train_spec", "resume", "load_run", "build_vae", "Run", "default_spec", "load_spec",
    "evaluate_elbo", "evaluate_run", "interpolate", "lerp", "slerp",
    "PRIORS", "LIKELIHOODS", "BETAS", "OBJECTIVES", "ENCODERS", "DECODERS", "GUIDES",
    "diagnostics", "exact", "plots", "report",
]
