r"""A Pyro program as ppvae runs it, and every verb's capability derived from its traces where it declares none.

:class:`Program` pairs a module (any ``nn.Module`` with ``model`` and ``guide``, written the contract's way or
Pyro's) with how ppvae calls it (:mod:`~ppvae.inference.binding`) and what its traces say:

- the **data plate**: ``"data"``, or declared (``model.data_plate``), or the outermost plate whose size is the
  batch's (Pyro's DMM calls it ``"z_minibatch"``); per-example terms are taken along it;
- the **output sites**: the observed sites of the *generation call*, the model called with its required
  arguments only (a Pyro program's ``ys=None``), leaving out ``pyro.deterministic`` sites unless they are all the
  model observes (Pyro's CVAE predicts through one); declared with ``model.output_sites``;
- the **label arguments**: those that carry the batch's labels ``y`` (a class to condition on).

Capabilities, each the module's own method where it has one (a declared method wins), else derived:

========================  ================================================================================
``generate(n, y=None)``   the generation call on ``n`` rows of the data (values unused unless the program
                          conditions on them, as a CVAE on its input half) with the output sites released:
                          their distributions' means (``draws=True``: draws); ``y`` fixes the label arguments
``encode(x)``             the guide's continuous latent sites' locations, side by side (the posterior mean by
                          draws where a site has none in closed form)
``decode(z, y=None)``     the model conditioned on those latent values, the output sites' means
``reconstruct(x)``        ``decode(encode(x))`` with x's own conditioning arguments (Pyro's ``reconstruct_img``
                          is the module's own)
``classify(x)``           class probabilities: the module's ``classify`` or Pyro's ``classifier``, else the guide's
                          discrete site that the model observes when labels are given, q(y | x)
========================  ================================================================================

Outputs come back in the data's layout: where the output sites hold as many numbers per example as ``x`` has,
shaped like ``x`` (``x.reshape(-1, 784)`` back to images); several output sites of one shape are stacked
(the time steps of a sequence model); otherwise flat.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sysconfig
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

import pyro
from pyro import poutine
from pyro.poutine.messenger import Messenger

from ..batch import Batch, as_batch, batch_size, take, to_device
from ..traces import DATA_PLATE, forked_rng, per_example_weight, plate_nesting, sample_sites, untouched
from . import particles
from .binding import LABELED, LABELS, Arguments, Binder, takes_batch
from .contract import FunctionModel, MissingCapability
from .objectives import ELBO_OBJECTIVES, KLScale

#: capabilities a program may declare and ppvae can otherwise derive from its traces
DERIVABLE = ("generate", "encode", "decode", "reconstruct", "classify")
#: the module's own methods that stand for a capability (Pyro's examples' names on the right)
ALIASES = {"reconstruct": ("reconstruct", "reconstruct_img"), "classify": ("classify", "classifier")}
#: an environment variable that makes an error in a user's program raise with its full traceback
TRACEBACK_ENV = "PPVAE_TRACEBACK"


class Release(Messenger):
    """Samples observed sites from their distributions instead of scoring their observations (Pyro's
    ``uncondition``): those named in ``only`` where given, else every observed site but those in ``held``."""

    def __init__(self, only=None, held=()):
        super().__init__()
        self.only = set(only) if only else None
        self.held = set(held)

    def _process_message(self, msg):
        if msg["type"] == "sample" and msg["is_observed"] and msg["name"] not in self.held \
                and (self.only is None or msg["name"] in self.only):
            msg["is_observed"] = False
            msg["infer"] = {**(msg["infer"] or {}), "was_observed": True, "obs": msg["value"]}
            msg["value"] = None
            msg["done"] = False


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


class Program:
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
    def attach_data(self, data) -> "Program":
        """Remember the data's classes and a few test rows (the rows a derived ``generate`` or ``decode`` shapes
        its arguments with)."""
        self.classes = data.classes
        self._num_classes = data.num_classes
        self.template = take(data.batch("test"), slice(0, 64))
        return self

    @property
    def num_classes(self) -> int | None:
        n = getattr(self.module, "num_classes", None)
        return n if isinstance(n, int) else self._num_classes

    @property
    def conditional(self) -> bool:
        """Whether the program generates a given class: declared (``conditional = True``), or it has label
        arguments and the data have classes."""
        if bool(getattr(self.module, "conditional", False)) and isinstance(getattr(self.module, "num_classes", None), int):
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
        with _quiet():
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
                raise ValueError(f"model.data_plate is {self.data_plate_name!r}, but {self.name}'s programs open no such "
                                 f"plate; their plates: {', '.join(sorted({n for n, _ in names})) or 'none'}")
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
        return {self.binder.source_of(p, args) for p in self.binder.parameters_reading(fn, list(args))}

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
                with _quiet():
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
        reading = {p: self.binder.source_of(p, args) for p in self.binder.parameters_reading(fn, list(args))}
        required = {k for p, k in reading.items() if p not in optional}
        return {k for p, k in reading.items() if p in optional} - required

    def _outputs(self, args: Arguments) -> list[str]:
        try:
            with _quiet():
                tr = poutine.trace(self.model).get_trace(args)
        except Exception:  # a program that needs its optional arguments: every observed site of the full call
            with _quiet():
                tr = poutine.trace(self.model).get_trace(self.prepare(args.source))
        observed = {n: s for n, s in sample_sites(tr).items() if s["is_observed"]}
        scored = [n for n, s in observed.items() if not s["infer"].get("_deterministic")]
        return scored or list(observed)

    def _drop(self, keep_labels: bool) -> set[str]:
        s = self.sites()
        return s.optional_keys - (s.label_keys if keep_labels else set())

    # ---- capabilities --------------------------------------------------------------------------------------
    def declares(self, capability: str) -> bool:
        return self._declared(capability) is not None

    def _declared(self, capability: str):
        for name in ALIASES.get(capability, (capability,)):
            fn = getattr(self.module, name, None)
            if callable(fn):
                return fn
        return None

    def can(self, capability: str) -> bool:
        """Whether ``capability`` is declared or derivable (as far as a first trace can tell)."""
        if self.declares(capability):
            return True
        if capability not in DERIVABLE or getattr(self.module, "output", None) == "strings":
            return False
        try:
            self.why_not(capability)
        except MissingCapability:
            return False
        return True

    def why_not(self, capability: str) -> None:
        """Raise :class:`MissingCapability` saying why ``capability`` cannot be derived for this program."""
        s = self.sites()
        if capability in ("generate", "decode", "reconstruct") and not s.outputs:
            raise MissingCapability(f"{self.name}.model observes no site, so there is nothing to "
                                    f"{capability}")
        if capability in ("encode", "decode", "reconstruct") and not s.code:
            raise MissingCapability(f"{self.name}.guide has no continuous latent site inside the data plate "
                                    f"({s.plate!r}), so there is no code to {capability} with")
        if capability == "classify" and self._label_site() is None:
            raise MissingCapability(f"{self.name} has no classify() or classifier() method, and its guide has no "
                                    f"discrete site q(y | x) that the model observes when labels are given")

    def require(self, capability: str, what: str) -> Callable:
        """The capability's function (declared or derived), or one line saying why there is none."""
        if not self.declares(capability):
            if capability not in DERIVABLE:
                raise MissingCapability(f"{what} needs the model's {capability}() method, which {self.name} does not "
                                        f"have")
            try:
                self.why_not(capability)
            except MissingCapability as e:
                raise MissingCapability(f"{what} needs the model's {capability}() method, which {self.name} does not "
                                        f"have, and it cannot be derived from its traces: {e}") from None
        return getattr(self, capability)

    def _call_declared(self, fn: Callable, batch) -> Any:
        """A declared data-taking method: by the batch, by name, or (the contract's ``encode(x)``) x alone."""
        args = self.prepare(batch)
        try:
            return self.binder.call(fn, args)
        except ValueError as e:
            if "has no source" not in str(e) or self.binder.transform is not None:
                raise
            return fn(args.source["x"])

    def _context(self, n: int, context=None, label=None) -> Batch:
        """``n`` rows to shape the program's arguments: the first rows of ``context`` (or of the data), cycled,
        with the label ``label`` where one is given."""
        base = as_batch(context) if context is not None else self.template
        if base is None:
            raise MissingCapability(f"{self.name} has no generate() method, and ppvae derives one from rows of the "
                                    f"data, which it has not been given (attach_data)")
        rows = torch.arange(n) % batch_size(base)
        out = to_device(take(base, rows.to(next(iter(base.values())).device)), self.device)
        if label is not None:
            if isinstance(label, torch.Tensor) and label.dim():
                out[LABELS] = label.to(self.device).long().expand(n)
            else:
                out[LABELS] = torch.full((n,), int(label), dtype=torch.long, device=self.device)
            if LABELED in out:
                out[LABELED] = torch.ones(n, dtype=torch.bool, device=self.device)
        return out

    @torch.no_grad()
    def generate(self, n: int, y=None, *, draws: bool = False, context=None, **options):
        """``n`` samples: the module's ``generate(n)`` (``generate(n, y)`` for a class), else the generation
        call with the output sites released (with ``draws``, always: their draws rather than their means)."""
        fn = self._declared("generate") if not draws else None
        if fn is not None:
            return fn(n, **options) if y is None else fn(n, y, **options)
        self.sites(context)
        rows = self._context(n, context, y)
        args = self.prepare(rows)
        with _quiet():
            tr = poutine.trace(self._release()(self.model)).get_trace(args.without(self._drop(y is not None)))
        return self._read_outputs(tr, args, draws)

    @torch.no_grad()
    def encode(self, x, **options) -> torch.Tensor:
        """A point code per example: the module's ``encode``, else the guide's latent locations side by side."""
        fn = self._declared("encode")
        if fn is not None:
            return self._call_declared(fn, x)
        self.sites(x)
        args = self.prepare(x)
        code = [n for n, _ in self._code(args)]
        means = particles.posterior_means(self, args, num_draws=options.get("num_draws", 100), sites=code)
        return torch.cat([means[n][0] for n in code], 1)

    def _code(self, args: Arguments) -> list[tuple[str, tuple[int, ...]]]:
        """[(site, per-example shape)] of the code for these arguments: the guide's continuous latent sites inside
        the data plate (their number may depend on the rows, as a sequence model's on their lengths)."""
        return [(n, tuple(v.shape[1:])) for n, v in self._guide_values(args, continuous=True).items()]

    def _guide_values(self, args: Arguments, continuous: bool) -> dict[str, torch.Tensor]:
        """{site: the guide's draw, examples first} of its continuous (or discrete) latent sites in the data plate,
        drawn without touching the global random state."""
        plate = self.sites().plate
        with _quiet(), forked_rng(), torch.no_grad():
            tr = poutine.trace(self.guide).get_trace(args)
        return {n: _per_example(site["value"], site, plate, args.rows) for n, site in sample_sites(tr).items()
                if (site["value"].is_floating_point() and not site["fn"].support.is_discrete) == continuous
                and self._in_plate(site, plate)}

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y=None, *, context=None, draws: bool = False):
        """E[x | z] per row of ``z``: the module's ``decode``, else the model conditioned on the latent values."""
        fn = self._declared("decode")
        if fn is not None:
            return fn(z) if y is None else fn(z, y)
        self.sites(context)
        rows = self._context(z.shape[0], context, y)
        return self._decoded(z, rows, keep_labels=y is not None or (context is not None and LABELS in rows), draws=draws)

    def _decoded(self, z: torch.Tensor, rows: Batch, keep_labels: bool, draws: bool = False, fixed=None):
        args = self.prepare(rows)
        if args.order is not None:
            z = z[args.order.to(z.device)]
        layout = self._code(args)
        values, start = {}, 0
        for name, shape in layout:
            size = math.prod(shape)
            values[name] = z[:, start:start + size].reshape(z.shape[0], *shape)
            start += size
        if start != z.shape[-1]:
            raise ValueError(f"{self.name}'s code for these rows has {start} numbers per example "
                             f"({', '.join(f'{n} {list(sh)}' for n, sh in layout)}), but z has {z.shape[-1]}; a program "
                             f"whose latent sites depend on the rows (a sequence model's on their lengths) decodes a "
                             f"code only with rows like those it came from")
        for name, value in (fixed or {}).items():  # the guide's most probable discrete latents (reconstruct)
            values[name] = value if args.order is None else value[args.order.to(value.device)]
        with _quiet():
            tr = poutine.trace(self._release(held=values)(poutine.condition(self.model, data=values))).get_trace(
                args.without(self._drop(keep_labels)))
        return self._read_outputs(tr, args, draws)

    @torch.no_grad()
    def prior_codes(self, n: int, *, context=None) -> torch.Tensor:
        """(n, D) draws of the code's latent sites from the model (the prior over what ``encode`` gives)."""
        self.sites(context)
        args = self.prepare(self._context(n, context))
        s = self.sites()
        layout = self._code(args)
        with _quiet():
            tr = poutine.trace(self._release()(self.model)).get_trace(args.without(self._drop(False)))
        return torch.cat([args.restore(_per_example(tr.nodes[name]["value"], tr.nodes[name], s.plate, args.rows))
                          .reshape(args.rows, -1) for name, _ in layout], 1)

    @torch.no_grad()
    def reconstruct(self, x, *, draws: bool = False):
        """The module's ``reconstruct`` (or Pyro's ``reconstruct_img``), else ``decode(encode(x))`` with x's own
        conditioning arguments (its labels, a CVAE's input half)."""
        fn = self._declared("reconstruct") if not draws else None
        if fn is not None:
            return self._layout(self._call_declared(fn, x), as_batch(x))
        batch = to_device(as_batch(x), self.device)
        if draws:
            args = self.prepare(batch)
            with _quiet():
                guide_tr = poutine.trace(self.guide).get_trace(args)
                tr = poutine.trace(poutine.replay(self._release()(self.model), trace=guide_tr)).get_trace(
                    args.without(self._drop(True)))
            return self._read_outputs(tr, args, True)
        args = self.prepare(batch)
        modes = {n: args.restore(_mode(v, self.module)) for n, v in self._discrete_guide(args).items()}
        return self._decoded(self.encode(batch), batch, keep_labels=True, fixed=modes)

    def _discrete_guide(self, args: Arguments) -> dict[str, torch.Tensor]:
        """{site: q(. | x)} of the guide's discrete latent sites in the data plate (a label the batch does not
        give), each as its distribution."""
        plate = self.sites().plate
        with _quiet(), forked_rng(), torch.no_grad():
            tr = poutine.trace(self.guide).get_trace(args)
        return {n: site["fn"] for n, site in sample_sites(tr).items()
                if site["fn"].support.is_discrete and self._in_plate(site, plate) and n in self.sites().latent}

    @torch.no_grad()
    def classify(self, x) -> torch.Tensor:
        """Class probabilities (N, C): the module's ``classify`` (or Pyro's ``classifier``, whose one-hot guesses
        are probabilities too), else the guide's q(y | x) on the examples without their labels."""
        fn = self._declared("classify")
        batch = as_batch(x)
        if fn is not None:
            out = self._call_declared(fn, batch)
            return out if out.dim() == 2 else torch.nn.functional.one_hot(out.long(), self.num_classes).float()
        site = self._label_site()
        if site is None:
            self.why_not("classify")
        hidden = Batch({k: v for k, v in batch.items() if k not in (LABELS, LABELED)})
        args = self.prepare(hidden)
        with _quiet():
            tr = poutine.trace(self.guide).get_trace(args)
        probs = tr.nodes[site]["fn"].probs
        return args.restore(probs.reshape(args.rows, -1))

    def _label_site(self) -> str | None:
        """The guide's discrete site that is latent without labels and observed with them (q(y | x))."""
        s = self.sites()
        if not s.label_keys or self.template is None or LABELS not in self.template:
            return None
        rows = to_device(take(self.template, slice(0, 2)), self.device)
        hidden = self.prepare(Batch({k: v for k, v in rows.items() if k not in (LABELS, LABELED)}))
        try:
            with _quiet(), untouched(self.module), torch.no_grad():
                guide_tr = poutine.trace(self.guide).get_trace(hidden)
        except (KeyError, ValueError, TypeError):  # a guide that needs the labels has no q(y | x)
            return None
        for name, site in sample_sites(guide_tr).items():
            if site["fn"].support.is_discrete and name in s.observed and hasattr(site["fn"], "probs"):
                return name
        return None

    # ---- conditioning on part of the output ------------------------------------------------------------------
    @torch.no_grad()
    def proposals(self, start, truth, num_samples: int) -> "Proposals":
        """Importance sampling with the guide for conditioning on part of x: z_k ~ q(z | ``start``) and, at each
        z_k, the model's output site scored against ``truth`` element by element (both batches, or tensors x).

        Returns :class:`Proposals`: log p(z_k) - log q(z_k | start) per example, and per element of x (in x's
        flattened order) log p(x_i | z_k) of the truth and the output distribution's mean and variance. Needs
        one output site holding x's elements in order, under a distribution that factorizes over them."""

        start, truth = to_device(as_batch(start), self.device), to_device(as_batch(truth), self.device)
        s = self.sites(truth)
        site = self._pixel_site()
        args_q, args_p = self.prepare(start), self.prepare(truth)
        vectorized = num_samples > 1 and particles.vectorizes(self, start)
        draws = [num_samples] if vectorized else [1] * num_samples
        n, d = args_p.rows, math.prod(truth["x"].shape[1:])
        parts = {"log_w": [], "lp": [], "mean": [], "var": []}
        for k in draws:
            with _quiet():
                if vectorized:
                    with pyro.plate("num_particles_vectorized", k, dim=-(plate_nesting(self.guide, args_q, self.max_plate_nesting) + 1)):
                        guide_tr = poutine.trace(self.guide).get_trace(args_q)
                        model_tr = poutine.trace(poutine.replay(self.model, trace=guide_tr)).get_trace(args_p)
                else:
                    guide_tr = poutine.trace(self.guide).get_trace(args_q)
                    model_tr = poutine.trace(poutine.replay(self.model, trace=guide_tr)).get_trace(args_p)
            base = _elementwise(model_tr.nodes[site]["fn"], site)
            for tr in (guide_tr, model_tr):
                tr.compute_log_prob()
            log_w = sum(per_example_weight(m, vectorized, s.plate) for m in sample_sites(model_tr).values()
                        if not m["is_observed"]) \
                - sum(per_example_weight(g, vectorized, s.plate) for g in sample_sites(guide_tr).values())
            node = model_tr.nodes[site]
            if not torch.equal(node["value"].reshape(n, -1), args_p.source["x"].reshape(n, -1)[
                    args_p.order if args_p.order is not None else slice(None)].to(node["value"].dtype)):
                raise ValueError(f"{self.name}'s observed site {site!r} does not hold the pixels of x in their order, "
                                 f"so ppvae cannot condition on some of them")
            shape = (k, n, d) if vectorized else (1, n, d)
            parts["log_w"].append(args_p.restore(log_w.reshape(shape[:2]), dim=1))
            for key, value in (("lp", base.log_prob(node["value"])), ("mean", base.mean), ("var", base.variance)):
                parts[key].append(args_p.restore(value.reshape(shape), dim=1))
        return Proposals(**{k: torch.cat(v) for k, v in parts.items()})

    def _pixel_site(self) -> str:
        """The output site that holds x (one per example, all its elements)."""
        outputs = [n for n in self.sites().outputs]
        if len(outputs) != 1:
            raise ValueError(f"conditioning on some of x's elements needs one observed site holding x; {self.name}'s "
                             f"model observes {', '.join(map(repr, outputs)) or 'none'}")
        return outputs[0]

    # ---- outputs in the data's layout ----------------------------------------------------------------------
    def _release(self, held=()) -> Release:
        """The handler that releases the output sites: the declared ones, else every observed site but a label
        (and but the latent values ``held`` fixed by conditioning)."""
        return Release(only=self.declared_outputs, held=self.sites().held | set(held))

    def _read_outputs(self, tr, args: Arguments, draws: bool):
        released = {n: site for n, site in sample_sites(tr).items() if site["infer"].get("was_observed")}
        names = [n for n, site in released.items() if not site["infer"].get("_deterministic")] or list(released)
        values = [args.restore(_per_example(_value(tr.nodes[n], draws), tr.nodes[n], self.sites().plate, args.rows))
                  for n in names]
        return self._layout_sites(values, args.source)

    def _layout_sites(self, values: list[torch.Tensor], like: Batch):
        if len(values) == 1:
            return self._layout(values[0], like)
        flat = [v.reshape(v.shape[0], -1) for v in values]
        joined = self._layout(torch.cat(flat, 1), like)
        if joined.dim() > 2 or not all(v.shape == values[0].shape for v in values):
            return joined
        steps = torch.stack(values, 1)  # the steps of a sequence, one output site each
        x = like.get("x") if isinstance(like, dict) else None
        if x is not None and x.dim() == steps.dim() and x.shape[2:] == steps.shape[2:] and x.shape[1] > steps.shape[1]:
            # padded to the data's length, as the data pad their shorter sequences
            steps = torch.nn.functional.pad(steps, [0, 0] * (steps.dim() - 2) + [0, x.shape[1] - steps.shape[1]])
        return steps

    def _layout(self, value, like: Batch):
        """``value`` (N, ...) shaped like the data ``x`` where it holds as many numbers per example."""
        x = like.get("x") if isinstance(like, dict) else None
        if not isinstance(value, torch.Tensor) or x is None or value.dim() < 1:
            return value
        event = tuple(x.shape[1:])
        if value.shape[1:] != event and math.prod(value.shape[1:]) == math.prod(event):
            return value.reshape(value.shape[0], *event)
        return value


