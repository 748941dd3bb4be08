"""Log-sync bodies (protocol/sync.py): round trips, unknown fields, every malformed input typed.

``LogRequest``, ``LogPage``, ``LogNotice``, ``ReceiptDelivery`` and ``ReceiptAck`` arrive from
peers inside sealed messages, so their parsers get the same treatment as every signed format:
hypothesis round trips with stable canonical bytes, a table of refusals, and fuzzing (arbitrary
JSON, and valid bodies with one nested value replaced) that may only ever raise ``MalformedError``.
The vectors' log page is also checked against the RFC 9162 root recomputed by hand, the way a
follower checks a page against the leaves it already holds.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.canonical import canonical_bytes, parse_json
from protocol.errors import MalformedError, OversizedError
from protocol.events import EntryEvent, EventKind, log_leaf_bytes
from protocol.fields import MAX_SAFE_INT
from protocol.keys import SigningKey
from protocol.merkle import EMPTY_ROOT, MerkleLog, leaf_hash, node_hash
from protocol.message import PeerMessage, decode_body
from protocol.receipt import RECEIPT_KINDS, DeletionReceipt, ReceiptAction
from protocol.signed import Payload, SignedDocument
from protocol.sync import (
    MAX_PAGE_EVENTS,
    MAX_RECEIPTS,
    SYNC_PURPOSE,
    LogNotice,
    LogPage,
    LogRequest,
    ReceiptAck,
    ReceiptDelivery,
)
from protocol.treehead import TreeHead
from tests.factories import NODE_A_SIGNING, NODE_B_SIGNING, T0
from tests.test_entry import ids, json_values, node_ids, sign, times, unknown_fields
from tests.test_events import event_headers
from tests.vectors import builders

VECTORS = Path(__file__).parent / "vectors"
SYNC_TYPES: dict[str, type[Payload]] = {
    "log-request": LogRequest,
    "log-page": LogPage,
    "log-notice": LogNotice,
    "receipt-delivery": ReceiptDelivery,
    "receipt-ack": ReceiptAck,
}
ACTION = {
    EventKind.DELETED: ReceiptAction.PURGED,
    EventKind.EXPIRED: ReceiptAction.PURGED,
    EventKind.CORRECTED: ReceiptAction.CORRECTED,
}
hashes = st.binary(min_size=32, max_size=32)


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))
    return data


# ----- strategies --------------------------------------------------------------------------------


log_requests = st.builds(
    LogRequest, after=st.integers(0, MAX_SAFE_INT), limit=st.integers(1, MAX_PAGE_EVENTS)
)
log_notices = st.builds(LogNotice, tree_size=st.integers(0, MAX_SAFE_INT))
receipt_acks = st.builds(ReceiptAck, member=node_ids, event_ids=st.lists(ids, max_size=5, unique=True))


@st.composite
def signed_events(draw: st.DrawFn, owner: str) -> SignedDocument[EntryEvent]:
    """A signed event header of ``owner``; the page carries no payloads, so the commitment is opaque."""
    header = {**draw(event_headers()), "owner": owner}
    return sign(EntryEvent(**header, payload_commitment=draw(hashes)))


@st.composite
def log_pages(draw: st.DrawFn) -> LogPage:
    owner = draw(node_ids)
    events = draw(st.lists(signed_events(owner), max_size=4))
    first = draw(st.integers(0, MAX_SAFE_INT - len(events)))
    end = first + len(events)
    head = TreeHead(
        log_id=owner,
        tree_size=end,
        root_hash=EMPTY_ROOT if end == 0 else draw(hashes),
        timestamp=draw(times),
        audit_head=draw(st.none() | hashes),
    )
    latest_size = draw(st.integers(end, MAX_SAFE_INT))
    return LogPage(first=first, events=events, head=sign(head), latest_size=latest_size)


@st.composite
def receipt_deliveries(draw: st.DrawFn) -> ReceiptDelivery:
    owner, member = draw(st.lists(node_ids, min_size=2, max_size=2, unique=True))
    receipts = []
    event_ids = draw(st.lists(ids, min_size=1, max_size=4, unique=True))
    for event_id in event_ids:
        kind = draw(st.sampled_from(sorted(RECEIPT_KINDS)))
        receipt = DeletionReceipt(
            owner=owner,
            member=member,
            event_id=event_id,
            entry_id=draw(ids),
            kind=kind,
            tree_size=draw(st.integers(1, MAX_SAFE_INT)),
            root_hash=draw(st.binary(min_size=32, max_size=32)),
            applied_at=draw(times),
            action=ACTION[kind],
        )
        receipts.append(sign(receipt, NODE_B_SIGNING))
    return ReceiptDelivery(receipts=receipts)


STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "log-request": log_requests,
    "log-page": log_pages(),
    "log-notice": log_notices,
    "receipt-delivery": receipt_deliveries(),
    "receipt-ack": receipt_acks,
}
NAMES = sorted(SYNC_TYPES)
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_every_sync_type_has_a_vector_and_a_strategy() -> None:
    assert set(SYNC_TYPES) == set(STRATEGIES)
    for name, payload_type in SYNC_TYPES.items():
        assert payload_type.TYPE == name
        assert builders.PAYLOAD_TYPES[name] is payload_type


# ----- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(data=st.data())
def test_round_trip_is_exact_and_keeps_unknown_fields(name: str, data: st.DataObject) -> None:
    payload_type = SYNC_TYPES[name]
    body = data.draw(STRATEGIES[name], label=name)
    wire = canonical_bytes(body.to_dict())
    again = payload_type.from_dict(parse_json(wire))
    assert again == body
    assert canonical_bytes(again.to_dict()) == wire
    assert again.canonical() == body.canonical() == wire

    doc = sign(body)
    signed_again = SignedDocument.from_bytes(doc.to_bytes(), payload_type)
    signed_again.verify([NODE_A_SIGNING.public])
    assert signed_again.to_bytes() == doc.to_bytes()

    extra = data.draw(unknown_fields(set(body.to_dict())), label="extra")
    extended = {**body.to_dict(), **extra}
    parsed = payload_type.from_dict(parse_json(canonical_bytes(extended)))
    assert parsed.unrecognized_fields == extra
    assert canonical_bytes(parsed.to_dict()) == canonical_bytes(extended)


def test_unknown_fields_inside_a_page_survive_and_keep_signatures_valid() -> None:
    """A newer owner's extra fields in an event, the head or an envelope are kept and still verify."""
    event, _ = builders.deletion_event()
    event.unrecognized_fields = {"x-later": {"n": 1}}
    head = TreeHead(
        log_id="chain-a",
        tree_size=1,
        root_hash=leaf_hash(log_leaf_bytes(sign(event))),
        timestamp=T0,
        unrecognized_fields={"x-witness": ["w1"]},
    )
    signed_event = sign(event)
    signed_event.unrecognized_fields = {"x-envelope": True}
    page = LogPage(first=0, events=[signed_event], head=sign(head), latest_size=1)
    parsed = LogPage.from_dict(parse_json(page.canonical()))
    assert parsed.canonical() == page.canonical()
    assert parsed.events[0].payload.unrecognized_fields == {"x-later": {"n": 1}}
    assert parsed.events[0].unrecognized_fields == {"x-envelope": True}
    assert parsed.head.payload.unrecognized_fields == {"x-witness": ["w1"]}
    parsed.events[0].verify([NODE_A_SIGNING.public])
    parsed.head.verify([NODE_A_SIGNING.public])


