"""Deletion receipts: what a member signs after applying a deletion, expiry or correction."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import canonical_bytes, parse_json
from protocol.errors import MalformedError, OversizedError, SignatureError
from protocol.events import EntryEvent, EventKind, EventReason
from protocol.receipt import RECEIPT_KINDS, DeletionReceipt, ReceiptAction, ReceiptHistoryMismatch
from protocol.signed import SignedDocument
from tests.factories import NODE_A_SIGNING, NODE_B_SIGNING, T0, make_entry
from tests.test_entry import assert_any_byte_change_fails, ids, node_ids, sign, times, unknown_fields

ACTION = {
    EventKind.DELETED: ReceiptAction.PURGED,
    EventKind.EXPIRED: ReceiptAction.PURGED,
    EventKind.CORRECTED: ReceiptAction.CORRECTED,
}


@st.composite
def receipts(draw: st.DrawFn) -> DeletionReceipt:
    owner, member = draw(st.lists(node_ids, min_size=2, max_size=2, unique=True))
    kind = draw(st.sampled_from(sorted(RECEIPT_KINDS)))
    return DeletionReceipt(
        owner=owner,
        member=member,
        event_id=draw(ids),
        entry_id=draw(ids),
        kind=kind,
        tree_size=draw(st.integers(1, 2**53 - 1)),
        root_hash=draw(st.binary(min_size=32, max_size=32)),
        applied_at=draw(times),
        action=ACTION[kind],
    )


def deletion_event(**overrides: Any) -> EntryEvent:
    fields: dict[str, Any] = {
        "event_id": "evt-00000002",
        "owner": "chain-a",
        "kind": EventKind.DELETED,
        "entry_id": "ent-00000001",
        "entry_version": 1,
        "reason": EventReason.DATA_SUBJECT_REQUEST,
        "occurred_at": T0,
        "actor": "acct-officer1",
    }
    fields.update(overrides)
    return EntryEvent.create(entry=None, **fields)[0]


ROOT_2 = bytes(range(32))
"""The owner's root at size 2 in these tests."""


def receipt() -> DeletionReceipt:
    return DeletionReceipt.for_event(
        deletion_event(),
        member="chain-b",
        tree_size=2,
        root_hash=ROOT_2,
        applied_at=T0 + timedelta(seconds=3),
    )


@settings(max_examples=150, deadline=None)
@given(r=receipts())
def test_receipt_round_trip_is_exact(r: DeletionReceipt) -> None:
    wire = canonical_bytes(r.to_dict())
    again = DeletionReceipt.from_dict(parse_json(wire))
    assert again == r
    assert canonical_bytes(again.to_dict()) == wire


@settings(max_examples=100, deadline=None)
@given(r=receipts(), extra=unknown_fields(set(receipt().to_dict())))
def test_receipt_unknown_fields_survive_byte_for_byte(r: DeletionReceipt, extra: dict[str, Any]) -> None:
    d = {**r.to_dict(), **extra}
    parsed = DeletionReceipt.from_dict(parse_json(canonical_bytes(d)))
    assert parsed.unrecognized_fields == extra
    assert canonical_bytes(parsed.to_dict()) == canonical_bytes(d)


@settings(max_examples=200, deadline=None)
@given(r=receipts(), data=st.data())
def test_receipt_any_single_byte_change_fails(r: DeletionReceipt, data: st.DataObject) -> None:
    assert_any_byte_change_fails(sign(r, NODE_B_SIGNING), NODE_B_SIGNING, data)


def test_receipt_is_made_for_an_event_and_checked_against_it() -> None:
    event = deletion_event()
    r = receipt()
    assert (r.owner, r.member, r.event_id, r.entry_id, r.kind, r.action) == (
        "chain-a",
        "chain-b",
        "evt-00000002",
        "ent-00000001",
        EventKind.DELETED,
        ReceiptAction.PURGED,
    )
    r.check_against(event)
    r.check_against(event, leaf_index=1)
    with pytest.raises(MalformedError, match="does not contain the event at index 2"):
        r.check_against(event, leaf_index=2)
    with pytest.raises(MalformedError, match="evt-00000009"):
        r.check_against(deletion_event(event_id="evt-00000009"))
    with pytest.raises(MalformedError, match="ent-00000009"):
        r.check_against(deletion_event(entry_id="ent-00000009"))
    with pytest.raises(MalformedError, match="chain-c"):
        r.check_against(deletion_event(owner="chain-c"))
    expiry = deletion_event(kind=EventKind.EXPIRED, reason=EventReason.RETENTION_EXPIRED)
    with pytest.raises(MalformedError, match="expired"):
        r.check_against(expiry)
    purge = DeletionReceipt.for_event(expiry, member="chain-b", tree_size=5, root_hash=ROOT_2, applied_at=T0)
    assert purge.action is ReceiptAction.PURGED


