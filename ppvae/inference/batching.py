"""Which rows each training step takes, and how they reach the device: one epoch's order (a shuffle of the training
set; labelled rows mixed into every batch, or whole labelled batches between unlabelled ones, where the data label
only some), the same on every process of a run, each process taking every w-th row of a step; and the batches
themselves, sliced from a split resident on the device or streamed by a DataLoader from host memory or disk.

The order is reproducible from the run's seed, the epoch and one generator (``shuffle_rng``, saved in the
checkpoint), so that a resumed run takes the steps an uninterrupted one would.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader, DistributedSampler

from ..batch import Batch, take
from ..data import Dataset

#: how semi-supervised batches take their labelled rows (train.labeled_batches)
LABELED_BATCHES = ("rows", "alternate")


class Batching:
    """The steps of a run over ``train`` (a batch mapping: resident on the device, or in host memory where
    ``stream``), ``batch_size`` rows per process and step, on ``world``'s processes.

    ``labeled_rows``, ``unlabeled_rows`` and ``labeled_per_batch`` say how labelled rows are drawn
    (:func:`labeled_split`); ``steps_per_epoch`` how many steps an epoch has."""

    def __init__(self, train: Batch, spec: dict, world, device: torch.device, *, stream: bool = False,
                 workers: int = 0):
        self.train = train
        self.batch_size = spec["train"]["batch_size"]
        #: leave out each epoch's last batch where it is short (train.drop_last, as torch's DataLoader): a program
        #: with batch norm cannot train on a batch of one row
        self.drop_last = spec["train"].get("drop_last", False)
        self.seed = spec["seed"]
        self.world, self.device, self.stream, self.workers = world, device, stream, workers
        self.n = train["x"].shape[0]
        self.labeled_rows, self.unlabeled_rows, self.labeled_per_batch = labeled_split(
            train, spec["train"], self.batch_size)
        # Shuffling labelled and unlabelled rows has its own generator, the same on every rank, so that its stream
        # is saved and restored with the checkpoint; other data are shuffled by the epoch's DistributedSampler.
        self.shuffle_rng = torch.Generator().manual_seed(self.seed)
        if self.drop_last and self.alternate and len(self.labeled_rows) < self.batch_size * world.size:
            raise ValueError(f"train.drop_last = true would leave out every labelled batch: the "
                             f"{len(self.labeled_rows)} labelled rows are fewer than one batch of "
                             f"{self.batch_size * world.size}; set train.drop_last = false or a smaller "
                             f"train.batch_size")
        self.steps_per_epoch = self._steps_per_epoch()
        if self.steps_per_epoch == 0:
            raise ValueError(f"an epoch has no step: {self.n} training rows make no full batch of train.batch_size "
                             f"= {self.batch_size}{f' on {world.size} processes' if world.size > 1 else ''} with "
                             f"train.drop_last = true; set a smaller train.batch_size or train.drop_last = false")

    @property
    def alternate(self) -> bool:
        """Whether whole labelled batches alternate with unlabelled ones (Pyro's SS-VAE)."""
        return self.labeled_rows is not None and not self.labeled_per_batch

    def _steps_per_epoch(self) -> int:
        # Each of the world's processes takes batch_size rows a step: one step of the run is size * batch_size rows.
        w = self.world.size
        steps = math.floor if self.drop_last else math.ceil
        if self.labeled_rows is None:  # a last step with fewer rows than processes is left out (w > 1 only)
            full, rest = divmod(self.n, self.batch_size * w)
            return full + (rest >= w and not self.drop_last)
        if self.alternate:
            return sum(steps(len(rows) / (self.batch_size * w)) for rows in (self.labeled_rows, self.unlabeled_rows))
        return steps(len(self.unlabeled_rows) / ((self.batch_size - self.labeled_per_batch) * w))

    def probes(self) -> list:
        """The first rows of each kind of batch training will see: labelled and unlabelled where they alternate."""
        return [self.labeled_rows[:3], self.unlabeled_rows[:3]] if self.alternate else [slice(0, 3)]

    def order(self, epoch: int) -> list[torch.Tensor]:
        """Each step's rows for one epoch: a shuffle of the training set, or, where only some rows are labelled
        and batches draw some of them, a shuffle of the unlabelled rows joined by labelled rows cycled in
        shuffled passes (so every labelled row is seen equally often)."""
        home = self.train["x"].device
        w, r = self.world.size, self.world.rank
        if self.labeled_rows is None:
            # One order for the epoch, the same on every rank (a DistributedSampler of one replica: a permutation
            # seeded by the run's seed and the epoch); each step is batch_size * w rows of it and each rank takes
            # every w-th of those, so w processes take one process's steps for any number of examples.
            sampler = DistributedSampler(range(self.n), num_replicas=1, rank=0, shuffle=True, seed=self.seed)
            sampler.set_epoch(epoch)
            order = torch.tensor(list(sampler), dtype=torch.long, device=home)
            step = self.batch_size * w
            return [order[i * step:(i + 1) * step][r::w] for i in range(self.steps_per_epoch)]
        # The run's steps, drawn alike on every rank from the shared generator; each rank takes every w-th row.
        g = self.shuffle_rng
        if self.alternate:
            return [rows[r::w].to(home) for rows in self._alternating(g, self.batch_size * w)]
        per_step, k = (self.batch_size - self.labeled_per_batch) * w, self.labeled_per_batch * w
        rest = self.unlabeled_rows[torch.randperm(len(self.unlabeled_rows), generator=g)]
        passes = math.ceil(self.steps_per_epoch * k / len(self.labeled_rows))
        cycled = torch.cat([self.labeled_rows[torch.randperm(len(self.labeled_rows), generator=g)]
                            for _ in range(passes)])
        return [torch.cat([cycled[i * k:(i + 1) * k][r::w], rest[i * per_step:(i + 1) * per_step][r::w]]).to(home)
                for i in range(self.steps_per_epoch)]

    def _alternating(self, g: torch.Generator, size: int) -> list[torch.Tensor]:
        """Whole labelled batches between unlabelled ones, as Pyro's SS-VAE trains: a labelled batch at every
        k-th step (k = examples / labelled examples) while any are left, each set shuffled every epoch."""
        labelled, unlabelled = ([s for s in rows[torch.randperm(len(rows), generator=g)].split(size)
                                 if len(s) == size or not self.drop_last]
                                for rows in (self.labeled_rows, self.unlabeled_rows))
        every = max(1, self.n // len(self.labeled_rows))
        steps, i, j = [], 0, 0
        while i < len(labelled) or j < len(unlabelled):
            take_labelled = j >= len(unlabelled) or (i < len(labelled) and len(steps) % every == every - 1)
            steps.append(labelled[i] if take_labelled else unlabelled[j])
            i, j = (i + 1, j) if take_labelled else (i, j + 1)
        return steps

    def batches(self, steps, epoch: int):
        """Each step's batch on the device: sliced from the resident split, or streamed by a DataLoader (with
        workers, and pinned memory on CUDA) from host memory or a memory-mapped file."""
        if not self.stream:
            for rows in steps:
                yield take(self.train, rows)
            return
        cuda = self.device.type == "cuda"
        # its own generator: a DataLoader seeds its workers from the global stream otherwise, which would change
        # the training noise (streamed and resident data train alike)
        loader = DataLoader(_Rows(self.train), sampler=steps, batch_size=None, num_workers=self.workers,
                            pin_memory=cuda, generator=torch.Generator().manual_seed(self.seed + epoch))
        for batch in loader:
            yield Batch({k: v.to(self.device, non_blocking=cuda) for k, v in batch.items()})


def labeled_split(train: Batch, tr: dict, batch_size: int):
    """(labelled rows, unlabelled rows, labelled rows per batch) where the data label only some rows and the
    spec asks each batch to draw ``train.labeled_per_batch`` of them (0 where ``train.labeled_batches`` is
    "alternate": whole labelled batches between unlabelled ones); (None, None, 0) otherwise."""
    mode = tr.get("labeled_batches", "rows")
    if mode not in LABELED_BATCHES:
        raise ValueError(f"train.labeled_batches must be one of {', '.join(LABELED_BATCHES)} (labelled rows mixed "
                         f"into every batch, or whole labelled batches between unlabelled ones), got {mode!r}")
    k = tr.get("labeled_per_batch", 0)
    seen = train.get("labeled")
    if seen is None or bool(seen.all()) or not bool(seen.any()):
        return None, None, 0
    if mode == "alternate":
        return seen.nonzero().squeeze(1), (~seen).nonzero().squeeze(1), 0
    if not k:
        return None, None, 0
    if k >= batch_size:
        raise ValueError(f"train.labeled_per_batch = {k} must be smaller than train.batch_size = "
                         f"{batch_size}: each batch also draws unlabelled rows")
    return seen.nonzero().squeeze(1), (~seen).nonzero().squeeze(1), k


class _Rows(torch.utils.data.Dataset):
    """A split as a map-style dataset whose item is a whole step: ``rows`` (an index tensor) -> that batch."""

    def __init__(self, batch):
        self.batch = batch

    def __len__(self) -> int:
        return self.batch["x"].shape[0]

    def __getitem__(self, rows):
        return {k: v[rows] for k, v in self.batch.items()}


def streams(choice, data: Dataset, device: torch.device) -> bool:
    """Whether training streams batches (``data.stream``: true, false or "auto"). Auto streams data that is
    memory-mapped from disk, and data that would take more than half of a GPU's free memory."""
    if choice not in (True, False, "auto"):
        raise ValueError(f"data.stream must be true, false or \"auto\", got {choice!r}")
    if choice != "auto":
        return choice
    if getattr(data, "memory_mapped", False):
        return True
    if device.type == "cuda":
        nbytes = sum(v.numel() * v.element_size() for v in data.batch("train").values())
        free, _ = torch.cuda.mem_get_info(device)
        return nbytes > free / 2
    return False
