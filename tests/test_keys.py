"""Keys, key ids and key files (including the 0600 rule enforced by node.records.keystore)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from node.records.keystore import load_key, load_signing_key, save_key
from protocol.errors import ConfigurationError, MalformedError, SignatureError
from protocol.keys import (
    DataKey,
    EncryptionKey,
    PublicSigningKey,
    SigningKey,
    key_file_bytes,
    load_key_file_bytes,
)


def test_keyid_is_sha256_of_raw_public_key() -> None:
    key = SigningKey(bytes(range(32)))
    assert key.keyid == hashlib.sha256(key.public.raw).hexdigest()


def test_sign_and_verify() -> None:
    key = SigningKey.generate()
    sig = key.sign(b"message")
    key.public.verify(b"message", sig)
    with pytest.raises(SignatureError):
        key.public.verify(b"messagf", sig)
    with pytest.raises(SignatureError):
        SigningKey.generate().public.verify(b"message", sig)
    with pytest.raises(SignatureError):
        key.public.verify(b"message", sig[:63])


@pytest.mark.parametrize(
    "key", [SigningKey(b"\x01" * 32), EncryptionKey(b"\x02" * 32), DataKey(b"\x03" * 32)]
)
def test_key_file_round_trip(key: SigningKey | EncryptionKey | DataKey) -> None:
    assert load_key_file_bytes(key_file_bytes(key)) == key


def test_private_material_not_in_repr() -> None:
    key = SigningKey(b"\x07" * 32)
    assert "\\x07" not in repr(key) and "07070707" not in repr(key)


@pytest.mark.parametrize(
    "document",
    [
        b'{"type":"watchnet-key","kind":"rsa","private":"AAAA"}',
        b'{"type":"other","kind":"ed25519","private":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE"}',
        b'{"type":"watchnet-key","kind":"ed25519","private":"AQE"}',
        b"not json",
    ],
    ids=["unknown-kind", "wrong-type", "short-key", "not-json"],
)
def test_key_file_refuses(document: bytes) -> None:
    with pytest.raises(MalformedError):
        load_key_file_bytes(document)


def test_key_file_public_must_match_private() -> None:
    good = key_file_bytes(SigningKey(b"\x01" * 32))
    other_public = SigningKey(b"\x02" * 32).public.to_str()
    forged = good.replace(SigningKey(b"\x01" * 32).public.to_str().encode(), other_public.encode())
    with pytest.raises(MalformedError):
        load_key_file_bytes(forged)


def test_public_key_length_checked() -> None:
    with pytest.raises(MalformedError):
        PublicSigningKey(b"\x00" * 31)


def test_save_writes_0600_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing.key"
    key = SigningKey.generate()
    save_key(path, key)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_signing_key(path) == key
    with pytest.raises(ConfigurationError):
        save_key(path, SigningKey.generate())
    assert load_signing_key(path) == key


def test_load_refuses_group_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    save_key(path, SigningKey.generate())
    os.chmod(path, 0o640)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_key(path)


def test_load_refuses_wrong_kind_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "data.key"
    save_key(path, DataKey.generate())
    with pytest.raises(ConfigurationError, match="expected an Ed25519"):
        load_signing_key(path)
    with pytest.raises(ConfigurationError, match="not found"):
        load_key(tmp_path / "missing.key")
