r"""A Pyro program as ppvae runs it: how it is called, and what its first trace says.

:class:`Program` pairs a module (any ``nn.Module`` with ``model`` and ``guide``, written the contract's way or
Pyro's) with how ppvae calls it (:mod:`~ppvae.inference.binding`) and what its traces say:

- the **data plate**: ``"data"``, or declared (``model.data_plate``), or the outermost plate whose size is the
  batch's (Pyro's DMM calls it ``"z_minibatch"``); per-example terms are taken along it;
- the **output sites**: the observed sites of the *generation call*, the model called with its required
  arguments only (a Pyro program's ``ys=None``), leaving out ``pyro.deterministic`` sites unless they are all the
  model observes (Pyro's CVAE predicts through one); declared with ``model.output_sites``;
- the **label arguments**: those that carry the batch's labels ``y`` (a class to condition on).

The capabilities every verb uses (``generate``, ``encode``, ``decode``, ``reconstruct``, ``classify``), each the
module's own method where it has one, else derived from these traces, are :mod:`~ppvae.inference.capabilities`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sysconfig
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyro
import torch
from pyro import poutine
from torch import nn

from ..batch import Batch, as_batch, batch_size, take, to_device
from ..registry import brief
from ..traces import DATA_PLATE, sample_sites, untouched
from .binding import LABELED, LABELS, Arguments, Binder, takes_batch
from .capabilities import DERIVABLE, Capabilities, Release, quiet
from .contract import FunctionModel, MissingCapability
from .objectives import ELBO_OBJECTIVES, ModuleParams

#: an environment variable that makes an error in a user's program raise with its full traceback
TRACEBACK_ENV = "PPVAE_TRACEBACK"


@dataclass
class Sites:
    """What a first trace of a program says (on a few rows of the data)."""

    plate: str | None
    latent: list[str]
    observed: list[str]
    outputs: list[str]
    #: argument keys that carry the labels, and those the generation call leaves out (labels among them)
    label_keys: set[str]
    optional_keys: set[str]
    #: the continuous latent sites of the guide that ``encode`` reads, with their per-example shapes
    code: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    evidence: str = "log p(x)"
    #: observed sites that hold a given label (observed only when the batch gives labels): never released
    held: set[str] = field(default_factory=set)


class Program(Capabilities):
    """A Pyro program as ppvae runs it: ``model(args)`` and ``guide(args)`` over the arguments of a batch
    (:meth:`prepare`), its data plate, output sites and label arguments read off a first trace, and the
    capabilities every verb uses. Build it with :func:`program`, which keeps one per module."""

    def __init__(self, module: nn.Module, *, inputs=None, transform: Callable | None = None,
                 data_plate: str | None = None, output_sites=None):
        self.module = module
        declared = {k: getattr(module, k, None) for k in ("inputs", "data_plate", "output_sites", "transform")}
        inputs = inputs if inputs is not None else declared["inputs"]
        transform = transform if transform is not None else declared["transform"]
        binder = Binder(inputs, transform)
        # a program of two plain functions is called the way the functions ask
        self.model_method = module._model_fn if isinstance(module, FunctionModel) else module.model
        self.guide_method = module._guide_fn if isinstance(module, FunctionModel) else module.guide
        reads = (takes_batch(self.model_method) or takes_batch(self.guide_method)
                 or LABELED in binder.parameters_reading(self.model_method, [LABELED])
                 or LABELED in binder.parameters_reading(self.guide_method, [LABELED]))
        binder.reads_labeled = reads
        self.binder = binder
        self.data_plate_name = data_plate if data_plate is not None else declared["data_plate"]
        self.declared_outputs = list(output_sites if output_sites is not None else declared["output_sites"] or [])
        self._sites: Sites | None = None
        self.template: Batch | None = None
        self.classes: list[str] | None = None
        self._num_classes: int | None = None
        #: figures whose derived capabilities this program's traces could not give, and why
        self.notes: dict[str, str] = {}
        module.__dict__["_ppvae_program"] = self

    # ---- the contract --------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return type(self.module).__name__

    def prepare(self, batch) -> Arguments:
        return self.binder.prepare(batch)

    def model(self, args):
        return self.binder.call(self.model_method, self.binder.prepare(args))

    def guide(self, args):
        return self.binder.call(self.guide_method, self.binder.prepare(args))

    def call(self, method: str, args):
        """One of the module's methods called on the arguments of ``args`` (a batch or prepared arguments)."""
        return self.binder.call(getattr(self.module, method), self.binder.prepare(args))

    @property
    def max_plate_nesting(self):
        return getattr(self.module, "max_plate_nesting", None)

    def parameters(self):
        return self.module.parameters()

    @property
    def device(self) -> torch.device:
        p = next(self.module.parameters(), None)
        if p is None:
            p = next(self.module.buffers(), None)
        return p.device if p is not None else torch.device("cpu")

    # ---- the data ------------------------------------------------------------------------------------------
    def attach_data(self, data) -> Program:
        """Remember the data's classes and a few held-out rows (the rows a derived ``generate`` or ``decode``
        shapes its arguments with: validation rows, or test rows where there are none)."""
        self.classes = data.classes
        self._num_classes = data.num_classes
        self.template = take(data.batch(data.splits[1]), slice(0, 64))
        return self

    @property
    def num_classes(self) -> int | None:
        n = getattr(self.module, "num_classes", None)
        return n if isinstance(n, int) else self._num_classes

    @property
    def conditional(self) -> bool:
        """Whether the program generates a given class: declared (``conditional = True``), or it has label
        arguments and the data have classes."""
        declared = getattr(self.module, "conditional", False)
        if bool(declared) and isinstance(getattr(self.module, "num_classes", None), int):
            return True
        if self.declares("generate") or (self._sites is None and self.template is None):
            return False
        return bool(self.sites().label_keys) and self.num_classes is not None

    # ---- what a first trace says ---------------------------------------------------------------------------
    def sites(self, batch=None) -> Sites:
        """The program's :class:`Sites`, read once from a trace on the first rows of ``batch`` (or of the rows
        remembered from the data)."""
        if self._sites is None:
            batch = batch if batch is not None else self.template
            if batch is None:
                raise MissingCapability(f"ppvae has not yet run {self.name}'s programs on any data, so it cannot "
                                        f"read their sites; pass a batch")
            batch = to_device(take(as_batch(batch), slice(0, 3)), self.device)
            if self.template is None:
                self.template = batch
            with user_errors(self.name), untouched(self.module), torch.no_grad():
                self._sites = self._read_sites(batch)
        return self._sites

    def _read_sites(self, batch: Batch) -> Sites:
        args = self.prepare(batch)
        reading, guide_reading = _Reading(args), _Reading(args)
        with quiet():
            guide_tr = poutine.trace(self.guide).get_trace(guide_reading)
            model_tr = poutine.trace(poutine.replay(self.model, trace=guide_tr)).get_trace(reading)
        model_sites = sample_sites(model_tr)
        latent = [n for n, s in model_sites.items() if not s["is_observed"]]
        observed = [n for n, s in model_sites.items() if s["is_observed"]]
        plate = self._find_plate(model_sites, sample_sites(guide_tr), args.rows)
        if takes_batch(self.model_method):
            read, read_by_either = reading.read, reading.read | guide_reading.read
        else:
            read = self._bound_keys(self.model_method, args)
            read_by_either = read | self._bound_keys(self.guide_method, args)
        label_keys = self._label_keys(batch, read_by_either)
        optional = self._optional_keys(args)
        outputs = self.declared_outputs or self._outputs(args.without(optional))
        unknown = [o for o in outputs if o not in model_sites]
        if self.declared_outputs and unknown:
            raise ValueError(f"model.output_sites names {', '.join(map(repr, unknown))}, which {self.name}.model does "
                             f"not sample; its sites are {', '.join(model_sites)}")
        code = [(n, tuple(s["value"].shape[1:])) for n, s in sample_sites(guide_tr).items()
                if n in latent and s["value"].is_floating_point() and not s["fn"].support.is_discrete
                and self._in_plate(s, plate)]
        return Sites(plate, latent, observed, outputs, label_keys, optional, code,
                     _evidence(model_tr, observed, {k: args[k] for k in read if k in args}, batch),
                     self._held(batch) if label_keys else set())

    def _find_plate(self, model_sites: dict, guide_sites: dict, rows: int) -> str | None:
        names = []
        for site in [*model_sites.values(), *guide_sites.values()]:
            names += [(f.name, f.size) for f in site["cond_indep_stack"] if f.vectorized]
        if self.data_plate_name is not None:
            if self.data_plate_name not in {n for n, _ in names}:
                raise ValueError(f"model.data_plate is {self.data_plate_name!r}, but {self.name}'s programs open no "
                                 f"such plate; their plates: {', '.join(sorted({n for n, _ in names})) or 'none'}")
            return self.data_plate_name
        if DATA_PLATE in {n for n, _ in names}:
            return DATA_PLATE
        for name, size in names:  # outermost first in each site's stack
            if size == rows:
                return name
        return None

    @staticmethod
    def _in_plate(site: dict, plate: str | None) -> bool:
        return plate is not None and any(f.name == plate for f in site["cond_indep_stack"])

    def _bound_keys(self, fn, args: Arguments) -> set[str]:
        """The argument keys a named-argument method's parameters read."""
        return set(self.binder.sources(fn, list(args)).values())

    @staticmethod
    def _with_and_without_labels(batch: Batch) -> tuple[Batch, Batch]:
        """The batch with every label visible (a test split marks none as seen) and without any."""
        seen = Batch({**batch, LABELED: torch.ones(batch_size(batch), dtype=torch.bool, device=batch[LABELS].device)}) \
            if LABELED in batch else batch
        return seen, Batch({k: v for k, v in batch.items() if k not in (LABELS, LABELED)})

    def _label_keys(self, batch: Batch, read: set[str]) -> set[str]:
        """The argument keys the programs read that carry the labels (present only where the batch has ``y``)."""
        if LABELS not in batch:
            return set()
        if takes_batch(self.model_method) and self.binder.transform is None:
            return {LABELS} & read
        seen, unseen = (self.prepare(b) for b in self._with_and_without_labels(batch))
        if not takes_batch(self.model_method):
            read = self._bound_keys(self.model_method, seen) | self._bound_keys(self.guide_method, seen)
        return {k for k in seen if k not in unseen} & read

    def _held(self, batch: Batch) -> set[str]:
        """The observed sites that only a batch with labels has (the label a class-conditional program scores)."""
        observed = []
        for rows in self._with_and_without_labels(batch):
            try:
                with quiet():
                    tr = poutine.trace(self.model).get_trace(self.prepare(rows))
            except (KeyError, ValueError, TypeError):  # a model that needs its labels (a CVAE): they are inputs
                return set()
            observed.append({n for n, s in sample_sites(tr).items() if s["is_observed"]})
        return observed[0] - observed[1]

    def _optional_keys(self, args: Arguments) -> set[str]:
        """The argument keys the generation call leaves out: those only optional parameters read (named
        arguments), or the labels and the label mask a batch-taking program does not declare it needs."""
        fn = self.model_method
        if takes_batch(fn):
            needed = set(getattr(self.module, "batch_keys", ("x",)) or ())
            return {k for k in (LABELS, LABELED) if k in args and k not in needed}
        optional = self.binder.optional(fn)
        reading = self.binder.sources(fn, list(args))
        required = {k for p, k in reading.items() if p not in optional}
        return {k for p, k in reading.items() if p in optional} - required

    def _outputs(self, args: Arguments) -> list[str]:
        try:
            with quiet():
                tr = poutine.trace(self.model).get_trace(args)
        except Exception:  # a program that needs its optional arguments: every observed site of the full call
            with quiet():
                tr = poutine.trace(self.model).get_trace(self.prepare(args.source))
        observed = {n: s for n, s in sample_sites(tr).items() if s["is_observed"]}
        scored = [n for n, s in observed.items() if not s["infer"].get("_deterministic")]
        return scored or list(observed)

    def _drop(self, keep_labels: bool) -> set[str]:
        s = self.sites()
        return s.optional_keys - (s.label_keys if keep_labels else set())