# ----- the vectors, as a follower reads them -----------------------------------------------------


def test_page_vector_head_is_the_rfc9162_root_of_its_events() -> None:
    vector = load("log-page")
    page = SignedDocument.from_dict(vector["document"], LogPage).payload
    owner = SigningKey(bytes.fromhex(vector["signer_seeds_hex"][0])).public
    page.head.verify([owner])
    for event in page.events:
        event.verify([owner])
    leaves = [leaf_hash(log_leaf_bytes(e)) for e in page.events]
    assert [h.hex() for h in leaves] == vector["leaf_hashes_hex"]
    # MTH of two leaves, written out from RFC 9162 2.1.1 rather than taken from MerkleLog.
    assert page.head.payload.root_hash == node_hash(leaves[0], leaves[1])
    assert (page.first, page.head.payload.tree_size, page.latest_size, page.owner) == (0, 2, 2, "chain-a")


def test_follower_recomputes_the_root_over_held_leaves_plus_the_page() -> None:
    """Holding event 0, a follower asks for events after 1; the root over 0 + page must be the head's."""
    events = [sign(builders.registration_event()[0]), sign(builders.deletion_event()[0])]
    owner_log = MerkleLog()
    for e in events:
        owner_log.append(log_leaf_bytes(e))
    head = sign(TreeHead(log_id="chain-a", tree_size=2, root_hash=owner_log.root(), timestamp=T0))
    page = LogPage.from_dict(
        parse_json(LogPage(first=1, events=events[1:], head=head, latest_size=2).canonical())
    )

    def follower_root(held: list[bytes]) -> bytes:
        log = MerkleLog()
        for leaf in [*held, *(log_leaf_bytes(e) for e in page.events)]:
            log.append(leaf)
        return log.root()

    assert follower_root([log_leaf_bytes(events[0])]) == page.head.payload.root_hash
    # The owner rewrote event 0 after the follower verified it: the same head no longer matches (a fork).
    rewritten = sign(builders.registration_event()[0], NODE_B_SIGNING)
    assert follower_root([log_leaf_bytes(rewritten)]) != page.head.payload.root_hash


