"""Training on several processes with PyTorch's own engine: torchrun starts the processes, DistributedDataParallel
averages the gradients, a DistributedSampler shards each epoch.

``torchrun --nproc_per_node=N -m ppvae train SPEC`` (or ``ppvae train --nproc N SPEC``, which runs that command)
starts N copies of the same training. torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``) is read here and the process group is joined once, with ``gloo`` on the CPU and
``nccl`` on CUDA (``train.backend``). Every process builds the same model from the same seed; DDP checks that and
broadcasts rank 0's weights. What changes with N processes:

- ``train.batch_size`` is the batch of *one* process: N processes with batch B take the steps one process with
  batch N*B takes, over the same examples (one order per epoch, from a DistributedSampler seeded by the run's
  seed and the epoch; each rank takes every N-th row of each step), except where the loss depends on the whole
  batch (beta-TCVAE's minibatch estimators see B rows per rank; batch norm's statistics are per rank);
- the loss is the Pyro objective computed inside a module's ``forward`` (:class:`LossModule`), so DDP's gradient
  hooks run; it is scaled by N, so that DDP's average of the N gradients is the gradient of the summed loss of
  the N*B examples, as in one process;
- each rank draws its own noise (torch and Pyro are seeded with ``seed + rank``);
- rank 0 alone writes the checkpoint, ``metrics.csv``, figures and the progress bar; the per-epoch evaluation is
  sharded over the ranks and summed.

Several machines: run torchrun on each with the same rendezvous, e.g. ``torchrun --nnodes=2 --node_rank=0
--nproc_per_node=4 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 -m ppvae train SPEC --run-dir RUN`` (the run
directory on a filesystem every node sees; only global rank 0 writes to it).
"""

from __future__ import annotations

import atexit
import gc
import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..batch import take, to_device

BACKENDS = ("auto", "gloo", "nccl")