class _Reading(Arguments):
    """Arguments that remember which keys a program read."""

    def __init__(self, args: Arguments):
        super().__init__(args)
        self.source, self.order, self.rows = args.source, args.order, args.rows
        self.read: set[str] = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        if key in self:
            self.read.add(key)
        return super().get(key, default)


def _evidence(model_tr, observed: list[str], args: dict, batch: Batch) -> str:
    """What the program's log-likelihood is of, by site names: ``log p(x)``, a CVAE's ``log p(y | xs)``. The
    conditions are the tensor arguments the model read that no observed site scores (by storage or by name)."""
    sites = sample_sites(model_tr)
    scored = [n for n in observed if not sites[n]["infer"].get("_deterministic")]
    storages = {_storage(sites[n]["value"]) for n in scored}
    names = {n.rstrip("s") for n in scored} | set(scored)
    unseen = LABELED in batch and not bool(batch[LABELED].any())
    conditions = []
    for key, value in args.items():
        if not isinstance(value, torch.Tensor) or key == LABELED or (key == LABELS and unseen):
            continue
        if _storage(value) in storages or key in names or key.rstrip("s") in names:
            continue
        conditions.append(key)
    out = _compress(scored) or "x"
    return f"log p({out} | {', '.join(conditions)})" if conditions else f"log p({out})"


