"""ppvae: variational autoencoders as Pyro programs, with priors, likelihoods and KL weights swappable by name.

Any Pyro program meeting the model contract (:mod:`ppvae.inference.contract`) trains, checkpoints, resumes,
evaluates and plots through the same tools as the stock VAE.
"""

__version__ = "0.1.0"

# Components first: importing them fills the registries that models and guides build from.
from .components import beta, likelihoods, nets, optimizers, priors  # noqa: F401
from .inference import objectives  # noqa: F401
from .registry import (BETAS, DATASETS, DECODERS, ENCODERS, GUIDES, LIKELIHOODS, MODELS, OBJECTIVES, OPTIMIZERS,
                       PRIORS)
from .inference.contract import Batch, FunctionModel, MissingCapability, Model, data_plate, from_functions
from .inference.program import Program, program, require
from .guides import IAFGuide, MeanFieldGaussianGuide
from .models import CVAE, M2, VAE

from . import plots
from .apps.latent import interpolate, lerp, slerp
from .data import Dataset, dataset_from_array, load_dataset
from .evaluate import diagnostics, exact, report
from .evaluate.elbo import evaluate_elbo
from .evaluate.report import evaluate_run
from .inference.objectives import TCVAE, KLScale
from .inference.rebuild import build_model
from .inference.run import Run, build_vae, export, load, load_run, resume, train, train_spec
from .spec import default_spec, load_spec

# The modules that used to sit at the top of the package import as before (import ppvae.exact, ...).
import sys as _sys

for _name, _module in {"diagnostics": diagnostics, "exact": exact, "report": report}.items():
    _sys.modules.setdefault(f"{__name__}.{_name}", _module)

__all__ = [
    "Model", "FunctionModel", "from_functions", "Program", "program", "Batch", "data_plate", "require", "MissingCapability", "KLScale",
    "VAE", "CVAE", "M2", "MeanFieldGaussianGuide", "IAFGuide", "TCVAE", "Dataset", "load_dataset", "dataset_from_array",
    "train", "train_spec", "resume", "load_run", "export", "load", "build_model", "build_vae", "Run", "default_spec", "load_spec",
    "evaluate_elbo", "evaluate_run", "interpolate", "lerp", "slerp",
    "MODELS", "DATASETS", "PRIORS", "LIKELIHOODS", "BETAS", "OBJECTIVES", "OPTIMIZERS", "ENCODERS", "DECODERS",
    "GUIDES", "diagnostics", "exact", "plots", "report",
]