@dataclass(frozen=True)
class World:
    """Where this process stands among the processes training one run (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes the run directory and prints."""
        return self.rank == 0

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """The tensor summed over all ranks (itself in one process)."""
        if self.distributed:
            t = t.clone()
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (pickled; for small things such as a run directory's name)."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out


_WORLD: World | None = None


def torchrun_env() -> dict | None:
    """torchrun's description of this process, or None outside torchrun."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return None
    return {"rank": int(os.environ["RANK"]), "size": int(os.environ["WORLD_SIZE"]),
            "local_rank": int(os.environ.get("LOCAL_RANK", 0))}


def check_backend(backend: str, device: torch.device) -> str:
    """The process-group backend for ``device``: gloo on the CPU, nccl on CUDA for ``auto``."""
    if backend not in BACKENDS:
        raise ValueError(f"train.backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if backend == "nccl" and (device.type != "cuda" or not torch.cuda.is_available()):
        why = "torch sees no CUDA GPU" if not torch.cuda.is_available() else f"the device is {device}"
        raise ValueError(f"train.backend = 'nccl' needs CUDA GPUs, but {why}; use train.backend = 'gloo' "
                         f"(or 'auto', which picks gloo on the CPU)")
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    return backend


def world(backend: str = "auto", device: torch.device | None = None) -> World:
    """This process's :class:`World`, joining torchrun's process group on the first call (with ``backend``
    checked against ``device``); rank 0 of 1 outside torchrun."""
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    env = torchrun_env()
    if env is None or env["size"] == 1:
        if backend != "auto":
            check_backend(backend, device or torch.device("cpu"))
        return World()
    device = device or torch.device("cpu")
    chosen = check_backend(backend, device)
    if not dist.is_initialized():
        if device.type == "cuda":
            if env["local_rank"] >= torch.cuda.device_count():
                raise ValueError(f"local rank {env['local_rank']} has no GPU: this machine has "
                                 f"{torch.cuda.device_count()} CUDA device(s); start at most that many processes per "
                                 f"node (--nproc_per_node)")
            torch.cuda.set_device(env["local_rank"])
        dist.init_process_group(chosen)
        atexit.register(leave)
    _WORLD = World(env["rank"], env["size"], env["local_rank"], chosen)
    return _WORLD


def leave(together: bool = False) -> None:
    """Leave the process group; ``together``: wait for every rank first (a rank that exits while the others
    still talk to it takes them down). After an error a rank leaves at once: its exit makes torchrun stop the
    others, where waiting for them could wait forever."""
    global _WORLD
    if dist.is_initialized():
        gc.collect()  # DDP's reducer (its threads) goes before the process group does
        try:
            if together:
                dist.barrier()
        finally:
            dist.destroy_process_group()
    _WORLD = None


def rank_device(device: torch.device, w: World) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` when training on CUDA with several processes."""
    if device.type != "cuda" or not w.distributed:
        return device
    if w.local_rank >= torch.cuda.device_count():
        raise ValueError(f"local rank {w.local_rank} has no GPU: this machine has {torch.cuda.device_count()} "
                         f"CUDA device(s); start at most that many processes per node (--nproc_per_node)")
    return torch.device("cuda", w.local_rank)


class LossModule(torch.nn.Module):
    """The training loss as a module's ``forward``, so that DistributedDataParallel's hooks see it.

    ``forward(batch, epoch)`` is ``scale * loss(batch, epoch)``: with ``scale`` the number of processes, the
    average DDP takes of the processes' gradients is the gradient of the loss summed over all their examples.
    """

    def __init__(self, model: torch.nn.Module, loss, scale: float = 1.0):
        super().__init__()
        self.model = model
        self._loss = loss
        self.scale = scale

    def forward(self, batch, epoch: float) -> torch.Tensor:
        return self._loss(batch, epoch) * self.scale


def available_slots(device: torch.device) -> tuple[int, str]:
    """How many processes this machine can give one each: (count, what they are)."""
    if device.type == "cuda":
        return torch.cuda.device_count(), "CUDA GPUs"
    try:
        return len(os.sched_getaffinity(0)), "CPU cores"
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1, "CPU cores"


def check_nproc(nproc: int, device: torch.device) -> None:
    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    slots, what = available_slots(device)
    if nproc > slots:
        raise ValueError(f"--nproc {nproc} is more than the {slots} {what} this machine has (device {device}); "
                         f"use --nproc {slots} or fewer, or torchrun across machines (README: 'Several processes')")


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``ppvae <argv>`` under ``torchrun --standalone --nproc_per_node=nproc`` and return its exit status."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "ppvae", *argv]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # one core per process, as torchrun would set
    return subprocess.run(cmd, env=env).returncode


def evaluate_shared(model, batch, world: World, device: torch.device, *, seed: int, parts: bool = False) -> dict:
    """:func:`~ppvae.evaluate.elbo.evaluate_elbo` over ``batch``, the work shared: with several processes each
    evaluates its share (every size-th row), and with ``parts`` (streamed data in host memory) in device-sized
    parts; the sums are added over the processes."""
    from ..evaluate.elbo import evaluate_elbo  # here: the launcher and the CLI's exit path import this module light

    if not (world.distributed or parts):
        return evaluate_elbo(model, batch, seed=seed)
    w, r = world.size, world.rank
    n = batch["x"].shape[0]
    mine = torch.arange(r, n, w)
    sums: dict[str, torch.Tensor] = {}
    for j, start in enumerate(range(0, len(mine), 1000)):
        part = to_device(take(batch, mine[start:start + 1000]), device)
        out = evaluate_elbo(model, part, seed=seed + r + w * j)
        m = out["num_examples"]
        for kind in ("recon_sites", "kl_sites"):
            for k, v in out[kind].items():
                sums[f"{kind}/{k}"] = sums.get(f"{kind}/{k}", 0.0) + v * m
    keys = sorted(set().union(*world.gather(sorted(sums))))  # a rank with no rows has no sites
    sums = {k: sums.get(k, 0.0) for k in keys}
    total = world.sum(torch.tensor([float(sums[k]) for k in keys], dtype=torch.float64, device=device))
    sites = {kind: {k.split("/", 1)[1]: float(v) / n for k, v in zip(keys, total) if k.startswith(kind)}
             for kind in ("recon_sites", "kl_sites")}
    recon, kl = sum(sites["recon_sites"].values()), sum(sites["kl_sites"].values())
    return {"elbo": recon - kl, "recon": recon, "kl": kl, "num_examples": n, **sites}
