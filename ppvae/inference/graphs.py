r"""The training step as one CUDA graph, and the check that a step can be captured.

At small batches a GPU waits on Python: a VAE's step is a few hundred small kernels launched one by one. A CUDA
graph records the whole step once (the loss of one batch, its backward, the optimiser's update) and replays it
with one launch. ``train.graph`` says when:

- ``"auto"`` (the default): on CUDA, where the first step is capture-safe (below) and the run is one the graph can
  express; otherwise eager, saying why in one line where the reason is the program's;
- ``"on"``: the same, but a step that cannot be captured is refused, in one line, instead of trained eagerly;
- ``"off"``: always eager.

**Capture safety.** A graph replays kernels with the arguments they were recorded with, so nothing in the step may
read a tensor on the host (``.item()``, ``bool(tensor)``, an ``if`` on a tensor), make a tensor from Python
numbers (``torch.tensor(1.0)``, a number where a distribution takes a tensor: a host-to-device copy on a GPU), or
have a shape that depends on the data (``nonzero``, boolean-mask indexing, ``unique``). :func:`capture_problems`
runs one step under a torch dispatch mode that notes each such operation with the file and line that asked for it;
it runs on the CPU as well, so tests check it without a GPU.

**What changes between steps enters as device tensors updated in place**: the batch (copied into a static buffer),
and beta (its schedule's value for the step, filled in before each replay: a Python float would be frozen into the
graph and silently stop a warm-up). The random draws come from the generator the graph registers, which each
replay advances. The warm-up steps that capture needs run on a side stream, and the model, the optimiser's state
and every random stream are put back afterwards, so a graphed run trains the steps an eager one does. A batch of
another size (the short last one) has its own graph, or runs eagerly where only one remains.

What a graph cannot express is trained eagerly: a KL rule whose target moves each step (``capacity``), parameter
groups, several processes, an optimiser other than Adam or AdamW (their state starts as zeros, which the
warm-up's restore relies on).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

GRAPH_CHOICES = ("auto", "on", "off")

_HOST_READ = "a tensor read on the host (.item(), bool(), int(), float(), or an if on a tensor)"
_SHAPE = "a shape that depends on the data"
_NUMBERS = ("a tensor made from Python numbers (torch.tensor(...), or a number where a distribution takes a tensor: "
            "a host-to-device copy on a GPU); make it from a tensor on the device (x.new_zeros(...), "
            "torch.ones_like(x))")
_COPY = "a copy from host memory to the device"
_FLAGGED = {"_local_scalar_dense": _HOST_READ, "is_nonzero": _HOST_READ, "equal": _HOST_READ, "allclose": _HOST_READ,
            "nonzero": _SHAPE, "masked_select": _SHAPE, "_unique": _SHAPE, "_unique2": _SHAPE, "unique_dim": _SHAPE,
            "unique_consecutive": _SHAPE, "repeat_interleave": _SHAPE,
            "lift_fresh": _NUMBERS, "lift_fresh_copy": _NUMBERS}


class CaptureProblem(NamedTuple):
    """An operation of a training step that a CUDA graph cannot capture, and where it was asked for."""

    what: str
    where: str

    def __str__(self) -> str:
        return f"{self.what} at {self.where}"


def _problem(func, args, kwargs) -> str | None:
    name = func.overloadpacket.__name__
    if name in ("lift_fresh", "lift_fresh_copy") and args and isinstance(args[0], torch.Tensor) \
            and args[0].numel() == 0:
        return None  # an empty tensor holds no numbers to copy (Pyro's plate finds the default device so)
    if name in _FLAGGED:
        return _FLAGGED[name]
    if name == "index" and len(args) > 1 and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool
                                                 for i in args[1] if i is not None):
        return "indexing with a boolean mask (" + _SHAPE + ")"
    if name in ("_to_copy", "copy_"):
        src = args[1] if name == "copy_" else args[0]
        dst = args[0].device if name == "copy_" else kwargs.get("device")
        if isinstance(src, torch.Tensor) and src.device.type == "cpu" and dst is not None \
                and torch.device(dst).type != "cpu":
            return _COPY
    return None


_LIBRARIES = tuple(str(Path(m.__file__).resolve().parent) for m in (torch, traceback))
_OBJECTIVES = str(Path(__file__).resolve().parent)  # ppvae's inference code: where the ELBO scores the sites


def _where() -> str:
    """The innermost frame of the stack outside torch, Pyro's internals and the standard library: the user's line.
    Where that is ppvae's inference code (a log-density the objective computes after the program ran), the
    distribution's line instead, in torch's or Pyro's distributions."""
    import pyro

    skip = (*_LIBRARIES, str(Path(pyro.__file__).resolve().parent), str(Path(__file__).resolve()))
    distributions = tuple(str(Path(m.__file__).resolve().parent) for m in (torch.distributions, pyro.distributions))
    inside = None  # the innermost frame in a distribution's code
    for frame in reversed(traceback.extract_stack()[:-2]):
        if frame.filename.startswith("<"):
            continue
        file = str(Path(frame.filename).resolve())
        if inside is None and file.startswith(distributions):
            inside = frame
        if not file.startswith(skip):
            return _line(inside if inside is not None and file.startswith(_OBJECTIVES) else frame)
    return "inside torch or Pyro"


def _line(frame) -> str:
    return f"{frame.filename}:{frame.lineno} ({(frame.line or '').strip()[:80]})"