def test_delivery_vector_confirms_the_deletion_in_the_page_vector() -> None:
    page = SignedDocument.from_dict(load("log-page")["document"], LogPage).payload
    vector = load("receipt-delivery")
    delivery = SignedDocument.from_dict(vector["document"], ReceiptDelivery).payload
    member = SigningKey(bytes.fromhex(vector["signer_seeds_hex"][0])).public
    (receipt,) = delivery.receipts
    receipt.verify([member])
    receipt.payload.check_against(page.events[1].payload, leaf_index=1)
    ack = SignedDocument.from_dict(load("receipt-ack")["document"], ReceiptAck).payload
    assert ack.member == receipt.payload.member
    assert ack.event_ids == [receipt.payload.event_id]


@pytest.mark.parametrize("name", NAMES)
def test_sync_bodies_travel_in_a_peer_message_under_log_sync(name: str) -> None:
    body = SignedDocument.from_dict(load(name)["document"], SYNC_TYPES[name]).payload
    message = PeerMessage(
        sender="chain-b",
        recipient="chain-a",
        manifest_version=1,
        purpose=SYNC_PURPOSE,
        issued_at=T0,
        nonce=bytes(16),
        body_type=name,
        body=body.to_dict(),
    )
    parsed = PeerMessage.from_dict(parse_json(message.canonical()))
    assert parsed.purpose == "log-sync"
    assert decode_body(parsed, SYNC_TYPES) == body


# ----- refusals ----------------------------------------------------------------------------------


def vector_body(name: str) -> dict[str, Any]:
    signed: dict[str, Any] = load(name)["document"]["signed"]
    return copy.deepcopy(signed)


