"""Key files on disk: written 0600, refused when anyone but the owner can read them.

``protocol.keys`` defines the bytes; this module is the only place that touches the files, so
the permission rule is enforced once. Keys are never stored in the database.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from protocol.errors import ConfigurationError, MalformedError
from protocol.keys import DataKey, EncryptionKey, SigningKey, key_file_bytes, load_key_file_bytes

__all__ = ["load_data_key", "load_encryption_key", "load_key", "load_signing_key", "save_key"]


def save_key(path: Path, key: SigningKey | EncryptionKey | DataKey, *, overwrite: bool = False) -> None:
    """Write a key file readable by its owner only (0600); never overwrite by accident."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as e:
        raise ConfigurationError(f"{path} already exists; refusing to overwrite a key file") from e
    with os.fdopen(fd, "wb") as out:
        out.write(key_file_bytes(key))
    os.chmod(path, 0o600)


def load_key(path: Path) -> SigningKey | EncryptionKey | DataKey:
    """Read a key file, refusing one that group or others can read or write."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as e:
        raise ConfigurationError(
            f"key file {path} not found; create it with 'watchnet init' or 'watchnet gov keygen'"
        ) from e
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"key file {path} has mode {stat.S_IMODE(mode):o}; expected 600. Fix with: chmod 600 {path}"
        )
    try:
        return load_key_file_bytes(path.read_bytes())
    except MalformedError as e:
        raise ConfigurationError(f"key file {path} is not a watchnet key: {e}") from e


def load_signing_key(path: Path) -> SigningKey:
    key = load_key(path)
    if not isinstance(key, SigningKey):
        raise ConfigurationError(f"{path} holds a {type(key).__name__}, expected an Ed25519 signing key")
    return key


def load_encryption_key(path: Path) -> EncryptionKey:
    key = load_key(path)
    if not isinstance(key, EncryptionKey):
        raise ConfigurationError(f"{path} holds a {type(key).__name__}, expected an X25519 key")
    return key


def load_data_key(path: Path) -> DataKey:
    key = load_key(path)
    if not isinstance(key, DataKey):
        raise ConfigurationError(f"{path} holds a {type(key).__name__}, expected a secretbox data key")
    return key
