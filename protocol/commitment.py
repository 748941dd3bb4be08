"""Salted commitments to erasable payloads.

A log leaf or a signed entry commits to biometric or personal data without containing it:
``SHA-256(salt || data)`` with a fresh 32-byte salt. Erasing the data *and* the salt leaves
the commitment (and every signature and Merkle proof over it) valid, while nobody can test a
guessed face or name against it. This is the redaction pattern that lets deletion be real.
"""

from __future__ import annotations

import hashlib
import hmac

import nacl.utils

from protocol.errors import CommitmentError

__all__ = ["SALT_BYTES", "commit", "new_salt", "verify_commitment"]

SALT_BYTES = 32


def new_salt() -> bytes:
    return nacl.utils.random(SALT_BYTES)


def commit(salt: bytes, data: bytes) -> bytes:
    """The 32-byte commitment ``SHA-256(salt || data)``."""
    if len(salt) != SALT_BYTES:
        raise ValueError(f"salt must be {SALT_BYTES} bytes, got {len(salt)}")
    return hashlib.sha256(salt + data).digest()


def verify_commitment(commitment: bytes, salt: bytes, data: bytes, *, what: str = "payload") -> None:
    """Raise ``CommitmentError`` unless ``data`` with ``salt`` opens ``commitment``."""
    if len(salt) != SALT_BYTES or not hmac.compare_digest(commit(salt, data), commitment):
        raise CommitmentError(f"{what} does not match its commitment")