class _Watch(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.problems: list[CaptureProblem] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        what = _problem(func, args, kwargs)
        if what is not None:
            problem = CaptureProblem(what, _where())
            if problem not in self.problems:
                self.problems.append(problem)
        return func(*args, **kwargs)


def capture_problems(step: Callable, *args, **kwargs) -> list[CaptureProblem]:
    """What one call of ``step(*args, **kwargs)`` does that a CUDA graph cannot capture (empty: capture-safe),
    each with the file and line that asked for it. The call runs for real: run it where its effects do not
    matter (a forked random state, gradients cleared afterwards)."""
    with _Watch() as watch:
        step(*args, **kwargs)
    return watch.problems


def why_not_graphed(spec: dict, loss, optimizers: dict, world, device: torch.device) -> str | None:
    """Why this run's step cannot be one graph whatever the program does (None where it can)."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device; this run trains on {device}"
    if world.distributed:
        return "a step of several processes all-reduces its gradients between the ranks"
    if len(optimizers) > 1:
        return "the program trains several parameter groups"
    if loss.rule is not None and loss.rule.why_not_graphed:
        return loss.rule.why_not_graphed
    name = spec["optimizer"]["name"]
    if name not in ("adam", "adamw"):
        return f"optimizer {name!r} keeps a state that is not zeros before its first step"
    if spec["train"].get("validate"):
        return "train.validate checks every distribution's arguments on the host"
    return None


class GraphedStep:
    """One training step per batch size, captured as a CUDA graph and replayed: ``step(batch, t) -> loss``.

    ``trainer`` gives the loss (:class:`~ppvae.inference.loss.TrainingLoss`, whose beta this object feeds as a
    device tensor), the model, the optimiser (Adam with ``capturable=True``) and the beta schedule. ``graph`` makes
    a graph of a step function (CUDA's by default; :class:`EagerGraph` runs the same plumbing without one, which
    is how the CPU tests check it) and ``side_stream`` is the context the warm-up runs in."""

    def __init__(self, trainer, graph=None, side_stream=None, warmup: int = 3):
        self.trainer = trainer
        self.beta = torch.ones((), device=trainer.device)
        trainer.loss.beta_value = self.beta
        self.graphs: dict[int, tuple] = {}
        self.warmup = warmup
        self.graph = graph or CudaGraph
        self.side_stream = side_stream or _side_stream

    def __call__(self, batch, t: float) -> torch.Tensor:
        from ..batch import batch_size

        rows = batch_size(batch)
        self.set_beta(t)
        if rows not in self.graphs:
            self.graphs[rows] = self._capture(batch, t)
        graph, static = self.graphs[rows]
        for k, v in batch.items():
            static[k].copy_(v, non_blocking=True)
        graph.replay()
        return graph.output

    def set_beta(self, t: float) -> None:
        """The schedule's value at ``t`` into the device tensor the loss reads (graphed or eager)."""
        self.beta.fill_(self.trainer.beta(t, self.trainer.epochs))

    def _step(self, batch, t: float) -> torch.Tensor:
        tr = self.trainer
        loss = tr.loss(batch, t)
        loss.backward()
        tr.optimizer.step()
        return loss.detach()

    def _capture(self, batch, t: float):
        from .checkpoint import rng_state, set_rng_state

        tr = self.trainer
        static = {k: v.clone() for k, v in batch.items()}
        weights = {k: v.detach().clone() for k, v in tr.model.state_dict().items()}
        state = {id(v): v.detach().clone() for s in tr.optimizer.state.values() for v in s.values()
                 if isinstance(v, torch.Tensor)}
        randomness = rng_state()
        with self.side_stream():  # warm-up: lazy initialisations (Adam's state, cuBLAS handles) before capture
            for _ in range(self.warmup):
                tr.optimizer.zero_grad(set_to_none=True)
                self._step(static, t)
        # put the run back where it was: the warm-up trained nothing
        with torch.no_grad():
            for k, v in tr.model.state_dict().items():
                v.copy_(weights[k])
            for s in tr.optimizer.state.values():
                for v in s.values():
                    if isinstance(v, torch.Tensor):
                        v.copy_(state[id(v)]) if id(v) in state else v.zero_()  # Adam's state starts as zeros
        set_rng_state(randomness)
        tr.optimizer.zero_grad(set_to_none=True)

        def step():  # clearing the gradients is Python only: under capture, backward then allocates its buffers
            tr.optimizer.zero_grad(set_to_none=True)
            return self._step(static, t)

        return self.graph(step), static

    def release_gradients(self) -> None:
        """Before an eager step: the parameters' gradients are the graph's buffers, which backward would add to."""
        self.trainer.optimizer.zero_grad(set_to_none=True)


class CudaGraph:
    """``step`` captured once as a CUDA graph; ``replay()`` runs it again, ``output`` is its (static) result."""

    def __init__(self, step: Callable[[], torch.Tensor]):
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = step()

    def replay(self) -> None:
        self.graph.replay()


class EagerGraph:
    """The same interface run eagerly, step by step: what :class:`GraphedStep` does without the graph (the CPU
    tests compare it with plain eager training)."""

    def __init__(self, step: Callable[[], torch.Tensor]):
        self.step = step
        self.output = None

    def replay(self) -> None:
        out = self.step()
        if self.output is None:
            self.output = torch.zeros_like(out)
        self.output.copy_(out)


class _side_stream:
    def __enter__(self):
        self.stream = torch.cuda.Stream()
        self.stream.wait_stream(torch.cuda.current_stream())
        self.context = torch.cuda.stream(self.stream)
        self.context.__enter__()

    def __exit__(self, *exc):
        self.context.__exit__(*exc)
        torch.cuda.current_stream().wait_stream(self.stream)


__all__ = ["GRAPH_CHOICES", "CaptureProblem", "capture_problems", "why_not_graphed", "GraphedStep", "CudaGraph",
           "EagerGraph"]
