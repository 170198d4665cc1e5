"""A run's epoch bookkeeping: after each epoch, what the run directory and the loggers get.

The first epoch writes ``spec.toml`` (not before: a run that fails before its first epoch, or a resume that fails
to load, leaves the directory as it was); every epoch writes, atomically, the checkpoint (weights, optimisers,
step, random states, metrics; :mod:`~ppvae.inference.checkpoint`) and then ``metrics.csv``, and hands the epoch's
row to TensorBoard and MLflow where the spec asks for them. A write that fails says what is kept and how to
resume. Only the main process of a run writes.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..spec import dump_spec
from .checkpoint import CHECKPOINT, atomic_write_bytes, save_checkpoint
from .loggers import make_loggers
from .rebuild import still_matches

SPEC_FILE = "spec.toml"
METRICS_FILE = "metrics.csv"
METRIC_KEYS = ("epoch", "step", "beta", "capacity", "free_bits", "train_loss", "train_elbo", "train_recon",
               "train_kl", "val_elbo", "val_recon", "val_kl", "val_mi", "val_tc", "val_dim_kl",
               "seconds")  # and per-site terms, model by model


def held_out_split(rows: dict | list[dict]) -> str:
    """The split the held-out columns of a metrics row (or of any of a list of rows) were computed on: ``"val"``,
    or ``"test"`` where the data have no validation split (data.val_fraction = 0, and runs trained before ppvae
    held one out)."""
    return "val" if any("val_elbo" in row for row in ([rows] if isinstance(rows, dict) else rows)) else "test"


class RunWriter:
    """Writes a trainer's epochs into ``run_dir`` (None: nowhere; the loggers still log) on the main process."""

    def __init__(self, run_dir: Path | None, is_main: bool):
        self.run_dir, self.is_main = run_dir, is_main
        self.spec_written = False
        #: TensorBoard / MLflow, started by the first epoch's end (so a run refused before it logs nothing)
        self.loggers = None

    def epoch(self, trainer, row: dict) -> None:
        """The epoch just finished (``row``, already in ``trainer.metrics``): spec, checkpoint, metrics, loggers."""
        if not self.is_main:
            return
        if self.run_dir is not None:
            if not self.spec_written:
                dump_spec(trainer.spec, self.run_dir / SPEC_FILE)
                self.spec_written = True
            trainer.record = still_matches(trainer.record, trainer.model)
            self._checkpoint(trainer.state_dict(), trainer.epoch, trainer.spec["train"].get("keep_checkpoints", 1))
            self._metrics(trainer.metrics, trainer.epoch)
        if self.loggers is None:
            self.loggers = make_loggers(trainer.spec, self.run_dir)
        for logger in self.loggers:
            logger.epoch(trainer, row)

    def close(self, trainer, ok: bool) -> None:
        for logger in self.loggers or ():
            logger.close(trainer, ok)

    def _checkpoint(self, state: dict, epoch: int, keep: int) -> None:
        try:
            save_checkpoint(state, self.run_dir / CHECKPOINT, keep=keep)
        except OSError as e:  # a full disk, a quota, a vanished mount: the old files are untouched
            kept = f"the last good checkpoint (epoch {epoch - 1}) is kept" if epoch > 1 else "no checkpoint was written"
            raise OSError(e.errno, f"could not write the checkpoint of epoch {epoch} to {self.run_dir} "
                                   f"({e.strerror or e}); {kept}; free space and resume with "
                                   f"`ppvae train --resume {self.run_dir}`") from None

    def _metrics(self, metrics: list[dict], epoch: int) -> None:
        try:
            write_metrics(metrics, self.run_dir / METRICS_FILE)
        except OSError as e:
            raise OSError(e.errno, f"could not write {METRICS_FILE} of epoch {epoch} to {self.run_dir} "
                                   f"({e.strerror or e}); the checkpoint of epoch {epoch} is saved and "
                                   f"holds the metrics; resume with `ppvae train --resume {self.run_dir}`") from None


def epoch_line(row: dict) -> str:
    """The line a run prints after each epoch."""
    h = held_out_split(row)
    extra = "".join(f"  {k} {row[k]:.3g}" for k in ("capacity", "free_bits") if k in row)
    tc = f", TC {row[f'{h}_tc']:.2f}" if f"{h}_tc" in row else ""
    return (f"epoch {row['epoch']:>3}  beta {row['beta']:.3g}{extra}  train ELBO {row['train_elbo']:.2f}  "
            f"{h} ELBO {row[f'{h}_elbo']:.2f} nats/example (recon {row[f'{h}_recon']:.2f}, "
            f"KL {row[f'{h}_kl']:.2f}{tc})  {row['seconds']:.1f}s")


def metric_columns(row: dict) -> tuple[str, ...]:
    """The columns of ``metrics.csv`` for rows like ``row``: the fixed ones (held-out columns named by their
    split), then the model's own: ``<split>_recon_<observed site>``, ``<split>_kl_<latent site>``."""
    h = held_out_split(row)
    fixed = tuple(k.replace("val_", f"{h}_", 1) for k in METRIC_KEYS)
    return fixed + tuple(k for k in row if k.startswith((f"{h}_recon_", f"{h}_kl_")))


def write_metrics(metrics: list[dict], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=metric_columns(metrics[0] if metrics else {}), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(metrics)
    atomic_write_bytes(path, buffer.getvalue().encode())