def _value(site: dict, draws: bool) -> torch.Tensor:
    """A released output site's draw, or its distribution's mean (the mode of a categorical)."""
    if draws:
        return site["value"]
    fn = site["fn"]
    base = fn
    while hasattr(base, "base_dist") and not isinstance(base, pyro.distributions.TransformedDistribution):
        base = base.base_dist
    if isinstance(base, (torch.distributions.Categorical, torch.distributions.OneHotCategorical)):
        probs = base.probs
        if isinstance(base, torch.distributions.OneHotCategorical):
            return torch.nn.functional.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype)
        return probs.argmax(-1)
    try:
        mean = fn.mean
    except NotImplementedError:
        mean = None
    if mean is None or not bool(torch.isfinite(mean).all()):
        return torch.stack([fn.sample() for _ in range(32)]).float().mean(0)
    return mean.expand(site["value"].shape) if mean.shape != site["value"].shape else mean


@dataclass
class Proposals:
    """Importance samples for conditioning on part of x (:meth:`Program.proposals`): shapes (K, N) and
    (K, N, D), D the elements of one example of x."""

    log_w: torch.Tensor
    lp: torch.Tensor
    mean: torch.Tensor
    var: torch.Tensor


def _elementwise(fn, site: str):
    """The distribution of each element of an observed site (through ``to_event`` and masks), or ValueError where
    it does not factorize over the elements."""
    base = fn
    while isinstance(base, (torch.distributions.Independent, pyro.distributions.MaskedDistribution)) or \
            type(base).__name__ == "Independent":
        base = base.base_dist
    if base.event_shape != ():
        raise ValueError(f"the distribution of observed site {site!r} ({type(base).__name__}) does not factorize over "
                         f"pixels, so it cannot give a masked log-probability")
    return base


