"""Entry events, receipts, queries and tree heads: round trips, tampering and invalid inputs."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import canonical_bytes, parse_json
from protocol.errors import CommitmentError, MalformedError, OversizedError, ThresholdError, WatchnetError
from protocol.events import EntryEvent, EventKind, EventPayload, EventReason, log_leaf_bytes
from protocol.merkle import MerkleLog, leaf_hash, verify_inclusion
from protocol.query import QueryMatch, QueryRequest, QueryResponse
from protocol.receipt import DeletionReceipt, ReceiptAction
from protocol.signed import Payload, SignedDocument
from protocol.treehead import TreeHead
from tests.factories import NODE_A_SIGNING, NODE_B_SIGNING, T0, embedding, signed_entry


def registered_event() -> tuple[EntryEvent, EventPayload]:
    return EntryEvent.create(
        entry=signed_entry(),
        event_id="evt-00000001",
        owner="chain-a",
        kind=EventKind.REGISTERED,
        entry_id="ent-00000001",
        entry_version=1,
        reason=EventReason.REGISTRATION,
        occurred_at=T0,
        actor="acct-officer1",
    )


def deleted_event() -> EntryEvent:
    event, _ = EntryEvent.create(
        entry=None,
        event_id="evt-00000002",
        owner="chain-a",
        kind=EventKind.DELETED,
        entry_id="ent-00000001",
        entry_version=1,
        reason=EventReason.DATA_SUBJECT_REQUEST,
        occurred_at=T0 + timedelta(days=1),
        actor="acct-officer1",
    )
    return event


def receipt() -> DeletionReceipt:
    return DeletionReceipt(
        owner="chain-a",
        member="chain-b",
        event_id="evt-00000002",
        entry_id="ent-00000001",
        kind=EventKind.DELETED,
        tree_size=2,
        root_hash=b"\x07" * 32,
        applied_at=T0 + timedelta(days=1, seconds=3),
        action=ReceiptAction.PURGED,
    )


def request() -> QueryRequest:
    return QueryRequest(
        query_id="qry-00000001", model_id="buffalo_s/w600k_mbf", embeddings=[embedding(1), embedding(2)]
    )


def response() -> QueryResponse:
    return QueryResponse(
        query_id="qry-00000001",
        responder="chain-a",
        threshold=0.45,
        matches=[QueryMatch(query_index=1, band="strong", entry=signed_entry())],
    )


def tree_head() -> TreeHead:
    return TreeHead(
        log_id="chain-a", tree_size=2, root_hash=b"\x07" * 32, timestamp=T0, audit_head=b"\x08" * 32
    )


SAMPLES: dict[str, Any] = {
    "entry-event": lambda: registered_event()[0],
    "deleted-event": deleted_event,
    "deletion-receipt": receipt,
    "query-request": request,
    "query-response": response,
    "tree-head": tree_head,
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip_is_byte_exact(name: str) -> None:
    payload: Payload = SAMPLES[name]()
    doc = SignedDocument(payload)
    doc.sign(NODE_A_SIGNING)
    wire = doc.to_bytes()
    again = SignedDocument.from_bytes(wire, type(payload))
    assert again.to_bytes() == wire
    again.verify([NODE_A_SIGNING.public])


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_unknown_fields_are_preserved(name: str) -> None:
    payload: Payload = SAMPLES[name]()
    d = payload.to_dict()
    d["zz_future"] = {"a": [1, 2]}
    parsed = type(payload).from_dict(d)
    assert canonical_bytes(parsed.to_dict()) == canonical_bytes(d)


@settings(max_examples=120, deadline=None)
@given(name=st.sampled_from(sorted(SAMPLES)), data=st.data())
def test_any_single_byte_change_fails(name: str, data: st.DataObject) -> None:
    doc = SignedDocument(SAMPLES[name]())
    doc.sign(NODE_A_SIGNING)
    wire = bytearray(doc.to_bytes())
    position = data.draw(st.integers(0, len(wire) - 1))
    wire[position] = data.draw(st.integers(0, 255).filter(lambda b: b != wire[position]))
    with pytest.raises(WatchnetError):
        SignedDocument.from_bytes(bytes(wire), type(doc.payload)).verify([NODE_A_SIGNING.public])


def test_event_payload_commitment_and_erasure() -> None:
    event, payload = registered_event()
    payload.verify_against(event)
    signed_event = SignedDocument(event)
    signed_event.sign(NODE_A_SIGNING)
    log = MerkleLog()
    log.append(log_leaf_bytes(signed_event))
    proof = log.inclusion_proof(0)
    assert payload.entry is not None
    assert b"watchlist-entry" not in log_leaf_bytes(signed_event)
    assert payload.entry.to_bytes() not in log_leaf_bytes(signed_event)
    other = EventPayload(salt=b"\x00" * 32, entry=payload.entry)
    with pytest.raises(CommitmentError):
        other.verify_against(event)
    del payload
    restored = SignedDocument.from_bytes(log_leaf_bytes(signed_event), EntryEvent)
    restored.verify([NODE_A_SIGNING.public])
    verify_inclusion(leaf_hash(restored.to_bytes()), 0, 1, proof, log.root())


def test_event_payload_round_trip() -> None:
    _, payload = registered_event()
    again = EventPayload.from_dict(parse_json(canonical_bytes(payload.to_dict())))
    assert again.commitment() == payload.commitment()


def _event_fields(**overrides: Any) -> dict[str, Any]:
    d = deleted_event().to_dict()
    d.update(overrides)
    return d


def _without(d: dict[str, Any], key: str) -> dict[str, Any]:
    d = copy.deepcopy(d)
    del d[key]
    return d


INVALID: list[tuple[str, type[Payload], Any, type[Exception]]] = [
    ("event-not-object", EntryEvent, [], MalformedError),
    ("event-missing-field", EntryEvent, _without(_event_fields(), "actor"), MalformedError),
    ("event-wrong-type-tag", EntryEvent, _event_fields(type="entry-evil"), MalformedError),
    ("event-major-version", EntryEvent, _event_fields(spec_version="2.0"), MalformedError),
    ("event-bad-kind", EntryEvent, _event_fields(kind="hidden"), MalformedError),
    ("event-reason-mismatch", EntryEvent, _event_fields(reason="retention-expired"), MalformedError),
    ("event-version-string", EntryEvent, _event_fields(entry_version="1"), MalformedError),
    ("event-bool-as-int", EntryEvent, _event_fields(entry_version=True), MalformedError),
    ("event-bad-time", EntryEvent, _event_fields(occurred_at="2026-11-01 09:00"), MalformedError),
    ("event-oversized-id", EntryEvent, _event_fields(event_id="e" * 500), OversizedError),
    ("event-short-commitment", EntryEvent, _event_fields(payload_commitment="AAAA"), MalformedError),
    ("receipt-self", DeletionReceipt, {**receipt().to_dict(), "member": "chain-a"}, MalformedError),
    ("receipt-wrong-action", DeletionReceipt, {**receipt().to_dict(), "action": "corrected"}, MalformedError),
    ("receipt-registered", DeletionReceipt, {**receipt().to_dict(), "kind": "registered"}, MalformedError),
    ("receipt-size-zero", DeletionReceipt, {**receipt().to_dict(), "tree_size": 0}, MalformedError),
    ("query-empty", QueryRequest, {**request().to_dict(), "embeddings": []}, MalformedError),
    (
        "query-too-many",
        QueryRequest,
        {**request().to_dict(), "embeddings": [embedding(1).to_str()] * 65},
        OversizedError,
    ),
    (
        "query-mixed-dims",
        QueryRequest,
        {**request().to_dict(), "embeddings": [embedding(1).to_str(), embedding(2, 128).to_str()]},
        MalformedError,
    ),
    (
        "query-not-normalised",
        QueryRequest,
        {**request().to_dict(), "embeddings": ["AACAPwAAgD8"]},
        MalformedError,
    ),
    (
        "query-not-base64",
        QueryRequest,
        {**request().to_dict(), "embeddings": ["not base64!"]},
        MalformedError,
    ),
    (
        "response-exact-score",
        QueryResponse,
        {**response().to_dict(), "matches": [{**response().to_dict()["matches"][0], "band": 0.8125}]},
        MalformedError,
    ),
    (
        "response-foreign-entry",
        QueryResponse,
        {**response().to_dict(), "responder": "chain-b"},
        MalformedError,
    ),
    ("tree-head-negative", TreeHead, {**tree_head().to_dict(), "tree_size": -1}, MalformedError),
    ("tree-head-short-root", TreeHead, {**tree_head().to_dict(), "root_hash": "AAAA"}, MalformedError),
]


@pytest.mark.parametrize(
    ("payload_type", "data", "error"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_inputs(payload_type: type[Payload], data: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        payload_type.from_dict(data)


def test_response_checked_against_request() -> None:
    resp = response()
    resp.check_against(request())
    single = QueryRequest(query_id="qry-00000001", model_id="m", embeddings=[embedding(1)])
    with pytest.raises(MalformedError, match="query_index 1"):
        resp.check_against(single)
    with pytest.raises(MalformedError, match="answers no request"):
        resp.check_against(QueryRequest(query_id="qry-99999999", model_id="m", embeddings=[embedding(1)]))


def test_signature_by_another_node_is_refused() -> None:
    doc = SignedDocument(receipt())
    doc.sign(NODE_B_SIGNING)
    with pytest.raises(ThresholdError, match="signed by 0/1"):
        doc.verify([NODE_A_SIGNING.public])
