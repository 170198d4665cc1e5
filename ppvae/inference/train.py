"""Stochastic variational inference for any ppvae model, with checkpoints a crash cannot destroy.

Each step is SVI's step: the training loss (:class:`~ppvae.inference.loss.TrainingLoss`: Pyro's ELBO estimator,
Trace_ELBO by default, with beta and any extra terms) turns the model and guide programs into a differentiable
surrogate loss, and one torch optimiser per parameter group updates the module. That is what
``pyro.infer.SVI.step`` does, minus the per-parameter optimiser wrappers and the parameter-store traffic. On a GPU
the whole step can replay as one CUDA graph (:mod:`~ppvae.inference.graphs`).

:class:`Trainer` reads as the loop it is: :meth:`Trainer.fit` runs epochs; each takes the steps
:mod:`~ppvae.inference.batching` orders, evaluates the honest ELBO (beta = 1) on held-out data, and hands the
epoch to the run writer (:mod:`~ppvae.inference.writer`: spec, checkpoint, ``metrics.csv``, loggers, all
atomic). A non-finite loss stops training before anything is written, so the last good checkpoint survives.
:func:`ppvae.resume` continues a run exactly where its checkpoint left it (:meth:`Trainer.load_state_dict`): an
interrupted run and an uninterrupted one with the same seed agree.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pyro
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..batch import Batch, take, to_device
from ..components.optimizers import make_optimizer
from ..data import Dataset
from ..evaluate.diagnostics import decomposition_means
from ..evaluate.elbo import particles_vectorize
from ..evaluate.figures import write_figures
from ..registry import int_option
from ..spec import check_device_name
from ..traces import sampled_enumeration, seeded_eval, untouched
from .batching import Batching, streams
from .binding import hide_unseen_labels
from .checkpoint import CHECKPOINT, rng_state, set_rng_state
from .contract import check_batch_keys, check_program, warn_once
from .decomposition import kl_decomposition
from .distributed import LossModule, available_slots, evaluate_shared, rank_device, world
from .graphs import GRAPH_CHOICES, GraphedStep, capture_problems, why_not_graphed
from .lock import RunLock, RunLockedError
from .loggers import require_loggers
from .loss import MAIN, TrainingLoss
from .objectives import base_objective, kl_weighting, make_objective
from .program import check_first_batch, has, user_errors
from .program import program as as_program
from .rebuild import program_record
from .selection import Selection
from .watch import CollapseWatch
from .writer import RunWriter, epoch_line


def resolve_device(name: str) -> torch.device:
    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for but torch sees no CUDA GPU; use device='cpu' or 'auto'")
    return torch.device(name)


class NonFiniteLossError(FloatingPointError):
    pass


class Trainer:
    """Train ``model`` (any object meeting :mod:`ppvae.inference.contract`) on ``data`` as the resolved ``spec``
    says, writing to ``run_dir`` if given.

    ``callbacks`` are called as ``callback(trainer, metrics_row)`` after each epoch's checkpoint is on disk.
    ``program`` is the checkpoint's record of how the run directory rebuilds the model
    (:func:`~ppvae.inference.rebuild.program_record`, given on resume); it is computed here when not given,
    with ``why_not`` where the spec could not describe the model.
    """

    def __init__(self, model, data: Dataset, spec: dict, run_dir: str | Path | None = None,
                 callbacks: list[Callable] = (), progress: bool = True, resuming: bool = False,
                 program: dict | None = None, why_not: str | None = None):
        self.spec = spec
        self.run_dir = Path(run_dir) if run_dir is not None else None
        device = resolve_device(spec["device"])
        #: this process among those training the run (rank 0 of 1 outside torchrun)
        self.world = world(spec["train"].get("backend", "auto"), device)
        self.device = rank_device(device, self.world)
        # rank 0 writes the run directory; a second process training into it is refused (naming the first)
        self._lock = RunLock(self.run_dir) if self.run_dir is not None and self.world.is_main else None
        self._take_lock()
        try:
            self._setup(model, data, spec, callbacks, progress, resuming, program, why_not)
        except BaseException:
            self.release()
            raise

    def _take_lock(self) -> None:
        """Rank 0 takes the run directory's lock; every rank learns whether it could (so all of them stop with
        its message rather than waiting for it in the next collective)."""
        refused = None
        if self._lock is not None and not self._lock.held:
            try:
                self._lock.acquire()
            except RunLockedError as e:
                refused = str(e)
            else:
                for stale in self.run_dir.glob(".*.tmp"):  # temporary files of a writer killed mid-write
                    stale.unlink(missing_ok=True)
        refused = self.world.broadcast(refused)
        if refused:
            raise RunLockedError(refused)

    def release(self) -> None:
        """Give up the run directory's lock (done when ``fit`` ends)."""
        if self._lock is not None:
            self._lock.release()

    def _setup(self, model, data, spec, callbacks, progress, resuming, program, why_not) -> None:
        if self.run_dir is not None and not resuming:
            check_fresh(self.run_dir)
        if spec["train"].get("deterministic", False):
            deterministic()
        self._place(model, data, spec)
        self.callbacks = list(callbacks)
        self.progress = progress and self.world.is_main
        self.epochs = spec["train"]["epochs"]
        #: beta (a schedule scaling the latent sites) and the objective rewriting the KL term, if any
        self.beta, self.rule, self.rule_section = kl_weighting(spec)
        if getattr(self.rule, "decomposed", False) and not self.rule.dataset_size:
            # q(z) averages over the training set: its size is part of the objective, recorded in the spec
            self.rule.dataset_size = self.n_train
            self.spec = spec = {**spec, self.rule_section: self.rule.spec()}
        graphed = self._prepare_loss(spec)
        # one optimiser per parameter group (the main one trains every parameter no other group takes); a graphed
        # step updates Adam's step count on the device (capturable)
        declared = getattr(model, "group_optimizers", None)
        self.optimizers = {g: make_optimizer({**group_optimizer(spec["optimizer"], g, declared),
                                              **({"capturable": True} if graphed else {})}, params)
                           for g, params in self.loss.groups.items()}
        self.optimizer = self.optimizers[MAIN]
        #: the training step captured as one CUDA graph (train.graph), or None: eager steps
        self.graph = GraphedStep(self) if graphed else None
        self.epoch = 0  # completed epochs
        self.step = 0
        self.metrics: list[dict] = []
        pyro.set_rng_seed(spec["seed"] + self.world.rank)  # each rank its own noise
        self.train_eval_batch = self._train_eval_batch()
        require_loggers(spec)
        #: the checkpoint's record of how the run directory rebuilds the model
        self.record = program
        if self.run_dir is not None and self.record is None:
            self.record = program_record(model, spec, why_not)
            if not self.record["rebuildable"]:
                warn_once(model, "rebuild", f"the run directory will not be able to rebuild this model, so ppvae "
                                            f"evaluate/sample/resume will refuse it: {self.record['why']}")
        self.writer = RunWriter(self.run_dir, self.world.is_main)
        #: the best checkpoint (train.keep_best) and early stopping (train.early_stopping), on the held-out split
        self.selection = Selection(spec["train"], self.held_out)
        self.stopped_early: int | None = None  # the epoch after which early stopping ended training
        #: a latent site whose posterior collapsed, named once while training goes on
        self.collapse = CollapseWatch(self.held_out)

    def _place(self, model, data, spec) -> None:
        """The model on the device, checked against the data; the splits where training reads them (on the device,
        or in host memory where batches stream) and the run's batching of them."""
        check_program(model)
        self.model = model.to(self.device)
        self.data = data
        #: the program as ppvae calls it (its binding of batches to arguments was attached by whoever built it)
        self.program = as_program(model).attach_data(data)
        check_batch_keys(model, data.keys)
        #: the split the per-epoch metrics, figures and model selection read: validation, else (data.val_fraction =
        #: 0) the test split, said once; the test split is otherwise left to ppvae evaluate
        self.held_out = "val" if data.val is not None else "test"
        if self.held_out == "test" and self.world.is_main:
            warnings.warn(f"dataset {data.name!r} has no validation split (data.val_fraction = 0): the per-epoch "
                          f"metrics read the test split, which is then no longer held out from model selection",
                          stacklevel=4)
        if has(model, "check_data"):
            model.check_data(data.batch("train"))
            model.check_data(data.batch(self.held_out))
        # Streaming keeps the splits in host memory (or on disk, memory-mapped) and moves one batch at a time.
        self.stream = streams(spec["data"].get("stream", "auto"), data, self.device)
        workers = int_option(spec["data"].get("workers", min(2, available_slots(torch.device("cpu"))[0])), 0,
                             "data.workers")
        home = torch.device("cpu") if self.stream else self.device
        self.train_batch = to_device(data.batch("train"), home)
        self.val_batch = to_device(data.batch(self.held_out), home)
        self.n_train = self.train_batch["x"].shape[0]
        #: which rows each step takes (:mod:`~ppvae.inference.batching`)
        self.batching = Batching(self.train_batch, spec, self.world, self.device, stream=self.stream,
                                 workers=workers)

    @property
    def steps_per_epoch(self) -> int:
        return self.batching.steps_per_epoch

    def _prepare_loss(self, spec: dict) -> bool:
        """The training loss, after everything that runs the programs before training (checks; the objective's
        choices: plate nesting, estimator), run where the random state and the module's buffers are put back
        afterwards, so a fresh run and a resumed one train from the same state. Returns whether the step runs as
        one CUDA graph."""
        p, b, objective = self.program, self.batching, spec["objective"]
        if b.labeled_rows is not None and b.labeled_per_batch and not p.binder.reads_labeled:
            hide_unseen_labels(take(self.train_batch, torch.cat([b.labeled_rows[:1], b.unlabeled_rows[:1]])))
        with untouched(self.model):
            # the first rows of each kind of batch training will see
            probes = [to_device(take(self.train_batch, rows), self.device) for rows in b.probes()]
            first = probes[0]
            with user_errors(p.name):
                p.sites(first)
                for probe in probes:
                    self.sites = check_first_batch(p, p.prepare(take(probe, slice(0, 2))),
                                                   base_objective(spec, self.rule_section)["name"])
                self.loss = TrainingLoss(p, spec, self.beta, self.epochs, self.rule, self.rule_section)
                self.loss.check_kl_objective(spec)
                # on the rows the per-epoch figures use (held-out rows), and those a beta-TCVAE trains on
                self.decomposable = self._check_decomposition(
                    to_device(take(self.val_batch, slice(0, 2)), self.device), take(first, slice(0, 2)))
                if objective["name"] == "IWAE" and objective.get("vectorize_particles", True) \
                        and not particles_vectorize(p, first):
                    self.loss.objective = make_objective({**objective, "vectorize_particles": False}, p)
                    self.loss.objective.data_plate = p.sites().plate
                first = take(first, slice(0, 2))
                if not self.loss.direct:
                    with pyro.validation_enabled(spec["train"]["validate"]):
                        self.loss.group_losses(first, 0.0)
            self._forward = self._distributed(first)
            return self._graph_choice(spec, first)

    def _distributed(self, first):
        """The loss as a module's forward; with several processes, wrapped in DDP, whose gradient hooks run on it."""
        self.loss_module = LossModule(self.model, self.loss, scale=self.world.size)
        if not self.world.distributed:
            return self.loss
        if len(self.loss.groups) > 1:
            raise ValueError(f"{self.program.name} trains {len(self.loss.groups)} parameter groups "
                             f"({', '.join(self.loss.groups)}), which ppvae does not yet train on several "
                             f"processes; train it on one")
        return DistributedDataParallel(
            self.loss_module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=bool(self._unused_parameters(first)))

    def _train_eval_batch(self) -> Batch:
        """A fixed training subset of the held-out split's size, for the train-side ELBO curve."""
        batch = take(self.train_batch, slice(0, min(self.n_train, self.val_batch["x"].shape[0])))
        if not self.program.binder.reads_labeled and "labeled" in batch:
            # a program that cannot tell seen labels from unseen ones is scored on x alone, as on held-out splits
            batch = Batch({k: v for k, v in batch.items() if k not in ("y", "labeled")})
        return batch

    def _unused_parameters(self, first) -> list[str]:
        """Parameters the loss does not reach (DDP must then look for them every step)."""
        named = [(k, p) for k, p in self.model.named_parameters() if p.requires_grad]
        grads = torch.autograd.grad(self.loss(first, 0.0), [p for _, p in named], allow_unused=True)
        return [k for (k, _), g in zip(named, grads) if g is None]

    def _graph_choice(self, spec: dict, first) -> bool:
        """Whether the step runs as one CUDA graph (``train.graph``): where the run allows it and its first step
        is capture-safe; ``"on"`` refuses, in one line, what ``"auto"`` trains eagerly."""
        mode = spec["train"].get("graph", "auto")
        if mode not in GRAPH_CHOICES:
            raise ValueError(f"train.graph must be one of {', '.join(GRAPH_CHOICES)}, got {mode!r}")
        if mode == "off":
            return False
        why = why_not_graphed(spec, self.loss, {g: None for g in self.loss.groups}, self.world, self.device)
        problems = []
        if why is None:  # the program's own step: one eager loss and backward, watched
            with pyro.validation_enabled(False):
                problems = capture_problems(lambda: self.loss(first, 0.0).backward())
            self.model.zero_grad(set_to_none=True)
            if problems:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                why = f"{self.program.name}'s step cannot be captured as a CUDA graph: {problems[0]}{more}"
        if why is None:
            return True
        if mode == "on":
            raise ValueError(f"train.graph = \"on\": {why}; set train.graph = \"auto\" to train it eagerly")
        if problems and self.world.is_main:
            warnings.warn(f"{why}; training eagerly", stacklevel=3)
        return False

    def _check_decomposition(self, test, first) -> bool:
        """Whether the KL splits into MI, TC and dimension-wise KL for this program (one latent site, a factorized
        guide and prior): logged per epoch where it does on held-out rows; a beta-TCVAE objective on a program where
        it does not on training rows is refused here, before training."""
        p = self.program
        try:
            with sampled_enumeration():  # M2's enumerated label is traced here only to be counted as a site
                for rows in (first, test) if getattr(self.rule, "decomposed", False) else (test,):
                    kl_decomposition(p.model, p.guide, p.prepare(rows), max(2, self.n_train), plate=p.sites().plate)
            return True
        except ValueError as e:
            if getattr(self.rule, "decomposed", False):
                section = self.rule_section
                raise ValueError(f"{section} {self.spec[section]['name']!r} cannot train this model: {e}") from None
            return False

    # ---- state ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            **({"optimizers": {g: o.state_dict() for g, o in self.optimizers.items() if g != MAIN}}
               if len(self.optimizers) > 1 else {}),
            "epoch": self.epoch,
            "step": self.step,
            "metrics": self.metrics,
            "rng": rng_state(),
            "shuffle_rng": self.batching.shuffle_rng.get_state(),
            "spec": self.spec,
            "program": self.record,
            "world_size": self.world.size,
            **({"rank_rng": self._rank_rng} if getattr(self, "_rank_rng", None) else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        try:
            self.model.load_state_dict(state_of_model(state))
        except RuntimeError as e:
            lines = [line.strip() for line in str(e).strip().splitlines()]
            first = (lines[1] if len(lines) > 1 else lines[0])[:200]  # line 0 is "Error(s) in loading ..."
            raise ValueError(f"the checkpoint does not fit the model this spec builds ({first} ...); a resume can "
                             f"change how training goes on (train.epochs, optimizer.lr, beta), not the model "
                             f"(model options, nets, prior, likelihood, guide)") from None
        saved = {MAIN: state["optimizer"], **state.get("optimizers", {})}
        for g, optimizer in self.optimizers.items():
            optimizer.load_state_dict(saved[g])
            # The saved param_groups carry the old hyperparameters; the (possibly overridden) spec's win.
            options = {k: tuple(v) if isinstance(v, list) else v for k, v in
                       group_optimizer(self.spec["optimizer"], g, getattr(self.model, "group_optimizers", None)).items()
                       if k not in ("name", "fused")}
            for group in optimizer.param_groups:
                group.update({k: v for k, v in options.items() if k in group})
        self.epoch, self.step, self.metrics = state["epoch"], state["step"], list(state["metrics"])
        trained_on = state.get("world_size", 1)
        if trained_on != self.world.size and self.world.is_main:
            b = self.spec["train"]["batch_size"]
            keep = trained_on * b / self.world.size
            hint = f"; train.batch_size = {int(keep)} keeps the step" if keep == int(keep) else ""
            warnings.warn(f"this run trained on {trained_on} process(es) with train.batch_size = {b} each (steps of "
                          f"{trained_on * b} examples); on {self.world.size} it now takes steps of "
                          f"{self.world.size * b}{hint}", stacklevel=2)
        set_rng_state(state["rng"])
        if self.world.rank:
            ranks = state.get("rank_rng") or []
            if self.world.rank < len(ranks):
                set_rng_state(ranks[self.world.rank])
            else:  # a rank the interrupted run did not have: its own stream, from the seed, rank and epoch
                pyro.set_rng_seed(self.spec["seed"] + self.world.rank + 100_003 * self.epoch)
        self.batching.shuffle_rng.set_state(state["shuffle_rng"])

    # ---- training ------------------------------------------------------------------------------------------
    def fit(self) -> list[dict]:
        self._take_lock()  # held since construction; taken again by a second fit
        ok = False
        bar = tqdm(total=self.epochs * self.steps_per_epoch, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=not self.progress, desc="train")
        if self.run_dir is not None and self.progress:
            bar.write(f"run directory: {self.run_dir}  (data: {self.data.name}, {self.train_batch['x'].shape[0]} "
                      f"train / {self.val_batch['x'].shape[0]} {self.held_out} examples, device {self.device})")
        # Pyro's validation (shape, support and NaN checks, each a host sync) is off unless asked for:
        # the data's support is checked once up front, and non-finite losses are caught at progress updates.
        try:
            with pyro.validation_enabled(self.spec["train"]["validate"]):
                while self.epoch < self.epochs and not self.selection.stop(self, bar):
                    self._train_epoch(bar)
            bar.close()
            if self.run_dir is not None and self.spec["train"]["figures"] and self.world.is_main:
                rows = self.val_batch if not self.stream else \
                    to_device(take(self.val_batch, slice(0, 2000)), self.device)
                write_figures(self.model, rows, self.metrics, self.run_dir / "figures", seed=self.spec["seed"],
                              classes=self.data.classes)
            ok = True
        finally:
            bar.close()
            self.writer.close(self, ok)
            self.release()
        return self.metrics

    def _train_epoch(self, bar) -> None:
        start = time.perf_counter()
        steps = self.batching.order(self.epoch)
        total = torch.zeros((), device=self.device)  # summed on device: no host sync per step
        rows_done = 0
        self.model.train()
        for i, (rows, batch) in enumerate(zip(steps, self.batching.batches(steps, self.epoch))):
            rows_done += len(rows)
            t = self.epoch + i / self.steps_per_epoch
            total += self._step(batch, t, full=len(rows) == self.batching.batch_size)
            self.step += 1
            running = self._progress(bar, i, steps, total, rows_done)
        # the last step's progress read (every epoch ends with one) is the epoch's loss over all its rows and ranks
        row = self._epoch_metrics(running, self.loss.log_values(t), time.perf_counter() - start)
        self._end_epoch(bar, row)

    def _step(self, batch, t: float, full: bool) -> torch.Tensor:
        """One SVI step on ``batch`` at epoch time ``t``, every parameter group updated; its loss, on the device."""
        if self.graph is not None and full:  # one replay: loss, backward, update
            return self.graph(batch, t)
        if self.graph is not None:  # an eager step beside the graph's: its gradients, its beta
            self.graph.release_gradients()
            self.graph.set_beta(t)
        try:
            if len(self.optimizers) == 1:
                loss = self._forward(batch, t)
                loss.backward()
            else:  # each group's loss moves its own parameters only (an adversary trains against the model)
                losses = self.loss.group_losses(batch, t)
                for g, group_loss in losses.items():
                    group_loss.backward(inputs=self.loss.groups[g], retain_graph=True)
                loss = losses[MAIN]
        except ValueError as e:  # distribution validation: NaN weights give NaN distribution parameters
            if "Expected more than 1 value per channel" in str(e):  # batch norm in training mode, on one row
                raise ValueError(self._one_row(str(e).splitlines()[0])) from None
            if "invalid values" not in str(e):
                raise
            self._fail(f"a distribution got non-finite parameters at epoch {self.epoch + 1}, step {self.step}")
        for optimizer in self.optimizers.values():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def _one_row(self, error: str) -> str:
        """What to do about a batch of one row that the program (batch norm, in training mode) cannot train on."""
        b, who = self.batching, f"{self.program.name} cannot train on a batch of one row ({error})"
        if b.batch_size == 1:
            return f"{who}; train.batch_size is 1: set it above 1"
        w = self.world.size
        if not b.drop_last and b.labeled_rows is None and 0 < b.n % (b.batch_size * w) < 2 * w:
            return (f"{who}, and this epoch's last batch has one: {b.n} training rows in batches of "
                    f"train.batch_size = {b.batch_size}; set train.drop_last = true to leave a short last batch "
                    f"out, or another train.batch_size")
        return (f"{who}, and step {self.step + 1} had one ({b.n} training rows, train.batch_size = {b.batch_size}"
                f"{', whole labelled batches between unlabelled ones' if b.alternate else ''}"
                f"{f', {self.world.size} processes' if self.world.distributed else ''}); set another "
                f"train.batch_size{'' if b.drop_last else ', or train.drop_last = true'}")

    def _end_epoch(self, bar, row: dict) -> None:
        """An epoch's row is kept only where it and the weights are finite; then it is written and reported."""
        params = [p.detach() for p in self.model.parameters()]
        if params and not torch.stack([torch.isfinite(p).all() for p in params]).all().item():  # one host read
            self._fail(f"a parameter became non-finite at epoch {self.epoch + 1}")
        for key in ("train_loss", "train_elbo", f"{self.held_out}_elbo"):  # finite weights can still give NaN
            if not math.isfinite(row[key]):
                self._fail(f"the {key.replace('_', ' ')} became {row[key]} at epoch {self.epoch + 1}")
        self.epoch += 1
        self.metrics.append(row)
        if self.progress:
            bar.write(epoch_line(row))
        # each rank's random state, so that a resume with as many processes continues every rank's stream
        self._rank_rng = self.world.gather(rng_state()) if self.world.distributed else None
        self.writer.epoch(self, row)
        self.selection.epoch(self, row, bar)
        if self.world.is_main:
            self.collapse.epoch(self.metrics)
        for callback in self.callbacks:
            callback(self, row)

    def _progress(self, bar, i: int, steps: list, total: torch.Tensor, rows_done: int) -> float | None:
        """Every ``train.progress_every`` steps (and at the epoch's end), the one host read of the running loss,
        which it returns (None between reads)."""
        if (i + 1) % self.spec["train"]["progress_every"] and i + 1 != len(steps):
            return None
        # summed over the ranks (so that all of them stop together on a non-finite loss)
        summed = self.world.sum(torch.stack([total / self.world.size, torch.tensor(
            float(rows_done), device=self.device)]))
        loss_sum, rows = summed.tolist()
        running = loss_sum / rows
        if not math.isfinite(running):
            self._fail(f"the loss became {running} at epoch {self.epoch + 1}, step {self.step}")
        bar.update(i + 1 - (bar.n - self.epoch * self.steps_per_epoch))
        bar.set_postfix_str(f"epoch {self.epoch + 1}/{self.epochs} loss {running:.2f} nats/example")
        return running

    def _epoch_metrics(self, train_loss: float, kl_weighting: dict, seconds: float) -> dict:
        seed = self.spec["seed"]
        tr, he = (evaluate_shared(self.model, batch, self.world, self.device, seed=seed, parts=self.stream)
                  for batch in (self.train_eval_batch, self.val_batch))
        h = self.held_out
        parts = {}
        if self.decomposable:  # on up to 1,000 held-out examples, with the consistent (stratified) estimator
            # (no more rows than the training set has: q(z) averages over it)
            rows = to_device(take(self.val_batch, slice(0, min(1000, self.val_batch["x"].shape[0], self.n_train))),
                             self.device)
            with seeded_eval(seed, self.device, self.model):
                parts = {f"{h}_{k}": v for k, v in decomposition_means(self.model, rows, self.n_train).items()}
        return {"epoch": self.epoch + 1, "step": self.step, **kl_weighting, "train_loss": train_loss,
                "train_elbo": tr["elbo"], "train_recon": tr["recon"], "train_kl": tr["kl"],
                f"{h}_elbo": he["elbo"], f"{h}_recon": he["recon"], f"{h}_kl": he["kl"], **parts,
                **{f"{h}_recon_{k}": v for k, v in he["recon_sites"].items()},
                **{f"{h}_kl_{k}": v for k, v in he["kl_sites"].items()}, "seconds": seconds}

    def _fail(self, what: str) -> None:
        where = (f"the last good checkpoint (epoch {self.epoch}) is kept in {self.run_dir}"
                 if self.run_dir is not None and self.epoch else "no checkpoint was written")
        raise NonFiniteLossError(f"{what}; {where}. Try a lower optimizer.lr or a smaller beta.")


def check_fresh(run_dir: Path) -> None:
    """A new run may not train into a directory that holds one already."""
    if (Path(run_dir) / CHECKPOINT).exists():
        raise ValueError(f"{str(run_dir)!r} already holds a trained run; continue it with "
                         f"`ppvae train --resume {run_dir}` (in Python: ppvae.resume), or train into "
                         f"another directory (--run-dir; run_dir= in Python)")


def deterministic() -> None:
    """torch's deterministic algorithms only (an error where an operation has none), cuDNN without autotuning,
    and the cuBLAS workspace setting those need on CUDA."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


def group_optimizer(spec: dict, group: str, declared: dict | None = None) -> dict:
    """The optimiser spec of a parameter group: the spec's optimiser, with ``optimizer.groups.<group>`` (else the
    program's declared ``group_optimizers[group]``) over it."""
    base = {k: v for k, v in spec.items() if k != "groups"}
    extra = (spec.get("groups") or {}).get(group, (declared or {}).get(group))
    if group == MAIN or extra is None:
        return base
    if not isinstance(extra, dict):
        raise ValueError(f"optimizer.groups.{group} must be a table of optimiser options, got {extra!r}")
    return {**base, **extra} if extra.get("name", base["name"]) == base["name"] else dict(extra)


def state_of_model(state: dict) -> dict:
    """The model's weights in a checkpoint (saved under "vae" before any program could be trained)."""
    return state["model"] if "model" in state else state["vae"]
