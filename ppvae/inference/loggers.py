"""Experiment tracking in the tools users already have, offline: ``train.loggers = ["csv", "tensorboard", "mlflow"]``.

``csv`` is ``metrics.csv`` in the run directory, always written. ``tensorboard`` writes TensorBoard event files
to ``RUN/tensorboard/`` through ``torch.utils.tensorboard``: every metric per epoch, the resolved spec as text and
as hyperparameters (with the final test ELBO), and grids of reconstructions and samples every
``train.log_images_every`` epochs (10) and at the last. ``mlflow`` logs to a local MLflow file store
(``train.mlflow_uri``, default ``file:<the run directory's parent>/mlruns``, experiment ``train.mlflow_experiment``
= "ppvae"): the flattened spec as parameters, every metric per epoch, and, when training ends, the figures and
the run directory as artifacts; a resumed run continues its MLflow run. Both need ``pip install -e
'.[tracking]'``; only rank 0 of a multi-process run logs.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from ..spec import check_loggers, dump_spec_text

_INSTALL = {"tensorboard": "tensorboard", "mlflow": "mlflow-skinny"}


def require_loggers(spec: dict) -> list[str]:
    """The loggers a spec asks for, each checked to be known and installed (before training starts)."""
    names = check_loggers(spec["train"].get("loggers", ["csv"]))
    for name in names:
        try:
            if name == "tensorboard":
                import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
            elif name == "mlflow":
                import mlflow  # noqa: F401
        except ImportError:
            raise ImportError(f"train.loggers asks for {name}, which is not installed: pip install -e '.[tracking]' "
                              f"(or pip install {_INSTALL[name]})") from None
    return names


def make_loggers(spec: dict, run_dir: Path | None) -> list:
    """The TensorBoard / MLflow loggers of a run (csv is metrics.csv, written with every checkpoint)."""
    if run_dir is None:
        return []
    return [TensorBoardLogger(spec, run_dir) if name == "tensorboard" else MLflowLogger(spec, run_dir)
            for name in require_loggers(spec) if name != "csv"]


def _numbers(row: dict) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and k not in ("epoch", "step")
            and math.isfinite(float(v))}


def _flat(spec: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for k, v in spec.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else json.dumps(v)
    return out


def _grids(trainer) -> dict[str, torch.Tensor]:
    """Reconstructions over their inputs, and prior samples, as image grids (image data with those
    capabilities only)."""
    from torchvision.utils import make_grid

    from ..batch import take, to_device
    from .program import program

    model, test = trainer.model, trainer.val_batch
    x = test["x"]
    if x.ndim != 4 or x.is_floating_point() is False or x.shape[1] not in (1, 3):
        return {}
    grids = {}
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(trainer.spec["seed"])
            rows = to_device(take(test, slice(0, 8)), trainer.device)
            p = program(model)
            if p.can("reconstruct"):
                recon = p.reconstruct(rows if not p.declares("reconstruct") or p.conditional else rows["x"])
                if isinstance(recon, torch.Tensor) and recon.shape == rows["x"].shape:
                    grids["reconstructions"] = make_grid(torch.cat([rows["x"], recon]).clamp(0, 1).cpu(), nrow=8)
            if p.can("generate") and not p.conditional:
                samples = p.generate(16, context=rows)
                if isinstance(samples, torch.Tensor) and samples.shape[1:] == x.shape[1:]:
                    grids["samples"] = make_grid(samples.clamp(0, 1).cpu(), nrow=8)
    except (TypeError, ValueError, RuntimeError):
        pass  # a model whose capabilities take other arguments: no grids
    finally:
        model.train(was)
    return grids


class TensorBoardLogger:
    def __init__(self, spec: dict, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.spec, self.every = spec, int(spec["train"].get("log_images_every", 10))
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.writer.add_text("spec", "```\n" + dump_spec_text(spec) + "\n```", 0)

    def epoch(self, trainer, row: dict) -> None:
        for key, value in _numbers(row).items():
            self.writer.add_scalar(key, value, row["epoch"])
        if row["epoch"] % self.every == 0 or row["epoch"] == trainer.epochs:
            for name, grid in _grids(trainer).items():
                self.writer.add_image(name, grid, row["epoch"])
        self.writer.flush()

    def close(self, trainer, ok: bool) -> None:
        if ok and trainer.metrics:
            last = trainer.metrics[-1]
            h = trainer.held_out
            self.writer.add_hparams({k: v if isinstance(v, (int, float, str, bool)) else str(v)
                                     for k, v in _flat(self.spec).items()},
                                    {f"hparam/{h}_elbo": last[f"{h}_elbo"]}, run_name=".")
        self.writer.close()


class MLflowLogger:
    def __init__(self, spec: dict, run_dir: Path):
        from mlflow.tracking import MlflowClient

        uri = spec["train"].get("mlflow_uri") or f"file:{run_dir.resolve().parent / 'mlruns'}"
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store opt-in
        self.client, self.run_dir = MlflowClient(tracking_uri=uri), run_dir
        name = spec["train"].get("mlflow_experiment", "ppvae")
        experiment = self.client.get_experiment_by_name(name)
        eid = experiment.experiment_id if experiment is not None else self.client.create_experiment(name)
        record = run_dir / "mlflow.json"
        if record.is_file():  # a resumed run goes on in its MLflow run
            self.run_id = json.loads(record.read_text())["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            run = self.client.create_run(eid, run_name=run_dir.name, tags={"ppvae.run_dir": str(run_dir.resolve())})
            self.run_id = run.info.run_id
            for key, value in _flat(spec).items():
                self.client.log_param(self.run_id, key, str(value)[:6000])
            record.write_text(json.dumps({"tracking_uri": uri, "experiment": name, "run_id": self.run_id}))

    def epoch(self, trainer, row: dict) -> None:
        from mlflow.entities import Metric

        stamp = int(1000 * __import__("time").time())
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, stamp, row["epoch"])
                                                    for k, v in _numbers(row).items()])

    def close(self, trainer, ok: bool) -> None:
        if ok:
            for path in sorted(self.run_dir.iterdir()):
                if path.is_dir():
                    self.client.log_artifacts(self.run_id, str(path), artifact_path=path.name)
                elif path.name not in (".lock",) and not path.name.startswith("."):
                    self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status="FINISHED" if ok else "FAILED")
