"""Biometric data at rest: sealed under each record's own key, or under the node's data key.

A person's record (an entry's embedding, salt, face crop and event payloads; a data-subject
request's photo and embedding) is sealed under that record's key from ``RecordKeys``, so
destroying the key shreds every copy of the ciphertext wherever it lies (docs/adr/0003). What
belongs to no one record (a console upload being checked, a private gallery's slot map) is
sealed under the node's data key. Neither key is ever in the database. Each ciphertext is bound
to its place (record and field) inside the sealed plaintext, so one moved to another row fails
to open.
"""

from __future__ import annotations

import nacl.exceptions
import nacl.secret

from node.records.record_keys import RecordKeys
from protocol.errors import DecryptionError
from protocol.keys import DataKey

__all__ = ["Vault"]

_SEPARATOR = b"\x00"


def _seal(box: nacl.secret.SecretBox, data: bytes, binding: str) -> bytes:
    return bytes(box.encrypt(binding.encode("utf-8") + _SEPARATOR + data))


def _open(box: nacl.secret.SecretBox, ciphertext: bytes, binding: str, whose: str) -> bytes:
    try:
        plaintext = box.decrypt(ciphertext)
    except nacl.exceptions.CryptoError as e:
        raise DecryptionError(f"sealed record does not open with {whose}") from e
    prefix = binding.encode("utf-8") + _SEPARATOR
    if not plaintext.startswith(prefix):
        raise DecryptionError("sealed record belongs to another row")
    return plaintext[len(prefix) :]


class Vault:
    """Seal and open biometric bytes: per record (``seal_record``) or under the node key (``seal``)."""

    def __init__(self, key: DataKey, records: RecordKeys) -> None:
        self._box = nacl.secret.SecretBox(key.secret)
        self.records = records

    def seal(self, data: bytes, *, binding: str) -> bytes:
        return _seal(self._box, data, binding)

    def open(self, ciphertext: bytes, *, binding: str) -> bytes:
        return _open(self._box, ciphertext, binding, "this node's data key")

    def new_record(self, record_id: str) -> None:
        """Make the record's key; call before its first ``seal_record``."""
        self.records.create(record_id)

    def seal_record(self, record_id: str, data: bytes, *, field: str) -> bytes:
        box = nacl.secret.SecretBox(self.records.get(record_id))
        return _seal(box, data, f"{record_id}/{field}")

    def open_record(self, record_id: str, ciphertext: bytes, *, field: str) -> bytes:
        """Open one of the record's fields; ``RecordKeyDestroyed`` once the record was shredded."""
        box = nacl.secret.SecretBox(self.records.get(record_id))
        return _open(box, ciphertext, f"{record_id}/{field}", f"the key of {record_id}")

    def shred(self, record_id: str) -> bool:
        """Destroy the record's key: every copy of its sealed data, anywhere, stops opening."""
        return self.records.destroy(record_id)
