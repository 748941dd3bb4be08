"""The signed-object envelope ``{"signed": {...}, "signatures": [{"keyid", "sig"}]}`` (TUF style).

Every watchnet object that crosses a trust boundary is a ``Payload`` inside a ``SignedDocument``.
The signature covers the RFC 8785 bytes of ``payload.to_dict()``: the bytes we verify are the
bytes of the object we then use, and a lossy round trip fails closed. Unknown payload and
envelope fields are kept and re-serialised unchanged, so a newer peer's extra fields neither
break our verification nor get dropped when we forward the document.

``verify`` raises; ``verification_result`` returns the diagnostics ("signed by 1/2 keys").
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Self, TypeVar

from protocol.canonical import b64url_encode, canonical_bytes, parse_json
from protocol.errors import MalformedError, SignatureError, ThresholdError
from protocol.fields import Fields
from protocol.keys import PublicSigningKey, SigningKey

__all__ = [
    "SPEC_VERSION",
    "Payload",
    "Signature",
    "SignedDocument",
    "VerificationResult",
]

SPEC_VERSION = "1.0"
"""Wire format version; a document with another major version is refused."""

MAX_SIGNATURES = 16


class Payload(abc.ABC):
    """Base of every signed payload: a ``type`` tag, ``spec_version`` and unknown fields."""

    TYPE: ClassVar[str]
    spec_version: str
    unrecognized_fields: dict[str, Any]

    @classmethod
    def _read_header(cls, data: Any) -> tuple[Fields, str]:
        """Start parsing: check ``type`` and the major ``spec_version``."""
        f = Fields(data, cls.TYPE)
        f.const("type", cls.TYPE)
        spec_version = f.text("spec_version", max_len=16)
        major = spec_version.split(".", 1)[0]
        if major != SPEC_VERSION.split(".", 1)[0]:
            raise MalformedError(
                f"{cls.TYPE}.spec_version: got {spec_version!r}, this node speaks {SPEC_VERSION}"
            )
        return f, spec_version

    def _header(self) -> dict[str, Any]:
        return {"type": self.TYPE, "spec_version": self.spec_version}

    def _with_unrecognized(self, d: dict[str, Any]) -> dict[str, Any]:
        return {**self.unrecognized_fields, **d}

    @classmethod
    @abc.abstractmethod
    def from_dict(cls, data: Any) -> Self:
        """Parse and validate; raise ``MalformedError`` on anything unexpected."""

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The JSON form, unknown fields included."""

    def canonical(self) -> bytes:
        """The bytes that get signed and hashed."""
        return canonical_bytes(self.to_dict())


P = TypeVar("P", bound=Payload)


@dataclass(frozen=True)
class Signature:
    """One Ed25519 signature over the canonical payload, named by key id."""

    keyid: str
    sig: bytes

    def to_dict(self) -> dict[str, Any]:
        return {"keyid": self.keyid, "sig": b64url_encode(self.sig)}

    @classmethod
    def from_dict(cls, data: Any) -> Signature:
        f = Fields(data, "signature")
        keyid = f.text("keyid", max_len=64)
        if len(keyid) != 64 or any(c not in "0123456789abcdef" for c in keyid):
            raise MalformedError(f"signature.keyid: expected 64 lower-case hex digits, got {keyid!r}")
        sig = f.binary("sig", length=64)
        if f.rest():
            raise MalformedError(f"signature: unexpected fields {sorted(f.rest())}")
        return cls(keyid, sig)


@dataclass(frozen=True)
class VerificationResult:
    """Who signed, who did not, and whether the threshold is met."""

    threshold: int
    signed: frozenset[str]
    unsigned: frozenset[str]
    invalid: frozenset[str]
    unknown: frozenset[str]

    @property
    def verified(self) -> bool:
        return len(self.signed) >= self.threshold

    def __str__(self) -> str:
        total = len(self.signed) + len(self.unsigned) + len(self.invalid)
        text = f"signed by {len(self.signed)}/{total} keys, threshold {self.threshold}"
        if self.invalid:
            text += f"; {len(self.invalid)} invalid signature(s)"
        if self.unknown:
            text += f"; {len(self.unknown)} signature(s) by unknown keys"
        return text


@dataclass
class SignedDocument(Generic[P]):
    """A payload with its signatures, in TUF's envelope layout."""

    payload: P
    signatures: dict[str, Signature] = field(default_factory=dict)
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def signed_bytes(self) -> bytes:
        return self.payload.canonical()

    def sign(self, key: SigningKey) -> Signature:
        """Add (or replace) this key's signature."""
        signature = Signature(key.keyid, key.sign(self.signed_bytes()))
        self.signatures[signature.keyid] = signature
        return signature

    def verification_result(
        self, keys: Mapping[str, PublicSigningKey] | Iterable[PublicSigningKey], threshold: int
    ) -> VerificationResult:
        """Check every signature against ``keys`` without raising."""
        key_map = _key_map(keys)
        message = self.signed_bytes()
        signed: set[str] = set()
        invalid: set[str] = set()
        unknown: set[str] = set()
        for keyid, signature in self.signatures.items():
            key = key_map.get(keyid)
            if key is None:
                unknown.add(keyid)
                continue
            try:
                key.verify(message, signature.sig)
            except SignatureError:
                invalid.add(keyid)
            else:
                signed.add(keyid)
        unsigned = set(key_map) - signed - invalid
        return VerificationResult(
            threshold, frozenset(signed), frozenset(unsigned), frozenset(invalid), frozenset(unknown)
        )

    def verify(
        self, keys: Mapping[str, PublicSigningKey] | Iterable[PublicSigningKey], threshold: int = 1
    ) -> VerificationResult:
        """Raise ``ThresholdError`` unless at least ``threshold`` of ``keys`` signed."""
        if threshold < 1:
            raise ThresholdError(f"threshold must be at least 1, got {threshold}")
        result = self.verification_result(keys, threshold)
        if not result.verified:
            raise ThresholdError(f"{self.payload.TYPE}: {result}")
        return result

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.unrecognized_fields,
            "signed": self.payload.to_dict(),
            "signatures": [s.to_dict() for s in self.signatures.values()],
        }

    def to_bytes(self) -> bytes:
        return canonical_bytes(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, payload_type: type[P]) -> SignedDocument[P]:
        f = Fields(data, f"signed {payload_type.TYPE}")
        payload = payload_type.from_dict(f.obj("signed"))
        signatures: dict[str, Signature] = {}
        for item in f.array("signatures", max_items=MAX_SIGNATURES):
            signature = Signature.from_dict(item)
            if signature.keyid in signatures:
                raise MalformedError(
                    f"signed {payload_type.TYPE}: two signatures by key {signature.keyid[:16]}"
                )
            signatures[signature.keyid] = signature
        return SignedDocument(payload, signatures, f.rest())

    @classmethod
    def from_bytes(cls, data: bytes, payload_type: type[P]) -> SignedDocument[P]:
        return cls.from_dict(parse_json(data), payload_type)


def _key_map(
    keys: Mapping[str, PublicSigningKey] | Iterable[PublicSigningKey],
) -> dict[str, PublicSigningKey]:
    if isinstance(keys, Mapping):
        for keyid, key in keys.items():
            if key.keyid != keyid:
                raise SignatureError(
                    f"key id {keyid[:16]} does not match its key (which is {key.keyid[:16]})"
                )
        return dict(keys)
    out: dict[str, PublicSigningKey] = {}
    for key in keys:
        out[key.keyid] = key
    return out
