"""Per-batch transforms: a batch of the data -> a program's arguments (``data.transform`` in a spec).

A transform is a function of the batch mapping returning the mapping of the program's arguments, or
``(arguments, order)`` where it reorders the rows (:mod:`ppvae.inference.binding`). It is named

- by import path, ``data.transform = "my_transforms.py:mini_batch"`` (a user's function, e.g. one building the
  packed, reversed and masked sequences of Pyro's DMM);
- by name, for the common ones: ``flatten`` (``x`` to one vector per example, as Pyro's MNIST loaders give it)
  and ``onehot`` (the class labels ``y`` as one-hot vectors, as Pyro's SS-VAE reads them; ``num_classes`` is
  the data's where not given);
- as a list, applied in order: ``data.transform = ["flatten", "onehot"]``.

A name may come with options as a table, ``{ name = "onehot", num_classes = 10 }``. The resolved spec records
the options a transform read off the data, so a run directory rebuilds the same arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

from ..batch import one_hot
from ..registry import TRANSFORMS, absolute_path, int_option


@TRANSFORMS.register("flatten")
class Flatten:
    """``x`` as one vector per example: shape (N, D)."""

    def __init__(self, *, key: str = "x"):
        self.key = key

    def __call__(self, batch):
        return {**batch, self.key: batch[self.key].flatten(1)} if self.key in batch else dict(batch)

    def spec(self) -> dict:
        return {"name": "flatten", **({"key": self.key} if self.key != "x" else {})}


@TRANSFORMS.register("onehot")
class OneHot:
    """Class labels ``y`` (N,) as float one-hot vectors (N, num_classes); a batch without labels is left as it is."""

    def __init__(self, *, num_classes: int, key: str = "y"):
        self.num_classes = int_option(num_classes, 2, "the onehot transform's num_classes")
        self.key = key

    def __call__(self, batch):
        if self.key not in batch:
            return dict(batch)
        return {**batch, self.key: one_hot(batch[self.key].long(), self.num_classes)}

    def spec(self) -> dict:
        return {"name": "onehot", "num_classes": self.num_classes, **({"key": self.key} if self.key != "y" else {})}

    @staticmethod
    def options_from_data(data) -> dict:
        if data is None or data.num_classes is None:
            raise ValueError("the onehot transform needs the number of classes: the data have no class labels; give "
                             "it as { name = \"onehot\", num_classes = C }")
        return {"num_classes": data.num_classes}


class Composed:
    """Transforms applied in order; their orders of rows composed."""

    def __init__(self, parts: list[Callable]):
        self.parts = parts

    def __call__(self, batch):
        order = None
        out = batch
        for part in self.parts:
            result = part(out)
            if isinstance(result, tuple) and len(result) == 2:
                result, new = result
                new = torch.as_tensor(new, dtype=torch.long)
                order = new if order is None else order[new]
            out = result
        return out if order is None else (out, order)

    @property
    def functions(self) -> list[Callable]:
        return self.parts


def _entries(spec) -> list:
    if spec is None:
        return []
    return list(spec) if isinstance(spec, list) else [spec]


def _one(entry, data=None) -> tuple[Callable, object]:
    """(the transform, its resolved spec entry)."""
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ValueError(f"data.transform entries are names ({', '.join(TRANSFORMS.names)}), import paths "
                         f"('file.py:fn') or tables {{ name = ..., options }}; got {entry!r}")
    options = {k: v for k, v in entry.items() if k != "name"}
    name = entry["name"]
    target = TRANSFORMS.get(name)
    if inspect.isclass(target):
        required = [p.name for p in inspect.signature(target).parameters.values() if p.default is p.empty]
        if hasattr(target, "options_from_data") and any(r not in options for r in required):
            options = {**target.options_from_data(data), **options}  # what the data say (onehot's classes)
        built = TRANSFORMS.build(name, **options)
        return built, built.spec() if hasattr(built, "spec") else {"name": name, **options}
    if options:
        raise ValueError(f"data.transform {name!r} is a function, which takes no options; got {', '.join(options)}")
    if not callable(target):
        raise ValueError(f"data.transform {name!r} is a {type(target).__name__}, not a function of the batch")
    return target, absolute_path(name)


def make_transform(spec, data=None) -> tuple[Callable | None, object]:
    """(the transform a spec's ``data.transform`` names, or None; the resolved spec value to record)."""
    entries = _entries(spec)
    if not entries:
        return None, None
    built = [_one(e, data) for e in entries]
    resolved = [b[1] for b in built]
    if len(built) == 1:
        return built[0][0], resolved[0] if isinstance(spec, (str, dict)) else resolved
    return Composed([b[0] for b in built]), resolved


def transform_functions(transform) -> list[Callable]:
    """The user functions a transform runs (whose source files a run fingerprints)."""
    if transform is None:
        return []
    parts = transform.functions if isinstance(transform, Composed) else [transform]
    return [f for f in parts if inspect.isfunction(f)]


__all__ = ["TRANSFORMS", "make_transform", "Flatten", "OneHot", "Composed"]
