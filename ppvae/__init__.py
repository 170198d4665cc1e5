"""ppvae: variational autoencoders as Pyro programs, with priors, likelihoods and KL weights swappable by name.

Any Pyro program, written the way Pyro's examples write it or against ppvae's contract
(:mod:`ppvae.inference.contract`), trains, checkpoints, resumes, evaluates and plots through the same tools as the
stock VAE.

The names below are imported when first used (PEP 562), so ``import ppvae`` and ``ppvae --help`` do not pay for
torch, Pyro, matplotlib or torchvision until something needs them; the registries load the built-in components the
first time a name is looked up (:func:`ppvae.registry.load_builtins`).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> the module that defines it
_NAMES = {
    "Batch": "ppvae.batch",
    **dict.fromkeys(["FunctionModel", "MissingCapability", "Model", "data_plate", "from_functions"],
                    "ppvae.inference.contract"),
    **dict.fromkeys(["Program", "program", "require"], "ppvae.inference.program"),
    **dict.fromkeys(["BETAS", "DATASETS", "DECODERS", "ENCODERS", "GUIDES", "LIKELIHOODS", "MODELS", "OBJECTIVES",
                     "OPTIMIZERS", "PRIORS", "TRANSFORMS"], "ppvae.registry"),
    **dict.fromkeys(["IAFGuide", "MeanFieldGaussianGuide"], "ppvae.guides"),
    **dict.fromkeys(["CVAE", "M2", "VAE", "FactorVAE"], "ppvae.models"),
    **dict.fromkeys(["interpolate", "lerp", "slerp"], "ppvae.evaluate.latent"),
    **dict.fromkeys(["Dataset", "dataset_from_array", "load_dataset"], "ppvae.data"),
    "evaluate_elbo": "ppvae.evaluate.elbo",
    "evaluate_run": "ppvae.evaluate.report",
    **dict.fromkeys(["TCVAE", "KLRule", "KLScale", "ModuleParams"], "ppvae.inference.objectives"),
    "build_model": "ppvae.inference.rebuild",
    **dict.fromkeys(["Run", "build_vae", "export", "load", "load_run", "resume", "train", "train_spec"],
                    "ppvae.inference.run"),
    **dict.fromkeys(["default_spec", "load_spec"], "ppvae.spec"),
}
#: modules by their short names (``ppvae.report.evaluate_model``, ``from ppvae import diagnostics``)
_MODULES = {"diagnostics": "ppvae.evaluate.diagnostics", "exact": "ppvae.evaluate.exact",
            "report": "ppvae.evaluate.report", "plots": "ppvae.plots", "spec": "ppvae.spec",
            "registry": "ppvae.registry", "objectives": "ppvae.inference.objectives",
            **{name: f"ppvae.components.{name}" for name in ("beta", "likelihoods", "nets", "optimizers", "priors")},
            **{name: f"ppvae.{name}" for name in ("apps", "components", "data", "evaluate", "guides", "inference",
                                                  "models")}}

__all__ = sorted({*_NAMES, *_MODULES})


def __getattr__(name: str):
    if name in _MODULES:
        value = importlib.import_module(_MODULES[name])
    elif name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
    else:
        raise AttributeError(f"module 'ppvae' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_NAMES, *_MODULES})
