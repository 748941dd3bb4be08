"""A reserve of real disk blocks in the node directory, given up when the disk fills.

Deletions and expiries are legal duties (APPI Art. 22, 35): they must be written even when
something else (logs, a runaway backup, another program) has filled the node's disk. At start
the node holds ``disk-reserve`` in its directory, ``[storage] reserve_mb`` of data written out
(one random MiB repeated: real blocks, not a sparse file, and nothing a compressing filesystem
could squeeze). When a deletion or an expiry cannot be written because the disk is full, the
node deletes the file once, logs it at ERROR, and writes the deletion into the space it gave
back; ``watchnet node release-reserve`` does the same by hand. The reserve is taken again when
there is room for it and the ``[health] disk_free_min_mb`` margin: at start, by the node's
retry duty while it runs, or with ``watchnet node restore-reserve``.

The reserve is on the node directory's disk: it makes room for SQLite (the database is there)
and for a PostgreSQL only if its data directory shares that disk. On copy-on-write filesystems
with snapshots (ZFS, btrfs) deleting a file may free nothing; give the node a dataset of its own.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.files import PRIVATE_FILE
from protocol.errors import PolicyError

__all__ = ["RESERVE_FILE", "DiskReserve", "NoRoomForReserve", "ReserveState", "is_disk_full"]

LOG = logging.getLogger("watchnet.storage.reserve")

RESERVE_FILE = "disk-reserve"
CHUNK = 1 << 20
SQLITE_FULL = 13
POSTGRESQL_DISK_FULL = "53100"
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class NoRoomForReserve(PolicyError):
    """The disk has not the room for the reserve and the free-space margin besides."""

    code = "disk_full"


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it, or the driver error SQLAlchemy wraps) says the disk
    is full: ``ENOSPC``/``EDQUOT``, SQLite's ``SQLITE_FULL``, PostgreSQL's ``disk_full`` (53100)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _DISK_FULL_ERRNOS:
            return True
        if isinstance(e, sqlite3.OperationalError) and (
            getattr(e, "sqlite_errorcode", None) == SQLITE_FULL or "database or disk is full" in str(e)
        ):
            return True
        if getattr(e, "sqlstate", None) == POSTGRESQL_DISK_FULL:
            return True
        orig = getattr(e, "orig", None)
        todo.extend([e.__cause__, e.__context__, orig if isinstance(orig, BaseException) else None])
    return False


@dataclass(frozen=True)
class ReserveState:
    """What readiness and the CLI show of the reserve."""

    state: str
    """``held``, ``released`` (not there: given up, or not yet taken) or ``off`` (``reserve_mb = 0``)."""
    size_mb: int
    free_mb: int | None
    released_by_node: bool
    """This process gave it up (a write failed for a full disk) and has not taken it back yet."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "size_mb": self.size_mb,
            "free_mb": self.free_mb,
            "released_by_node": self.released_by_node,
        }


class DiskReserve:
    """The reserve file of one node directory (thread-safe: requests, the duty and the CLI use it)."""

    def __init__(self, directory: Path, size_mb: int, min_free_mb: int) -> None:
        self.directory = Path(directory)
        self.path = self.directory / RESERVE_FILE
        self.size = size_mb << 20
        self.min_free = min_free_mb << 20
        self.released_by_node = False
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.size > 0

    @property
    def held(self) -> bool:
        """The file is there at its full size."""
        try:
            return self.path.stat().st_size >= self.size
        except FileNotFoundError:
            return False

    def free(self) -> int | None:
        """Free bytes on the node directory's disk (``None`` when it cannot be read)."""
        try:
            return shutil.disk_usage(self.directory).free
        except OSError:
            return None

    def room(self) -> bool:
        """Whether the reserve fits with the free-space margin still left over."""
        free = self.free()
        return free is not None and free >= self.size + self.min_free

    def state(self) -> ReserveState:
        free = self.free()
        name = "off" if not self.enabled else "held" if self.held else "released"
        return ReserveState(
            name, self.size >> 20, None if free is None else free >> 20, self.released_by_node
        )

    def restore(self) -> bool:
        """Take the reserve (write the file out in full); True when it was written now, False when
        it was held already or is off. Raises ``NoRoomForReserve`` when the disk lacks the room."""
        if not self.enabled:
            return False
        with self._lock:
            if self.held:
                return False
            if not self.room():
                free = self.free()
                raise NoRoomForReserve(
                    f"{'?' if free is None else free >> 20} MiB free under {self.directory}: the "
                    f"{self.size >> 20} MiB reserve needs that and the {self.min_free >> 20} MiB "
                    "[health] disk_free_min_mb margin; free space first"
                )
            # one partial file per process: a node's workers share the directory, and two taking
            # the reserve at once must not write, rename or delete each other's file
            partial = self.path.with_name(f"{RESERVE_FILE}.{os.getpid()}.partial")
            chunk = os.urandom(CHUNK)
            try:
                fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
                try:
                    written = 0
                    while written < self.size:
                        written += os.write(fd, chunk[: min(CHUNK, self.size - written)])
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(partial, self.path)
            except OSError as e:
                with contextlib.suppress(OSError):
                    partial.unlink()
                if e.errno in _DISK_FULL_ERRNOS:
                    raise NoRoomForReserve(
                        f"the disk under {self.directory} filled while the reserve was written; free space first"
                    ) from e
                raise
            _sync_directory(self.directory)
            self.released_by_node = False
        LOG.info("disk reserve of %d MiB held at %s", self.size >> 20, self.path)
        return True

    def restore_if_room(self) -> bool:
        """``restore`` when there is room for it, quietly nothing otherwise (start, the duty)."""
        if not self.enabled or self.held or not self.room():
            return False
        try:
            return self.restore()
        except NoRoomForReserve:
            return False

    def release(self, why: str) -> int:
        """Give the reserve up: delete the file; returns the bytes freed (0 when none was held)."""
        with self._lock:
            try:
                size = self.path.stat().st_size
                self.path.unlink()
            except FileNotFoundError:
                return 0
            _sync_directory(self.directory)
            self.released_by_node = True
        LOG.error(
            "DISK FULL: released the %d MiB disk reserve %s (%s); free space on that disk, the "
            "node takes the reserve back once there is room for it and [health] disk_free_min_mb",
            size >> 20,
            self.path,
            why,
        )
        return size

    def make_room(self) -> bool:
        """For a write that failed for a full disk: release the reserve if it is held; True when
        that freed space (so the write is worth retrying at once)."""
        return self.release("a deletion or an expiry could not be written") > 0


def _sync_directory(directory: Path) -> None:
    """Make the file's creation or removal durable (its directory entry), where the OS allows."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