def _mode(fn, module=None) -> torch.Tensor:
    """The most probable value of a discrete distribution (one-hot for a one-hot categorical)."""
    base = fn
    while hasattr(base, "base_dist"):
        base = base.base_dist
    if isinstance(base, torch.distributions.OneHotCategorical):
        return torch.nn.functional.one_hot(base.probs.argmax(-1), base.probs.shape[-1]).to(base.probs.dtype)
    if isinstance(base, torch.distributions.Categorical):
        return base.probs.argmax(-1)
    if isinstance(base, torch.distributions.Bernoulli):
        return (base.probs > 0.5).to(base.probs.dtype)
    return fn.sample()


def _per_example(value: torch.Tensor, site: dict, plate: str | None, rows: int) -> torch.Tensor:
    """A site's value with its examples first: the data plate's dimension moved to the front (a value with no
    such batch dimension, such as a ``pyro.deterministic`` site's whole tensor, is taken to start with them)."""
    frame = next((f for f in site["cond_indep_stack"] if f.name == plate and f.dim is not None), None)
    event = len(site["fn"].event_shape)
    if frame is not None and value.dim() - event >= -frame.dim:
        return value.movedim(frame.dim - event, 0)
    if value.dim() and value.shape[0] == rows:
        return value
    return value.expand(rows, *value.shape)


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


@contextlib.contextmanager
def _quiet():
    """A trace run for reading sites or outputs: module parameters answered directly (not through Pyro's
    parameter store) and the program's own sampling-without-enumeration warnings left out."""
    import warnings

    with KLScale(1.0, skip_param_store=True), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*If you want to enumerate sites, you need to use TraceEnum_ELBO")
        yield


def check_first_batch(p: Program, args: Arguments, objective_name: str) -> dict:
    """Run the programs once and check what a trace can tell before training: guide sites the model lacks,
    latents an objective cannot differentiate, parameters outside the module. Returns a summary of sites."""
    # As in training, module parameters bypass Pyro's parameter store, so a trace records only the pyro.param
    # calls that are not parameters of the module.
    with pyro.validation_enabled(False), KLScale(1.0, skip_param_store=True):
        guide_tr = poutine.trace(p.guide).get_trace(args)
        model_tr = poutine.trace(poutine.replay(p.model, trace=guide_tr)).get_trace(args)
    model_sites, guide_sites = sample_sites(model_tr), sample_sites(guide_tr)
    extra = [n for n in guide_sites if n not in model_sites]
    if extra:
        raise ValueError(f"the guide samples site(s) {', '.join(map(repr, extra))} that the model does not have "
                         f"(model sites: {', '.join(model_sites)}); the guide's sites must be latent sites of the model")
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
_LIBRARY_ROOTS = tuple(str(Path(p).resolve()) for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
                                                          sysconfig.get_paths()["platlib"], str(Path(__file__).parents[1])})


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