def edited(name: str, edit: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    d = vector_body(name)
    edit(d)
    return d


def with_fields(name: str, **fields: Any) -> dict[str, Any]:
    return {**vector_body(name), **fields}


def without(name: str, field: str) -> dict[str, Any]:
    d = vector_body(name)
    del d[field]
    return d


def page_event(i: int) -> dict[str, Any]:
    event: dict[str, Any] = vector_body("log-page")["events"][i]
    return event


def delivery_receipt(**fields: Any) -> dict[str, Any]:
    receipt: dict[str, Any] = vector_body("receipt-delivery")["receipts"][0]
    receipt["signed"].update(fields)
    return receipt


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(d: Any) -> None:
        for key in path[:-1]:
            d = d[key]
        d[path[-1]] = value

    return edit


def _header_cases(name: str) -> list[tuple[str, str, Any, type[Exception]]]:
    return [
        (name, "not-an-object", [vector_body(name)], MalformedError),
        (name, "null", None, MalformedError),
        (name, "wrong-type-tag", with_fields(name, type="entry-event"), MalformedError),
        (name, "other-major-version", with_fields(name, spec_version="2.0"), MalformedError),
        (name, "spec-version-not-string", with_fields(name, spec_version=1.0), MalformedError),
        *[
            (name, f"missing-{field}", without(name, field), MalformedError)
            for field in sorted(vector_body(name))
        ],
    ]


INVALID: list[tuple[str, str, Any, type[Exception]]] = [
    *(case for name in NAMES for case in _header_cases(name)),
    # log-request
    ("log-request", "after-negative", with_fields("log-request", after=-1), MalformedError),
    ("log-request", "after-beyond-i-json", with_fields("log-request", after=2**53), MalformedError),
    ("log-request", "after-string", with_fields("log-request", after="0"), MalformedError),
    ("log-request", "after-float", with_fields("log-request", after=1.5), MalformedError),
    ("log-request", "after-bool", with_fields("log-request", after=False), MalformedError),
    ("log-request", "limit-zero", with_fields("log-request", limit=0), MalformedError),
    ("log-request", "limit-too-large", with_fields("log-request", limit=MAX_PAGE_EVENTS + 1), MalformedError),
    ("log-request", "limit-negative", with_fields("log-request", limit=-5), MalformedError),
    ("log-request", "limit-bool", with_fields("log-request", limit=True), MalformedError),
    # log-page
    (
        "log-page",
        "head-size-not-first-plus-events",
        with_fields("log-page", first=1, latest_size=3),
        MalformedError,
    ),
    ("log-page", "head-size-beyond-page", with_fields("log-page", events=[page_event(0)]), MalformedError),
    ("log-page", "empty-page-with-head-of-2", with_fields("log-page", events=[]), MalformedError),
    (
        "log-page",
        "event-of-another-owner",
        edited("log-page", _set(("events", 1, "signed", "owner"), "chain-b")),
        MalformedError,
    ),
    (
        "log-page",
        "head-of-another-log",
        edited("log-page", _set(("head", "signed", "log_id"), "chain-b")),
        MalformedError,
    ),
    ("log-page", "latest-size-before-end", with_fields("log-page", latest_size=1), MalformedError),
    ("log-page", "latest-size-negative", with_fields("log-page", latest_size=-1), MalformedError),
    ("log-page", "first-negative", with_fields("log-page", first=-1), MalformedError),
    ("log-page", "first-string", with_fields("log-page", first="0"), MalformedError),
    (
        "log-page",
        "too-many-events",
        with_fields("log-page", events=[page_event(0)] * (MAX_PAGE_EVENTS + 1)),
        OversizedError,
    ),
    ("log-page", "events-not-array", with_fields("log-page", events=page_event(0)), MalformedError),
    ("log-page", "event-not-object", with_fields("log-page", events=[page_event(0), "evt"]), MalformedError),
    (
        "log-page",
        "event-unsigned-form",
        with_fields("log-page", events=[page_event(0), page_event(1)["signed"]]),
        MalformedError,
    ),
    (
        "log-page",
        "event-is-a-receipt",
        with_fields("log-page", events=[page_event(0), vector_body("receipt-delivery")["receipts"][0]]),
        MalformedError,
    ),
    (
        "log-page",
        "event-bad-keyid",
        edited("log-page", _set(("events", 0, "signatures", 0, "keyid"), "ab")),
        MalformedError,
    ),
    ("log-page", "head-not-object", with_fields("log-page", head="head"), MalformedError),
    ("log-page", "head-is-an-event", with_fields("log-page", head=page_event(0)), MalformedError),
    (
        "log-page",
        "head-root-short",
        edited("log-page", _set(("head", "signed", "root_hash"), "AAAA")),
        MalformedError,
    ),
    # log-notice
    ("log-notice", "tree-size-negative", with_fields("log-notice", tree_size=-1), MalformedError),
    ("log-notice", "tree-size-beyond-i-json", with_fields("log-notice", tree_size=2**53), MalformedError),
    ("log-notice", "tree-size-string", with_fields("log-notice", tree_size="2"), MalformedError),
    ("log-notice", "tree-size-null", with_fields("log-notice", tree_size=None), MalformedError),
    # receipt-delivery
    ("receipt-delivery", "no-receipts", with_fields("receipt-delivery", receipts=[]), MalformedError),
    (
        "receipt-delivery",
        "mixing-members",
        with_fields("receipt-delivery", receipts=[delivery_receipt(), delivery_receipt(member="chain-c")]),
        MalformedError,
    ),
    (
        "receipt-delivery",
        "mixing-owners",
        with_fields("receipt-delivery", receipts=[delivery_receipt(), delivery_receipt(owner="chain-c")]),
        MalformedError,
    ),
    (
        "receipt-delivery",
        "too-many-receipts",
        with_fields("receipt-delivery", receipts=[delivery_receipt()] * (MAX_RECEIPTS + 1)),
        OversizedError,
    ),
    (
        "receipt-delivery",
        "receipts-not-array",
        with_fields("receipt-delivery", receipts=delivery_receipt()),
        MalformedError,
    ),
    ("receipt-delivery", "receipt-not-object", with_fields("receipt-delivery", receipts=[1]), MalformedError),
    (
        "receipt-delivery",
        "receipt-is-an-event",
        with_fields("receipt-delivery", receipts=[page_event(1)]),
        MalformedError,
    ),
    (
        "receipt-delivery",
        "receipt-for-a-registration",
        with_fields("receipt-delivery", receipts=[delivery_receipt(kind="registered")]),
        MalformedError,
    ),
    # receipt-ack
    ("receipt-ack", "member-capitals", with_fields("receipt-ack", member="Chain-B"), MalformedError),
    ("receipt-ack", "member-one-char", with_fields("receipt-ack", member="b"), MalformedError),
    ("receipt-ack", "member-empty", with_fields("receipt-ack", member=""), MalformedError),
    ("receipt-ack", "member-with-space", with_fields("receipt-ack", member="chain b"), MalformedError),
    ("receipt-ack", "member-oversized", with_fields("receipt-ack", member="m" * 64), OversizedError),
    ("receipt-ack", "member-number", with_fields("receipt-ack", member=2), MalformedError),
    (
        "receipt-ack",
        "event-ids-not-array",
        with_fields("receipt-ack", event_ids="evt-0000000000000002"),
        MalformedError,
    ),
    ("receipt-ack", "event-id-number", with_fields("receipt-ack", event_ids=[2]), MalformedError),
    ("receipt-ack", "event-id-oversized", with_fields("receipt-ack", event_ids=["e" * 65]), OversizedError),
    (
        "receipt-ack",
        "event-ids-duplicate",
        with_fields("receipt-ack", event_ids=["evt-0000000000000002"] * 2),
        MalformedError,
    ),
    (
        "receipt-ack",
        "too-many-event-ids",
        with_fields("receipt-ack", event_ids=[f"evt-{i:016d}" for i in range(MAX_RECEIPTS + 1)]),
        OversizedError,
    ),
]


@pytest.mark.parametrize(
    ("name", "data", "error"), [(c[0], c[2], c[3]) for c in INVALID], ids=[f"{c[0]}:{c[1]}" for c in INVALID]
)
def test_invalid_inputs(name: str, data: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        SYNC_TYPES[name].from_dict(data)


@pytest.mark.parametrize("name", NAMES)
def test_the_table_starts_from_a_valid_body(name: str) -> None:
    """Each refusal above is one edit away from this: the base body itself parses."""
    body = vector_body(name)
    assert canonical_bytes(SYNC_TYPES[name].from_dict(body).to_dict()) == canonical_bytes(body)


def test_limits_are_inclusive() -> None:
    page = builders.log_page()[0]
    assert LogRequest(after=MAX_SAFE_INT, limit=MAX_PAGE_EVENTS).limit == MAX_PAGE_EVENTS
    assert LogRequest(after=0, limit=1).after == 0
    assert LogNotice(tree_size=0).tree_size == 0
    ids_at_limit = [f"evt-{i:016d}" for i in range(MAX_RECEIPTS)]
    ack = ReceiptAck.from_dict({**ReceiptAck(member="chain-b", event_ids=ids_at_limit).to_dict()})
    assert len(ack.event_ids) == MAX_RECEIPTS
    assert ReceiptAck(member="chain-b", event_ids=[]).event_ids == []
    receipt = page_receipt().payload
    receipts = [sign(replace(receipt, event_id=event_id), NODE_B_SIGNING) for event_id in ids_at_limit]
    delivery = ReceiptDelivery.from_dict(ReceiptDelivery(receipts=receipts).to_dict())
    assert len(delivery.receipts) == MAX_RECEIPTS
    event = page.events[1]
    full = [event] * MAX_PAGE_EVENTS
    head = sign(TreeHead(log_id="chain-a", tree_size=MAX_PAGE_EVENTS, root_hash=bytes(32), timestamp=T0))
    parsed = LogPage.from_dict(
        LogPage(first=0, events=full, head=head, latest_size=MAX_PAGE_EVENTS).to_dict()
    )
    assert len(parsed.events) == MAX_PAGE_EVENTS
    empty = sign(TreeHead(log_id="chain-a", tree_size=7, root_hash=bytes(32), timestamp=T0))
    assert (
        LogPage.from_dict(LogPage(first=7, events=[], head=empty, latest_size=9).to_dict()).owner == "chain-a"
    )


def page_receipt() -> SignedDocument[DeletionReceipt]:
    return SignedDocument.from_dict(vector_body("receipt-delivery")["receipts"][0], DeletionReceipt)


def _page(**fields: Any) -> LogPage:
    page = builders.log_page()[0]
    args = {"first": page.first, "events": page.events, "head": page.head, "latest_size": page.latest_size}
    return LogPage(**{**args, **fields})


CONSTRUCTOR_INVALID: list[tuple[str, Callable[[], Any]]] = [
    ("request-after-negative", lambda: LogRequest(after=-1)),
    ("request-after-beyond-i-json", lambda: LogRequest(after=MAX_SAFE_INT + 1)),
    ("request-limit-zero", lambda: LogRequest(after=0, limit=0)),
    ("request-limit-too-large", lambda: LogRequest(after=0, limit=MAX_PAGE_EVENTS + 1)),
    ("notice-negative", lambda: LogNotice(tree_size=-1)),
    ("notice-beyond-i-json", lambda: LogNotice(tree_size=MAX_SAFE_INT + 1)),
    ("page-head-size-mismatch", lambda: _page(first=1, latest_size=3)),
    ("page-fewer-events-than-head", lambda: _page(events=_page().events[:1])),
    ("page-latest-before-end", lambda: _page(latest_size=1)),
    ("page-too-many-events", lambda: _page(events=_page().events * 251)),
    (
        "page-event-of-another-owner",
        lambda: _page(
            events=[
                _page().events[0],
                sign(EntryEvent.from_dict({**_page().events[1].payload.to_dict(), "owner": "chain-b"})),
            ]
        ),
    ),
    ("delivery-empty", lambda: ReceiptDelivery(receipts=[])),
    ("delivery-same-event-twice", lambda: ReceiptDelivery(receipts=[page_receipt()] * 2)),
    ("delivery-too-many", lambda: ReceiptDelivery(receipts=[page_receipt()] * (MAX_RECEIPTS + 1))),
    (
        "delivery-mixing-members",
        lambda: ReceiptDelivery(
            receipts=[
                page_receipt(),
                sign(DeletionReceipt.from_dict({**page_receipt().payload.to_dict(), "member": "chain-c"})),
            ]
        ),
    ),
    ("ack-member-not-node-id", lambda: ReceiptAck(member="Chain B", event_ids=[])),
    ("ack-member-too-long", lambda: ReceiptAck(member="m" * 64, event_ids=[])),
    ("ack-too-many", lambda: ReceiptAck(member="chain-b", event_ids=[f"evt-{i:016d}" for i in range(501)])),
]


@pytest.mark.parametrize("make", [c[1] for c in CONSTRUCTOR_INVALID], ids=[c[0] for c in CONSTRUCTOR_INVALID])
def test_constructors_refuse_what_the_parser_refuses(make: Callable[[], Any]) -> None:
    with pytest.raises(MalformedError):
        make()


# Bodies the parser refuses must not be constructible either (found by this suite, fixed in
# protocol/sync.py): a node must never send what its peers cannot read.
CONSTRUCTOR_GAPS: list[tuple[str, Callable[[], Any]]] = [
    ("ack-duplicate-event-ids", lambda: ReceiptAck(member="chain-b", event_ids=["evt-0000000000000002"] * 2)),
    ("ack-event-id-over-64", lambda: ReceiptAck(member="chain-b", event_ids=["e" * 65])),
    (
        "page-first-negative",
        lambda: LogPage(first=-1, events=_page().events[:1], head=_empty_head(), latest_size=0),
    ),
    ("page-latest-beyond-i-json", lambda: _page(latest_size=MAX_SAFE_INT + 1)),
    ("request-after-bool", lambda: LogRequest(after=True)),
    ("ack-event-id-not-an-id", lambda: ReceiptAck(member="chain-b", event_ids=["../x"])),
]


def _empty_head() -> SignedDocument[TreeHead]:
    return sign(TreeHead(log_id="chain-a", tree_size=0, root_hash=EMPTY_ROOT, timestamp=T0))


@pytest.mark.parametrize("make", [c[1] for c in CONSTRUCTOR_GAPS], ids=[c[0] for c in CONSTRUCTOR_GAPS])
def test_the_constructor_refuses_what_the_parser_refuses(make: Callable[[], Any]) -> None:
    with pytest.raises(MalformedError):
        make()


# ----- fuzzing: only MalformedError may escape ---------------------------------------------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every position inside a JSON value (object keys and list indexes), parents before children."""
    out: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in items:
        out.append((*prefix, key))
        out.extend(_paths(child, (*prefix, key)))
    return out


BODY_PATHS = {name: _paths(vector_body(name)) for name in NAMES}
numbers_near_limits = st.sampled_from(
    [-1, 0, 1, 2, 3, 499, 500, 501, MAX_SAFE_INT, MAX_SAFE_INT + 1, 2.0, 1e300]
)
junk = json_values | numbers_near_limits


@st.composite
def fuzzed_bodies(draw: st.DrawFn, name: str) -> Any:
    """Arbitrary JSON; junk fields under a valid header; or a valid body with one nested value changed."""
    mode = draw(st.sampled_from(["any-json", "fields", "nested"]), label="mode")
    if mode == "any-json":
        return draw(json_values, label="json")
    body = vector_body(name)
    if mode == "fields":
        names = sorted(set(body) - {"type", "spec_version"})
        fields = draw(st.dictionaries(st.sampled_from(names), junk, max_size=len(names)), label="fields")
        return {"type": name, "spec_version": "1.0", **fields}
    # One value anywhere inside (event, head, receipt, signature) replaced or removed.
    path = draw(st.sampled_from(BODY_PATHS[name]), label="path")
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans(), label="remove"):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(junk, label="value")
    return body


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_input_raises_only_malformed(name: str, data: st.DataObject) -> None:
    body = data.draw(fuzzed_bodies(name), label="body")
    try:
        SYNC_TYPES[name].from_dict(body)
    except MalformedError:
        pass
