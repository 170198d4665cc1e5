"""Class-conditional data augmentation: labelled samples from a model that generates a given class."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from ..inference.checkpoint import atomic_write_bytes
from ..inference.program import require, require_class
from ..registry import int_option
from ..traces import seeded_eval


@torch.no_grad()
def synthesize(model, per_class: int, *, seed: int = 0, chunk: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y): ``per_class`` samples E[x | z, y], z ~ p(z | y), of every class y of a conditional model (CVAE,
    M2), in class order; deterministic for a seed, and the global random state is left as it was."""
    per_class = int_option(per_class, 1, "--per-class")
    require_class(model, 0, "augmentation")
    generate = require(model, "generate", "augmentation")
    device = next(model.parameters()).device
    xs, ys = [], []
    with seeded_eval(seed, device, model):
        for c in range(model.num_classes):
            for start in range(0, per_class, chunk):
                k = min(chunk, per_class - start)
                xs.append(generate(k, c).cpu())
                ys.append(torch.full((k,), c, dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)


def write_npz(path: str | Path, x: torch.Tensor, y: torch.Tensor) -> Path:
    """Write ``x`` (float32) and ``y`` (int64) as an .npz that the ``file`` dataset reads back (keys x and y);
    written to a temporary name and renamed, so a crash never leaves half a file."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"--out must name an .npz file (the 'file' dataset reads its arrays x and y), got "
                         f"{str(path)!r}")
    buffer = io.BytesIO()
    np.savez(buffer, x=x.numpy().astype(np.float32), y=y.numpy().astype(np.int64))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path