def _storage(t: torch.Tensor):
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, AttributeError):
        return id(t)


def _compress(names: list[str]) -> str:
    """``obs_x_1, ..., obs_x_9`` as ``obs_x_1..9``: numbered sites of a sequence by their range."""
    groups: dict[str, list[int]] = {}
    out = []
    for n in names:
        m = re.fullmatch(r"(.*?)(\d+)", n)
        if m and m.group(1):
            if m.group(1) not in groups:
                out.append(m.group(1))
            groups.setdefault(m.group(1), []).append(int(m.group(2)))
        else:
            out.append(n)
    return ", ".join(f"{p}{min(groups[p])}..{max(groups[p])}" if p in groups and len(groups[p]) > 2 else
                     (", ".join(f"{p}{i}" for i in groups[p]) if p in groups else p) for p in out)


def check_first_batch(p: Program, args: Arguments, objective_name: str) -> dict:
    """Run the programs once and check what a trace can tell before training: guide sites the model lacks,
    latents an objective cannot differentiate, parameters outside the module. Returns a summary of sites."""
    # As in training, module parameters bypass Pyro's parameter store, so a trace records only the pyro.param
    # calls that are not parameters of the module.
    with pyro.validation_enabled(False), ModuleParams():
        guide_tr = poutine.trace(p.guide).get_trace(args)
        model_tr = poutine.trace(poutine.replay(p.model, trace=guide_tr)).get_trace(args)
    model_sites, guide_sites = sample_sites(model_tr), sample_sites(guide_tr)
    extra = [n for n in guide_sites if n not in model_sites]
    if extra:
        raise ValueError(f"the guide samples site(s) {', '.join(map(repr, extra))} that the model does not have "
                         f"(model sites: {', '.join(model_sites)}); the guide's sites must be "
                         f"latent sites of the model")
    observed_in_guide = [n for n in guide_sites if model_sites[n]["is_observed"]]
    if observed_in_guide:
        raise ValueError(f"the guide samples {', '.join(map(repr, observed_in_guide))}, which the model observes; "
                         f"a guide samples latent sites only")
    latents = [n for n, s in model_sites.items() if not s["is_observed"]]
    unguided = [n for n in latents if n not in guide_sites and model_sites[n]["infer"].get("enumerate") is None]
    if unguided and objective_name != "TraceEnum_ELBO":
        raise ValueError(f"latent site(s) {', '.join(map(repr, unguided))} of the model have no site in the guide; "
                         f"give the guide a pyro.sample for each (or enumerate them under TraceEnum_ELBO)")
    if objective_name in (*ELBO_OBJECTIVES, "IWAE"):  # pathwise gradients only
        for name, site in guide_sites.items():
            if not site["fn"].has_rsample:
                raise ValueError(f"latent site {name!r} ({type(site['fn']).__name__}) cannot be reparameterized, so "
                                 f"{objective_name} has no pathwise gradient for it; use objective TraceEnum_ELBO "
                                 f"(mark the site infer={{'enumerate': 'parallel'}}, or set objective.enumerate = "
                                 f"\"parallel\") or TraceGraph_ELBO (score-function gradient)")
    known = {id(q) for q in p.module.parameters()}
    for trace in (guide_tr, model_tr):
        for name, site in trace.nodes.items():
            # PyroModule parameters appear constrained in the trace; their unconstrained tensor is the module's
            if site["type"] == "param" and id(site["value"]) not in known \
                    and id(pyro.get_param_store()._params.get(name)) not in known:
                raise ValueError(f"pyro.param {name!r} is not a parameter of {p.name}; ppvae trains and "
                                 f"saves the module's parameters, so make it one (self.{name.split('$$$')[-1]} = "
                                 f"nn.Parameter(...)) and use it directly")
    return {"latent": latents, "observed": [n for n, s in model_sites.items() if s["is_observed"]]}


