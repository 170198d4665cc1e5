"""The Python API over run directories: train from a spec or from objects, resume, and load a run.

A run directory holds ``spec.toml`` (the resolved spec, which rebuilds the model), ``checkpoint.pt`` (with the
record that proves the rebuild), ``metrics.csv`` and ``figures/``. The CLI is a thin layer over these
functions. A run that cannot be rebuilt exactly is refused, with the reason, by every function that would
rebuild it.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..components.beta import make_beta
from ..data import Dataset, load_dataset
from ..data.transforms import make_transform
from ..registry import MODELS, Component, import_path
from ..spec import DEFAULT_SPEC, PROGRAM_OPTIONS, default_spec, load_spec, merge, read_spec_file, validate
from .checkpoint import CHECKPOINT, load_checkpoint, load_latest, save_checkpoint
from .distributed import world
from .objectives import make_objective
from .program import Program, program
from .rebuild import build_model, check_rebuilt, check_record, resolve_model_spec
from .selection import BEST_CHECKPOINT
from .train import Trainer, resolve_device, state_of_model
from .writer import SPEC_FILE


@dataclass
class Run:
    """A trained model with the spec that built it, its metrics and (lazily) its data."""

    model: torch.nn.Module
    spec: dict
    metrics: list[dict] = field(default_factory=list)
    run_dir: Path | None = None
    _data: Dataset | None = None
    #: epochs the checkpoint held when this run was resumed (0 for a fresh run)
    resumed_from: int = 0
    #: the checkpoint file a loaded run was read from (``checkpoint.pt``, or ``best.pt``: train.keep_best)
    checkpoint: str | None = None

    @property
    def epoch(self) -> int:
        """The epochs the weights were trained for."""
        return len(self.metrics)

    @property
    def vae(self):
        """Deprecated: ``Run.model`` (the name from when ppvae trained only VAEs)."""
        warnings.warn("Run.vae is deprecated; use Run.model", DeprecationWarning, stacklevel=2)
        return self.model

    @property
    def data(self) -> Dataset:
        if self._data is None:
            self._data = check_same_vocabulary(self.spec, load_data(self.spec))
            self.program.attach_data(self._data)
        return self._data

    @property
    def program(self) -> Program:
        """The trained program as ppvae calls it (:class:`~ppvae.inference.program.Program`): every verb's
        capabilities, declared by the model or derived from its traces."""
        return program(self.model)

    # The verbs, as the program has them (declared by the model or derived from its traces), so that a loaded run
    # is used as the model is: ppvae.load("model.pt").generate(16).
    def generate(self, n: int, y=None, **options) -> torch.Tensor:
        """``n`` samples from the model (of class ``y`` for a conditional model)."""
        return self.program.generate(n, y, **options)

    def reconstruct(self, x, **options) -> torch.Tensor:
        """``x`` encoded and decoded."""
        return self.program.reconstruct(x, **options)

    def encode(self, x, **options) -> torch.Tensor:
        """A point code per example of ``x``."""
        return self.program.encode(x, **options)

    def decode(self, z: torch.Tensor, y=None, **options) -> torch.Tensor:
        """The data the model gives codes ``z`` (of class ``y`` for a conditional model)."""
        return self.program.decode(z, y, **options)

    def classify(self, x) -> torch.Tensor:
        """The class probabilities q(y | x) of a model with a classifier."""
        return self.program.classify(x)


#: data options read by the trainer (streaming) or the program (the per-batch transform), not by the loader
TRAINER_DATA_OPTIONS = ("stream", "workers", "transform")


def bind(model, spec: dict, data: Dataset | None = None) -> dict:
    """Attach to ``model`` the program that calls it as ``spec`` says (``model.inputs``, ``model.data_plate``,
    ``model.output_sites``, ``data.transform``); returns the spec with the transform's options as resolved (read
    off the data, e.g. onehot's classes), so a run directory rebuilds the same arguments."""
    transform, resolved = make_transform(spec["data"].get("transform"), data)
    options = {k: spec["model"].get(k) for k in PROGRAM_OPTIONS}
    p = program(model, transform=transform, **options)
    if data is not None:
        p.attach_data(data)
    if resolved is None:
        return spec
    return {**spec, "data": {**spec["data"], "transform": resolved}}


