"""Asking a member for its copy of our own log: what a node restored from a backup recovers from.

Every follower keeps the leaves it verified of each owner's log and the owner's signed head it
verified last; a witness keeps the latest checkpoint it cosigned. An owner that lost the end of
its log (a restore from a backup) asks each member with a ``MirrorRequest`` for the leaves of its
own log from index ``after`` on; the member answers with a ``MirrorPage``: the owner's signed head
it verified (``None`` when it follows nothing of the owner yet), the leaves it holds from ``first``
(at most ``limit``), the receipts it signed for the owner's events on the page (a member does not
deliver a receipt twice, so the owner recovers the ones it lost here), and the size of the latest
checkpoint it cosigned of the owner's log as a witness (``None`` when it witnessed none).

The owner trusts nothing here but signatures: the head and every leaf are the owner's own
signed documents, receipts are the member's. Both travel under ``SYNC_PURPOSE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

from protocol.errors import MalformedError
from protocol.fields import MAX_SAFE_INT
from protocol.receipt import DeletionReceipt
from protocol.signed import SPEC_VERSION, Payload, SignedDocument
from protocol.sync import MAX_PAGE_EVENTS, MAX_RECEIPTS, LogRequest, parse_log_event
from protocol.treehead import TreeHead

__all__ = ["MirrorPage", "MirrorRequest"]


@dataclass(kw_only=True)
class MirrorRequest(LogRequest):
    """ "Send me the leaves of my own log you hold, from index ``after`` on (at most ``limit``)"."""

    TYPE = "mirror-request"


@dataclass(kw_only=True)
class MirrorPage(Payload):
    """A member's copy of the asker's log: the head it verified, leaves ``first``.., receipts.

    ``held_size`` is how many leaves of the asker's log the member holds (the verified head's
    size); ``first + len(events) <= held_size`` always holds.
    """

    TYPE = "mirror-page"

    head: SignedDocument[TreeHead] | None
    held_size: int
    first: int
    events: list[SignedDocument[Any]]
    receipts: list[SignedDocument[DeletionReceipt]] = field(default_factory=list)
    witnessed_size: int | None = None
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.events) > MAX_PAGE_EVENTS:
            raise MalformedError(f"mirror-page.events: {len(self.events)} items, limit {MAX_PAGE_EVENTS}")
        if len(self.receipts) > MAX_RECEIPTS:
            raise MalformedError(f"mirror-page.receipts: {len(self.receipts)} items, limit {MAX_RECEIPTS}")
        for name, value in (("held_size", self.held_size), ("first", self.first)):
            if not 0 <= value <= MAX_SAFE_INT:
                raise MalformedError(f"mirror-page.{name}: {value} outside [0, {MAX_SAFE_INT}]")
        if self.witnessed_size is not None and not 0 <= self.witnessed_size <= MAX_SAFE_INT:
            raise MalformedError(
                f"mirror-page.witnessed_size: {self.witnessed_size} outside [0, {MAX_SAFE_INT}]"
            )
        end = self.first + len(self.events)
        if end > self.held_size:
            raise MalformedError(f"mirror-page: events {self.first}..{end} beyond the {self.held_size} held")
        if self.head is None and (self.held_size or self.events):
            raise MalformedError(f"mirror-page: {self.held_size} leaves held but no verified head")
        if self.head is not None and self.head.payload.tree_size != self.held_size:
            raise MalformedError(
                f"mirror-page: head for size {self.head.payload.tree_size}, held_size {self.held_size}"
            )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **self._header(),
            "held_size": self.held_size,
            "first": self.first,
            "events": [e.to_dict() for e in self.events],
            "receipts": [r.to_dict() for r in self.receipts],
        }
        if self.head is not None:
            out["head"] = self.head.to_dict()
        if self.witnessed_size is not None:
            out["witnessed_size"] = self.witnessed_size
        return self._with_unrecognized(out)

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        head = f.optional("head", None, f.obj)
        return cls(
            head=None if head is None else SignedDocument.from_dict(head, TreeHead),
            held_size=f.integer("held_size", high=MAX_SAFE_INT),
            first=f.integer("first", high=MAX_SAFE_INT),
            events=[parse_log_event(e) for e in f.array("events", max_items=MAX_PAGE_EVENTS)],
            receipts=[
                SignedDocument.from_dict(r, DeletionReceipt)
                for r in f.array("receipts", max_items=MAX_RECEIPTS)
            ],
            witnessed_size=f.optional(
                "witnessed_size", None, lambda name: f.integer(name, high=MAX_SAFE_INT)
            ),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )
