r"""The ppvae model contract: what any Pyro program needs to train, checkpoint, resume, evaluate and plot.

A ppvae model is an ``nn.Module`` holding every trainable parameter, with two Pyro programs:

    model(...)   # the generative program p(x, z): latent sites pyro.sample("z", ...), observed sites with obs=
    guide(...)   # the amortized guide q(z | x): one pyro.sample site for each latent site of the model

called the way their signatures ask (:mod:`~ppvae.inference.binding`): ``model(batch)`` gets the batch mapping,
as ppvae's own families are written; ``model(x)``, ``guide(xs, ys=None)`` or the DMM's ``model(mini_batch, ...)``
get their arguments by name from the batch's keys (``model.inputs`` renames; a ``data.transform`` builds them),
as Pyro's examples are written. A batch is a mapping of tensors with one leading example axis: ``batch["x"]``
always, and ``"y"`` (labels, (N,) classes or (N, K) factors), ``"labeled"``, ``"mask"``, ``"lengths"`` or other
keys where the dataset has them. Integer data stay integers. Reading a key the dataset lacks raises a one-line
error naming the key.

Required
    ``model`` and ``guide``. Every sample site of the guide must be a latent site of the model. The programs open
    a plate over the examples, ``pyro.plate("data", N)`` (:func:`data_plate` opens it only if no enclosing program
    has, so a stock guide composes inside a user's own plate), or a plate of another name that ppvae finds (the
    outermost plate the size of the batch) or is told (``model.data_plate``). Parameters live in the module
    (``nn.Parameter`` or submodules), not in ``pyro.param`` calls outside it: one torch optimiser trains
    ``module.parameters()`` and the checkpoint saves ``module.state_dict()``. ``pyro.module(...)`` calls are fine
    (and free: the trainer does not route them through Pyro's parameter store).

Declared (class attributes; each has a default read off a trace)
    ``batch_keys``: the batch keys a batch-taking program reads (default ``("x",)``); checked against the dataset.
    ``max_plate_nesting``: how many plates nest in the programs (default: read from a trace).
    ``inputs``, ``data_plate``, ``output_sites``, ``transform``: how to call the program, as the spec's
    ``model.inputs``, ``model.data_plate``, ``model.output_sites`` and ``data.transform`` (the spec wins).
    ``losses``, ``parameter_groups``, ``group_optimizers``: extra training terms and parameter groups with their
    own optimisers (:mod:`~ppvae.inference.loss`).
    ``output``: what the decoded values are, a row of :data:`OUTPUTS` (default ``"images"``: tensors, drawn as
    image grids where they are images; ``"strings"``: token rows the module spells with ``strings(ids)``, written
    as text and scored per token). The verbs, reports and figures look the row up; none names a family.

Capabilities (:mod:`~ppvae.inference.capabilities`: each derived from the traces where the module declares none)
    ``generate(n)`` samples E[x | z], z ~ p(z) (``ppvae sample``); ``encode(x)`` a point code of q(z | x) and
    ``decode(z)`` E[x | z] (interpolations, traversals, latent scatter); ``reconstruct(x)`` decode(encode(x))
    (``ppvae reconstruct``; Pyro's ``reconstruct_img`` counts); ``classify(x)`` class probabilities q(y | x),
    shape (N, C) (Pyro's ``classifier`` counts), whose test accuracy and confusion matrix ``ppvae evaluate``
    reports. A declared method wins over the derived one.

Optional methods
    ``check_data(batch)`` refuses data the model cannot score, before training; ``spec()`` the spec sections that
    rebuild the model (default: the spec that built it, or its class's import path and its constructor's
    arguments, recorded by ``ppvae.Model`` or read back from attributes of the same name); ``direct_terms(batch,
    objective)`` a tested shortcut for the objective's two terms (log p(x | z) and the KL, summed; beta weighs them
    as it weighs the traced program's), where ``supports_direct_loss(objective)`` says it applies;
    ``auxiliary_loss(batch)`` terms of the training objective that are not part of the ELBO (M2's classification
    term), added to the loss in training and left out of every ELBO figure.

Conditional models (``conditional = True`` and an int ``num_classes``: the CVAE, M2)
    ``generate(n, y)`` samples of class y (an int or n labels; ``ppvae sample --label``, ``ppvae augment``, the
    class grid); ``decode(z, y)``; ``encode(batch)`` and ``reconstruct(batch)`` take the batch, whose ``"y"``
    they read. Figures hold the label fixed (interpolations within a class). A class ``options_from_data(data)``
    gives options a spec may leave out (``num_classes``). A program with an argument bound to the labels (Pyro's
    SS-VAE's ``ys``) is conditional without declaring it.

Training preferences (class attributes, each written into the run's spec when it applies)
    ``default_objective``: the objective a spec that leaves the default Trace_ELBO gets (M2: TraceEnum_ELBO);
    ``labeled_fraction``: the share of each batch drawn from the labelled rows (``train.labeled_per_batch``) when
    the data label only some (the batch key ``labeled``).

Vectorized particles
    IWAE and K-sample evaluation run the programs once under an extra plate of K particles at dim
    ``-(max_plate_nesting + 1)``; a program broadcasts if its tensors keep that leading dim (use ``...``
    indexing and ``x.shape[-1]``, not ``x.shape[0]``, for event sizes). ppvae checks this once on a small
    batch and otherwise loops over the particles, saying so.

A program written as two plain functions plus an ``nn.Module`` of parameters, as in Pyro's own examples,
becomes a model with :func:`from_functions`.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..registry import MODELS, import_path, load_object, registered_name
from ..traces import data_plate

CAPABILITIES = ("generate", "encode", "decode", "reconstruct", "check_data", "spec")


@dataclass(frozen=True)
class Output:
    """What a model's decoded values are, and what the verbs, reports and figures do with them."""

    text: bool  # decoded values are strings: samples and reconstructions are text files, never image grids
    derivable: bool  # generate/encode/decode/reconstruct may be derived from the traces (tensor observations)
    per_token: bool  # held-out figures per token (perplexity), not bits per dimension


