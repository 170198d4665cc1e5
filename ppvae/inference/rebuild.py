"""From a spec to a model and back, and the check that a run directory rebuilds exactly the program trained.

``build_model(spec, event_shape)`` builds what ``[model]`` names: a registered family (``vae``), or a user's
class by import path. A class with a ``from_spec(spec, event_shape)`` classmethod builds itself; any other is
called with the section's options, plus ``event_shape`` (from the data) and the component sections
(``[prior]``, ``[likelihood]``, ...) that its constructor takes by name.

``program_record(model, spec)`` is what a checkpoint stores to prove the rebuild: the model rebuilt from the
resolved spec must have the same classes, parameter names and shapes, and the source files of user classes
are fingerprinted, so a later edit or move of the file is found instead of silently evaluating another
program. When a model cannot be rebuilt (a class defined in a notebook cell, a constructor argument a spec
cannot hold), the record says why, and every verb that would rebuild it refuses with that reason.
"""

from __future__ import annotations

import copy
import inspect

import torch

from ..registry import MODELS, check_options, file_fingerprint, registry_for, source_fingerprint
from ..spec import DEFAULT_SPEC, VAE_PARTS
from .contract import check_program
from .objectives import forked_rng


def build_model(spec: dict, event_shape=None, seed: int | None = None):
    """The model a resolved or user spec describes, for data of ``event_shape`` (which must agree with the
    spec's ``model.event_shape`` where it has one). With ``seed``, the initial weights are seeded: user code named
    by import path is imported first, so that whatever its import draws does not shift the seeded weights."""
    for part in ("model", *VAE_PARTS):
        name = spec.get(part, {}).get("name", "")
        if ":" in name:
            registry_for(part).get(name)
    if seed is not None:
        torch.manual_seed(seed)
    section = spec["model"]
    if event_shape is not None and section.get("event_shape") not in (None, list(event_shape)):
        raise ValueError(
            f"the spec says model.event_shape = {section['event_shape']} but the data has event shape "
            f"{list(event_shape)}; remove model.event_shape from the spec (it is taken from the data)"
        )
    shape = list(event_shape) if event_shape is not None else section.get("event_shape")
    cls = MODELS.get(section["name"])
    if not inspect.isclass(cls):
        raise ValueError(f"model {section['name']!r} is a {type(cls).__name__}, not a class")
    if hasattr(cls, "from_spec"):
        if shape is None:
            raise ValueError("the spec has no model.event_shape and no data was given to take it from")
        model = cls.from_spec(spec, shape)
    else:
        options = {k: v for k, v in section.items() if k != "name"}
        params = inspect.signature(cls).parameters
        if "event_shape" in params and "event_shape" not in options:
            if shape is None:
                raise ValueError("the spec has no model.event_shape and no data was given to take it from")
            options["event_shape"] = shape
        if "event_shape" not in params:
            options.pop("event_shape", None)
        for part in VAE_PARTS:
            if part in params and part not in options:
                options[part] = spec[part]
            elif part not in params and spec.get(part, DEFAULT_SPEC[part]) != DEFAULT_SPEC[part]:
                raise ValueError(f"the spec sets [{part}] ({spec[part]}) but model {section['name']!r} takes no "
                                 f"{part!r} argument; remove it, or give the class a {part} parameter")
        check_options(cls, options, f"model {section['name']!r}", keyword_only=False)
        model = cls(**options)
    check_program(model)
    return model


def model_sections(model) -> dict:
    """The spec sections that rebuild ``model``: its ``spec()``, or ``ValueError`` saying why there is none."""
    if not callable(getattr(model, "spec", None)):
        raise ValueError(f"{type(model).__name__} has no spec() method and does not derive from ppvae.Model, so "
                         f"ppvae cannot record how to rebuild it")
    sections = model.spec()
    if "model" not in sections or "name" not in sections["model"]:
        raise ValueError(f"{type(model).__name__}.spec() must return the spec sections, with [model] naming the "
                         f"class, e.g. {{'model': {{'name': 'my_models:MyVAE', ...}}}}")
    return sections


def resolve_model_spec(spec: dict, model) -> tuple[dict, str | None]:
    """(spec with the model's own sections, None) or (spec as it was, why it cannot describe the model)."""
    spec = copy.deepcopy(spec)
    try:
        sections = model_sections(model)
    except ValueError as e:
        return spec, str(e)
    spec.update(copy.deepcopy(sections))
    if not hasattr(type(model), "from_spec"):  # parts the model does not take would only mislead a reader
        params = inspect.signature(type(model)).parameters
        for part in VAE_PARTS:
            if part not in params and part not in sections:
                spec.pop(part, None)
    return spec, None


def structure(model) -> list:
    """What must match between the trained model and its rebuild: module classes, parameter names and shapes,
    and each module's plain settings (numbers, strings, flags), which a change after construction would alter."""
    modules = [(name, f"{type(m).__module__}.{type(m).__qualname__}") for name, m in model.named_modules()]
    tensors = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    settings = [(name, k, _plain_setting(v)) for name, m in model.named_modules() for k, v in sorted(vars(m).items())
                if not k.startswith("_") and k != "training" and _plain_setting(v) is not None]
    return [modules, tensors, settings]


def _plain_setting(value):
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)) and all(isinstance(v, (bool, int, float, str)) for v in value):
        return list(value)
    return None


def sources(model) -> dict[str, str]:
    """{file: sha256} of the user code the model runs: the classes of its modules, and the functions of a
    program written as plain functions."""
    out: dict[str, str] = {}
    for m in model.modules():
        out.update(source_fingerprint(type(m)))
    for fn in (getattr(model, "_model_fn", None), getattr(model, "_guide_fn", None)):
        if fn is not None:
            out.update(file_fingerprint(inspect.getsourcefile(fn)))
    return out


def program_record(model, spec: dict, why_not: str | None = None) -> dict:
    """The checkpoint's proof that ``spec`` rebuilds ``model``: rebuild it (without touching the global random
    state) and compare structures; fingerprint the user-code source files."""
    record = {"class": f"{type(model).__module__}.{type(model).__qualname__}", "rebuildable": False, "why": why_not,
              "sources": {}, "structure": structure(model)}
    if why_not is None:
        try:
            with forked_rng():
                rebuilt = build_model(spec, spec["model"].get("event_shape"))
            if structure(rebuilt) != record["structure"]:
                record["why"] = _difference(record["structure"], structure(rebuilt))
            else:
                record["rebuildable"] = True
        except Exception as e:  # whatever stops the rebuild is the reason a run directory cannot do it
            record["why"] = f"rebuilding it from the spec failed ({type(e).__name__}: {e})"
    if record["rebuildable"]:
        record["sources"] = sources(model)
    return record


def still_matches(record: dict | None, model) -> dict | None:
    """The record as it stands after training changed ``model`` (a callback may change its settings): the same
    record where nothing that the rebuild compares has changed, else one that says what did."""
    if record is None or not record["rebuildable"] or structure(model) == record["structure"]:
        return record
    why = _difference(record["structure"], structure(model)).replace("the spec rebuilds a different network",
                                                                      "the model was changed during training")
    return {**record, "rebuildable": False, "why": why}


def _difference(trained: list, rebuilt: list) -> str:
    for what, a, b in (("module", trained[0], rebuilt[0]), ("parameter", trained[1], rebuilt[1]),
                       ("setting", trained[2], rebuilt[2])):
        for x, y in zip(a, b):
            if x != y:
                return f"the spec rebuilds a different network: {what} {x} was trained, the spec gives {y}"
        if len(a) != len(b):
            return f"the spec rebuilds a different network: {len(a)} {what}s trained, {len(b)} rebuilt"
    return "the spec rebuilds a different network"


def check_rebuilt(record: dict | None, run_dir, model) -> None:
    """The rebuilt ``model`` must run the very files the trained one ran (a module imported by name can come from
    another file on another sys.path) and have its structure."""
    if record is None:
        return
    now = sources(model)
    if set(now) != set(record["sources"]):
        raise ValueError(f"{str(run_dir)!r} was trained with code from {', '.join(sorted(record['sources'])) or 'ppvae'}"
                         f", but its spec now imports {', '.join(sorted(now)) or 'ppvae'}; the run's numbers would "
                         f"come from a different program. Put the original files first on the path")
    if "structure" in record and structure(model) != record["structure"]:
        raise ValueError(f"{str(run_dir)!r} cannot be rebuilt exactly: "
                         f"{_difference(record['structure'], structure(model))}; a resume can change how training goes "
                         f"on (train.epochs, optimizer.lr, beta), not the model (model options, nets, prior, "
                         f"likelihood, guide)")


def check_record(record: dict | None, run_dir) -> None:
    """Refuse to rebuild a run whose record says it cannot be, or whose user code changed since training."""
    if record is None:  # checkpoints written before records existed: stock models only
        return
    if not record["rebuildable"]:
        raise ValueError(f"{str(run_dir)!r} cannot be rebuilt exactly, so ppvae will not compute anything from it: "
                         f"{record['why']}")
    from hashlib import sha256
    from pathlib import Path

    for file, digest in record["sources"].items():
        path = Path(file)
        if not path.is_file():
            raise FileNotFoundError(f"{str(run_dir)!r} was trained with code from {file}, which no longer exists "
                                    f"(moved or deleted); put it back to use this run")
        if sha256(path.read_bytes()).hexdigest() != digest:
            raise ValueError(f"{str(run_dir)!r} was trained with code from {file}, which has changed since; the "
                             f"run's numbers would come from a different program. Restore the file (e.g. from "
                             f"version control) to use this run")