# ---- one program per module ------------------------------------------------------------------------------------
def module_of(model) -> nn.Module:
    """The module of a model or a :class:`Program`."""
    return model.module if isinstance(model, Program) else model


def program(module, **binding) -> Program:
    """The :class:`Program` of ``module`` (a Program is returned as it is): with ``binding`` (``inputs``,
    ``transform``, ``data_plate``, ``output_sites``) a new one, else the one it has, else one from its
    declarations."""
    if isinstance(module, Program):
        return module
    if not isinstance(module, nn.Module) or not all(callable(getattr(module, f, None)) for f in ("model", "guide")):
        raise TypeError(f"expected a model (ppvae.VAE, any ppvae family, or an nn.Module with model and guide "
                        f"methods, as Pyro's examples write them), got {brief(module)}")
    if not binding:
        known = module.__dict__.get("_ppvae_program") if hasattr(module, "__dict__") else None
        if known is not None:
            return known
    return Program(module, **binding)


def has(model, capability: str) -> bool:
    """Whether ``model`` has ``capability``: declared, or derivable from its traces (for the verbs' capabilities)."""
    if capability in DERIVABLE:
        return program(model).can(capability)
    return callable(getattr(model.module if isinstance(model, Program) else model, capability, None))


def require(model, capability: str, what: str) -> Callable:
    """The function of ``capability`` (declared or derived), or a one-line :class:`MissingCapability`."""
    if capability in DERIVABLE and isinstance(model, (nn.Module, Program)):
        return program(model).require(capability, what)
    module = model.module if isinstance(model, Program) else model
    if not callable(getattr(module, capability, None)):
        raise MissingCapability(f"{what} needs the model's {capability}() method, which {type(module).__name__} "
                                f"does not have")
    return getattr(module, capability)