def load_data(spec: dict) -> Dataset:
    options = dict(spec["data"])
    name = options.pop("name")
    for key in TRAINER_DATA_OPTIONS:  # how the trainer feeds the data, not which data
        options.pop(key, None)
    if options.pop("in_memory", False):
        raise ValueError(f"this run was trained on in-memory data ({name!r}), which a run directory cannot load "
                         f"again; evaluate it in Python (ppvae.report.evaluate_model(run.model, data.test))")
    return load_dataset(name, **options)


def check_same_vocabulary(spec: dict, data: Dataset) -> Dataset:
    """``data`` where its vocabulary is the one the run's model was trained with (``model.vocab`` in the spec);
    otherwise ``ValueError``: the same ids would mean other tokens (the data file or package changed)."""
    trained = spec.get("model", {}).get("vocab")
    if trained is not None and data.vocabulary is not None and list(data.vocabulary) != list(trained):
        differ = sorted(set(data.vocabulary) ^ set(trained))[:5]
        raise ValueError(f"the data rebuilt from this run's spec has a different vocabulary ({len(data.vocabulary)} "
                         f"tokens) from the one the model was trained with ({len(trained)} tokens; differing: "
                         f"{', '.join(map(repr, differ)) or 'their order'}); its token ids would mean other tokens, so "
                         f"the run cannot be evaluated or resumed on it")
    return data


def build_vae(spec: dict, event_shape=None):
    """Deprecated: :func:`~ppvae.inference.rebuild.build_model` (the name from when ppvae trained only VAEs)."""
    warnings.warn("ppvae.build_vae is deprecated; use ppvae.build_model", DeprecationWarning, stacklevel=2)
    return build_model(spec, event_shape)


