"""C2SP signed notes (c2sp.org/signed-note) with Ed25519 signatures and Ed25519 cosignatures.

Tree heads are also published as C2SP checkpoints so that witnesses and auditors who already
speak that ecosystem's format (Go's sumdb, Sigstore, the transparency-dev witnesses) can cosign
and check a node's log without learning watchnet's JSON envelope. This module is the note
layer, exactly as the spec fixes it: text ending in a newline, a blank line, then lines
``— <name> base64(key id || signature)``; key ids are ``SHA-256(name || 0x0A || type ||
public key)[:4]``; verifier keys are ``<name>+<hex key id>+base64(type || public key)``.

Two signature types: ``0x01``, Ed25519 over the note text (the log's own signature), and
``0x04``, the timestamped Ed25519 cosignature of c2sp.org/tlog-cosignature, over
``cosignature/v1\\ntime <t>\\n`` followed by the note text (a witness's statement that this is
the largest consistent head it has seen at time ``t``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass
from typing import Final

import nacl.exceptions
import nacl.signing

from protocol.errors import MalformedError, OversizedError, SignatureError
from protocol.keys import PublicSigningKey, SigningKey

__all__ = [
    "COSIGNATURE",
    "ED25519",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "SignedNote",
    "cosignature_time",
    "decode_base64",
    "key_id",
]

ED25519: Final = 0x01
COSIGNATURE: Final = 0x04
MAX_NOTE_BYTES: Final = 64 * 1024
MAX_SIGNATURES: Final = 64
"""The spec asks verifiers to accept at least 16 signatures and to bound them."""
_DASH: Final = "\u2014 "
_NAME = re.compile(r"[^\s+]+")


def decode_base64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise MalformedError(f"{what}: not standard base64") from e


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise MalformedError(f"note key name {name[:64]!r}: must be non-empty, without spaces or '+'")
    return name


def key_id(name: str, kind: int, public: bytes) -> int:
    """The spec's key id: the first four bytes of SHA-256(name || 0x0A || type || public key)."""
    return int.from_bytes(hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + public).digest()[:4], "big")


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: a key name, a key id and the signature bytes that follow the id."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        blob = struct.pack(">I", self.key_id) + self.signature
        return f"{_DASH}{self.name} {base64.b64encode(blob).decode('ascii')}\n"


@dataclass(frozen=True)
class NoteVerifier:
    """A key a verifier trusts: name, signature type and Ed25519 public key (its vkey)."""

    name: str
    kind: int
    public: PublicSigningKey

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.kind not in (ED25519, COSIGNATURE):
            raise MalformedError(f"note key type 0x{self.kind:02x}: only 0x01 and 0x04 are supported")

    @property
    def key_id(self) -> int:
        return key_id(self.name, self.kind, self.public.raw)

    def vkey(self) -> str:
        material = base64.b64encode(bytes([self.kind]) + self.public.raw).decode("ascii")
        return f"{self.name}+{self.key_id:08x}+{material}"

    @classmethod
    def from_vkey(cls, text: str) -> NoteVerifier:
        parts = text.split("+")
        if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
            raise MalformedError("a vkey is <name>+<8 lowercase hex digits>+<base64>")
        material = decode_base64(parts[2], "vkey key material")
        if len(material) != 33:
            raise MalformedError(f"vkey key material: expected 33 bytes, got {len(material)}")
        verifier = cls(parts[0], material[0], PublicSigningKey(material[1:]))
        if verifier.key_id != int(parts[1], 16):
            raise MalformedError(
                f"vkey {parts[0]}: key id {parts[1]} is not the key's ({verifier.key_id:08x})"
            )
        return verifier

    def signed_message(self, text: str, signature: bytes) -> tuple[bytes, bytes]:
        """The bytes this key signed for ``text`` and the bare Ed25519 signature."""
        if self.kind == ED25519:
            if len(signature) != 64:
                raise SignatureError(
                    f"{self.name}: an Ed25519 note signature is 64 bytes, not {len(signature)}"
                )
            return text.encode("utf-8"), signature
        if len(signature) != 72:
            raise SignatureError(f"{self.name}: a cosignature is 72 bytes, not {len(signature)}")
        (timestamp,) = struct.unpack(">Q", signature[:8])
        if timestamp >= 1 << 63:
            raise SignatureError(f"{self.name}: cosignature timestamp {timestamp} exceeds 2^63 - 1")
        return cosigned_message(text, timestamp), signature[8:]

    def check(self, text: str, line: NoteSignature) -> None:
        message, signature = self.signed_message(text, line.signature)
        try:
            nacl.signing.VerifyKey(self.public.raw).verify(message, signature)
        except nacl.exceptions.BadSignatureError as e:
            raise SignatureError(f"the note's signature by {self.name} does not verify") from e


