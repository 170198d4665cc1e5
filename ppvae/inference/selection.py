"""Model selection on the validation split: the best checkpoint and early stopping.

``train.keep_best = "val_elbo"`` keeps, beside the latest checkpoint, ``best.pt``: the checkpoint of the epoch
whose validation ELBO is the highest so far (a hard link to that epoch's ``checkpoint.pt``, written atomically).
``train.early_stopping = {patience = N}`` (optionally ``min_delta``, in nats) ends training once N epochs have
passed without the validation ELBO rising more than ``min_delta`` above its best, as Lightning's ``EarlyStopping``
and every VAE paper's protocol do. Both read only the metrics the run has written, so a resumed run chooses as an
uninterrupted one would (a run that stopped early stays stopped on resume, and says so).
"""

from __future__ import annotations

import math

from .checkpoint import CHECKPOINT, link_or_copy

#: the file of the best checkpoint, beside ``checkpoint.pt``
BEST_CHECKPOINT = "best.pt"
#: what model selection may read: the validation ELBO (higher is better)
SELECTION_METRICS = ("val_elbo",)


class Selection:
    """The run's ``keep_best`` and ``early_stopping`` settings (``train`` section), checked against the split the
    trainer holds out (``"val"``; ``"test"`` where the data have no validation split, which selection refuses)."""

    def __init__(self, train: dict, held_out: str):
        self.keep_best = train.get("keep_best")
        stopping = train.get("early_stopping")
        if self.keep_best is not None and self.keep_best not in SELECTION_METRICS:
            raise ValueError(f"train.keep_best must be {' or '.join(map(repr, SELECTION_METRICS))} (the validation "
                             f"ELBO, higher is better), got {self.keep_best!r}")
        self.patience = self.min_delta = None
        if stopping is not None:
            unknown = sorted(set(stopping) - {"patience", "min_delta"})
            if unknown or "patience" not in stopping:
                raise ValueError(f"train.early_stopping takes patience (epochs without improvement, >= 1) and "
                                 f"min_delta (nats, >= 0), e.g. {{patience = 5}}; got {stopping!r}")
            patience, min_delta = stopping["patience"], stopping.get("min_delta", 0.0)
            if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
                raise ValueError(f"train.early_stopping.patience must be an integer >= 1, got {patience!r}")
            if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float)) or not min_delta >= 0:
                raise ValueError(f"train.early_stopping.min_delta must be a number >= 0 (nats), got {min_delta!r}")
            self.patience, self.min_delta = patience, float(min_delta)
        if (self.keep_best or self.patience) and held_out != "val":
            what = "train.keep_best" if self.keep_best else "train.early_stopping"
            raise ValueError(f"{what} selects on the validation split, and these data have none (data.val_fraction "
                             f"= 0); set data.val_fraction above 0 (e.g. 0.1) rather than select on the test split")
        self.metric = self.keep_best or SELECTION_METRICS[0]

    def best(self, metrics: list[dict]) -> dict | None:
        """The row of the best epoch so far (the first of equals), or None before any epoch."""
        rows = [row for row in metrics if math.isfinite(row.get(self.metric, math.nan))]
        return max(rows, key=lambda row: row[self.metric]) if rows else None

    def epoch(self, trainer, row: dict, bar) -> None:
        """After an epoch's checkpoint is on disk: where it is the best so far, it becomes ``best.pt``."""
        if not self.keep_best or trainer.run_dir is None or not trainer.world.is_main:
            return
        if self.best(trainer.metrics) is row:
            link_or_copy(trainer.run_dir / CHECKPOINT, trainer.run_dir / BEST_CHECKPOINT)

    def stop(self, trainer, bar) -> bool:
        """Whether ``patience`` epochs have passed without improvement (said once, on the main process)."""
        if self.patience is None or not trainer.metrics:
            return False
        best = self.best(trainer.metrics)
        # the best epoch's value, and whether any later epoch beat it by more than min_delta: the first epoch at
        # which the metric last rose by more than min_delta over everything before it
        last_gain, top = 0, -math.inf
        for row in trainer.metrics:
            if row[self.metric] > top + self.min_delta:
                last_gain = row["epoch"]
            top = max(top, row[self.metric])
        waited = trainer.epoch - last_gain
        if waited < self.patience:
            return False
        if trainer.progress:
            kept = f"; the best checkpoint is {trainer.run_dir / BEST_CHECKPOINT}" \
                if self.keep_best and trainer.run_dir is not None else ""
            bar.write(f"early stopping after epoch {trainer.epoch}: {self.metric} has not risen by more than "
                      f"{self.min_delta:g} nats for {waited} epochs (best {best[self.metric]:.2f} at epoch "
                      f"{best['epoch']}){kept}")
        trainer.stopped_early = trainer.epoch
        return True
