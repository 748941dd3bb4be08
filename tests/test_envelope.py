"""The sealed peer envelope and replay protection: each refusal has its own typed error."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import b64url_encode, canonical_bytes, parse_json
from protocol.errors import (
    ClockSkewError,
    DecryptionError,
    MalformedError,
    MisaddressedError,
    OversizedError,
    ReplayError,
    SignatureError,
    UnknownSenderError,
)
from protocol.keys import EncryptionKey, SigningKey
from protocol.message import PeerKeys, PeerMessage, SealedMessage, decode_body, open_sealed, seal
from protocol.query import QueryRequest
from protocol.replay import ReplayGuard
from protocol.signed import SignedDocument
from tests.factories import (
    NODE_A_ENCRYPTION,
    NODE_A_SIGNING,
    NODE_B_ENCRYPTION,
    NODE_B_SIGNING,
    T0,
    embedding,
)

A_KEYS = PeerKeys(NODE_A_SIGNING.public, NODE_A_ENCRYPTION.public)


def message(sender: str = "chain-a", recipient: str = "chain-b", nonce: bytes = b"\x01" * 16) -> PeerMessage:
    body = QueryRequest(query_id="qry-00000001", model_id="m", embeddings=[embedding(3)]).to_dict()
    return PeerMessage(
        sender=sender,
        recipient=recipient,
        manifest_version=3,
        purpose="crime-prevention",
        issued_at=T0,
        nonce=nonce,
        body_type="query-request",
        body=body,
    )


def sealed_bytes(msg: PeerMessage | None = None, signer: SigningKey = NODE_A_SIGNING) -> bytes:
    doc = SignedDocument(msg or message())
    doc.sign(signer)
    return seal(doc, NODE_A_ENCRYPTION, NODE_B_ENCRYPTION.public).to_bytes()


def open_as_b(
    data: bytes, key: EncryptionKey = NODE_B_ENCRYPTION, me: str = "chain-b"
) -> SignedDocument[PeerMessage]:
    return open_sealed(
        data,
        recipient_id=me,
        recipient_key=key,
        lookup_sender=lambda node: A_KEYS if node == "chain-a" else None,
    )


def test_round_trip_and_body_decoding() -> None:
    opened = open_as_b(sealed_bytes())
    assert opened.payload.purpose == "crime-prevention"
    query = decode_body(opened.payload, {"query-request": QueryRequest})
    assert query.embeddings[0] == embedding(3)
    with pytest.raises(MalformedError, match="body_type"):
        decode_body(opened.payload, {})


def test_plaintext_never_on_the_wire() -> None:
    wire = sealed_bytes()
    assert embedding(3).to_str().encode() not in wire
    assert b"crime-prevention" not in wire


def test_non_recipient_cannot_open() -> None:
    with pytest.raises(DecryptionError):
        open_as_b(sealed_bytes(), key=EncryptionKey(b"\xcc" * 32))


@settings(max_examples=40, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32))
def test_any_third_key_fails_to_open(seed: bytes) -> None:
    if seed == NODE_B_ENCRYPTION.secret:
        return
    with pytest.raises(DecryptionError):
        open_as_b(sealed_bytes(), key=EncryptionKey(seed))


def test_refusals_in_order() -> None:
    with pytest.raises(OversizedError):
        open_as_b(b" " * (2 << 20))
    with pytest.raises(MalformedError):
        open_as_b(b'{"type": "sealed-message"}')
    with pytest.raises(MisaddressedError):
        open_as_b(sealed_bytes(), me="chain-c")
    sealed = SealedMessage.from_dict(parse_json(sealed_bytes()))
    sealed.sender = "chain-x"
    with pytest.raises(UnknownSenderError):
        open_as_b(sealed.to_bytes())


def test_tampered_ciphertext_fails() -> None:
    sealed = SealedMessage.from_dict(parse_json(sealed_bytes()))
    sealed.ciphertext = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    with pytest.raises(DecryptionError):
        open_as_b(sealed.to_bytes())


def test_inner_and_outer_addresses_must_agree() -> None:
    doc = SignedDocument(message(recipient="chain-c"))
    doc.sign(NODE_A_SIGNING)
    sealed = seal(doc, NODE_A_ENCRYPTION, NODE_B_ENCRYPTION.public)
    sealed.recipient = "chain-b"
    with pytest.raises(MisaddressedError, match="inner addresses"):
        open_as_b(sealed.to_bytes())


def test_signature_by_wrong_key_fails() -> None:
    with pytest.raises(SignatureError):
        open_as_b(sealed_bytes(signer=NODE_B_SIGNING))


def test_box_key_swap_is_refused() -> None:
    doc = SignedDocument(message())
    doc.sign(NODE_A_SIGNING)
    forged = seal(doc, EncryptionKey(b"\xdd" * 32), NODE_B_ENCRYPTION.public)
    with pytest.raises(DecryptionError):
        open_as_b(forged.to_bytes())


def test_replay_window_and_nonce_cache() -> None:
    guard = ReplayGuard(window=timedelta(seconds=60), max_entries=3)
    guard.check("chain-a", b"n1", T0, T0 + timedelta(seconds=5))
    with pytest.raises(ReplayError):
        guard.check("chain-a", b"n1", T0, T0 + timedelta(seconds=6))
    guard.check("chain-b", b"n1", T0, T0 + timedelta(seconds=6))
    with pytest.raises(ClockSkewError):
        guard.check("chain-a", b"n2", T0, T0 + timedelta(seconds=61))
    with pytest.raises(ClockSkewError):
        guard.check("chain-a", b"n3", T0 + timedelta(seconds=90), T0)
    guard.check("chain-a", b"n4", T0, T0 + timedelta(seconds=7))
    with pytest.raises(ReplayError, match="cache full"):
        guard.check("chain-a", b"n5", T0, T0 + timedelta(seconds=8))
    guard.check("chain-a", b"n6", T0 + timedelta(seconds=100), T0 + timedelta(seconds=100))
    assert len(guard) == 1


def test_peer_message_field_checks() -> None:
    d = message().to_dict()
    with pytest.raises(MalformedError, match="body_type"):
        PeerMessage.from_dict({**d, "body_type": "query-response"})
    with pytest.raises(MalformedError, match="nonce"):
        PeerMessage.from_dict({**d, "nonce": b64url_encode(b"\x00" * 8)})
    with pytest.raises(MalformedError, match="purpose"):
        PeerMessage.from_dict({**d, "purpose": "Marketing!"})
    assert canonical_bytes(PeerMessage.from_dict(d).to_dict()) == canonical_bytes(d)
