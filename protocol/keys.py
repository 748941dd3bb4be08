"""Ed25519 signing keys, X25519 encryption keys, secretbox data keys, and their file format.

Key ids are the lower-case hex SHA-256 of the raw 32-byte Ed25519 public key (DESIGN.md), so
anyone holding a public key computes the same id and nobody has to trust a label. This module
turns keys into bytes and back; writing the bytes to disk with 0600 permissions is ``node/``'s
job (protocol does no I/O). Private key material never appears in ``repr``, errors or logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import nacl.exceptions
import nacl.public
import nacl.secret
import nacl.signing
import nacl.utils

from protocol.canonical import b64url_decode, b64url_encode, canonical_bytes, parse_json, sha256_hex
from protocol.errors import MalformedError, SignatureError
from protocol.fields import Fields

__all__ = [
    "KEY_FILE_TYPE",
    "DataKey",
    "EncryptionKey",
    "PublicEncryptionKey",
    "PublicSigningKey",
    "SigningKey",
    "key_file_bytes",
    "keyid_of",
    "load_key_file_bytes",
]

KEY_FILE_TYPE = "watchnet-key"


def keyid_of(raw_public_key: bytes) -> str:
    """Hex SHA-256 of the raw Ed25519 public key."""
    return sha256_hex(raw_public_key)


@dataclass(frozen=True)
class PublicSigningKey:
    """An Ed25519 verify key with its key id."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != 32:
            raise MalformedError(f"Ed25519 public key: expected 32 bytes, got {len(self.raw)}")

    @property
    def keyid(self) -> str:
        return keyid_of(self.raw)

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise ``SignatureError`` unless ``signature`` is this key's over ``message``."""
        if len(signature) != 64:
            raise SignatureError(f"key {self.keyid[:16]}: signature is {len(signature)} bytes, expected 64")
        try:
            nacl.signing.VerifyKey(self.raw).verify(message, signature)
        except nacl.exceptions.BadSignatureError as e:
            raise SignatureError(f"key {self.keyid[:16]}: signature does not verify") from e

    def to_str(self) -> str:
        return b64url_encode(self.raw)

    @classmethod
    def from_str(cls, text: Any, *, field: str = "public key") -> PublicSigningKey:
        return cls(b64url_decode(text, field=field, length=32))


@dataclass(frozen=True)
class PublicEncryptionKey:
    """An X25519 public key: peers encrypt messages to it with crypto_box."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != 32:
            raise MalformedError(f"X25519 public key: expected 32 bytes, got {len(self.raw)}")

    def to_str(self) -> str:
        return b64url_encode(self.raw)

    @classmethod
    def from_str(cls, text: Any, *, field: str = "encryption key") -> PublicEncryptionKey:
        return cls(b64url_decode(text, field=field, length=32))

    def to_nacl(self) -> nacl.public.PublicKey:
        return nacl.public.PublicKey(self.raw)


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key (32-byte seed)."""

    seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise MalformedError(f"Ed25519 seed: expected 32 bytes, got {len(self.seed)}")

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(nacl.utils.random(32))

    @property
    def public(self) -> PublicSigningKey:
        return PublicSigningKey(bytes(nacl.signing.SigningKey(self.seed).verify_key))

    @property
    def keyid(self) -> str:
        return self.public.keyid

    def sign(self, message: bytes) -> bytes:
        return nacl.signing.SigningKey(self.seed).sign(message).signature


@dataclass(frozen=True)
class EncryptionKey:
    """An X25519 private key for opening messages sealed to this node."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != 32:
            raise MalformedError(f"X25519 private key: expected 32 bytes, got {len(self.secret)}")

    @classmethod
    def generate(cls) -> EncryptionKey:
        return cls(nacl.utils.random(32))

    @property
    def public(self) -> PublicEncryptionKey:
        return PublicEncryptionKey(bytes(nacl.public.PrivateKey(self.secret).public_key))

    def to_nacl(self) -> nacl.public.PrivateKey:
        return nacl.public.PrivateKey(self.secret)


@dataclass(frozen=True)
class DataKey:
    """A secretbox (XSalsa20-Poly1305) key that encrypts biometric data at rest."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != nacl.secret.SecretBox.KEY_SIZE:
            raise MalformedError(f"data key: expected 32 bytes, got {len(self.secret)}")

    @classmethod
    def generate(cls) -> DataKey:
        return cls(nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE))


_KINDS: dict[str, type[SigningKey] | type[EncryptionKey] | type[DataKey]] = {
    "ed25519": SigningKey,
    "x25519": EncryptionKey,
    "secretbox": DataKey,
}


def key_file_bytes(key: SigningKey | EncryptionKey | DataKey) -> bytes:
    """The bytes of a key file: canonical JSON holding the kind and the private material."""
    if isinstance(key, SigningKey):
        kind, secret, public = "ed25519", key.seed, key.public.to_str()
    elif isinstance(key, EncryptionKey):
        kind, secret, public = "x25519", key.secret, key.public.to_str()
    else:
        kind, secret, public = "secretbox", key.secret, None
    doc: dict[str, Any] = {"type": KEY_FILE_TYPE, "kind": kind, "private": b64url_encode(secret)}
    if public is not None:
        doc["public"] = public
    if isinstance(key, SigningKey):
        doc["keyid"] = key.keyid
    return canonical_bytes(doc) + b"\n"


def load_key_file_bytes(data: bytes) -> SigningKey | EncryptionKey | DataKey:
    """Parse a key file; the stored public key and key id must match the private key."""
    f = Fields(parse_json(data, max_bytes=4096), "key file")
    f.const("type", KEY_FILE_TYPE)
    kind = f.text("kind")
    if kind not in _KINDS:
        raise MalformedError(f"key file.kind: {kind!r} is not one of {', '.join(_KINDS)}")
    secret = f.binary("private", length=32)
    key = _KINDS[kind](secret)
    if isinstance(key, SigningKey | EncryptionKey) and f.has("public"):
        if f.text("public") != key.public.to_str():
            raise MalformedError("key file: public key does not match the private key")
    if isinstance(key, SigningKey) and f.has("keyid"):
        if f.text("keyid", max_len=64) != key.keyid:
            raise MalformedError("key file: keyid does not match the private key")
    return key
