"""Entry events and their erasable payloads: the signed history survives erasure of every payload."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import b64url_encode, canonical_bytes, parse_json
from protocol.commitment import commit
from protocol.entry import WatchlistEntry
from protocol.errors import CommitmentError, MalformedError, OversizedError
from protocol.events import (
    ALLOWED_REASONS,
    CARRIES_ENTRY,
    EntryEvent,
    EventKind,
    EventPayload,
    EventReason,
    log_leaf_bytes,
)
from protocol.merkle import MerkleLog, leaf_hash, verify_inclusion
from protocol.signed import SignedDocument
from tests.factories import NODE_A_SIGNING, NODE_B_SIGNING, T0, make_entry, signed_entry
from tests.test_entry import (
    assert_any_byte_change_fails,
    entries,
    ids,
    node_ids,
    sign,
    times,
    unknown_fields,
)

actors = st.just("system") | ids


def header(kind: EventKind, reason: EventReason, version: int, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event_id": "evt-00000001",
        "owner": "chain-a",
        "kind": kind,
        "entry_id": "ent-00000001",
        "entry_version": version,
        "reason": reason,
        "occurred_at": T0,
        "actor": "acct-officer1",
    }
    fields.update(overrides)
    return fields


@st.composite
def event_headers(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(list(EventKind)))
    reason = draw(st.sampled_from(sorted(ALLOWED_REASONS[kind])))
    if kind is EventKind.REGISTERED:
        version = 1
    elif kind is EventKind.CORRECTED:
        version = draw(st.integers(2, 2**53 - 1))
    else:
        version = draw(st.integers(1, 2**53 - 1))
    return header(
        kind,
        reason,
        version,
        event_id=draw(ids),
        owner=draw(node_ids),
        entry_id=draw(ids),
        occurred_at=draw(times),
        actor=draw(actors),
    )


@st.composite
def events_with_payloads(draw: st.DrawFn) -> tuple[EntryEvent, EventPayload]:
    h = draw(event_headers())
    entry = None
    if h["kind"] in CARRIES_ENTRY:
        drawn = draw(entries(owner=h["owner"]))
        entry = sign(replace(drawn, entry_id=h["entry_id"], version=h["entry_version"]))
    salt = draw(st.binary(min_size=32, max_size=32))
    return EntryEvent.create(entry=entry, salt=salt, **h)


def registered() -> tuple[EntryEvent, EventPayload]:
    return EntryEvent.create(
        entry=signed_entry(), **header(EventKind.REGISTERED, EventReason.REGISTRATION, 1)
    )


def deleted(**overrides: Any) -> tuple[EntryEvent, EventPayload]:
    h = header(EventKind.DELETED, EventReason.DATA_SUBJECT_REQUEST, 1, event_id="evt-00000002")
    h.update(overrides)
    return EntryEvent.create(entry=None, **h)


@settings(max_examples=150, deadline=None)
@given(pair=events_with_payloads())
def test_event_and_payload_round_trip_exactly(pair: tuple[EntryEvent, EventPayload]) -> None:
    event, payload = pair
    wire = canonical_bytes(event.to_dict())
    again = EntryEvent.from_dict(parse_json(wire))
    assert again == event
    assert canonical_bytes(again.to_dict()) == wire
    stored = EventPayload.from_dict(parse_json(canonical_bytes(payload.to_dict())))
    assert stored.body_bytes() == payload.body_bytes()
    stored.verify_against(again)


@settings(max_examples=100, deadline=None)
@given(pair=events_with_payloads(), extra=unknown_fields(set(registered()[0].to_dict())))
def test_event_unknown_fields_survive_byte_for_byte(
    pair: tuple[EntryEvent, EventPayload], extra: dict[str, Any]
) -> None:
    d = {**pair[0].to_dict(), **extra}
    parsed = EntryEvent.from_dict(parse_json(canonical_bytes(d)))
    assert parsed.unrecognized_fields == extra
    assert canonical_bytes(parsed.to_dict()) == canonical_bytes(d)


@settings(max_examples=200, deadline=None)
@given(pair=events_with_payloads(), data=st.data())
def test_event_any_single_byte_change_fails(
    pair: tuple[EntryEvent, EventPayload], data: st.DataObject
) -> None:
    assert_any_byte_change_fails(sign(pair[0]), NODE_A_SIGNING, data)


def test_payload_commitment_binds_salt_and_body() -> None:
    event, payload = registered()
    payload.verify_against(event)
    assert payload.body is not None and payload.body["signed"]["type"] == "watchlist-entry"
    assert event.payload_commitment == commit(payload.salt, canonical_bytes(payload.body))
    other_salt = EventPayload(salt=bytes(32), entry=payload.entry)
    with pytest.raises(CommitmentError):
        other_salt.verify_against(event)
    other_entry = EventPayload(salt=payload.salt, entry=signed_entry(seed=7))
    with pytest.raises(CommitmentError):
        other_entry.verify_against(event)
    resigned = EventPayload(salt=payload.salt, entry=signed_entry(NODE_B_SIGNING))
    with pytest.raises(CommitmentError):
        resigned.verify_against(event)
    deletion, tombstone = deleted()
    assert tombstone.body is None and tombstone.to_dict()["entry"] is None
    tombstone.verify_against(deletion)
    with pytest.raises(CommitmentError):
        payload.verify_against(deletion)


def test_owner_cannot_commit_to_a_body_that_does_not_fit_its_event() -> None:
    bad_version = header(EventKind.CORRECTED, EventReason.CORRECTION, 2)
    with pytest.raises(MalformedError, match="ent-00000001 v1 of 'chain-a'"):
        EntryEvent.create(entry=signed_entry(), **bad_version)
    registration = header(EventKind.REGISTERED, EventReason.REGISTRATION, 1)
    with pytest.raises(MalformedError, match="of 'chain-b'"):
        EntryEvent.create(entry=signed_entry(owner="chain-b"), **registration)
    expiry = header(EventKind.EXPIRED, EventReason.RETENTION_EXPIRED, 1)
    with pytest.raises(MalformedError, match="carries null, got a signed entry"):
        EntryEvent.create(entry=signed_entry(), **expiry)
    with pytest.raises(MalformedError, match="carries a signed entry, got null"):
        EntryEvent.create(entry=None, **registration)
    # A forged pairing (commitment honestly made over a body for another entry) is caught on open.
    salt = bytes(range(32))
    foreign = EventPayload(salt=salt, entry=signed_entry(entry_id="ent-99999999"))
    event = EntryEvent(payload_commitment=foreign.commitment(), **registration)
    with pytest.raises(MalformedError, match="ent-99999999"):
        foreign.verify_against(event)


def test_erasure_keeps_the_signed_history_verifying() -> None:
    """Register, correct, delete; erase every payload; the log and every signature still verify."""
    reg_event, reg_payload = registered()
    v2 = sign(replace(make_entry(), version=2, category="theft"))
    cor_event, cor_payload = EntryEvent.create(
        entry=v2, **header(EventKind.CORRECTED, EventReason.CORRECTION, 2, event_id="evt-00000003")
    )
    del_event, del_payload = deleted(entry_version=2, occurred_at=T0 + timedelta(days=2))
    signed_events = [sign(e) for e in (reg_event, cor_event, del_event)]
    log = MerkleLog()
    for doc in signed_events:
        log.append(log_leaf_bytes(doc))
    root = log.root()
    proofs = [log.inclusion_proof(i) for i in range(3)]

    stored: dict[str, bytes | None] = {
        e.event_id: canonical_bytes(p.to_dict())
        for e, p in ((reg_event, reg_payload), (cor_event, cor_payload), (del_event, del_payload))
    }
    for event_id in stored:
        stored[event_id] = None
    del reg_payload, cor_payload, del_payload

    for i, doc in enumerate(signed_events):
        leaf = log_leaf_bytes(doc)
        restored = SignedDocument.from_bytes(leaf, EntryEvent)
        restored.verify([NODE_A_SIGNING.public])
        verify_inclusion(leaf_hash(leaf), i, 3, proofs[i], root)
        assert b"watchlist-entry" not in leaf and b"salt" not in leaf and b"embedding" not in leaf
    assert log.root() == root
    assert all(v is None for v in stored.values())


def test_leaf_is_the_canonical_signed_event() -> None:
    doc = sign(registered()[0])
    assert log_leaf_bytes(doc) == canonical_bytes(doc.to_dict())
    assert parse_json(log_leaf_bytes(doc))["signed"] == doc.payload.to_dict()


def _event(**overrides: Any) -> dict[str, Any]:
    d = deleted()[0].to_dict()
    d.update(overrides)
    return d


def _without(name: str) -> dict[str, Any]:
    d = copy.deepcopy(_event())
    del d[name]
    return d


MISMATCHED = [
    (kind, reason) for kind in EventKind for reason in EventReason if reason not in ALLOWED_REASONS[kind]
]

EVENT_INVALID: list[tuple[str, Any, type[Exception]]] = [
    ("not-an-object", "entry-event", MalformedError),
    ("wrong-type-tag", _event(type="deletion-receipt"), MalformedError),
    ("other-major-version", _event(spec_version="2.1"), MalformedError),
    ("spec-version-not-string", _event(spec_version=1), MalformedError),
    *[(f"missing-{name}", _without(name), MalformedError) for name in sorted(_event()) if name != "type"],
    ("unknown-kind", _event(kind="hidden"), MalformedError),
    ("unknown-reason", _event(reason="marketing"), MalformedError),
    *[
        (f"{kind.value}-with-{reason.value}", _event(kind=kind.value, reason=reason.value), MalformedError)
        for kind, reason in MISMATCHED
    ],
    (
        "registered-version-2",
        _event(kind="registered", reason="registration", entry_version=2),
        MalformedError,
    ),
    ("corrected-version-1", _event(kind="corrected", reason="correction", entry_version=1), MalformedError),
    ("version-zero", _event(entry_version=0), MalformedError),
    ("version-string", _event(entry_version="1"), MalformedError),
    ("version-bool", _event(entry_version=True), MalformedError),
    ("event-id-short", _event(event_id="evt-1"), MalformedError),
    ("event-id-oversized", _event(event_id="e" * 500), OversizedError),
    ("owner-not-node-id", _event(owner="Chain A"), MalformedError),
    ("actor-capitalised-system", _event(actor="System"), MalformedError),
    ("actor-free-text", _event(actor="the night manager"), MalformedError),
    ("time-local-format", _event(occurred_at="2026-11-01 09:00"), MalformedError),
    ("time-offset", _event(occurred_at="2026-11-01T09:00:00+09:00"), MalformedError),
    ("commitment-short", _event(payload_commitment=b64url_encode(bytes(16))), MalformedError),
    ("commitment-not-base64", _event(payload_commitment="!" * 43), MalformedError),
    ("commitment-oversized", _event(payload_commitment="A" * 100_000), OversizedError),
]


@pytest.mark.parametrize(("data", "error"), [c[1:] for c in EVENT_INVALID], ids=[c[0] for c in EVENT_INVALID])
def test_event_invalid_inputs(data: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        EntryEvent.from_dict(data)


def test_every_kind_accepts_its_reasons() -> None:
    for kind, reasons in ALLOWED_REASONS.items():
        for reason in reasons:
            version = 2 if kind is EventKind.CORRECTED else 1
            entry = sign(replace(make_entry(), version=version)) if kind in CARRIES_ENTRY else None
            event, payload = EntryEvent.create(entry=entry, **header(kind, reason, version))
            payload.verify_against(event)
    assert ALLOWED_REASONS[EventKind.EXPIRED] == {EventReason.RETENTION_EXPIRED}
    assert all(
        EventReason.RETENTION_EXPIRED not in ALLOWED_REASONS[k] for k in EventKind if k != EventKind.EXPIRED
    )


def test_sub_second_and_naive_times_are_refused() -> None:
    with pytest.raises(MalformedError, match="whole seconds"):
        deleted(occurred_at=T0 + timedelta(milliseconds=1))
    with pytest.raises(MalformedError, match="UTC-aware"):
        deleted(occurred_at=T0.replace(tzinfo=None))


def _payload(**overrides: Any) -> dict[str, Any]:
    d = registered()[1].to_dict()
    d.update(overrides)
    return d


PAYLOAD_INVALID: list[tuple[str, Any, type[Exception]]] = [
    ("not-an-object", None, MalformedError),
    ("missing-entry", {"salt": b64url_encode(bytes(32))}, MalformedError),
    ("missing-salt", {"entry": None}, MalformedError),
    ("salt-short", _payload(salt=b64url_encode(bytes(31))), MalformedError),
    ("salt-padded", _payload(salt=b64url_encode(bytes(32)) + "="), MalformedError),
    ("entry-not-object", _payload(entry="signed"), MalformedError),
    ("entry-not-signed-document", _payload(entry={"signed": {}, "signatures": []}), MalformedError),
    ("extra-field", _payload(note="should not be here"), MalformedError),
]


@pytest.mark.parametrize(
    ("data", "error"), [c[1:] for c in PAYLOAD_INVALID], ids=[c[0] for c in PAYLOAD_INVALID]
)
def test_payload_invalid_inputs(data: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        EventPayload.from_dict(data)


def test_payload_never_shows_its_salt() -> None:
    _, payload = registered()
    assert b64url_encode(payload.salt) not in repr(payload)
    assert isinstance(payload.entry, SignedDocument)
    assert isinstance(payload.entry.payload, WatchlistEntry)
