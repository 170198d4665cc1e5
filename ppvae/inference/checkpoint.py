"""Checkpoints that are never half-written.

Every file is written to a temporary name in the same directory, flushed to disk, then renamed over the
target with ``os.replace``, which is atomic on POSIX and Windows: a crash leaves either the old file or the
new one, never a torn mix.
"""

from __future__ import annotations

import io
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT = "checkpoint.pt"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private (0600); give it the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}; is this a run directory written by `ppvae train`?")
    # weights_only=False: the checkpoint holds RNG states (numpy arrays, tuples) besides tensors; it is our own file.
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # truncated, empty or foreign file: torch raises EOFError, UnpicklingError, ...
        raise ValueError(f"checkpoint {str(path)!r} is unreadable or corrupt ({type(e).__name__}: {e}); "
                         f"ppvae writes checkpoints atomically, so this file was not written by ppvae train "
                         f"or was damaged afterwards") from None


def rng_state() -> dict[str, Any]:
    """Every random stream a training step can draw from (Pyro draws from torch's)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