def test_a_receipt_names_the_owners_root_or_is_refused() -> None:
    event, r = deletion_event(), receipt()
    asked: list[int] = []

    def owner_root(n: int) -> bytes:
        asked.append(n)
        return ROOT_2 if n == 2 else bytes(32)

    r.check_against(event, leaf_index=1, root_at=owner_root)
    assert asked == [2]
    with pytest.raises(ReceiptHistoryMismatch, match="chain-b for evt-00000002: root 000102") as caught:
        r.check_against(event, leaf_index=1, root_at=lambda n: bytes([9]) * 32)
    assert caught.value.code == "receipt_history_mismatch"
    with pytest.raises(MalformedError, match="does not contain"):  # the size is checked before the root
        r.check_against(event, leaf_index=2, root_at=owner_root)


def test_correction_receipt_and_registration_needs_none() -> None:
    correction, _ = EntryEvent.create(
        entry=sign(make_entry(version=2)),
        event_id="evt-00000003",
        owner="chain-a",
        kind=EventKind.CORRECTED,
        entry_id="ent-00000001",
        entry_version=2,
        reason=EventReason.CORRECTION,
        occurred_at=T0,
        actor="acct-officer1",
    )
    r = DeletionReceipt.for_event(correction, member="chain-c", tree_size=3, root_hash=ROOT_2, applied_at=T0)
    assert r.action is ReceiptAction.CORRECTED
    registration, _ = EntryEvent.create(
        entry=sign(make_entry()),
        event_id="evt-00000001",
        owner="chain-a",
        kind=EventKind.REGISTERED,
        entry_id="ent-00000001",
        entry_version=1,
        reason=EventReason.REGISTRATION,
        occurred_at=T0,
        actor="acct-officer1",
    )
    with pytest.raises(MalformedError, match="needs no receipt"):
        DeletionReceipt.for_event(
            registration, member="chain-b", tree_size=1, root_hash=ROOT_2, applied_at=T0
        )


def test_receipt_verifies_only_under_the_members_key() -> None:
    doc = sign(receipt(), NODE_B_SIGNING)
    SignedDocument.from_bytes(doc.to_bytes(), DeletionReceipt).verify([NODE_B_SIGNING.public])
    with pytest.raises(SignatureError, match="signed by 0/1"):
        doc.verify([NODE_A_SIGNING.public])


def _receipt(**overrides: Any) -> dict[str, Any]:
    d = receipt().to_dict()
    d.update(overrides)
    return d


def _without(name: str) -> dict[str, Any]:
    d = receipt().to_dict()
    del d[name]
    return d


RECEIPT_INVALID: list[tuple[str, Any, type[Exception]]] = [
    ("not-an-object", [], MalformedError),
    ("wrong-type-tag", _receipt(type="entry-event"), MalformedError),
    ("other-major-version", _receipt(spec_version="0.9"), MalformedError),
    *[(f"missing-{name}", _without(name), MalformedError) for name in sorted(_receipt()) if name != "type"],
    ("member-is-owner", _receipt(member="chain-a"), MalformedError),
    ("kind-registered", _receipt(kind="registered"), MalformedError),
    ("kind-unknown", _receipt(kind="forgotten"), MalformedError),
    ("action-unknown", _receipt(action="flagged"), MalformedError),
    ("deleted-but-corrected", _receipt(action="corrected"), MalformedError),
    ("corrected-but-purged", _receipt(kind="corrected", action="purged"), MalformedError),
    ("tree-size-zero", _receipt(tree_size=0), MalformedError),
    ("tree-size-negative", _receipt(tree_size=-3), MalformedError),
    ("tree-size-float", _receipt(tree_size=2.5), MalformedError),
    ("tree-size-beyond-i-json", _receipt(tree_size=2**53), MalformedError),
    ("root-hash-short", _receipt(root_hash="AAAA"), MalformedError),
    ("root-hash-padded", _receipt(root_hash="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="), MalformedError),
    ("root-hash-hex", _receipt(root_hash=ROOT_2.hex()), MalformedError),
    ("root-hash-null", _receipt(root_hash=None), MalformedError),
    ("applied-at-date-only", _receipt(applied_at="2026-11-01"), MalformedError),
    ("event-id-oversized", _receipt(event_id="e" * 65), OversizedError),
    ("member-oversized", _receipt(member="m" * 64), OversizedError),
    ("member-with-space", _receipt(member="chain b"), MalformedError),
]


@pytest.mark.parametrize(
    ("data", "error"), [c[1:] for c in RECEIPT_INVALID], ids=[c[0] for c in RECEIPT_INVALID]
)
def test_receipt_invalid_inputs(data: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        DeletionReceipt.from_dict(data)