def conditional(model) -> bool:
    """Whether the model generates a given class (declared, or a program with label arguments on classed data)."""
    return program(model).conditional


def require_class(model, label, what: str) -> int:
    """``label`` as a class of a conditional model, or one line saying why it cannot be."""
    p = program(model)
    if not p.conditional:
        raise MissingCapability(f"{what} needs a model that generates a given class (a cvae, an m2, or a program "
                                f"with an argument bound to the labels y); {p.name} does not condition on a label")
    c = p.num_classes
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < c:
        raise ValueError(f"{what}: {label!r} is not a class of this model; its classes are 0..{c - 1}")
    return label


# ---- errors in a user's program --------------------------------------------------------------------------------
_PATHS = sysconfig.get_paths()
_LIBRARY_ROOTS = tuple(str(Path(p).resolve()) for p in {_PATHS["stdlib"], _PATHS["purelib"], _PATHS["platlib"],
                                                          str(Path(__file__).parents[1])})


def _user_frame(tb):
    """The innermost frame of a traceback in a user's own file (not ppvae's, a library's or the standard library's)."""
    found = None
    for frame, line in traceback.walk_tb(tb):
        file = frame.f_code.co_filename
        if file.startswith("<") or str(Path(file).resolve()).startswith(_LIBRARY_ROOTS):
            continue
        found = (frame, line)
    return found


class UserProgramError(ValueError):
    """An error raised inside a user's program, told in one line with its file and line."""


@contextlib.contextmanager
def user_errors(who: str):
    """Errors raised inside a user's program become one line naming the program, the method, the user's file
    and line; ``PPVAE_TRACEBACK=1`` (``ppvae --traceback``) lets the full traceback through instead."""
    try:
        yield
    except (UserProgramError, MissingCapability, KeyboardInterrupt):
        raise
    except (TypeError, AttributeError, IndexError, KeyError, RuntimeError, ValueError, NotImplementedError,
            AssertionError, ZeroDivisionError) as e:
        found = _user_frame(e.__traceback__)
        if found is None or os.environ.get(TRACEBACK_ENV):
            raise
        frame, line = found
        code = _source_line(frame.f_code.co_filename, line)
        message = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UserProgramError(
            f"{who}.{frame.f_code.co_name} failed at {frame.f_code.co_filename}:{line}"
            + (f" ({code})" if code else "") + f": {type(e).__name__}: {message}; set {TRACEBACK_ENV}=1 (or "
            f"ppvae --traceback) for the full traceback") from e


def _source_line(file: str, line: int) -> str:
    try:
        return Path(file).read_text().splitlines()[line - 1].strip()[:120]
    except (OSError, IndexError, UnicodeDecodeError):
        return ""


__all__ = ["Program", "program", "has", "require", "conditional", "require_class", "Release", "user_errors",
           "UserProgramError", "DERIVABLE"]
