"""SQLite stays single-process: one ``watchnet serve`` per node directory.

SQLite's locking keeps one file consistent between processes, but a node is more than its file:
its in-memory log head, match index and caches would go stale in a second process, and its
background duties would race (``node.app.leader`` elects one worker only on PostgreSQL). So
``watchnet serve`` on an SQLite node takes an exclusive ``flock`` on ``serve.lock`` in the node
directory (0600, holding the pid) and keeps it until the process ends; the kernel releases it
however the process ends, even by SIGKILL, so a stale file never blocks a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from node.files import PRIVATE_FILE

__all__ = ["LOCK_FILE", "AlreadyServing", "ServeLock", "hold_serve_lock"]

LOCK_FILE = "serve.lock"


class AlreadyServing(Exception):
    """Another process serves this node."""

    def __init__(self, pid: int | None, database: str) -> None:
        self.pid = pid
        self.database = database
        who = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(
            f"another watchnet serve ({who}) is using {database}; "
            "for several workers use PostgreSQL: see docs/operations.md"
        )


@dataclass
class ServeLock:
    """The held lock; it lasts while this object (its open file) lives, or until ``release``."""

    path: Path
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the file drops the flock
            self.fd = -1


def hold_serve_lock(directory: Path, database: str) -> ServeLock:
    """Take ``directory/serve.lock`` for this process; raise ``AlreadyServing`` if another holds it."""
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
        raise AlreadyServing(int(text) if text.isdigit() else None, database) from None
    except BaseException:
        os.close(fd)
        raise
    with contextlib.suppress(OSError):
        os.fchmod(fd, PRIVATE_FILE)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    os.fsync(fd)
    return ServeLock(path, fd)
