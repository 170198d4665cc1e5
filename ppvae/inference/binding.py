"""How a batch becomes a program's arguments: ppvae calls a Pyro program the way its signature asks.

A method whose first parameter is named ``batch`` (or annotated as a mapping) gets the batch mapping, as the
ppvae contract writes programs. Any other method is called the way Pyro's own examples write them,
``model(x)``, ``guide(xs, ys=None)``, ``model(mini_batch, mini_batch_reversed, mini_batch_mask, ...)``: each
parameter is bound by name from the batch's keys, where

- ``inputs = {"xs": "x"}`` (``model.inputs`` in a spec) renames: parameter ``xs`` reads key ``x``;
- a plural name reads the singular key when there is no key of its own name (``xs`` reads ``x``, ``ys`` ``y``);
- the first parameter, where no key is its source and no other parameter reads the data ``x``, reads ``x``, as
  Pyro's examples pass the data first (``svi.step(docs)`` for ``model(docs)``);
- a parameter with a default is left out where its key is absent (Pyro's ``ys=None`` on unlabelled data);
- a required parameter with no source is refused in one line naming it and the keys on offer.

A **transform** (``data.transform = "file.py:fn"``) turns each batch into the program's arguments first, for
programs that take packed, reversed or masked sequences: ``fn(batch)`` returns a mapping of arguments, or
``(arguments, order)`` where it reorders the rows, ``order[i]`` being the batch row of argument row ``i`` (a
transform that sorts sequences by length, as Pyro's DMM does). Per-example results are put back in the data's
order with :meth:`Arguments.restore`.

**Labels a program may not see.** Semi-supervised data mark the rows whose label may be used (batch key
``labeled``). A program that takes its arguments by name and has no parameter reading ``labeled`` cannot tell
those rows apart, so it sees ``y`` only on batches whose rows are all labelled; on all-unlabelled batches ``y``
is absent (``ys=None``); a batch that mixes both is refused (train with ``train.labeled_batches = "alternate"``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..batch import Batch, as_batch

#: batch keys that say which rows' labels a program may use
LABELED = "labeled"
LABELS = "y"
#: the batch key of the data itself
DATA = "x"


class Arguments(Batch):
    """A program's arguments for one batch, by name, with the batch they came from (``source``) and the order
    of their rows (``order``: None where the rows are the batch's, else the batch row of each argument row)."""

    source: Batch
    order: torch.Tensor | None = None
    rows: int = 0

    def restore(self, value: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """A per-example result (rows along ``dim``, in this object's order) in the order of the batch's rows."""
        if self.order is None:
            return value
        out = torch.empty_like(value)
        index = [slice(None)] * value.dim()
        index[dim] = self.order.to(value.device)
        out[tuple(index)] = value
        return out

    def without(self, keys) -> Arguments:
        """The same arguments less ``keys``."""
        out = Arguments({k: v for k, v in self.items() if k not in keys})
        out.source, out.order, out.rows = self.source, self.order, self.rows
        return out


def _parameters(fn: Callable) -> tuple[inspect.Parameter, ...]:
    """``fn``'s named parameters (a bound method's without ``self``), read once per function: a training step
    binds every batch, so the signature is not parsed again each time."""
    return _plan(getattr(fn, "__func__", fn), hasattr(fn, "__self__"))[1]


def takes_batch(fn: Callable) -> bool:
    """Whether ``fn`` takes the batch mapping itself: its first parameter is named ``batch`` or annotated as a
    mapping (``Mapping``, ``dict``, ``Batch``)."""
    return _plan(getattr(fn, "__func__", fn), hasattr(fn, "__self__"))[0]


@functools.lru_cache(maxsize=1024)
def _plan(func: Callable, bound: bool) -> tuple[bool, tuple[inspect.Parameter, ...]]:
    try:
        params = list(inspect.signature(func).parameters.values())[1 if bound else 0:]
    except (TypeError, ValueError):
        params = []
    params = tuple(p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
    if not params:
        return True, params  # *args programs are called the contract's way
    first = params[0]
    annotation = first.annotation
    if first.name == "batch":
        return True, params
    if isinstance(annotation, str):
        mapping = annotation.split("[")[0].split(".")[-1] in ("Mapping", "dict", "Dict", "Batch", "MutableMapping")
    else:
        mapping = inspect.isclass(annotation) and issubclass(annotation, Mapping)
    return mapping, params


def _name(fn: Callable) -> str:
    owner = getattr(fn, "__self__", None)
    return f"{type(owner).__name__}.{fn.__name__}" if owner is not None else getattr(fn, "__qualname__", repr(fn))


class Binder:
    """Binds batches to one program's methods: the renames (``inputs``), the transform, the label rule."""

    def __init__(self, inputs: Mapping[str, str] | None = None, transform: Callable | None = None,
                 reads_labeled: bool = True):
        if inputs is not None and (not isinstance(inputs, Mapping)
                                   or not all(isinstance(k, str) and isinstance(v, str) for k, v in inputs.items())):
            raise ValueError(f"model.inputs must be a table of parameter = batch key, e.g. {{ xs = \"x\", ys = \"y\" "
                             f"}}, got {inputs!r}")
        self.inputs = dict(inputs or {})
        self.transform = transform
        #: False for a program taking named arguments none of which reads the ``labeled`` mask
        self.reads_labeled = reads_labeled

    # ---- a batch -> the program's arguments --------------------------------------------------------------
    def prepare(self, batch) -> Arguments:
        """The arguments of one batch: labels hidden where the program may not see them, then the transform."""
        if isinstance(batch, Arguments):
            return batch
        source = as_batch(batch)
        rows = next(iter(source.values())).shape[0] if source else 0
        visible = source if self.reads_labeled else hide_unseen_labels(source)
        order = None
        if self.transform is not None:
            out = self.transform(visible)
            if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], Mapping):
                out, order = out
                order = torch.as_tensor(order, dtype=torch.long)
                if order.shape != (rows,) or not torch.equal(order.sort().values.cpu(), torch.arange(rows)):
                    raise ValueError(f"data.transform returned an order of shape {tuple(order.shape)} that is not a "
                                     f"permutation of the batch's {rows} rows; order[i] must be the batch row of "
                                     f"argument row i")
            if not isinstance(out, Mapping):
                raise ValueError(f"data.transform must return a mapping of the program's arguments (or a pair "
                                 f"(arguments, order)), got {type(out).__name__}")
            visible = out
        args = Arguments(visible)
        args.source, args.order, args.rows = source, order, rows
        return args

    # ---- the arguments -> one call ---------------------------------------------------------------------------
    def source_of(self, name: str, keys) -> str | None:
        """The key parameter ``name`` reads among ``keys`` by its name (or rename), or None."""
        if name in self.inputs:
            return self.inputs[name]
        if name in keys:
            return name
        if name.endswith("s") and name[:-1] in keys:
            return name[:-1]
        return None

    def sources(self, fn: Callable, keys) -> dict[str, str]:
        """{parameter: the key it reads among ``keys``} for a named-argument method's parameters that read one:
        by name, and the first parameter the data ``x`` where nothing else reads it."""
        if takes_batch(fn):
            return {}
        params = _parameters(fn)
        out = {}
        for p in params:
            key = self.source_of(p.name, keys)
            if key is not None and key in keys:
                out[p.name] = key
        if params and params[0].name not in out and DATA in keys and DATA not in out.values():
            out = {params[0].name: DATA, **out}
        return out

    def bind(self, fn: Callable, args: Arguments) -> tuple[tuple, dict]:
        """(positional, keyword) arguments of ``fn`` for ``args``: the mapping itself for a method that takes the
        batch, else each parameter by name."""
        if takes_batch(fn):
            return (args,), {}
        positional, keywords, missing = [], {}, []
        by_keyword = False  # once a parameter is left at its default, the later ones go by name
        sources = self.sources(fn, args)
        for p in _parameters(fn):
            key = sources.get(p.name)
            if key is not None:
                if by_keyword or p.kind is p.KEYWORD_ONLY:
                    keywords[p.name] = args[key]
                else:
                    positional.append(args[key])
            elif p.default is p.empty:
                missing.append(p.name)
            else:
                by_keyword = True
        if missing:
            raise ValueError(missing_message(fn, missing, list(args), self.inputs))
        return tuple(positional), keywords

    def call(self, fn: Callable, args: Arguments) -> Any:
        positional, keywords = self.bind(fn, args)
        return fn(*positional, **keywords)

    def parameters_reading(self, fn: Callable, keys) -> set[str]:
        """The parameters of a named-argument method that read one of ``keys``."""
        return set(self.sources(fn, keys))

    def optional(self, fn: Callable) -> set[str]:
        """The parameters of a named-argument method that have defaults."""
        if takes_batch(fn):
            return set()
        return {p.name for p in _parameters(fn) if p.default is not p.empty}


def missing_message(fn: Callable, missing: list[str], keys: list[str], inputs: Mapping) -> str:
    offer = ", ".join(map(repr, keys)) or "none"
    first = missing[0]
    return (f"{_name(fn)}'s parameter{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
            f"{'have' if len(missing) > 1 else 'has'} no source: the batch has keys {offer}; name the key with "
            f"model.inputs = {{ {first} = \"x\" }}, build it with a data.transform, or give the parameter a default")


def hide_unseen_labels(batch: Batch) -> Batch:
    """The batch as a program that cannot read the ``labeled`` mask may see it: ``y`` kept on an all-labelled
    batch, dropped on an all-unlabelled one, a mixed batch refused."""
    seen = batch.get(LABELED)
    if seen is None:
        return batch
    out = Batch({k: v for k, v in batch.items() if k != LABELED})
    if bool(seen.all()):
        return out
    if not bool(seen.any()):
        out.pop(LABELS, None)
        return out
    raise ValueError("this batch mixes labelled and unlabelled rows, but the program takes its arguments by name and "
                     "none of them reads the 'labeled' mask, so it would see every row's label; set "
                     "train.labeled_batches = \"alternate\" (whole labelled batches between unlabelled ones, as "
                     "Pyro's SS-VAE trains), or give the program a parameter reading 'labeled'")


__all__ = ["Arguments", "Binder", "takes_batch", "hide_unseen_labels"]
