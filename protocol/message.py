"""The peer message envelope: signed by the sender, then sealed to the recipient.

The sender signs the canonical request (sender, recipient, manifest version, purpose, issued_at,
nonce, body) with Ed25519 and encrypts the signed document with libsodium ``crypto_box`` to the
recipient's X25519 key. Only the recipient can read it; the box proves it came from the holder
of the sender's X25519 key, and the Ed25519 signature makes it attributable to the sender's
node key for the audit log. Opening checks run in a fixed order, each with its own error, so a
refusal says exactly what was wrong and is recorded as such.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Self, TypeVar

import nacl.exceptions
import nacl.public

from protocol.canonical import b64url_encode, parse_json
from protocol.errors import (
    DecryptionError,
    MalformedError,
    MisaddressedError,
    OversizedError,
    SignatureError,
    ThresholdError,
    UnknownSenderError,
)
from protocol.fields import CODE_RE, NODE_ID_RE, check_wire_time, format_time
from protocol.keys import EncryptionKey, PublicEncryptionKey, PublicSigningKey, SigningKey
from protocol.signed import SPEC_VERSION, Payload, SignedDocument

__all__ = [
    "MAX_BULK_SEALED_BYTES",
    "MAX_SEALED_BYTES",
    "NONCE_BYTES",
    "BoxCache",
    "PeerKeys",
    "PeerMessage",
    "SealedMessage",
    "compose_sealed",
    "decode_body",
    "open_sealed",
    "seal",
]

MAX_SEALED_BYTES = 1 << 20
"""Hard limit on a sealed message, checked before anything is parsed."""

MAX_BULK_SEALED_BYTES = 8 << 20
"""The limit for the few endpoints that carry homomorphic ciphertexts and evaluation keys."""

NONCE_BYTES = 16
BOX_NONCE_BYTES = nacl.public.Box.NONCE_SIZE

B = TypeVar("B", bound=Payload)


class PeerKeys(NamedTuple):
    """A peer's public keys as listed in the trusted manifest: ``(signing, encryption)``."""

    signing: PublicSigningKey
    encryption: PublicEncryptionKey


class BoxCache:
    """Precomputed ``crypto_box`` shared keys between our X25519 key and each peer's.

    Building a ``Box`` does the X25519 scalar multiplication; reusing it makes sealing about ten
    times cheaper (DESIGN.md). Entries are keyed by peer id *and* the peer's public key, so a key
    rotated in a new manifest never meets a stale box. At most ``max_peers`` boxes are kept
    (least recently used dropped); a group has far fewer members than the default.
    """

    def __init__(self, own_key: EncryptionKey, *, max_peers: int = 1024) -> None:
        if max_peers < 1:
            raise ValueError(f"max_peers must be at least 1, got {max_peers}")
        self._own = own_key.to_nacl()
        self._max = max_peers
        self._boxes: OrderedDict[tuple[str, bytes], nacl.public.Box] = OrderedDict()

    def __len__(self) -> int:
        return len(self._boxes)

    def box(self, node_id: str, peer_key: PublicEncryptionKey) -> nacl.public.Box:
        """The box between us and ``node_id`` holding ``peer_key``; built once, then reused."""
        key = (node_id, peer_key.raw)
        found = self._boxes.get(key)
        if found is not None:
            self._boxes.move_to_end(key)
            return found
        made = nacl.public.Box(self._own, peer_key.to_nacl())
        self._boxes[key] = made
        if len(self._boxes) > self._max:
            self._boxes.popitem(last=False)
        return made

    def __call__(self, node_id: str, keys: PeerKeys) -> nacl.public.Box:
        """The ``box_for`` hook of ``open_sealed``."""
        return self.box(node_id, keys.encryption)


@dataclass(kw_only=True)
class PeerMessage(Payload):
    """What a sender says to a recipient, under which manifest and for which purpose."""

    TYPE = "peer-message"

    sender: str
    recipient: str
    manifest_version: int
    purpose: str
    issued_at: datetime
    nonce: bytes
    body_type: str
    body: dict[str, Any]
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_wire_time(self.issued_at, "peer-message.issued_at")
        if len(self.nonce) != NONCE_BYTES:
            raise MalformedError(f"peer-message.nonce: expected {NONCE_BYTES} bytes, got {len(self.nonce)}")
        if self.body.get("type") != self.body_type:
            raise MalformedError(
                f"peer-message: body_type {self.body_type!r} but the body is {self.body.get('type')!r:.40}"
            )

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "sender": self.sender,
                "recipient": self.recipient,
                "manifest_version": self.manifest_version,
                "purpose": self.purpose,
                "issued_at": format_time(self.issued_at),
                "nonce": b64url_encode(self.nonce),
                "body_type": self.body_type,
                "body": self.body,
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            sender=f.text("sender", max_len=63, pattern=NODE_ID_RE),
            recipient=f.text("recipient", max_len=63, pattern=NODE_ID_RE),
            manifest_version=f.integer("manifest_version", low=1),
            purpose=f.text("purpose", max_len=48, pattern=CODE_RE),
            issued_at=f.time("issued_at"),
            nonce=f.binary("nonce", length=NONCE_BYTES),
            body_type=f.text("body_type", max_len=48, pattern=CODE_RE),
            body=f.obj("body"),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )


@dataclass(kw_only=True)
class SealedMessage(Payload):
    """The wire form: addresses in the clear (to pick keys), everything else in a crypto_box."""

    TYPE = "sealed-message"

    sender: str
    recipient: str
    nonce: bytes
    ciphertext: bytes
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "sender": self.sender,
                "recipient": self.recipient,
                "nonce": b64url_encode(self.nonce),
                "ciphertext": b64url_encode(self.ciphertext),
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            sender=f.text("sender", max_len=63, pattern=NODE_ID_RE),
            recipient=f.text("recipient", max_len=63, pattern=NODE_ID_RE),
            nonce=f.binary("nonce", length=BOX_NONCE_BYTES),
            ciphertext=f.binary("ciphertext", max_len=MAX_BULK_SEALED_BYTES),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )

    def to_bytes(self) -> bytes:
        return self.canonical()

    @classmethod
    def from_bytes(cls, data: bytes, *, max_bytes: int = MAX_SEALED_BYTES) -> Self:
        """Parse the wire form, refusing anything over ``max_bytes`` before parsing."""
        if len(data) > max_bytes:
            raise OversizedError(f"sealed message is {len(data)} bytes, limit {max_bytes}")
        return cls.from_dict(parse_json(data, max_bytes=max_bytes))


def seal(
    message: SignedDocument[PeerMessage],
    sender_key: EncryptionKey,
    recipient_key: PublicEncryptionKey,
    *,
    box: nacl.public.Box | None = None,
    nonce: bytes | None = None,
    max_bytes: int = MAX_SEALED_BYTES,
) -> SealedMessage:
    """Encrypt a signed peer message to its recipient with ``crypto_box``.

    Pass ``box`` (e.g. ``BoxCache.box(recipient_id, recipient_key)``) to reuse the precomputed
    shared key; ``sender_key`` and ``recipient_key`` are then not used. ``nonce`` is for fixed test
    vectors only: a random 24-byte nonce is drawn otherwise, and one must never be reused.
    """
    if not message.signatures:
        raise MalformedError("peer-message: only a signed message is sealed (0 signatures)")
    plaintext = message.to_bytes()
    box = box if box is not None else nacl.public.Box(sender_key.to_nacl(), recipient_key.to_nacl())
    encrypted = box.encrypt(plaintext, nonce) if nonce is not None else box.encrypt(plaintext)
    if len(encrypted.ciphertext) > max_bytes * 3 // 4 - 1024:
        raise OversizedError(
            f"peer-message: {len(plaintext)} bytes sealed would exceed the {max_bytes}-byte limit"
        )
    return SealedMessage(
        sender=message.payload.sender,
        recipient=message.payload.recipient,
        nonce=bytes(encrypted.nonce),
        ciphertext=bytes(encrypted.ciphertext),
    )


def compose_sealed(
    *,
    sender: str,
    recipient: str,
    manifest_version: int,
    purpose: str,
    body: Payload,
    issued_at: datetime,
    signing_key: SigningKey,
    sender_key: EncryptionKey,
    recipient_key: PublicEncryptionKey,
    box: nacl.public.Box | None = None,
    max_bytes: int = MAX_SEALED_BYTES,
) -> bytes:
    """A new peer message carrying ``body``, signed with a fresh nonce and sealed: the wire bytes."""
    message = PeerMessage(
        sender=sender,
        recipient=recipient,
        manifest_version=manifest_version,
        purpose=purpose,
        issued_at=issued_at.replace(microsecond=0),
        nonce=secrets.token_bytes(NONCE_BYTES),
        body_type=body.TYPE,
        body=body.to_dict(),
    )
    signed = SignedDocument(message)
    signed.sign(signing_key)
    return seal(signed, sender_key, recipient_key, box=box, max_bytes=max_bytes).to_bytes()


def open_sealed(
    data: bytes | SealedMessage,
    *,
    recipient_id: str,
    recipient_key: EncryptionKey,
    lookup_sender: Callable[[str], PeerKeys | tuple[PublicSigningKey, PublicEncryptionKey] | None],
    box_for: Callable[[str, PeerKeys], nacl.public.Box] | None = None,
    max_bytes: int = MAX_SEALED_BYTES,
) -> SignedDocument[PeerMessage]:
    """Open and authenticate a sealed message addressed to ``recipient_id``.

    ``lookup_sender`` returns the sender's keys from the trusted manifest, or ``None``;
    ``box_for`` (e.g. a ``BoxCache``) supplies a precomputed box. Checks, in order:

    1. size (``OversizedError``), before anything is parsed;
    2. outer form (``MalformedError``);
    3. addressed to us (``MisaddressedError``);
    4. sender known (``UnknownSenderError``);
    5. the box opens with our key and the sender's (``DecryptionError``);
    6. inner form (``MalformedError``);
    7. inner sender and recipient equal the outer ones (``MisaddressedError``);
    8. the sender's Ed25519 signature (``SignatureError``).

    Freshness (``ReplayGuard``) and policy (member, purpose, model) are the caller's next steps.
    """
    if isinstance(data, SealedMessage):
        sealed = data
        if len(sealed.ciphertext) > max_bytes:
            raise OversizedError(f"sealed message ciphertext is {len(sealed.ciphertext)} bytes, limit {max_bytes}")
    else:
        sealed = SealedMessage.from_bytes(data, max_bytes=max_bytes)
    if sealed.recipient != recipient_id:
        raise MisaddressedError(f"message for {sealed.recipient!r} delivered to {recipient_id!r}")
    found = lookup_sender(sealed.sender)
    if found is None:
        raise UnknownSenderError(f"sender {sealed.sender!r} is not a member of the trusted manifest")
    keys = PeerKeys(*found)
    box = (
        box_for(sealed.sender, keys)
        if box_for is not None
        else nacl.public.Box(recipient_key.to_nacl(), keys.encryption.to_nacl())
    )
    try:
        plaintext = box.decrypt(sealed.ciphertext, sealed.nonce)
    except nacl.exceptions.CryptoError as e:
        raise DecryptionError(f"message from {sealed.sender!r} does not open with our key") from e
    inner = SignedDocument.from_dict(parse_json(plaintext, max_bytes=max_bytes), PeerMessage)
    if (inner.payload.sender, inner.payload.recipient) != (sealed.sender, sealed.recipient):
        raise MisaddressedError(
            f"inner addresses {inner.payload.sender!r} -> {inner.payload.recipient!r} differ from the "
            f"envelope's {sealed.sender!r} -> {sealed.recipient!r}"
        )
    try:
        inner.verify([keys.signing], threshold=1)
    except ThresholdError as e:
        raise SignatureError(
            f"message from {sealed.sender!r} is not signed by its key in the trusted manifest ({e})"
        ) from e
    return inner


def decode_body(message: PeerMessage, types: Mapping[str, type[B]]) -> B:
    """Parse the body into the payload type its ``body_type`` names, if we accept that type."""
    body_type = types.get(message.body_type)
    if body_type is None:
        raise MalformedError(f"peer-message.body_type {message.body_type!r} is not one of {sorted(types)}")
    return body_type.from_dict(message.body)