#: the kinds of output a model may declare (``output = "strings"``), one row each
OUTPUTS = {
    "images": Output(text=False, derivable=True, per_token=False),
    "strings": Output(text=True, derivable=False, per_token=True),
}


def output_of(module) -> Output:
    """The row of :data:`OUTPUTS` a model module declares (``"images"`` where it declares none)."""
    name = getattr(module, "output", "images")
    if not isinstance(name, str):  # an attribute of another meaning (a layer named output): no declaration
        return OUTPUTS["images"]
    if name not in OUTPUTS:
        raise ValueError(f"{type(module).__name__}.output is {name!r}; a model's output is one of "
                         f"{', '.join(map(repr, OUTPUTS))}")
    return OUTPUTS[name]


class MissingCapability(ValueError):
    """A verb needs a method the model does not declare."""


class Model(nn.Module):
    """Base class of ppvae models; see the module docstring for the contract. Deriving from it is optional
    (any object with ``model``, ``guide`` and ``parameters`` works); it records the constructor's arguments,
    so that a run directory can rebuild the model, and gives the default ``spec()``."""

    batch_keys: tuple[str, ...] = ("x",)
    max_plate_nesting: int | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _recording(cls.__dict__["__init__"])

    def model(self, batch) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no model(batch) program")

    def guide(self, batch) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no guide(batch) program")

    def spec(self) -> dict:
        """The spec sections that rebuild this model: ``{"model": {"name": import path, **arguments}}``."""
        return {"model": recipe(self)[0]}


def _recording(init: Callable) -> Callable:
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapped(self, *args, **kwargs):
        if "_ppvae_init" not in self.__dict__:  # the outermost constructor call is the one that rebuilds
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            # TOML has no null: an argument left at a default of None is recorded by its absence
            arguments = {k: v for k, v in bound.arguments.items()
                         if not (v is None and signature.parameters[k].default is None)}
            arguments.pop(next(iter(signature.parameters)))  # self
            for p in signature.parameters.values():
                if p.kind is p.VAR_KEYWORD:
                    arguments.update(arguments.pop(p.name, {}))
                elif p.kind is p.VAR_POSITIONAL and arguments.pop(p.name, ()):
                    arguments["_varargs"] = True
            object.__setattr__(self, "_ppvae_init", arguments)
        init(self, *args, **kwargs)

    return wrapped


def init_arguments(model) -> dict:
    """The arguments ``model`` was constructed with, as spec values, or ``ValueError`` saying which cannot be."""
    arguments = model.__dict__.get("_ppvae_init")
    if arguments is None:
        raise ValueError(f"{type(model).__name__} does not derive from ppvae.Model and has no spec() method, so "
                         f"ppvae cannot record how to rebuild it")
    if arguments.get("_varargs"):
        raise ValueError(f"{type(model).__name__} was constructed with *args, which a spec cannot name; use "
                         f"named arguments")
    return {k: spec_value(v, f"{type(model).__name__} argument {k!r}") for k, v in arguments.items()}


def spec_value(value, what: str):
    """A constructor argument as a TOML value: numbers, strings, booleans, lists and tables; a module as the
    table that rebuilds it (:func:`recipe`; its weights are in the checkpoint)."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [spec_value(v, what) for v in value]
    if isinstance(value, Mapping):
        return {str(k): spec_value(v, what) for k, v in value.items() if v is not None}
    if isinstance(value, torch.Size):
        return list(value)
    if isinstance(value, nn.Module):
        return recipe(value)[0]
    raise ValueError(f"{what} is a {type(value).__name__}, which a spec file cannot hold; pass a number, a string, "
                     f"a list, a table (a component by name or spec dict, e.g. "
                     f"{{'name': 'mlp', 'hidden': [400]}}) or a module")


def recipe(module: nn.Module) -> tuple[dict, list[str]]:
    """(``{"name": import path, **constructor arguments}``, the arguments assumed at their defaults) that rebuild
    a module built in Python: the arguments a ``ppvae.Model`` recorded, or a component's ``spec()``, or (any other
    class) the constructor's parameters read back from attributes of the same name, as scikit-learn's
    ``get_params`` does, and their defaults where the object stores none. ``ValueError`` names a required
    argument the object does not store."""
    cls = type(module)
    name = registered_name(module)
    if "_ppvae_init" in module.__dict__:
        return {"name": name, **init_arguments(module)}, []
    own = getattr(module, "spec", None)
    if callable(own) and not isinstance(module, Model):
        described = own()
        if isinstance(described, Mapping) and "name" in described:
            return dict(described), []
    out, assumed, missing = {"name": name}, [], []
    stored = {**module.__dict__, **module._modules}
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name in stored and not p.name.startswith("_"):
            value = stored[p.name]
        elif p.default is not p.empty:
            value = p.default
            assumed.append(p.name)
        else:
            missing.append(p.name)
            continue
        if value is not None:
            out[p.name] = spec_value(value, f"{cls.__name__} argument {p.name!r}")
    if missing:
        raise ValueError(f"{cls.__name__}'s constructor takes {', '.join(map(repr, missing))}, which the object does "
                         f"not store under {'those names' if len(missing) > 1 else 'that name'}, so ppvae cannot "
                         f"record how to rebuild it; store {'them' if len(missing) > 1 else 'it'} (self.{missing[0]} = "
                         f"{missing[0]}), or give the class a spec() method")
    return out, assumed


# ---- two plain functions and a module ------------------------------------------------------------------------
@MODELS.register("functions")
class FunctionModel(Model):
    """A model from two plain Pyro functions, ``model(x)`` and ``guide(x)`` as in Pyro's own examples (or of the
    batch, ``model(batch)``; they are called the way their signatures ask), and the ``nn.Module`` that holds
    their parameters (module-level networks the functions use). A run directory
    rebuilds it by import path: both functions, and the module as the module-level name the functions' file
    gives it, so the rebuilt functions use the very module the checkpoint is loaded into."""

    def __init__(self, model: Callable | str, guide: Callable | str, modules: nn.Module | str):
        super().__init__()
        self._model_fn = load_object(model, "model function") if isinstance(model, str) else model
        self._guide_fn = load_object(guide, "guide function") if isinstance(guide, str) else guide
        if isinstance(modules, str):
            modules = load_object(modules, "module")
        if not isinstance(modules, nn.Module):
            raise ValueError(f"from_functions needs the nn.Module holding the programs' parameters, got "
                             f"{type(modules).__name__}")
        self.modules_ = modules

    def model(self, batch):
        from .binding import Binder
        return Binder().call(self._model_fn, Binder().prepare(batch))

    def guide(self, batch):
        from .binding import Binder
        return Binder().call(self._guide_fn, Binder().prepare(batch))

    def spec(self) -> dict:
        return {"model": {"name": "functions", "model": _function_path(self._model_fn),
                          "guide": _function_path(self._guide_fn), "modules": self._modules_path()}}

    def _modules_path(self) -> str:
        module = inspect.getmodule(self._model_fn)
        for name, value in vars(module).items():
            if value is self.modules_:
                return _function_path(self._model_fn).rpartition(":")[0] + ":" + name
        raise ValueError(f"the module passed to from_functions is not a module-level name of "
                         f"{module.__name__}, where the model function lives, so a run directory cannot give the "
                         f"rebuilt functions the same module; define it there (e.g. nets = Nets())")


def _function_path(fn: Callable) -> str:
    if not inspect.isfunction(fn):
        raise ValueError(f"{fn!r} is not a plain function, so a run directory cannot name it; define it with def at "
                         f"the top level of a module")
    return import_path(fn)


def from_functions(model: Callable, guide: Callable, modules: nn.Module) -> FunctionModel:
    """A ppvae model from two Pyro functions of the batch and the module holding their parameters."""
    return FunctionModel(model, guide, modules)


# ---- checks ----------------------------------------------------------------------------------------------------
def check_program(model) -> None:
    """A model must have the two programs and be an nn.Module (its parameters are trained and saved)."""
    missing = [name for name in ("model", "guide") if not callable(getattr(model, name, None))]
    if missing:
        raise ValueError(f"{type(model).__name__} is not a ppvae model: it has no {' and no '.join(missing)} "
                         f"method; a model needs model(...) and guide(...), Pyro programs over a batch or its keys")
    if not isinstance(model, nn.Module):
        raise ValueError(f"{type(model).__name__} is not an nn.Module; a ppvae model holds its parameters in an "
                         f"nn.Module (derive from nn.Module or ppvae.Model, or use ppvae.from_functions(model, "
                         f"guide, module))")


def check_labels(y: torch.Tensor, num_classes: int, who: str) -> None:
    """Class labels must be integers 0..num_classes-1, one per example; one line saying what is wrong."""
    if y.ndim != 1:
        raise ValueError(f"{who} conditions on one class label per example, shape (N,), but the labels have shape "
                         f"{tuple(y.shape)}" + (" (factors)" if y.ndim == 2 else ""))
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{who} needs integer class labels 0..{num_classes - 1}, but the labels have dtype {y.dtype}; "
                         f"store them as integers")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = y[(y < 0) | (y >= num_classes)]
        raise ValueError(f"{who} has {num_classes} classes, 0..{num_classes - 1}, but {bad.numel()} label(s) lie "
                         f"outside (e.g. {int(bad[0])}); set model.num_classes or fix the labels")


def check_batch_keys(model, data_keys) -> None:
    """The keys the model declares it reads must be in the data."""
    needed = getattr(model, "batch_keys", ("x",)) or ()
    missing = [k for k in needed if k not in data_keys]
    if missing:
        raise ValueError(f"{type(model).__name__} reads batch key(s) {', '.join(map(repr, missing))}, but the data "
                         f"provide only {', '.join(map(repr, data_keys))}; choose a dataset with them (labels are 'y')")


def warn_once(model, key: str, message: str) -> None:
    seen = model.__dict__.setdefault("_ppvae_warned", set())
    if key not in seen:
        seen.add(key)
        warnings.warn(message, stacklevel=3)


__all__ = ["Model", "FunctionModel", "from_functions", "data_plate", "check_labels", "MissingCapability",
           "CAPABILITIES"]
