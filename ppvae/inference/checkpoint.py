"""Checkpoints that are never half-written, and that say so when something else damaged them.

Every file is written to a temporary name in the same directory, flushed to disk, then renamed over the
target with ``os.replace``, which is atomic on POSIX and Windows: a crash leaves either the old file or the
new one, never a torn mix. A checkpoint starts with a header holding the SHA-256 of the torch payload after
it, so a file truncated or bit-flipped afterwards (a copy cut short, a bad disk) is detected on load. With
``keep = K`` the previous K - 1 checkpoints stay beside the latest as ``checkpoint.1.pt`` (the one before),
``checkpoint.2.pt``, ...: :func:`load_latest` falls back to the newest good one, and says so.

``PPVAE_FAULT_STALL_WRITE=SECONDS`` (a test hook) makes every write pause half-way through its temporary file,
so that a test can kill the writer at the worst moment.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT = "checkpoint.pt"
_MAGIC = b"PPVAE-CHECKPOINT 1 sha256="  # then 64 hex digits, a newline, and torch.save's bytes


class CorruptCheckpointError(ValueError):
    pass


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            stall = float(os.environ.get("PPVAE_FAULT_STALL_WRITE", 0) or 0)
            if stall:  # the test hook: half the file, a pause, the rest
                f.write(data[:len(data) // 2])
                f.flush()
                time.sleep(stall)
                f.write(data[len(data) // 2:])
            else:
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


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike, keep: int = 1) -> None:
    """Write ``state`` atomically to ``path`` with its checksum; with ``keep`` > 1 the file it replaces becomes
    ``<stem>.1.pt`` (and so on back to ``<stem>.<keep-1>.pt``), each step of the rotation itself atomic, so that
    ``path`` exists at every moment."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    data = _MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
    if keep > 1 and path.is_file():
        older = previous_checkpoints(path, keep)
        for src, dst in zip(reversed(older[:-1]), reversed(older[1:])):
            if src.is_file():
                os.replace(src, dst)
        link_or_copy(path, older[0])
    atomic_write_bytes(path, data)


def previous_checkpoints(path: str | os.PathLike, keep: int) -> list[Path]:
    """The names of the kept older checkpoints, newest first: checkpoint.1.pt ... checkpoint.<keep-1>.pt."""
    path = Path(path)
    return [path.with_name(f"{path.stem}.{k}{path.suffix}") for k in range(1, keep)]


def link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes a copy of ``src`` atomically (a hard link where the filesystem has them)."""
    tmp = dst.with_name(f".{dst.name}.link")
    try:
        if tmp.exists():
            tmp.unlink()
        os.link(src, tmp)
        os.replace(tmp, dst)
    except OSError:
        if tmp.exists():
            tmp.unlink()
        atomic_write_bytes(dst, src.read_bytes())


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}; is this a run directory written by `ppvae train`?")
    raw = path.read_bytes()
    if raw.startswith(_MAGIC):
        digest, payload = raw[len(_MAGIC):len(_MAGIC) + 64], raw[len(_MAGIC) + 65:]
        if hashlib.sha256(payload).hexdigest().encode() != digest:
            raise CorruptCheckpointError(
                f"checkpoint {str(path)!r} is corrupt: its contents do not match the checksum written with it "
                f"(truncated or changed after ppvae wrote it)")
    else:
        payload = raw  # written before checkpoints carried a checksum
    # weights_only=False: the checkpoint holds RNG states (numpy arrays, tuples) besides tensors; it is our own file.
    try:
        return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=False)
    except Exception as e:  # truncated, empty or foreign file: torch raises EOFError, UnpicklingError, ...
        raise CorruptCheckpointError(
            f"checkpoint {str(path)!r} is unreadable or corrupt ({type(e).__name__}: {e}); ppvae writes "
            f"checkpoints atomically, so this file was not written by ppvae train or was damaged afterwards") from None


def load_latest(run_dir: str | os.PathLike, map_location="cpu") -> dict[str, Any]:
    """The run directory's checkpoint; where it is corrupt, the newest good one kept beside it
    (``train.keep_checkpoints``), with a warning naming both. Raises if none is good."""
    path = Path(run_dir) / CHECKPOINT
    try:
        return load_checkpoint(path, map_location)
    except CorruptCheckpointError as e:
        for older in sorted(path.parent.glob(f"{path.stem}.[0-9]*{path.suffix}"),
                            key=lambda p: int(p.suffixes[-2][1:])):
            try:
                state = load_checkpoint(older, map_location)
            except CorruptCheckpointError:
                continue
            warnings.warn(f"{e}; using the previous checkpoint {older.name} (epoch {state['epoch']}) instead",
                          stacklevel=2)
            return state
        raise CorruptCheckpointError(f"{e}; no earlier good checkpoint is kept "
                                     f"(train.keep_checkpoints = 2 keeps one)") from None


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
