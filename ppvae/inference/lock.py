"""One writer per run directory.

A training process holds ``RUN/.lock`` (its pid and host, created with ``O_EXCL``, so only one process can
create it) from the moment it is set up until it finishes. A second process that tries to train into the same
directory is refused with the holder's pid. A lock left by a process that died (kill -9, power loss) is taken
over: its pid no longer runs on this host.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

LOCK_FILE = ".lock"


class RunLockedError(ValueError):
    pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _holder(path: Path) -> tuple[int, str] | None:
    try:
        pid, _, host = path.read_text().strip().partition(" ")
        return int(pid), host
    except (OSError, ValueError):
        return None  # half-written by a process that died mid-write, or removed meanwhile


class RunLock:
    """``RunLock(run_dir).acquire()`` ... ``release()``; re-entrant within one process."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.held = False
        self._made_dir = False

    def acquire(self) -> "RunLock":
        if self.held:
            return self
        if not self.run_dir.exists():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._made_dir = True
        me = f"{os.getpid()} {socket.gethostname()}\n"
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _holder(self.path)
                if holder is not None:
                    pid, host = holder
                    mine = pid == os.getpid() and host == socket.gethostname()
                    if not mine and (host != socket.gethostname() or _alive(pid)):
                        raise RunLockedError(
                            f"{str(self.run_dir)!r} is being written by another ppvae process (pid {pid} on {host}); "
                            f"wait for it to finish, or train into another directory (--run-dir)") from None
                try:  # stale (its process is gone), half-written, or this process's own: take it over
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me)
            self.held = True
            return self
        raise OSError(errno.EBUSY, f"could not take the lock {self.path} (another process keeps taking it)")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        holder = _holder(self.path)
        if holder is not None and holder[0] == os.getpid():
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        if self._made_dir:  # a run that wrote nothing leaves no empty directory behind
            try:
                self.run_dir.rmdir()
            except OSError:
                pass
