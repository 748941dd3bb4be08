"""The sealed peer envelope: only the recipient reads it, only the sender could have written it.

Each opening step refuses with its own typed error, in the documented order; the tests build
inputs that fail exactly one step while every later step would fail too, so the order shows.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import nacl.public
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import b64url_encode, canonical_bytes, parse_json
from protocol.errors import (
    DecryptionError,
    MalformedError,
    MisaddressedError,
    OversizedError,
    ReplayError,
    SignatureError,
    UnknownSenderError,
)
from protocol.keys import EncryptionKey, PublicEncryptionKey, PublicSigningKey, SigningKey
from protocol.message import (
    MAX_SEALED_BYTES,
    BoxCache,
    PeerKeys,
    PeerMessage,
    SealedMessage,
    decode_body,
    open_sealed,
    seal,
)
from protocol.query import QueryRequest, QueryResponse
from protocol.receipt import DeletionReceipt
from protocol.replay import ReplayGuard
from protocol.signed import Payload, SignedDocument
from tests.factories import (
    NODE_A_ENCRYPTION,
    NODE_A_SIGNING,
    NODE_B_ENCRYPTION,
    NODE_B_SIGNING,
    T0,
    embedding,
)
from tests.test_entry import (
    assert_any_byte_change_fails,
    embeddings,
    ids,
    node_ids,
    sign,
    times,
    unknown_fields,
)
from tests.test_receipt import receipts

NODE_C_SIGNING = SigningKey(b"\xc1" * 32)
NODE_C_ENCRYPTION = EncryptionKey(b"\xc2" * 32)
MEMBERS = {
    "chain-a": PeerKeys(NODE_A_SIGNING.public, NODE_A_ENCRYPTION.public),
    "chain-b": PeerKeys(NODE_B_SIGNING.public, NODE_B_ENCRYPTION.public),
    "chain-c": PeerKeys(NODE_C_SIGNING.public, NODE_C_ENCRYPTION.public),
}
BODY_TYPES: dict[str, type[Payload]] = {
    "query-request": QueryRequest,
    "query-response": QueryResponse,
    "deletion-receipt": DeletionReceipt,
}


def lookup(node_id: str) -> PeerKeys | None:
    return MEMBERS.get(node_id)


def query_body(seed: int = 3) -> dict[str, Any]:
    return QueryRequest(query_id="qry-00000001", model_id="m", embeddings=[embedding(seed)]).to_dict()


def message(**overrides: Any) -> PeerMessage:
    fields: dict[str, Any] = {
        "sender": "chain-a",
        "recipient": "chain-b",
        "manifest_version": 3,
        "purpose": "crime-prevention",
        "issued_at": T0,
        "nonce": b"\x01" * 16,
        "body_type": "query-request",
        "body": query_body(),
    }
    fields.update(overrides)
    return PeerMessage(**fields)


def signed(msg: PeerMessage | None = None, key: SigningKey = NODE_A_SIGNING) -> SignedDocument[PeerMessage]:
    doc = SignedDocument(msg if msg is not None else message())
    doc.sign(key)
    return doc


def sealed(
    msg: PeerMessage | None = None,
    key: SigningKey = NODE_A_SIGNING,
    box_key: EncryptionKey = NODE_A_ENCRYPTION,
    to: PublicEncryptionKey = NODE_B_ENCRYPTION.public,
) -> SealedMessage:
    return seal(signed(msg, key), box_key, to)


def open_as(
    data: bytes | SealedMessage,
    me: str = "chain-b",
    key: EncryptionKey = NODE_B_ENCRYPTION,
    **kwargs: Any,
) -> SignedDocument[PeerMessage]:
    return open_sealed(data, recipient_id=me, recipient_key=key, lookup_sender=lookup, **kwargs)


@st.composite
def peer_messages(draw: st.DrawFn) -> PeerMessage:
    kind = draw(st.sampled_from(["query-request", "deletion-receipt"]))
    if kind == "query-request":
        dimension = draw(st.integers(1, 64))
        body = QueryRequest(
            query_id=draw(ids),
            model_id="m",
            embeddings=draw(st.lists(embeddings(dimension=dimension), min_size=1, max_size=4)),
        ).to_dict()
    else:
        body = draw(receipts()).to_dict()
    sender, recipient = draw(st.lists(node_ids, min_size=2, max_size=2, unique=True))
    return PeerMessage(
        sender=sender,
        recipient=recipient,
        manifest_version=draw(st.integers(1, 2**53 - 1)),
        purpose=draw(st.sampled_from(["crime-prevention", "data-subject-request"])),
        issued_at=draw(times),
        nonce=draw(st.binary(min_size=16, max_size=16)),
        body_type=kind,
        body=body,
    )


@settings(max_examples=100, deadline=None)
@given(msg=peer_messages())
def test_peer_message_round_trip_is_exact(msg: PeerMessage) -> None:
    wire = canonical_bytes(msg.to_dict())
    again = PeerMessage.from_dict(parse_json(wire))
    assert again == msg
    assert canonical_bytes(again.to_dict()) == wire
    assert decode_body(again, BODY_TYPES).to_dict() == msg.body


@settings(max_examples=80, deadline=None)
@given(extra=unknown_fields(set(message().to_dict())), body_extra=unknown_fields(set(query_body())))
def test_unknown_fields_survive_byte_for_byte(extra: dict[str, Any], body_extra: dict[str, Any]) -> None:
    d = {**message(body={**query_body(), **body_extra}).to_dict(), **extra}
    parsed = PeerMessage.from_dict(parse_json(canonical_bytes(d)))
    assert parsed.unrecognized_fields == extra
    assert canonical_bytes(parsed.to_dict()) == canonical_bytes(d)
    assert decode_body(parsed, BODY_TYPES).unrecognized_fields == body_extra
    outer = {**sealed().to_dict(), **extra}
    assert canonical_bytes(SealedMessage.from_dict(outer).to_dict()) == canonical_bytes(outer)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_signed_message_any_single_byte_change_fails(data: st.DataObject) -> None:
    assert_any_byte_change_fails(signed(), NODE_A_SIGNING, data)


@settings(max_examples=60, deadline=None)
@given(msg=peer_messages())
def test_seal_then_open_returns_the_signed_message(msg: PeerMessage) -> None:
    sender_sign, sender_box = SigningKey(b"\x51" * 32), EncryptionKey(b"\x52" * 32)
    recipient_box = EncryptionKey(b"\x53" * 32)
    doc = signed(msg, sender_sign)
    wire = seal(doc, sender_box, recipient_box.public).to_bytes()
    opened = open_sealed(
        wire,
        recipient_id=msg.recipient,
        recipient_key=recipient_box,
        lookup_sender=lambda n: (sender_sign.public, sender_box.public) if n == msg.sender else None,
    )
    assert opened.to_bytes() == doc.to_bytes()
    assert msg.body_type.encode() not in wire


def test_plaintext_never_on_the_wire() -> None:
    wire = sealed().to_bytes()
    assert parse_json(wire)["type"] == "sealed-message"
    assert query_body()["embeddings"][0].encode() not in wire
    assert b"crime-prevention" not in wire and b"peer-message" not in wire


def test_each_seal_uses_a_fresh_nonce() -> None:
    a, b = sealed(), sealed()
    assert a.nonce != b.nonce and a.ciphertext != b.ciphertext
    assert open_as(a).to_bytes() == open_as(b).to_bytes()


@settings(max_examples=40, deadline=None)
@given(secret=st.binary(min_size=32, max_size=32))
def test_a_third_key_cannot_open(secret: bytes) -> None:
    if secret in (NODE_B_ENCRYPTION.secret, NODE_A_ENCRYPTION.secret):
        return
    with pytest.raises(DecryptionError):
        open_as(sealed(), key=EncryptionKey(secret))


def test_the_sender_cannot_open_its_own_message_as_another_member() -> None:
    wire = sealed()
    wire.recipient = "chain-c"
    with pytest.raises(DecryptionError):
        open_as(wire, me="chain-c", key=NODE_C_ENCRYPTION)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_tampered_ciphertext_or_nonce_fails(data: st.DataObject) -> None:
    s = sealed()
    target = data.draw(st.sampled_from(["ciphertext", "nonce"]))
    raw = bytearray(getattr(s, target))
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= data.draw(st.integers(1, 255))
    setattr(s, target, bytes(raw))
    with pytest.raises(DecryptionError):
        open_as(s.to_bytes())


def test_truncated_or_extended_ciphertext_fails() -> None:
    s = sealed()
    for ciphertext in (b"", s.ciphertext[:15], s.ciphertext[:-1], s.ciphertext + b"\x00"):
        s.ciphertext = ciphertext
        with pytest.raises(DecryptionError):
            open_as(s)


def test_wrong_inner_sender_is_refused() -> None:
    """chain-c (a member) seals under its own box key but claims, inside, to be chain-a."""
    forged = seal(
        signed(message(sender="chain-a"), NODE_C_SIGNING), NODE_C_ENCRYPTION, NODE_B_ENCRYPTION.public
    )
    forged.sender = "chain-c"
    with pytest.raises(MisaddressedError, match="inner addresses 'chain-a' -> 'chain-b'"):
        open_as(forged)


def test_wrong_inner_recipient_is_refused() -> None:
    s = sealed(message(recipient="chain-c"))
    s.recipient = "chain-b"
    with pytest.raises(MisaddressedError, match="'chain-a' -> 'chain-c'"):
        open_as(s)


def test_signature_must_be_the_senders() -> None:
    with pytest.raises(SignatureError):
        open_as(sealed(key=NODE_B_SIGNING))
    unsigned = SignedDocument(message())
    with pytest.raises(MalformedError, match="0 signatures"):
        seal(unsigned, NODE_A_ENCRYPTION, NODE_B_ENCRYPTION.public)
    box = nacl.public.Box(NODE_A_ENCRYPTION.to_nacl(), NODE_B_ENCRYPTION.public.to_nacl())
    encrypted = box.encrypt(unsigned.to_bytes())
    raw = SealedMessage(
        sender="chain-a",
        recipient="chain-b",
        nonce=bytes(encrypted.nonce),
        ciphertext=bytes(encrypted.ciphertext),
    )
    with pytest.raises(SignatureError, match="signed by 0/1"):
        open_as(raw)


def _box_to_b(plaintext: bytes, sender: str = "chain-a") -> SealedMessage:
    box = nacl.public.Box(NODE_A_ENCRYPTION.to_nacl(), NODE_B_ENCRYPTION.public.to_nacl())
    encrypted = box.encrypt(plaintext)
    return SealedMessage(
        sender=sender,
        recipient="chain-b",
        nonce=bytes(encrypted.nonce),
        ciphertext=bytes(encrypted.ciphertext),
    )


def _outer(**overrides: Any) -> bytes:
    d = sealed().to_dict()
    d.update(overrides)
    return canonical_bytes(d)


OPEN_FAILURES: list[tuple[str, Any, type[Exception]]] = [
    ("oversized", b" " * (MAX_SEALED_BYTES + 1), OversizedError),
    (
        "oversized-object",
        SealedMessage(
            sender="chain-a", recipient="chain-b", nonce=bytes(24), ciphertext=bytes(MAX_SEALED_BYTES + 1)
        ),
        OversizedError,
    ),
    ("not-json", b"\x00sealed", MalformedError),
    ("truncated-json", _outer()[:-1], MalformedError),
    ("json-array", b"[]", MalformedError),
    ("duplicate-key", b'{"type":"sealed-message","type":"sealed-message"}', MalformedError),
    ("wrong-type-tag", _outer(type="peer-message"), MalformedError),
    (
        "missing-ciphertext",
        canonical_bytes({k: v for k, v in sealed().to_dict().items() if k != "ciphertext"}),
        MalformedError,
    ),
    ("nonce-short", _outer(nonce=b64url_encode(bytes(16))), MalformedError),
    ("ciphertext-not-base64", _outer(ciphertext="%%%%"), MalformedError),
    ("sender-not-node-id", _outer(sender="Chain A"), MalformedError),
    ("for-another-node", _outer(recipient="chain-c"), MisaddressedError),
    ("unknown-sender", _outer(sender="chain-x"), UnknownSenderError),
    ("known-sender-wrong-box", _outer(sender="chain-c"), DecryptionError),
    ("inner-not-json", _box_to_b(b"not json"), MalformedError),
    (
        "inner-not-peer-message",
        _box_to_b(sign(QueryRequest.from_dict(query_body())).to_bytes()),
        MalformedError,
    ),
    ("inner-oversized-nesting", _box_to_b(b"[" * 100 + b"]" * 100), MalformedError),
]


@pytest.mark.parametrize(("data", "error"), [c[1:] for c in OPEN_FAILURES], ids=[c[0] for c in OPEN_FAILURES])
def test_each_refusal_has_its_typed_error(data: Any, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        open_as(data)
    assert type(info.value) is error


def test_checks_run_in_the_documented_order() -> None:
    """Every input below fails several checks; the first in the documented order is reported."""
    forged_for_c = sealed(key=NODE_B_SIGNING, box_key=NODE_C_ENCRYPTION)
    forged_for_c.recipient = "chain-c"
    with pytest.raises(MisaddressedError):
        open_as(forged_for_c)
    unknown_and_bad_box = sealed(box_key=NODE_C_ENCRYPTION)
    unknown_and_bad_box.sender = "chain-x"
    with pytest.raises(UnknownSenderError):
        open_as(unknown_and_bad_box)
    bad_box_and_signature = sealed(key=NODE_B_SIGNING, box_key=NODE_C_ENCRYPTION)
    with pytest.raises(DecryptionError):
        open_as(bad_box_and_signature)
    misaddressed_and_unsigned = sealed(message(recipient="chain-c"), key=NODE_B_SIGNING)
    misaddressed_and_unsigned.recipient = "chain-b"
    with pytest.raises(MisaddressedError, match="inner"):
        open_as(misaddressed_and_unsigned)


def test_lookup_may_return_a_plain_tuple() -> None:
    opened = open_sealed(
        sealed().to_bytes(),
        recipient_id="chain-b",
        recipient_key=NODE_B_ENCRYPTION,
        lookup_sender=lambda n: (NODE_A_SIGNING.public, NODE_A_ENCRYPTION.public) if n == "chain-a" else None,
    )
    assert opened.payload.sender == "chain-a"
    keys: tuple[PublicSigningKey, PublicEncryptionKey] = MEMBERS["chain-a"]
    assert keys == (NODE_A_SIGNING.public, NODE_A_ENCRYPTION.public)


def test_box_cache_reuses_one_box_per_peer_key() -> None:
    a_boxes, b_boxes = BoxCache(NODE_A_ENCRYPTION), BoxCache(NODE_B_ENCRYPTION, max_peers=2)
    to_b = a_boxes.box("chain-b", NODE_B_ENCRYPTION.public)
    assert a_boxes.box("chain-b", NODE_B_ENCRYPTION.public) is to_b
    wire = seal(signed(), NODE_A_ENCRYPTION, NODE_B_ENCRYPTION.public, box=to_b).to_bytes()
    opened = open_as(wire, box_for=b_boxes)
    assert opened.payload.nonce == b"\x01" * 16
    from_a = b_boxes("chain-a", MEMBERS["chain-a"])
    open_as(wire, box_for=b_boxes)
    assert b_boxes("chain-a", MEMBERS["chain-a"]) is from_a
    rotated = EncryptionKey(b"\xa3" * 32).public
    assert b_boxes.box("chain-a", rotated) is not from_a
    assert len(b_boxes) == 2
    b_boxes.box("chain-c", NODE_C_ENCRYPTION.public)
    assert len(b_boxes) == 2
    assert b_boxes.box("chain-a", NODE_A_ENCRYPTION.public) is not from_a
    with pytest.raises(ValueError, match="max_peers"):
        BoxCache(NODE_A_ENCRYPTION, max_peers=0)


def test_box_cache_keyed_on_the_peer_key_refuses_a_rotated_sender() -> None:
    b_boxes = BoxCache(NODE_B_ENCRYPTION)
    open_as(sealed(), box_for=b_boxes)
    new_a_box = EncryptionKey(b"\xa4" * 32)
    with pytest.raises(DecryptionError):
        open_as(sealed(box_key=new_a_box), box_for=b_boxes)


def test_decode_body_against_a_registry() -> None:
    opened = open_as(sealed())
    body = decode_body(opened.payload, BODY_TYPES)
    assert isinstance(body, QueryRequest) and body.query_id == "qry-00000001"
    with pytest.raises(MalformedError, match="not one of"):
        decode_body(opened.payload, {"deletion-receipt": DeletionReceipt})
    lying = message(body_type="deletion-receipt", body={**query_body(), "type": "deletion-receipt"})
    with pytest.raises(MalformedError, match="deletion-receipt"):
        decode_body(lying, BODY_TYPES)


def test_open_then_replay_guard() -> None:
    guard = ReplayGuard(window=timedelta(seconds=60))
    wire = sealed().to_bytes()
    for attempt in range(2):
        m = open_as(wire).payload
        if attempt == 0:
            guard.check(m.sender, m.nonce, m.issued_at, T0 + timedelta(seconds=2))
        else:
            with pytest.raises(ReplayError):
                guard.check(m.sender, m.nonce, m.issued_at, T0 + timedelta(seconds=3))


def _msg(**overrides: Any) -> dict[str, Any]:
    d = message().to_dict()
    d.update(overrides)
    return d


def _without(name: str) -> dict[str, Any]:
    d = message().to_dict()
    del d[name]
    return d


MESSAGE_INVALID: list[tuple[str, Any, type[Exception]]] = [
    ("not-an-object", "peer-message", MalformedError),
    ("wrong-type-tag", _msg(type="sealed-message"), MalformedError),
    ("other-major-version", _msg(spec_version="2.0"), MalformedError),
    *[(f"missing-{name}", _without(name), MalformedError) for name in sorted(_msg()) if name != "type"],
    ("sender-bad", _msg(sender="CHAIN-A"), MalformedError),
    ("recipient-oversized", _msg(recipient="r" * 64), OversizedError),
    ("manifest-version-zero", _msg(manifest_version=0), MalformedError),
    ("manifest-version-string", _msg(manifest_version="3"), MalformedError),
    ("purpose-free-text", _msg(purpose="Marketing!"), MalformedError),
    ("purpose-oversized", _msg(purpose="p" * 49), OversizedError),
    ("issued-at-epoch", _msg(issued_at=1793523600), MalformedError),
    ("nonce-short", _msg(nonce=b64url_encode(bytes(8))), MalformedError),
    ("nonce-long", _msg(nonce=b64url_encode(bytes(24))), MalformedError),
    ("body-type-mismatch", _msg(body_type="query-response"), MalformedError),
    ("body-not-object", _msg(body="query"), MalformedError),
    ("body-without-type", _msg(body={"query_id": "qry-00000001"}), MalformedError),
]


@pytest.mark.parametrize(
    ("data", "error"), [c[1:] for c in MESSAGE_INVALID], ids=[c[0] for c in MESSAGE_INVALID]
)
def test_message_invalid_inputs(data: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        PeerMessage.from_dict(data)


def test_issued_at_must_be_whole_seconds() -> None:
    with pytest.raises(MalformedError, match="whole seconds"):
        message(issued_at=T0 + timedelta(microseconds=5))
