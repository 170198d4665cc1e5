"""The Python API over run directories: train from a spec or from objects, resume, and load a run.

A run directory holds ``spec.toml`` (the resolved spec, which rebuilds the model), ``checkpoint.pt``,
``metrics.csv`` and ``figures/``. The CLI is a thin layer over these functions.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .beta import BetaSchedule, make_beta
from .build import component
from .checkpoint import CHECKPOINT, load_checkpoint
from .data import Dataset, load_dataset
from .models import VAE
from .registry import OBJECTIVES
from .spec import default_spec, load_spec, merge
from .train import SPEC_FILE, Trainer, resolve_device


@dataclass
class Run:
    """A trained VAE with the spec that built it, its metrics and (lazily) its data."""

    vae: VAE
    spec: dict
    metrics: list[dict] = field(default_factory=list)
    run_dir: Path | None = None
    _data: Dataset | None = None
    #: epochs the checkpoint held when this run was resumed (0 for a fresh run)
    resumed_from: int = 0

    @property
    def data(self) -> Dataset:
        if self._data is None:
            self._data = load_data(self.spec)
        return self._data


def load_data(spec: dict) -> Dataset:
    return load_dataset(**spec["data"])


def build_vae(spec: dict, event_shape=None) -> VAE:
    """The VAE a spec describes; ``event_shape`` (from the data) must agree with the spec's, if it has one."""
    model = spec["model"]
    if event_shape is not None and model.get("event_shape") not in (None, list(event_shape)):
        raise ValueError(
            f"the spec says model.event_shape = {model['event_shape']} but the data has event shape "
            f"{list(event_shape)}; remove model.event_shape from the spec (it is taken from the data)"
        )
    shape = event_shape if event_shape is not None else model.get("event_shape")
    if shape is None:
        raise ValueError("the spec has no model.event_shape and no data was given to take it from")
    return VAE(shape, model["latent_dim"], encoder=spec["encoder"], decoder=spec["decoder"], guide=spec["guide"],
               prior=spec["prior"], likelihood=spec["likelihood"])


def default_run_dir(spec: dict) -> Path:
    """runs/<time>-<data>-<prior>-<likelihood>, with -2, -3, ... if a run started in the same second."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{stamp}-{spec['data']['name']}-{spec['prior']['name']}-{spec['likelihood']['name']}"
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
    torch.manual_seed(spec["seed"])  # the initial weights are part of the seeded run
    vae = build_vae(spec, data.event_shape)
    spec = _resolved(spec, vae)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(spec)
    trainer = Trainer(vae, data, spec, run_dir, callbacks=callbacks, progress=progress)
    return Run(vae, spec, trainer.fit(), run_dir, data)


def train(vae: VAE, data: Dataset, *, epochs: int = 100, batch_size: int = 128, beta=1.0,
          objective: str | dict = "Trace_ELBO", optimizer: dict | None = None, seed: int = 0,
          device: str = "auto", run_dir: str | Path | None = None, progress: bool = True,
          figures: bool = True, callbacks: list[Callable] = ()) -> Run:
    """Train a VAE built in Python; ``beta`` is a number, a schedule's name (``"cyclical"``), a schedule, or a
    spec dict such as ``{"name": "linear", "warmup_epochs": 10}``."""
    spec = merge(default_spec(), {
        "seed": seed, "device": device,
        "beta": beta.spec() if isinstance(beta, BetaSchedule) else
        beta if isinstance(beta, dict) else {"name": beta} if isinstance(beta, str) else
        {"name": "constant", "value": beta},
        "objective": {"name": objective} if isinstance(objective, str) else objective,
        "optimizer": optimizer or default_spec()["optimizer"],
        "train": {"epochs": epochs, "batch_size": batch_size, "figures": figures},
    })
    # In-memory arrays cannot be reloaded by name; their name is kept for the record only.
    spec["data"] = data.spec or {"name": data.name}
    spec = _resolved(spec, vae)
    trainer = Trainer(vae, data, spec, run_dir, callbacks=callbacks, progress=progress)
    return Run(vae, spec, trainer.fit(), Path(run_dir) if run_dir is not None else None, data)


def resume(run_dir: str | Path, overrides: list[str] = (), progress: bool = True,
           callbacks: list[Callable] = ()) -> Run:
    """Continue an interrupted run from its checkpoint (overrides may raise ``train.epochs``)."""
    run_dir = Path(run_dir)
    spec = _read_run_spec(run_dir, overrides)
    data = load_data(spec)
    vae = build_vae(spec, data.event_shape)
    trainer = Trainer(vae, data, spec, run_dir, callbacks=callbacks, progress=progress, resuming=True)
    # On the CPU: RNG states must stay CPU tensors; load_state_dict moves weights and optimiser state itself.
    state = load_checkpoint(run_dir / CHECKPOINT, map_location="cpu")
    if state["epoch"] > spec["train"]["epochs"]:
        raise ValueError(f"{str(run_dir)!r} has already trained {state['epoch']} epochs, more than "
                         f"train.epochs = {spec['train']['epochs']}; set train.epochs above {state['epoch']} "
                         f"to train on")
    trainer.load_state_dict(state)
    return Run(vae, spec, trainer.fit(), run_dir, data, resumed_from=state["epoch"])


def load_run(run_dir: str | Path, device: str = "cpu") -> Run:
    """Rebuild the trained VAE of a run directory from its spec and checkpoint."""
    run_dir = Path(run_dir)
    spec = _read_run_spec(run_dir)
    state = load_checkpoint(run_dir / CHECKPOINT, map_location="cpu")
    vae = build_vae(spec)
    vae.load_state_dict(state["vae"])
    vae.to(resolve_device(device)).eval()
    return Run(vae, spec, state["metrics"], run_dir)


def _read_run_spec(run_dir: Path, overrides: list[str] = ()) -> dict:
    if not (run_dir / SPEC_FILE).is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} is not a run directory: it has no {SPEC_FILE}")
    return load_spec(run_dir / SPEC_FILE, overrides)


def _resolved(spec: dict, vae: VAE) -> dict:
    """The spec with the architecture read back from the built VAE, so the run directory rebuilds it."""
    spec = copy.deepcopy(spec)
    spec.update(vae.spec())
    spec["beta"] = make_beta(spec["beta"]).spec()
    spec["objective"] = component(OBJECTIVES, spec["objective"]).spec()
    return spec
