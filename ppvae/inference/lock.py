"""One writer per run directory.

A training process holds an exclusive ``flock`` on ``RUN/.lock`` (which also records its pid and host, for the
message) from the moment it is set up until it finishes. A second process that tries to train into the same
directory is refused with the holder's pid. The kernel drops the lock when its holder dies (kill -9, a crash,
an OOM kill), so a lock file left behind by a dead process is simply taken over; there is no pid guessing.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no locking
    fcntl = None

LOCK_FILE = ".lock"


class RunLockedError(ValueError):
    pass


class RunLock:
    """``RunLock(run_dir).acquire()`` ... ``release()``. Within one process a second ``RunLock`` on the same
    directory is refused too (each holds its own open file); ``acquire`` on a held lock is a no-op."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None
        self._made_dir = False

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        if self.held or fcntl is None:
            return self
        if not self.run_dir.exists():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._made_dir = True
        while True:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").split()
                os.close(fd)
                pid, host = (holder + ["?", "?"])[:2]
                self._forget_dir()
                raise RunLockedError(
                    f"{str(self.run_dir)!r} is being written by another ppvae process (pid {pid} on {host}); wait "
                    f"for it to finish, or train into another directory (--run-dir)") from None
            # the file may have been removed (a holder releasing) between our open and our lock: lock the one
            # that is there now
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while still holding it, so no one locks a file that is about to go
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None
        self._forget_dir()

    def __del__(self):
        try:
            self.release()
        except Exception:  # at interpreter exit os may be half torn down; the kernel drops the lock anyway
            pass

    def _forget_dir(self) -> None:
        if self._made_dir:  # a run that wrote nothing leaves no empty directory behind
            self._made_dir = False
            try:
                self.run_dir.rmdir()
            except OSError:
                pass


def writer_of(run_dir: str | os.PathLike) -> str | None:
    """Which process is training ``run_dir`` now (``"pid N on HOST"``), or None where none is: the lock is tried,
    without waiting and without taking it, so a reader (``ppvae evaluate``) can say that the checkpoint it reads
    is still moving."""
    path = Path(run_dir) / LOCK_FILE
    if fcntl is None or not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = (os.read(fd, 200).decode(errors="replace").split() + ["?", "?"])[:2]
        return f"pid {holder[0]} on {holder[1]}"
    finally:
        os.close(fd)  # closing drops a shared lock taken here
    return None