def cosigned_message(text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode()


def cosignature_time(line: NoteSignature) -> int:
    """The POSIX time a cosignature line carries."""
    if len(line.signature) != 72:
        raise MalformedError(f"{line.name}: a cosignature is 72 bytes, not {len(line.signature)}")
    return int(struct.unpack(">Q", line.signature[:8])[0])


@dataclass(frozen=True)
class NoteSigner:
    """Signs note texts as ``name``: the log's own signature (0x01) or a witness's cosignature (0x04)."""

    name: str
    key: SigningKey
    kind: int = ED25519

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self.kind, self.key.public)

    def sign(self, text: str, *, timestamp: int | None = None) -> NoteSignature:
        verifier = self.verifier
        if self.kind == ED25519:
            return NoteSignature(self.name, verifier.key_id, self.key.sign(text.encode("utf-8")))
        if timestamp is None or not (0 <= timestamp < 1 << 63):
            raise MalformedError("a cosignature needs a POSIX timestamp below 2^63")
        signature = self.key.sign(cosigned_message(text, timestamp))
        return NoteSignature(self.name, verifier.key_id, struct.pack(">Q", timestamp) + signature)


@dataclass(frozen=True)
class SignedNote:
    """A note text and its signature lines, parsed strictly and written back byte for byte."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def __post_init__(self) -> None:
        _check_text(self.text)

    def to_text(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)

    def with_signature(self, signature: NoteSignature) -> SignedNote:
        """This note with one more line, replacing an earlier line from the same key."""
        kept = tuple(s for s in self.signatures if (s.name, s.key_id) != (signature.name, signature.key_id))
        return SignedNote(self.text, (*kept, signature))

    @classmethod
    def from_text(cls, data: str | bytes) -> SignedNote:
        if isinstance(data, bytes):
            if len(data) > MAX_NOTE_BYTES:
                raise OversizedError(f"a signed note of {len(data)} bytes, more than {MAX_NOTE_BYTES}")
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise MalformedError("a signed note must be UTF-8") from e
        if len(data.encode("utf-8")) > MAX_NOTE_BYTES:
            raise OversizedError(f"a signed note of more than {MAX_NOTE_BYTES} bytes")
        if any(c < " " and c != "\n" for c in data):
            raise MalformedError("a signed note holds a control character other than newline")
        split = data.rfind("\n\n")
        if split < 0 or not data.endswith("\n"):
            raise MalformedError(
                "a signed note is text, a blank line, then signature lines, each ending in newline"
            )
        text, block = data[: split + 1], data[split + 2 :]
        lines = block[:-1].split("\n") if block else []
        if not lines:
            raise MalformedError("a signed note has no signature line")
        if len(lines) > MAX_SIGNATURES:
            raise OversizedError(f"a signed note with {len(lines)} signatures, more than {MAX_SIGNATURES}")
        signatures = []
        for line in lines:
            if not line.startswith(_DASH) or line.count(" ") != 2:
                raise MalformedError(f"signature line {line[:80]!r}: expected '— <name> <base64>'")
            name, encoded = line[len(_DASH) :].split(" ")
            blob = decode_base64(encoded, f"signature of {name[:64]}")
            if len(blob) < 5:
                raise MalformedError(
                    f"signature of {name[:64]}: {len(blob)} bytes, fewer than a key id and a signature"
                )
            signatures.append(NoteSignature(_check_name(name), int.from_bytes(blob[:4], "big"), blob[4:]))
        return cls(text, tuple(signatures))

    def verify(self, verifiers: list[NoteVerifier]) -> list[NoteVerifier]:
        """The known keys whose signatures verify. Lines from unknown keys are ignored, as the spec
        requires; a known key's line that fails rejects the whole note, and so does a note that
        no known key signed."""
        known = {(v.name, v.key_id): v for v in verifiers}
        verified: list[NoteVerifier] = []
        for line in self.signatures:
            verifier = known.get((line.name, line.key_id))
            if verifier is not None:
                verifier.check(self.text, line)
                if verifier not in verified:
                    verified.append(verifier)
        if not verified:
            raise SignatureError("no signature on the note is from a key this verifier trusts")
        return verified


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise MalformedError("a note text ends with a newline")
    if any(c < " " and c != "\n" for c in text):
        raise MalformedError("a note text holds a control character other than newline")
