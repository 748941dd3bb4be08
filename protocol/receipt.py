"""Deletion receipts: a member's signed statement that it applied an owner's deletion or correction.

The owner collects one receipt per member for every deletion, expiry and correction event, so
it can show (to the data subject, the organisation, an auditor) that the change reached every
member, and see which members have not confirmed yet. ``tree_size`` pins the owner's log state
that contained the event, so a receipt cannot be replayed for a different history.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

from protocol.errors import MalformedError
from protocol.events import EntryEvent, EventKind
from protocol.fields import ID_RE, NODE_ID_RE, check_wire_time, format_time
from protocol.signed import SPEC_VERSION, Payload

__all__ = ["RECEIPT_KINDS", "DeletionReceipt", "ReceiptAction"]


class ReceiptAction(enum.StrEnum):
    PURGED = "purged"
    CORRECTED = "corrected"


_ACTION_FOR_KIND = {
    EventKind.DELETED: ReceiptAction.PURGED,
    EventKind.EXPIRED: ReceiptAction.PURGED,
    EventKind.CORRECTED: ReceiptAction.CORRECTED,
}

RECEIPT_KINDS = frozenset(_ACTION_FOR_KIND)
"""Event kinds a member confirms; a registration needs no receipt (nothing to purge or fix)."""


@dataclass(kw_only=True)
class DeletionReceipt(Payload):
    """Member ``member`` applied event ``event_id`` of ``owner``'s log (size ``tree_size``)."""

    TYPE = "deletion-receipt"

    owner: str
    member: str
    event_id: str
    entry_id: str
    kind: EventKind
    tree_size: int
    applied_at: datetime
    action: ReceiptAction
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        expected = _ACTION_FOR_KIND.get(self.kind)
        if expected is None:
            raise MalformedError(f"deletion-receipt.kind: {self.kind.value!r} needs no receipt")
        if self.action != expected:
            raise MalformedError(
                f"deletion-receipt: action {self.action.value!r} does not fit kind {self.kind.value!r} "
                f"(expected {expected.value!r})"
            )
        if self.tree_size < 1:
            raise MalformedError(f"deletion-receipt.tree_size: expected >= 1, got {self.tree_size}")
        check_wire_time(self.applied_at, "deletion-receipt.applied_at")
        if self.member == self.owner:
            raise MalformedError("deletion-receipt: a node does not issue receipts to itself")

    @classmethod
    def for_event(cls, event: EntryEvent, *, member: str, tree_size: int, applied_at: datetime) -> Self:
        """The receipt ``member`` signs after applying ``event`` seen in a log of ``tree_size`` events."""
        if event.kind not in RECEIPT_KINDS:
            raise MalformedError(f"deletion-receipt.kind: {event.kind.value!r} needs no receipt")
        return cls(
            owner=event.owner,
            member=member,
            event_id=event.event_id,
            entry_id=event.entry_id,
            kind=event.kind,
            tree_size=tree_size,
            applied_at=applied_at,
            action=_ACTION_FOR_KIND[event.kind],
        )

    def check_against(self, event: EntryEvent, *, leaf_index: int | None = None) -> None:
        """Raise ``MalformedError`` unless this receipt confirms exactly ``event``.

        Owner, event id, entry id and kind must agree; given the event's ``leaf_index`` in the
        owner's log, ``tree_size`` must be large enough to contain it.
        """
        got = (self.owner, self.event_id, self.entry_id, self.kind.value)
        expected = (event.owner, event.event_id, event.entry_id, event.kind.value)
        if got != expected:
            raise MalformedError(
                f"deletion-receipt: confirms (owner, event, entry, kind) {got}, expected {expected}"
            )
        if leaf_index is not None and self.tree_size <= leaf_index:
            raise MalformedError(
                f"deletion-receipt.tree_size: {self.tree_size} does not contain the event at index {leaf_index}"
            )

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "owner": self.owner,
                "member": self.member,
                "event_id": self.event_id,
                "entry_id": self.entry_id,
                "kind": self.kind.value,
                "tree_size": self.tree_size,
                "applied_at": format_time(self.applied_at),
                "action": self.action.value,
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            owner=f.text("owner", max_len=63, pattern=NODE_ID_RE),
            member=f.text("member", max_len=63, pattern=NODE_ID_RE),
            event_id=f.text("event_id", max_len=64, pattern=ID_RE),
            entry_id=f.text("entry_id", max_len=64, pattern=ID_RE),
            kind=f.enum("kind", EventKind),
            tree_size=f.integer("tree_size", low=1),
            applied_at=f.time("applied_at"),
            action=f.enum("action", ReceiptAction),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )
