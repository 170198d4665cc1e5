r"""What every verb asks of a program: each capability the module's own method where it has one (a declared method
wins), else derived from the program's traces. :class:`Capabilities` is the half of
:class:`~ppvae.inference.program.Program` that reads its traces for the verbs; the other half (the calling
convention, the data plate, the output sites and label arguments a first trace shows) is there.

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
``proposals(...)``        importance proposals for conditioning on part of the data (inpainting, upscaling)
========================  ================================================================================

Outputs come back in the data's layout: where the output sites hold as many numbers per example as ``x`` has,
shaped like ``x`` (``x.reshape(-1, 784)`` back to images); several output sites of one shape are stacked
(the time steps of a sequence model); otherwise flat.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger

from ..batch import Batch, as_batch, batch_size, take, to_device
from ..traces import forked_rng, per_example_weight, plate_nesting, sample_sites, sampled_enumeration, untouched
from . import particles
from .binding import LABELED, LABELS, Arguments
from .contract import MissingCapability, output_of
from .objectives import ModuleParams

#: capabilities a program may declare and ppvae can otherwise derive from its traces
DERIVABLE = ("generate", "encode", "decode", "reconstruct", "classify")
#: the module's own methods that stand for a capability (Pyro's examples' names on the right)
ALIASES = {"reconstruct": ("reconstruct", "reconstruct_img"), "classify": ("classify", "classifier")}


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



class Capabilities:
    """The verbs' capabilities of a :class:`~ppvae.inference.program.Program` (a mixin: it reads the program's
    ``module``, ``sites``, ``prepare``, ``call`` and binder)."""

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
        if capability not in DERIVABLE or not output_of(self.module).derivable:
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
            raise MissingCapability(f"{self.name}.model observes no site, so there "
                                    f"is nothing to {capability}")
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
                raise MissingCapability(f"{what} needs the model's {capability}() method, which "
                                        f"{self.name} does not have")
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
        with quiet():
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
        with quiet(), forked_rng(), torch.no_grad():
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
        keep_labels = y is not None or (context is not None and LABELS in rows)
        return self._decoded(z, rows, keep_labels=keep_labels, draws=draws)

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
                             f"({', '.join(f'{n} {list(sh)}' for n, sh in layout)}), but z has {z.shape[-1]}; a "
                             f"program "
                             f"whose latent sites depend on the rows (a sequence model's on their lengths) decodes a "
                             f"code only with rows like those it came from")
        for name, value in (fixed or {}).items():  # the guide's most probable discrete latents (reconstruct)
            values[name] = value if args.order is None else value[args.order.to(value.device)]
        with quiet():
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
        with quiet():
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
            with quiet():
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
        with quiet(), forked_rng(), torch.no_grad():
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
        with quiet():
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
            with quiet(), untouched(self.module), torch.no_grad():
                guide_tr = poutine.trace(self.guide).get_trace(hidden)
        except (KeyError, ValueError, TypeError):  # a guide that needs the labels has no q(y | x)
            return None
        for name, site in sample_sites(guide_tr).items():
            if site["fn"].support.is_discrete and name in s.observed and hasattr(site["fn"], "probs"):
                return name
        return None

    # ---- conditioning on part of the output ------------------------------------------------------------------
    @torch.no_grad()
    def proposals(self, start, truth, num_samples: int) -> Proposals:
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
            with quiet():
                if vectorized:
                    nesting = plate_nesting(self.guide, args_q, self.max_plate_nesting)
                    with pyro.plate("num_particles_vectorized", k, dim=-(nesting + 1)):
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


@contextlib.contextmanager
def quiet():
    """A trace run for reading sites or outputs: module parameters answered directly (not through Pyro's
    parameter store) and the program's own sampling-without-enumeration warnings left out."""
    with ModuleParams(), sampled_enumeration():
        yield
