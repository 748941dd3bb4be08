"""Writing files that other processes read while we write them (manifests, configs, signs), and
keeping the node directory private: it holds password hashes, complaint text and the audit log,
so it is 0700 and its files 0600, and ``loose_modes`` finds what group or others could read."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

__all__ = [
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "PRIVATE_UMASK",
    "loose_mode_warning",
    "loose_modes",
    "write_atomic",
]

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
PRIVATE_UMASK = 0o077
"""``watchnet serve`` runs under it, so whatever the node creates while serving is the owner's alone."""
_LOOSE = stat.S_IRGRP | stat.S_IWGRP | stat.S_IROTH | stat.S_IWOTH


def _umask() -> int:
    """The process's umask, read from ``/proc`` where it can be (``os.umask`` must set it to read it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(PRIVATE_UMASK)  # briefly stricter, never looser, for any thread creating a file meanwhile
    os.umask(old)
    return old


def loose_modes(directory: Path) -> list[Path]:
    """``directory`` and everything under it that group or others may read or write.

    Symbolic links under it are neither followed nor reported (their own mode means nothing).
    """
    directory = Path(directory)
    found = [directory] if stat.S_IMODE(directory.stat().st_mode) & _LOOSE else []
    for root, dirs, files in os.walk(directory):
        for name in [*dirs, *files]:
            path = Path(root) / name
            try:
                st = path.lstat()
            except FileNotFoundError:  # removed while we looked (a SQLite -shm, a temporary file)
                continue
            if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) & _LOOSE:
                found.append(path)
    return sorted(found)


def loose_mode_warning(path: Path) -> str:
    """One line naming ``path``, its mode and the ``chmod`` that makes it the owner's alone."""
    st = path.stat()
    wanted = PRIVATE_DIR if stat.S_ISDIR(st.st_mode) else PRIVATE_FILE
    return (
        f"{path} has mode {stat.S_IMODE(st.st_mode):04o}, readable or writable by group or others; "
        f"fix with: chmod {wanted:o} {path}"
    )


def write_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write to a temporary file beside ``path``, flush it to disk and rename it over ``path``.

    Readers see the old file or the new one, never half of either, and a crash right after the
    call leaves the new file in place. ``mode`` defaults to what a new file gets under the
    process umask: 0644 under the usual 022, 0600 under ``PRIVATE_UMASK``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, (0o666 & ~_umask()) if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