def default_run_dir(spec: dict) -> Path:
    """runs/<time>-<data>-<model or prior-likelihood>, with -2, -3, ... if a run started in the same second."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = spec["model"]["name"]
    what = f"{spec['prior']['name']}-{spec['likelihood']['name']}" if name == DEFAULT_SPEC["model"]["name"] else \
        name.rpartition(":")[2] or name
    base = Path("runs") / f"{stamp}-{spec['data']['name']}-{what}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path


def train_spec(spec: dict | str | None = None, overrides: list[str] = (), run_dir: str | Path | None = None,
               progress: bool = True, callbacks: list[Callable] = ()) -> Run:
    """Train what a spec (dict, TOML path, or None for the defaults) says, into ``run_dir``."""
    spec = load_spec(spec, overrides)
    data = load_data(spec)
    if "val_fraction" in (data.spec or {}):  # recorded, so the run directory rebuilds the same training rows
        spec = {**spec, "data": {**spec["data"], "val_fraction": data.spec["val_fraction"]}}
    spec = with_data_options(spec, data)
    model = build_model(spec, data.event_shape, seed=spec["seed"])  # the initial weights are part of the seeded run
    spec = bind(model, spec, data)
    spec, why_not = _resolved(spec, model, built_from=spec["model"])
    # under torchrun, rank 0 names the run directory for all ranks
    run_dir = spec_world(spec).broadcast(Path(run_dir) if run_dir is not None else default_run_dir(spec))
    trainer = Trainer(model, data, spec, run_dir, callbacks=callbacks, progress=progress, why_not=why_not)
    return Run(model, trainer.spec, trainer.fit(), run_dir, data)


def spec_world(spec: dict):
    """This process's place among torchrun's processes for a run of ``spec`` (rank 0 of 1 outside torchrun)."""
    return world(spec["train"].get("backend", "auto"), resolve_device(spec["device"]))


def run_spec(run_dir: str | Path, overrides: list[str] = ()) -> dict:
    """The resolved spec of a run directory, with ``overrides`` applied."""
    return _read_run_spec(Path(run_dir), overrides)


def train(model, data: Dataset, *, epochs: int = 100, batch_size: int = 128, beta=1.0,
          objective: str | dict = "Trace_ELBO", optimizer: dict | None = None, seed: int = 0,
          device: str = "auto", run_dir: str | Path | None = None, progress: bool = True,
          figures: bool = True, callbacks: list[Callable] = (), inputs: dict | None = None, transform=None,
          data_plate: str | None = None, output_sites: list[str] | None = None, losses: list[dict] | None = None,
          labeled_batches: str | None = None) -> Run:
    """Train a model built in Python: the stock VAE, a subclass, or any Pyro program, ``model(x)`` /
    ``guide(x)`` as Pyro's examples write it or ``model(batch)`` as ppvae's contract does.

    ``beta`` is a number, a schedule's name (``"cyclical"``), a schedule, or a spec dict such as
    ``{"name": "linear", "warmup_epochs": 10}``. ``inputs``, ``transform``, ``data_plate`` and ``output_sites``
    say how the program is called (as ``model.inputs``, ``data.transform``, ... in a spec; a transform is a
    name, an import path or a top-level function); ``losses`` adds terms (a spec's ``losses``) and
    ``labeled_batches = "alternate"`` feeds semi-supervised data as whole labelled and unlabelled batches.
    Options are checked as a spec's are.
    """
    if isinstance(model, Dataset):
        raise TypeError("ppvae.train(model, data) takes the model first and the data second; got a Dataset first "
                        "(are the arguments swapped?)")
    if not isinstance(data, Dataset):
        raise TypeError(f"ppvae.train's data must be a ppvae Dataset: ppvae.load_dataset(name), or "
                        f"ppvae.dataset_from_array(x, labels) for a tensor or array; got {type(data).__name__}")
    spec = merge(default_spec(), {
        "seed": seed, "device": device,
        "beta": make_beta(beta).spec() if isinstance(beta, Component) else
        beta if isinstance(beta, dict) else {"name": beta} if isinstance(beta, str) else
        {"name": "constant", "value": beta},
        "objective": {"name": objective} if isinstance(objective, str) else objective,
        "optimizer": optimizer or default_spec()["optimizer"],
        "train": {"epochs": epochs, "batch_size": batch_size, "figures": figures},
    })
    # In-memory arrays cannot be reloaded by name; their name is kept for the record only.
    spec["data"] = dict(data.spec or {"name": data.name, "in_memory": True})
    program_options = {"inputs": inputs, "data_plate": data_plate, "output_sites": output_sites}
    spec["model"] = {**spec["model"], **{k: v for k, v in program_options.items() if v is not None}}
    if transform is not None:
        spec["data"]["transform"] = _transform_spec(transform)
    if losses is not None:
        spec["losses"] = list(losses)
    if labeled_batches is not None:
        spec["train"]["labeled_batches"] = labeled_batches
    validate(spec)
    spec = bind(model, spec, data)
    spec, why_not = _resolved(spec, model)
    trainer = Trainer(model, data, spec, run_dir, callbacks=callbacks, progress=progress, why_not=why_not)
    return Run(model, trainer.spec, trainer.fit(), Path(run_dir) if run_dir is not None else None, data)


def resume(run_dir: str | Path, overrides: list[str] = (), progress: bool = True,
           callbacks: list[Callable] = ()) -> Run:
    """Continue an interrupted run from its checkpoint (overrides may raise ``train.epochs``)."""
    run_dir = Path(run_dir)
    spec = _read_run_spec(run_dir, overrides)
    # On the CPU: RNG states must stay CPU tensors; load_state_dict moves weights and optimiser state itself.
    state = load_latest(run_dir, map_location="cpu")
    check_record(state.get("program"), run_dir)
    data = check_same_vocabulary(spec, load_data(spec))
    model = build_model(spec, data.event_shape)
    bind(model, spec, data)
    check_rebuilt(state.get("program"), run_dir, model)
    if state["epoch"] > spec["train"]["epochs"]:
        raise ValueError(f"{str(run_dir)!r} has already trained {state['epoch']} epochs, more than "
                         f"train.epochs = {spec['train']['epochs']}; set train.epochs above "
                         f"{state['epoch']} to train on")
    trainer = Trainer(model, data, spec, run_dir, callbacks=callbacks, progress=progress, resuming=True,
                      program=state.get("program"))
    try:
        trainer.load_state_dict(state)
    except BaseException:
        trainer.release()
        raise
    return Run(model, spec, trainer.fit(), run_dir, data, resumed_from=state["epoch"])


#: which checkpoint of a run to read: the latest, the best (train.keep_best), or the best where the run kept one
CHECKPOINT_CHOICES = ("last", "best", "auto")


def load_run(run_dir: str | Path, device: str = "cpu", checkpoint: str = "last") -> Run:
    """Rebuild the trained model of a run directory from its spec and checkpoint (refused, with the reason,
    where the run cannot be rebuilt exactly). ``checkpoint``: ``"last"`` (the latest epoch), ``"best"`` (the
    epoch with the best validation ELBO, kept by ``train.keep_best``) or ``"auto"`` (the best where the run kept
    one, else the last); ``run.checkpoint`` and ``run.epoch`` say which was read."""
    run_dir = Path(run_dir)
    spec = _read_run_spec(run_dir)
    file = checkpoint_file(run_dir, checkpoint)
    state = load_latest(run_dir, map_location="cpu") if file == CHECKPOINT else \
        load_checkpoint(run_dir / file, map_location="cpu")
    return Run(_rebuild(spec, state, run_dir, device), spec, state["metrics"], run_dir, checkpoint=file)


def checkpoint_file(run_dir: Path, choice: str) -> str:
    """The file of a run directory that ``choice`` (:data:`CHECKPOINT_CHOICES`) names."""
    if choice not in CHECKPOINT_CHOICES:
        raise ValueError(f"checkpoint must be one of {', '.join(CHECKPOINT_CHOICES)}, got {choice!r}")
    best = (run_dir / BEST_CHECKPOINT).is_file()
    if choice == "best" and not best:
        raise ValueError(f"{str(run_dir)!r} has no best checkpoint ({BEST_CHECKPOINT}: the run was trained without "
                         f"train.keep_best = \"val_elbo\"); read its last checkpoint instead")
    return BEST_CHECKPOINT if choice == "best" or (choice == "auto" and best) else CHECKPOINT


def _rebuild(spec: dict, state: dict, where: Path, device: str):
    """The trained model, rebuilt from its spec and weights, or ValueError where it would be another program."""
    check_record(state.get("program"), where)
    model = build_model(spec)
    bind(model, spec)
    check_rebuilt(state.get("program"), where, model)
    try:
        model.load_state_dict(state_of_model(state))
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1].strip()[:200]
        raise ValueError(f"{str(where)!r}: the checkpoint does not fit the model its spec builds ({first}); the "
                         f"run cannot be rebuilt exactly") from None
    return model.to(resolve_device(device)).eval()


EXPORT_FORMAT = "ppvae-model 1"


def export(run_dir: str | Path, path: str | Path) -> Path:
    """Write one file holding a run's trained program: its resolved spec, the record that proves a rebuild is
    the same program, the weights and the metrics (checksummed, atomic). :func:`load` rebuilds it anywhere the
    model's code is importable, without the run directory."""
    run_dir, path = Path(run_dir), Path(path)
    spec = _read_run_spec(run_dir)
    state = load_latest(run_dir, map_location="cpu")
    _rebuild(spec, state, run_dir, "cpu")  # a run that cannot be rebuilt exactly is not exported either
    save_checkpoint({"format": EXPORT_FORMAT, "spec": spec, "program": state.get("program"),
                     "model": state_of_model(state), "metrics": state["metrics"], "exported_from": str(run_dir)}, path)
    return path


def load(path: str | Path, device: str = "cpu") -> Run:
    """The trained model of a file written by :func:`export` (``ppvae export RUN FILE``), as a :class:`Run`
    without a run directory: ``run.model`` (the rebuilt module, in eval mode), ``run.spec``, ``run.metrics``,
    ``run.epoch``, the model's verbs (``run.generate(16)``, ``encode``, ``decode``, ``reconstruct``,
    ``classify``), and ``run.data``, which loads the data its spec names, where they exist."""
    path = Path(path)
    state = load_checkpoint(path, map_location="cpu")
    if not isinstance(state, dict) or state.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{str(path)!r} is not a model written by `ppvae export` (format {EXPORT_FORMAT!r}); a run "
                         f"directory's checkpoint is loaded with ppvae.load_run(RUN)")
    spec = held_out_as_trained(state["spec"])
    return Run(_rebuild(spec, state, path, device), spec, state["metrics"], None)


