"""The run spec: one nested dict that says everything a run needs, as a TOML file or from Python.

    spec = load_spec("run.toml", overrides=["prior.name=normal", "beta.value=4"])

Sections name components by registry name or import path (``model.name = "my_models:HierarchicalVAE"``);
every other key in a component section is passed to that component's constructor, which rejects options it
does not take. A run directory stores the resolved spec
(with the data's event shape filled in), and that file rebuilds exactly what was trained.
"""

from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from .data import DEFAULT_DATASET, DEFAULT_SPLIT_SEED, DEFAULT_TEST_FRACTION, DEFAULT_VAL_FRACTION
from .inference.checkpoint import atomic_write_bytes
from .registry import int_option, registry_for

# Component sections: their keys are free (checked by the component); all other sections are closed.
COMPONENT_SECTIONS = ("data", "model", "encoder", "decoder", "guide", "prior", "likelihood", "beta", "objective",
                      "optimizer")
#: the sections that describe the stock VAE's parts; a model that does not take one leaves it at its default
VAE_PARTS = ("encoder", "decoder", "guide", "prior", "likelihood")
#: keys of [model] that say how ppvae calls the program, not how to construct it
#: (:class:`~ppvae.inference.program.Program`): renames of arguments, the data plate, the output sites
PROGRAM_OPTIONS = ("inputs", "data_plate", "output_sites")

DEFAULT_SPEC: dict[str, Any] = {
    "seed": 0,
    "device": "auto",
    "data": {"name": DEFAULT_DATASET, "test_fraction": DEFAULT_TEST_FRACTION, "split_seed": DEFAULT_SPLIT_SEED,
             "val_fraction": DEFAULT_VAL_FRACTION},
    # The same model as ppvae.VAE's defaults (and PyTorch's VAE example): 784-400-20, so a Python run and a
    # CLI run with nothing set train the same network.
    "model": {"name": "vae", "latent_dim": 20},
    "encoder": {"name": "mlp", "hidden": [400]},
    "decoder": {"name": "mlp", "hidden": [400]},
    "guide": {"name": "normal"},
    "prior": {"name": "normal"},
    "likelihood": {"name": "bernoulli"},
    "beta": {"name": "constant", "value": 1.0},
    "objective": {"name": "Trace_ELBO", "num_particles": 1},
    "optimizer": {"name": "adam", "lr": 1e-3},
    "train": {"epochs": 100, "batch_size": 128, "progress_every": 10, "figures": True, "validate": False},
}

# Keys allowed in the closed sections, with the types a value may have (None: optional, may be absent).
_CLOSED: dict[str, dict[str, tuple[type, ...]]] = {
    "": {"seed": (int,), "device": (str,), "losses": (list,)},
    "train": {"epochs": (int,), "batch_size": (int,), "progress_every": (int,), "figures": (bool,),
              "validate": (bool,), "labeled_per_batch": (int,), "labeled_batches": (str,), "backend": (str,),
              "keep_checkpoints": (int,), "deterministic": (bool,), "loggers": (list,), "graph": (str,),
              "log_images_every": (int,), "mlflow_uri": (str,), "mlflow_experiment": (str,),
              "keep_best": (str,), "early_stopping": (dict,), "drop_last": (bool,)},
}


def default_spec() -> dict[str, Any]:
    """A fresh copy of the spec every run starts from (the stock VAE on the 5,000 MNIST digits), for overrides."""
    return copy.deepcopy(DEFAULT_SPEC)


def merge(base: dict, update: dict) -> dict:
    """Recursive dict update; a component section whose ``name`` changes starts from the new name alone,
    so options of the old component do not leak into the new one."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            if key in COMPONENT_SECTIONS and "name" in value and value["name"] != out[key].get("name"):
                out[key] = copy.deepcopy(value)
            else:
                out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=c"`` -> (["a", "b"], value); the value is read as a TOML value, else kept as a string."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like section.key=value, e.g. prior.name=normal")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ValueError(f"override {text!r} has an empty key")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        try:  # numbers TOML refuses but people write: .5, 1., 1e3
            value = float(raw)
        except ValueError:
            value = raw  # bare words such as normal or fashion-mnist
    return path, value


def apply_overrides(spec: dict, overrides: list[str]) -> dict:
    spec = copy.deepcopy(spec)
    parsed = [parse_override(text) for text in overrides]
    # A component's new name first, then its options, whatever the order on the command line: a name change
    # starts the section afresh and would otherwise drop options given before it.
    parsed.sort(key=lambda pv: 0 if pv[0][0] in COMPONENT_SECTIONS and pv[0][1:] in ([], ["name"]) else 1)
    for path, value in parsed:
        if len(path) == 1 and path[0] in COMPONENT_SECTIONS and isinstance(value, str):
            value = {"name": value}  # --set prior=mixture is short for --set prior.name=mixture
        update: dict = {path[-1]: value}
        for key in reversed(path[:-1]):
            update = {key: update}
        spec = merge(spec, update)
    return spec


def validate(spec: dict) -> dict:
    """Check section and key names and simple types; components check their own options when built."""
    allowed_sections = set(_CLOSED[""]) | set(_CLOSED) - {""} | set(COMPONENT_SECTIONS)
    for key, value in spec.items():
        if key not in allowed_sections:
            raise ValueError(f"unknown spec section or key {key!r}; allowed: {', '.join(sorted(allowed_sections))}")
        if key in COMPONENT_SECTIONS:
            if not isinstance(value, dict) or not isinstance(value.get("name"), str):
                raise ValueError(f"spec section [{key}] needs a 'name' (a string), e.g. {key}.name=...; "
                                 f"choose one of: {', '.join(registry_for(key).names)}")
        elif key in _CLOSED:
            if not isinstance(value, dict):
                raise ValueError(f"spec section [{key}] must be a table, got {value!r}; set its keys one by one, "
                                 f"e.g. {key}.{next(iter(_CLOSED[key]))}=..., allowed: "
                                 f"{', '.join(sorted(_CLOSED[key]))}")
            _check_keys(key, value, _CLOSED[key])
    _check_keys("", {k: v for k, v in spec.items() if k in _CLOSED[""]}, _CLOSED[""])
    for key in ("epochs", "batch_size", "progress_every"):
        if spec["train"][key] < 1:
            raise ValueError(f"train.{key} must be >= 1, got {spec['train'][key]}")
    if "loggers" in spec["train"]:
        check_loggers(spec["train"]["loggers"])
    if spec["train"].get("log_images_every", 1) < 1:
        raise ValueError(f"train.log_images_every must be >= 1, got {spec['train']['log_images_every']}")
    if spec["train"].get("keep_checkpoints", 1) < 1:
        raise ValueError(f"train.keep_checkpoints must be >= 1 (1: only the latest), got "
                         f"{spec['train']['keep_checkpoints']}")
    if spec["train"].get("labeled_per_batch", 0) < 0:
        raise ValueError(f"train.labeled_per_batch must be >= 0, got {spec['train']['labeled_per_batch']}")
    if spec["model"]["name"] == DEFAULT_SPEC["model"]["name"] and "latent_dim" in spec["model"]:  # checked early
        int_option(spec["model"]["latent_dim"], 1, "model.latent_dim")
    check_device_name(spec["device"])
    return spec


#: the loggers train.loggers may name (ppvae.inference.loggers writes them)
LOGGERS = ("csv", "tensorboard", "mlflow")


def check_loggers(names) -> list[str]:
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise ValueError(f"train.loggers must be a list of names from {', '.join(LOGGERS)}, got {names!r}")
    for name in names:
        if name not in LOGGERS:
            raise ValueError(f"unknown logger {name!r} in train.loggers; choose from {', '.join(LOGGERS)}")
    return list(names)


def check_device_name(device: str) -> None:
    """The device names a spec or a command may give (whether a GPU is there is checked when it is used)."""
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def _check_keys(section: str, table: dict, allowed: dict[str, tuple[type, ...]]) -> None:
    where = f"[{section}]" if section else "the top level"
    for key, value in table.items():
        if key not in allowed:
            raise ValueError(f"unknown key {key!r} in {where} of the spec; allowed: {', '.join(sorted(allowed))}")
        types = allowed[key]
        # bool is an int in Python; do not let `epochs = true` through.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join(t.__name__ for t in types)
            prefix = f"{section}." if section else ""
            raise ValueError(f"{prefix}{key} must be {names}, got {value!r}")


def load_spec(source: str | os.PathLike | dict | None = None, overrides: list[str] = ()) -> dict:
    """Defaults, updated by a TOML file or dict, then by ``section.key=value`` overrides; validated."""
    spec = default_spec()
    if source is not None:
        spec = merge(spec, source if isinstance(source, dict) else read_spec_file(source))
    return validate(apply_overrides(spec, list(overrides)))


def read_spec_file(source: str | os.PathLike) -> dict:
    """A TOML spec file as it is written (no defaults merged in)."""
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"spec file {str(path)!r} does not exist")
    with open(path, "rb") as f:
        try:
            return tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"spec file {str(path)!r} is not valid TOML: {e}") from None


def dump_spec(spec: dict, path: str | os.PathLike) -> None:
    atomic_write_bytes(path, dump_spec_text(spec).encode())


def dump_spec_text(spec: dict) -> str:
    """The spec as TOML text (what spec.toml holds)."""
    return tomli_w.dumps(_without_none(spec))


def _without_none(d: dict) -> dict:
    # TOML has no null: an absent key means "not set".
    return {k: _without_none(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}
