"""Encryption at rest of biometric bytes."""

from __future__ import annotations

import pytest

from node.records.vault import Vault
from protocol.errors import DecryptionError
from protocol.keys import DataKey


def test_seal_open_and_binding() -> None:
    vault = Vault(DataKey(b"\x05" * 32))
    sealed = vault.seal(b"face-bytes", binding="ent-1/1")
    assert b"face-bytes" not in sealed
    assert vault.open(sealed, binding="ent-1/1") == b"face-bytes"
    with pytest.raises(DecryptionError, match="another row"):
        vault.open(sealed, binding="ent-2/1")
    with pytest.raises(DecryptionError):
        Vault(DataKey(b"\x06" * 32)).open(sealed, binding="ent-1/1")
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(DecryptionError):
        vault.open(bytes(tampered), binding="ent-1/1")