def _read_run_spec(run_dir: Path, overrides: list[str] = ()) -> dict:
    if not (run_dir / SPEC_FILE).is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} is not a run directory: it has no {SPEC_FILE}")
    return load_spec(held_out_as_trained(read_spec_file(run_dir / SPEC_FILE)), overrides)


def held_out_as_trained(spec: dict) -> dict:
    """A run's recorded spec with the validation split it trained with: a run trained before ppvae held one out
    records no ``data.val_fraction`` and trained on every training row (0), not on the default's share."""
    data = spec.get("data")
    if isinstance(data, dict) and "val_fraction" not in data and not data.get("in_memory"):
        return {**spec, "data": {**data, "val_fraction": 0}}
    return spec


def with_data_options(spec: dict, data: Dataset) -> dict:
    """The spec with the model options its family reads off the data where the spec leaves them out (the
    number of classes of a conditional model): ``options_from_data(data)`` of the model's class."""
    if getattr(data, "vocabulary", None) is not None and spec["model"]["name"] == DEFAULT_SPEC["model"]["name"]:
        spec = {**spec, "model": {**spec["model"], "name": MODELS.default_for("tokens")}}
        if spec["model"].get("latent_dim") == DEFAULT_SPEC["model"]["latent_dim"]:
            spec["model"].pop("latent_dim")  # the sequence model's own default
    cls = MODELS.get(spec["model"]["name"])
    if not callable(getattr(cls, "options_from_data", None)):
        return spec
    missing = {k: v for k, v in cls.options_from_data(data).items() if k not in spec["model"]}
    return {**spec, "model": {**spec["model"], **missing}}


def _transform_spec(transform):
    """A transform given in Python as the spec value that names it (a function by its import path)."""
    if isinstance(transform, (str, dict, list)):
        return transform
    if callable(transform):
        try:
            return import_path(transform)
        except ValueError as e:
            raise ValueError(f"the transform {getattr(transform, '__qualname__', transform)!r} cannot be named in a "
                             f"spec ({e}); define it with def at the top level of a module") from None
    raise ValueError(f"transform must be a name, an import path, a list of them or a function, got {transform!r}")


def _resolved(spec: dict, model, built_from: dict | None = None) -> tuple[dict, str | None]:
    """The spec with the model's own sections read back from the built model, so the run directory rebuilds
    it, and why not where it cannot; an objective left at the default becomes the one the model declares
    (``default_objective``: M2 sums its label out under TraceEnum_ELBO), and ``train.labeled_per_batch`` the share of
    each batch the model asks to be labelled (``labeled_fraction``)."""
    declared = getattr(model, "default_objective", None)
    if isinstance(declared, dict) and spec["objective"] == DEFAULT_SPEC["objective"]:
        spec = {**spec, "objective": dict(declared)}
    if "labeled_per_batch" not in spec["train"]:
        share = float(getattr(model, "labeled_fraction", 0.0))
        spec = {**spec, "train": {**spec["train"], "labeled_per_batch": round(share * spec["train"]["batch_size"])}}
    spec, why_not = resolve_model_spec(copy.deepcopy(spec), model, built_from)
    declared = getattr(model, "group_optimizers", None) or {}  # other parameter groups' optimisers, recorded
    groups = {**{g: dict(o) for g, o in declared.items()}, **(spec["optimizer"].get("groups") or {})}
    if groups:
        spec["optimizer"] = {**spec["optimizer"], "groups": groups}
    spec["beta"] = make_beta(spec["beta"]).spec()
    spec["objective"] = make_objective(spec["objective"], model).spec()
    return spec, why_not
