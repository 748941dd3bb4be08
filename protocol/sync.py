"""Federation bodies that are not queries: log pages, change notices and receipt deliveries.

Every member follows every other member's event log. A follower asks for the events after its
checkpoint (``LogRequest``); the owner answers with the signed events and a tree head it signs
for exactly the end of the page (``LogPage``), so the follower can recompute the root over the
leaves it holds and check it against a signature, page by page. An owner that changed its log
pushes a ``LogNotice`` so followers pull at once instead of on their schedule; a member that
applied a deletion or correction returns the signed receipts in a ``ReceiptDelivery``.

All of these travel as the body of a signed, sealed ``PeerMessage`` under the reserved purpose
``SYNC_PURPOSE``: they carry entry ids and event headers, never biometric data, and serve the
accuracy and deletion duties of the joint use itself rather than one of the group's purposes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

from protocol.errors import MalformedError
from protocol.events import EntryEvent
from protocol.fields import ID_RE, MAX_SAFE_INT, NODE_ID_RE
from protocol.provision import ThirdPartyProvision
from protocol.receipt import DeletionReceipt
from protocol.signed import SPEC_VERSION, Payload, SignedDocument
from protocol.treehead import TreeHead

__all__ = [
    "LOG_EVENT_TYPES",
    "MAX_PAGE_EVENTS",
    "MAX_RECEIPTS",
    "SYNC_PURPOSE",
    "LogNotice",
    "LogPage",
    "LogRequest",
    "ReceiptAck",
    "ReceiptDelivery",
    "parse_log_event",
]

LOG_EVENT_TYPES: dict[str, type[Payload]] = {
    EntryEvent.TYPE: EntryEvent,
    ThirdPartyProvision.TYPE: ThirdPartyProvision,
}
"""What a node's event log holds: changes to entries, and records of provision to third parties."""


def parse_log_event(data: Any) -> SignedDocument[Any]:
    """A log leaf's signed document, typed by its ``signed.type`` (only the log's event types)."""
    signed = data.get("signed") if isinstance(data, dict) else None
    kind = signed.get("type") if isinstance(signed, dict) else None
    payload_type = LOG_EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if payload_type is None:
        raise MalformedError(f"log event of type {kind!r:.40}: expected one of {sorted(LOG_EVENT_TYPES)}")
    return SignedDocument.from_dict(data, payload_type)


SYNC_PURPOSE = "log-sync"
"""The purpose named by log requests, pages, notices and receipts (not one of the group's purposes)."""
MAX_PAGE_EVENTS = 500
MAX_RECEIPTS = 500


@dataclass(kw_only=True)
class LogRequest(Payload):
    """"Send me your events from index ``after`` on (at most ``limit``)"."""

    TYPE = "log-request"

    after: int
    limit: int = MAX_PAGE_EVENTS
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.after, bool) or isinstance(self.limit, bool):
            raise MalformedError(f"{self.TYPE}: after and limit are integers, not booleans")
        if not 0 <= self.after <= MAX_SAFE_INT:
            raise MalformedError(f"{self.TYPE}.after: {self.after} outside [0, {MAX_SAFE_INT}]")
        if not 1 <= self.limit <= MAX_PAGE_EVENTS:
            raise MalformedError(f"{self.TYPE}.limit: {self.limit} outside [1, {MAX_PAGE_EVENTS}]")

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized({**self._header(), "after": self.after, "limit": self.limit})

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            after=f.integer("after", high=MAX_SAFE_INT),
            limit=f.integer("limit", low=1, high=MAX_PAGE_EVENTS),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )


@dataclass(kw_only=True)
class LogPage(Payload):
    """Events ``first``.. of the owner's log, and the owner's signed head at the page's end.

    ``head.tree_size == first + len(events)`` always holds; ``latest_size`` says whether more
    pages follow. An empty page (nothing after ``first``) carries the head at ``first``.
    """

    TYPE = "log-page"

    first: int
    events: list[SignedDocument[Any]]
    head: SignedDocument[TreeHead]
    latest_size: int
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.events) > MAX_PAGE_EVENTS:
            raise MalformedError(f"log-page.events: {len(self.events)} items, limit {MAX_PAGE_EVENTS}")
        if not 0 <= self.first <= MAX_SAFE_INT:
            raise MalformedError(f"log-page.first: {self.first} outside [0, {MAX_SAFE_INT}]")
        if self.latest_size > MAX_SAFE_INT:
            raise MalformedError(f"log-page.latest_size: {self.latest_size} beyond {MAX_SAFE_INT}")
        end = self.first + len(self.events)
        if self.head.payload.tree_size != end:
            raise MalformedError(
                f"log-page: events {self.first}..{end} but the head is for size {self.head.payload.tree_size}"
            )
        if self.latest_size < end:
            raise MalformedError(f"log-page.latest_size: {self.latest_size} is before the page's end {end}")
        owners = {e.payload.owner for e in self.events} - {self.head.payload.log_id}
        if owners:
            raise MalformedError(
                f"log-page: events of {sorted(owners)} in the log of {self.head.payload.log_id!r}"
            )

    @property
    def owner(self) -> str:
        return self.head.payload.log_id

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "first": self.first,
                "events": [e.to_dict() for e in self.events],
                "head": self.head.to_dict(),
                "latest_size": self.latest_size,
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            first=f.integer("first", high=MAX_SAFE_INT),
            events=[parse_log_event(e) for e in f.array("events", max_items=MAX_PAGE_EVENTS)],
            head=SignedDocument.from_dict(f.obj("head"), TreeHead),
            latest_size=f.integer("latest_size", high=MAX_SAFE_INT),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )


@dataclass(kw_only=True)
class LogNotice(Payload):
    """"My log now has ``tree_size`` events": a hint to pull now; it proves nothing by itself."""

    TYPE = "log-notice"

    tree_size: int
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.tree_size <= MAX_SAFE_INT:
            raise MalformedError(f"log-notice.tree_size: {self.tree_size} outside [0, {MAX_SAFE_INT}]")

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized({**self._header(), "tree_size": self.tree_size})

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            tree_size=f.integer("tree_size", high=MAX_SAFE_INT),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )


@dataclass(kw_only=True)
class ReceiptDelivery(Payload):
    """Signed receipts from one member for events of one owner's log."""

    TYPE = "receipt-delivery"

    receipts: list[SignedDocument[DeletionReceipt]]
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= len(self.receipts) <= MAX_RECEIPTS:
            raise MalformedError(f"receipt-delivery.receipts: {len(self.receipts)} items, expected 1..{MAX_RECEIPTS}")
        pairs = {(r.payload.owner, r.payload.member) for r in self.receipts}
        if len(pairs) != 1:
            raise MalformedError(f"receipt-delivery: receipts of several (owner, member) pairs {sorted(pairs)}")
        events = [r.payload.event_id for r in self.receipts]
        if len(set(events)) != len(events):
            raise MalformedError("receipt-delivery: the same event is confirmed twice")

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {**self._header(), "receipts": [r.to_dict() for r in self.receipts]}
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            receipts=[
                SignedDocument.from_dict(r, DeletionReceipt)
                for r in f.array("receipts", max_items=MAX_RECEIPTS)
            ],
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )


@dataclass(kw_only=True)
class ReceiptAck(Payload):
    """The owner's answer to a delivery: which event ids it now holds a receipt for from ``member``."""

    TYPE = "receipt-ack"

    member: str
    event_ids: list[str]
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not NODE_ID_RE.fullmatch(self.member):
            raise MalformedError(f"receipt-ack.member: {self.member!r:.60} is not a node id")
        if len(self.event_ids) > MAX_RECEIPTS:
            raise MalformedError(f"receipt-ack.event_ids: {len(self.event_ids)} items, limit {MAX_RECEIPTS}")
        if len(set(self.event_ids)) != len(self.event_ids):
            raise MalformedError("receipt-ack.event_ids: an event id is named twice")
        for event_id in self.event_ids:
            if not ID_RE.fullmatch(event_id):
                raise MalformedError(f"receipt-ack.event_ids: {event_id!r:.70} is not an event id")

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {**self._header(), "member": self.member, "event_ids": list(self.event_ids)}
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            member=f.text("member", max_len=63, pattern=NODE_ID_RE),
            event_ids=f.texts("event_ids", max_items=MAX_RECEIPTS, max_len=64, pattern=ID_RE),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )
