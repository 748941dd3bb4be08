"""Biometric data at rest: embeddings and face crops sealed with the node's data key.

The data key lives in a key file or the environment, never in the database, so a copied
database file reveals no embedding. Each record is bound to its row (entry id and version) as
part of the sealed plaintext, so a ciphertext moved to another row fails to open.
"""

from __future__ import annotations

import nacl.exceptions
import nacl.secret

from protocol.errors import DecryptionError
from protocol.keys import DataKey

__all__ = ["Vault"]

_SEPARATOR = b"\x00"


class Vault:
    """Seal and open biometric bytes under one data key."""

    def __init__(self, key: DataKey) -> None:
        self._box = nacl.secret.SecretBox(key.secret)

    def seal(self, data: bytes, *, binding: str) -> bytes:
        return bytes(self._box.encrypt(binding.encode("utf-8") + _SEPARATOR + data))

    def open(self, ciphertext: bytes, *, binding: str) -> bytes:
        try:
            plaintext = self._box.decrypt(ciphertext)
        except nacl.exceptions.CryptoError as e:
            raise DecryptionError("sealed record does not open with this node's data key") from e
        prefix = binding.encode("utf-8") + _SEPARATOR
        if not plaintext.startswith(prefix):
            raise DecryptionError("sealed record belongs to another row")
        return plaintext[len(prefix) :]
