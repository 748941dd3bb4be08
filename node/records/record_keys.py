"""One data key per personal record, each in its own file outside the database (crypto-shredding).

An entry's embedding, salt, face crop and event payloads, and a data-subject request's photo
and embedding, are sealed under that record's own key (docs/adr/0003-per-entry-keys.md). Closing
the record destroys its key file, so every copy of its ciphertext the node cannot reach (a
PostgreSQL dead row, a WAL segment, a replica, a database backup) can no longer be opened.

Each key file holds the record's key sealed under the node's data key (the key-encryption key)
and bound to the record id, so a file copied over another record's name does not open. A file
per key makes destruction an overwrite and an ``unlink`` with no page of a shared file left
holding old key bytes. Keys are read from disk at every use, not cached: the node's workers share
the directory, and a key one worker destroyed must stop opening in all of them at once.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import nacl.exceptions
import nacl.secret
import nacl.utils

from node.files import PRIVATE_DIR, PRIVATE_FILE
from protocol.errors import DecryptionError, MalformedError
from protocol.keys import DataKey

__all__ = ["RecordKeyDestroyed", "RecordKeys"]

_RECORD_ID = re.compile(r"[a-z]{2,8}-[0-9a-f]{8,40}")
_CONTEXT = b"watchnet-record-key\x00"
_SUFFIX = ".key"


class RecordKeyDestroyed(DecryptionError):
    """The record's key is gone: it was closed (deleted, expired, rejected) and its data shredded."""


class RecordKeys:
    """The key store: ``directory/<record id>.key``, 0600, in a 0700 directory."""

    def __init__(self, directory: Path, wrapping: DataKey) -> None:
        self.directory = Path(directory)
        self._box = nacl.secret.SecretBox(wrapping.secret)

    def _path(self, record_id: str) -> Path:
        if not _RECORD_ID.fullmatch(record_id):
            raise MalformedError(f"record id {record_id!r} is not a watchnet record id (e.g. ent-<hex>)")
        return self.directory / f"{record_id}{_SUFFIX}"

    def _bound(self, record_id: str) -> bytes:
        return _CONTEXT + record_id.encode("ascii") + b"\x00"

    def create(self, record_id: str) -> bytes:
        """Make the record's key and write it durably (file and directory fsynced) before use.

        The file appears whole or not at all, and only once: a second caller (another worker)
        gets the key the first one wrote, never a key of its own over it.
        """
        path = self._path(record_id)
        if path.exists():
            return self.get(record_id)
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, PRIVATE_DIR)
        key = nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{record_id}.")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(self._box.encrypt(self._bound(record_id) + key))
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, PRIVATE_FILE)
            os.link(tmp, path)
        except FileExistsError:
            return self.get(record_id)
        finally:
            os.unlink(tmp)
        self._sync_directory()
        return key

    def get(self, record_id: str) -> bytes:
        """The record's key; ``RecordKeyDestroyed`` when it was destroyed (or never made)."""
        path = self._path(record_id)
        try:
            sealed = path.read_bytes()
        except FileNotFoundError as e:
            raise RecordKeyDestroyed(f"the key of {record_id} is destroyed; its data cannot be opened") from e
        try:
            plain = self._box.decrypt(sealed)
        except nacl.exceptions.CryptoError as e:
            raise DecryptionError(
                f"{path} does not open with this node's data key; restore the key store that belongs "
                "to this data key"
            ) from e
        bound = self._bound(record_id)
        if not plain.startswith(bound) or len(plain) != len(bound) + nacl.secret.SecretBox.KEY_SIZE:
            raise DecryptionError(f"{path} holds the key of another record")
        return plain[len(bound) :]

    def exists(self, record_id: str) -> bool:
        return self._path(record_id).exists()

    def created_at(self, record_id: str) -> float:
        """When the key was written (its file's mtime, seconds since the epoch)."""
        return self._path(record_id).stat().st_mtime

    def destroy(self, record_id: str) -> bool:
        """Overwrite and remove the record's key, then fsync the directory; False when already gone.

        An ``OSError`` (a disk error) propagates: the caller holds the closure and retries it.
        """
        path = self._path(record_id)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return False
        with open(path, "r+b") as f:
            f.write(b"\x00" * size)
            f.flush()
            os.fsync(f.fileno())
        path.unlink()
        self._sync_directory()
        return True

    def record_ids(self) -> list[str]:
        """Every record whose key is held, for the backup and the self-check."""
        if not self.directory.is_dir():
            return []
        return sorted(
            p.name[: -len(_SUFFIX)]
            for p in self.directory.iterdir()
            if p.name.endswith(_SUFFIX) and _RECORD_ID.fullmatch(p.name[: -len(_SUFFIX)])
        )

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
