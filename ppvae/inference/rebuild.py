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

from ..data.transforms import transform_functions
from ..registry import MODELS, check_options, class_id, file_fingerprint, load_object, registry_for, source_fingerprint
from ..spec import DEFAULT_SPEC, PROGRAM_OPTIONS, VAE_PARTS
from ..traces import forked_rng
from .contract import check_program, recipe
from .program import program


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
        options = {k: v for k, v in section.items() if k != "name" and k not in PROGRAM_OPTIONS}
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
        check_required(cls, options, f"model {section['name']!r}", "model")
        if ":" in section["name"]:  # a user's class: its module arguments are tables naming their classes
            options = {k: instantiate(v, f"model.{k}") for k, v in options.items()}
        model = cls(**options)
    check_program(model)
    return model


def check_required(cls, options: dict, who: str, section: str) -> None:
    """Refuse, in one line, a constructor call that would miss required arguments, naming them."""
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return
    missing = [p.name for p in params if p.default is p.empty and p.name not in options
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if missing:
        sets = " ".join(f"--set {section}.{m}=..." for m in missing)
        raise ValueError(f"{who} needs constructor argument{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(missing)}; give {'them' if len(missing) > 1 else 'it'}: {sets} (a module as "
                         f"a table naming its class, e.g. {section}.{missing[-1]}={{name=\"file.py:Net\", ...}})")


def instantiate(value, where: str):
    """A spec value for a user's class: a table whose ``name`` is an import path (``"file.py:Net"``) is that class
    built from the table's other keys, recursively (a pre-trained network passed to a model: its weights come
    from the checkpoint); anything else as it is."""
    if isinstance(value, list):
        return [instantiate(v, where) for v in value]
    if not (isinstance(value, dict) and isinstance(value.get("name"), str) and ":" in value["name"]):
        return value
    cls = load_object(value["name"], where)
    options = {k: instantiate(v, f"{where}.{k}") for k, v in value.items() if k != "name"}
    if inspect.isclass(cls):
        check_options(cls, options, f"{where} ({value['name']})", keyword_only=False)
        check_required(cls, options, f"{where} ({value['name']})", where)
    return cls(**options)


def model_sections(model, built_from: dict | None = None) -> dict:
    """The spec sections that rebuild ``model``: its ``spec()``; else the ``[model]`` section it was built from
    (``built_from``: its recipe exactly); else its constructor's arguments read back from the object
    (:func:`~ppvae.inference.contract.recipe`); or ``ValueError`` saying why there are none."""
    if callable(getattr(model, "spec", None)):
        sections = model.spec()
        if "model" not in sections or "name" not in sections["model"]:
            raise ValueError(f"{type(model).__name__}.spec() must return the spec sections, with [model] naming the "
                             f"class, e.g. {{'model': {{'name': 'my_models:MyVAE', ...}}}}")
        return sections
    if built_from is not None:
        section = {k: v for k, v in built_from.items() if k not in PROGRAM_OPTIONS}
        event_shape = getattr(model, "event_shape", None)
        if "event_shape" in inspect.signature(type(model)).parameters and "event_shape" not in section:
            section["event_shape"] = list(event_shape) if event_shape is not None else None
        return {"model": {k: v for k, v in section.items() if v is not None}}
    return {"model": recipe(model)[0]}


def resolve_model_spec(spec: dict, model, built_from: dict | None = None) -> tuple[dict, str | None]:
    """(spec with the model's own sections, None) or (spec as it was, why it cannot describe the model). The
    program options of ``[model]`` (``inputs``, ``data_plate``, ``output_sites``) are kept."""
    spec = copy.deepcopy(spec)
    program_options = {k: v for k, v in spec["model"].items() if k in PROGRAM_OPTIONS}
    try:
        sections = model_sections(model, built_from)
    except ValueError as e:
        return spec, str(e)
    spec.update(copy.deepcopy(sections))
    spec["model"].update(program_options)
    if not hasattr(type(model), "from_spec"):  # parts the model does not take would only mislead a reader
        params = inspect.signature(type(model)).parameters
        for part in VAE_PARTS:
            if part not in params and part not in sections:
                spec.pop(part, None)
    return spec, None


def structure(model) -> list:
    """What must match between the trained model and its rebuild: module classes, parameter names and shapes,
    and each module's plain settings (numbers, strings, flags), which a change after construction would alter."""
    modules = [(name, class_id(type(m))) for name, m in model.named_modules()]
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
    """{file: sha256} of the user code the model runs: the classes of its modules, the functions of a program
    written as plain functions, and its per-batch transform."""
    out: dict[str, str] = {}
    for m in model.modules():
        out.update(source_fingerprint(type(m)))
    for fn in (getattr(model, "_model_fn", None), getattr(model, "_guide_fn", None),
               *transform_functions(program(model).binder.transform)):
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
                record["why"] = _difference(record["structure"], structure(rebuilt)) + _assumed_hint(model)
            else:
                record["rebuildable"] = True
        except Exception as e:  # whatever stops the rebuild is the reason a run directory cannot do it
            record["why"] = f"rebuilding it from the spec failed ({type(e).__name__}: {e})"
    if record["rebuildable"]:
        record["sources"] = sources(model)
    return record


def _assumed_hint(model) -> str:
    """Where a model built in Python was recorded with some constructor arguments at their defaults (it does not
    store them), the ``--set`` that would record them."""
    if callable(getattr(model, "spec", None)):
        return ""
    try:
        _, assumed = recipe(model)
    except ValueError:
        return ""
    if not assumed:
        return ""
    return (f"; {type(model).__name__} does not store {', '.join(map(repr, assumed))}, so "
            f"{'their defaults were' if len(assumed) > 1 else 'its default was'} recorded: store "
            f"{'them' if len(assumed) > 1 else 'it'} (self.{assumed[0]} = {assumed[0]}), or train from a spec "
            f"giving {'them' if len(assumed) > 1 else 'it'} ("
            + " ".join(f"--set model.{a}=..." for a in assumed) + ")")


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
        raise ValueError(f"{str(run_dir)!r} was trained with code from "
                         f"{', '.join(sorted(record['sources'])) or 'ppvae'}"
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
