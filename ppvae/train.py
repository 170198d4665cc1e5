"""Stochastic variational inference for a VAE, with checkpoints a crash cannot destroy.

Each step is SVI's step: Pyro's ELBO estimator (Trace_ELBO by default) turns the model and guide programs into
a differentiable surrogate loss, and one torch optimiser updates every parameter (decoder, encoder, prior and
likelihood). That is what ``pyro.infer.SVI.step`` does, minus the per-parameter optimiser wrappers.

After every epoch the trainer evaluates the honest ELBO (beta = 1) on held-out data and writes, atomically,
the checkpoint (weights, optimiser, step, RNG states, metrics) and ``metrics.csv``. A non-finite loss stops
training before anything is written, so the last good checkpoint survives. ``Trainer.resume`` continues a run
exactly where its checkpoint left it: an interrupted run and an uninterrupted one with the same seed agree.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Callable

import pyro
import torch
from tqdm.auto import tqdm

from . import plots
from .beta import make_beta
from .build import component
from .checkpoint import CHECKPOINT, atomic_write_bytes, rng_state, save_checkpoint, set_rng_state
from .data import Dataset
from .evaluate import elbo_terms, evaluate_elbo, seeded_eval
from .fast import fast_loss, supports_fast_path
from .latent import interpolate
from .registry import OBJECTIVES
from .spec import check_device_name, dump_spec

SPEC_FILE = "spec.toml"
METRICS_FILE = "metrics.csv"
METRIC_KEYS = ("epoch", "step", "beta", "capacity", "free_bits", "train_loss", "train_elbo", "train_recon",
               "train_kl", "test_elbo", "test_recon", "test_kl", "seconds")

_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
               "rmsprop": torch.optim.RMSprop}


def resolve_device(name: str) -> torch.device:
    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for but torch sees no CUDA GPU; use device='cpu' or 'auto'")
    return torch.device(name)


def make_optimizer(spec: dict, params) -> torch.optim.Optimizer:
    options = dict(spec)
    name = options.pop("name")
    if name not in _OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(sorted(_OPTIMIZERS))}")
    if name in ("adam", "adamw"):
        # torch's fused Adam kernel (CPU and CUDA) updates all parameters in one pass: the same update rule,
        # about 1 ms less per step than the per-tensor loop for a small VAE on 2 CPU cores.
        options.setdefault("fused", True)
    try:
        return _OPTIMIZERS[name](params, **options)
    except TypeError as e:  # torch's message names the bad keyword; add what is allowed
        raise ValueError(f"optimizer {name!r}: {e}; see torch.optim.{_OPTIMIZERS[name].__name__}") from None


class NonFiniteLossError(FloatingPointError):
    pass


class Trainer:
    """Train ``vae`` on ``data`` as the resolved ``spec`` says, writing to ``run_dir`` if given.

    ``callbacks`` are called as ``callback(trainer, metrics_row)`` after each epoch's checkpoint is on disk.
    """

    def __init__(self, vae, data: Dataset, spec: dict, run_dir: str | Path | None = None,
                 callbacks: list[Callable] = (), progress: bool = True, resuming: bool = False):
        self.spec = spec
        self.run_dir = Path(run_dir) if run_dir is not None else None
        if self.run_dir is not None and not resuming and (self.run_dir / CHECKPOINT).exists():
            raise ValueError(f"{str(self.run_dir)!r} already holds a trained run; continue it with "
                             f"`ppvae train --resume {self.run_dir}` (in Python: ppvae.resume), or train into "
                             f"another directory (--run-dir; run_dir= in Python)")
        self.device = resolve_device(spec["device"])
        self.vae = vae.to(self.device)
        self.data = data
        vae.check_data(data.train)
        vae.check_data(data.test)
        self.train_x = data.train.to(self.device)
        self.test_x = data.test.to(self.device)
        self.callbacks = list(callbacks)
        self.progress = progress
        self.beta = make_beta(spec["beta"])
        self.objective = component(OBJECTIVES, spec["objective"])
        # Trace_ELBO's estimator evaluated directly for the stock program (ppvae.fast); Pyro's traces otherwise
        self.fast = supports_fast_path(self.vae, spec["objective"]) and not spec["train"]["validate"]
        self.analytic_kl = spec["objective"]["name"] == "TraceMeanField_ELBO"
        if not self.beta.scaling:
            self._check_kl_objective()
        self.optimizer = make_optimizer(spec["optimizer"], self.vae.parameters())
        tr = spec["train"]
        self.epochs, self.batch_size = tr["epochs"], tr["batch_size"]
        self.steps_per_epoch = math.ceil(self.train_x.shape[0] / self.batch_size)
        self.epoch = 0  # completed epochs
        self.step = 0
        self.metrics: list[dict] = []
        # Shuffling has its own generator so that its stream is saved and restored with the checkpoint.
        self.shuffle_rng = torch.Generator().manual_seed(spec["seed"])
        pyro.set_rng_seed(spec["seed"])
        # A fixed training subset of the test set's size, for the train-side ELBO curve.
        n_eval = min(self.train_x.shape[0], self.test_x.shape[0])
        self.train_eval_x = self.train_x[:n_eval]
        # spec.toml is written with the first checkpoint, not here: a run that fails before its first epoch
        # (or a resume that fails to load) leaves the directory as it was.
        self._spec_written = False

    def _check_kl_objective(self) -> None:
        # Capacity and free bits rewrite the ELBO's KL term: they need an ELBO, one particle.
        spec = self.spec["objective"]
        if spec["name"] not in ("Trace_ELBO", "TraceMeanField_ELBO") or spec.get("num_particles", 1) != 1:
            raise ValueError(
                f"beta {self.spec['beta']['name']!r} rewrites the ELBO's KL term, so it needs objective "
                f"Trace_ELBO or TraceMeanField_ELBO with num_particles = 1, not {spec['name']} with "
                f"num_particles = {spec.get('num_particles', 1)}"
            )

    def _loss(self, x: torch.Tensor, epoch: float) -> torch.Tensor:
        vae = self.vae
        if self.beta.scaling:
            beta = self.beta(epoch, self.epochs)
            if self.fast:
                return fast_loss(vae, x, beta, analytic=self.analytic_kl)
            return self.objective.differentiable_loss(vae.model, vae.guide, x, beta=beta)
        recon, kl = elbo_terms(vae.model, vae.guide, x, analytic=self.analytic_kl, per_dim=self.beta.per_dim_kl)
        return self.beta.loss(recon, kl, epoch, self.epochs)

    # ---- state ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "vae": self.vae.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "metrics": self.metrics,
            "rng": rng_state(),
            "shuffle_rng": self.shuffle_rng.get_state(),
            "spec": self.spec,
        }

    def load_state_dict(self, state: dict) -> None:
        try:
            self.vae.load_state_dict(state["vae"])
        except RuntimeError as e:
            lines = [line.strip() for line in str(e).strip().splitlines()]
            first = (lines[1] if len(lines) > 1 else lines[0])[:200]  # line 0 is "Error(s) in loading ..."
            raise ValueError(f"the checkpoint does not fit the model this spec builds ({first} ...); a resume can "
                             f"change how training goes on (train.epochs, optimizer.lr, beta), not the model "
                             f"(latent_dim, nets, prior, likelihood, guide)") from None
        self.optimizer.load_state_dict(state["optimizer"])
        # The saved param_groups carry the old hyperparameters; the (possibly overridden) spec's win.
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in self.spec["optimizer"].items()
                   if k not in ("name", "fused")}
        for group in self.optimizer.param_groups:
            group.update({k: v for k, v in options.items() if k in group})
        self.epoch, self.step, self.metrics = state["epoch"], state["step"], list(state["metrics"])
        set_rng_state(state["rng"])
        self.shuffle_rng.set_state(state["shuffle_rng"])

    # ---- training ------------------------------------------------------------------------------------------
    def fit(self) -> list[dict]:
        bar = tqdm(total=self.epochs * self.steps_per_epoch, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=not self.progress, desc="train")
        if self.run_dir is not None and self.progress:
            bar.write(f"run directory: {self.run_dir}  (data: {self.data.name}, {self.train_x.shape[0]} train / "
                      f"{self.test_x.shape[0]} test examples, device {self.device})")
        # Pyro's validation (shape, support and NaN checks, each a host sync) is off unless asked for:
        # the data's support is checked once up front, and non-finite losses are caught at progress updates.
        try:
            with pyro.validation_enabled(self.spec["train"]["validate"]):
                while self.epoch < self.epochs:
                    self._train_epoch(bar)
        finally:
            bar.close()
        if self.run_dir is not None and self.spec["train"]["figures"]:
            write_figures(self.vae, self.test_x, self.metrics, self.run_dir / "figures", seed=self.spec["seed"])
        return self.metrics

    def _train_epoch(self, bar) -> None:
        start = time.perf_counter()
        n = self.train_x.shape[0]
        order = torch.randperm(n, generator=self.shuffle_rng).to(self.device)
        total = torch.zeros((), device=self.device)  # summed on device: no host sync per step
        every = self.spec["train"]["progress_every"]
        self.vae.train()
        for i in range(self.steps_per_epoch):
            x = self.train_x[order[i * self.batch_size:(i + 1) * self.batch_size]]
            t = self.epoch + i / self.steps_per_epoch
            try:
                loss = self._loss(x, t)
            except ValueError as e:  # distribution validation: NaN weights give NaN distribution parameters
                if "invalid values" not in str(e):
                    raise
                self._fail(f"a distribution got non-finite parameters at epoch {self.epoch + 1}, step {self.step}")
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            total += loss.detach()
            self.step += 1
            if (i + 1) % every == 0 or i + 1 == self.steps_per_epoch:
                running = total.item() / min(n, (i + 1) * self.batch_size)
                if not math.isfinite(running):
                    self._fail(f"the loss became {running} at epoch {self.epoch + 1}, step {self.step}")
                bar.update(i + 1 - (bar.n - self.epoch * self.steps_per_epoch))
                bar.set_postfix_str(f"epoch {self.epoch + 1}/{self.epochs} loss {running:.2f} nats/example")
        row = self._epoch_metrics(total.item() / n, self.beta.log_values(t, self.epochs),
                                  time.perf_counter() - start)
        if not all(math.isfinite(p.detach().sum().item()) for p in self.vae.parameters()):
            self._fail(f"a parameter became non-finite at epoch {self.epoch + 1}")
        for key in ("train_loss", "train_elbo", "test_elbo"):  # weights can be finite and still give NaN
            if not math.isfinite(row[key]):
                self._fail(f"the {key.replace('_', ' ')} became {row[key]} at epoch {self.epoch + 1}")
        self.epoch += 1
        self.metrics.append(row)
        extra = "".join(f"  {k} {row[k]:.3g}" for k in ("capacity", "free_bits") if k in row)
        if self.progress:
            bar.write(f"epoch {row['epoch']:>3}  beta {row['beta']:.3g}{extra}  train ELBO {row['train_elbo']:.2f}  "
                      f"test ELBO {row['test_elbo']:.2f} nats/example (recon {row['test_recon']:.2f}, "
                      f"KL {row['test_kl']:.2f})  {row['seconds']:.1f}s")
        if self.run_dir is not None:
            if not self._spec_written:
                dump_spec(self.spec, self.run_dir / SPEC_FILE)
                self._spec_written = True
            save_checkpoint(self.state_dict(), self.run_dir / CHECKPOINT)
            write_metrics(self.metrics, self.run_dir / METRICS_FILE)
        for callback in self.callbacks:
            callback(self, row)

    def _epoch_metrics(self, train_loss: float, kl_weighting: dict, seconds: float) -> dict:
        seed = self.spec["seed"]
        tr = evaluate_elbo(self.vae, self.train_eval_x, seed=seed)
        te = evaluate_elbo(self.vae, self.test_x, seed=seed)
        return {"epoch": self.epoch + 1, "step": self.step, **kl_weighting, "train_loss": train_loss,
                "train_elbo": tr["elbo"], "train_recon": tr["recon"], "train_kl": tr["kl"],
                "test_elbo": te["elbo"], "test_recon": te["recon"], "test_kl": te["kl"], "seconds": seconds}

    def _fail(self, what: str) -> None:
        where = (f"the last good checkpoint (epoch {self.epoch}) is kept in {self.run_dir}"
                 if self.run_dir is not None and self.epoch else "no checkpoint was written")
        raise NonFiniteLossError(f"{what}; {where}. Try a lower optimizer.lr or a smaller beta.")


def write_metrics(metrics: list[dict], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_KEYS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(metrics)
    atomic_write_bytes(path, buffer.getvalue().encode())


@torch.no_grad()
def write_figures(vae, test_x: torch.Tensor, metrics: list[dict], out: Path, seed: int = 0,
                  n: int = 8) -> list[str]:
    """The standard figures of a run: reconstructions, prior samples, interpolations, training curve.
    Returns the names of the files written (interpolations need at least two test examples)."""
    written = ["reconstructions.png", "samples.png"]
    with seeded_eval(seed, test_x.device, vae):
        x = test_x[: 2 * n]
        plots.plot_reconstructions(x[:n], vae.reconstruct(x[:n]), path=out / "reconstructions.png", n=n)
        plots.plot_samples(vae.generate(64), nrow=8, path=out / "samples.png")
        pairs = min(4, x.shape[0] // 2)  # up to 4 paths, each between two different test examples
        for method in ("linear", "spherical") if pairs else ():
            strips = interpolate(vae, x[:pairs], x[x.shape[0] - pairs:], steps=10, method=method)
            plots.plot_interpolation(strips, path=out / f"interpolation_{method}.png",
                                     title=f"{method.capitalize()} interpolation between posterior means")
            written.append(f"interpolation_{method}.png")
        if metrics:
            plots.plot_training_curve(metrics, path=out / "training_curve.png")
            written.append("training_curve.png")
    return written
