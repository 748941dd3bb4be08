"""Data-subject requests on a node: recorded at the counter, searched, decided, closed with proof.

A request keeps the photo taken at the counter and its embedding (both encrypted) only while it is
open: closing erases them, whatever the outcome. The disclosure report lists what the group holds
about the person (owner, entry, category, dates, evidence kind), never a score or an embedding.
A correction, deletion or cease-of-use request closes as granted only when it really happened:
our own entries deleted or corrected with every member's signed receipt in hand (attached to the
request), and other members' entries forwarded to their owner and seen deleted or corrected in
the owner's log.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from governance.manifest import Manifest
from governance.requests import (
    DEFAULT_DEADLINE,
    IDENTITY_CHECKS,
    RefusalGround,
    RequestKind,
    RequestOutcome,
    RequestRefused,
    check_outcome,
)
from node.records.auditlog import append_audit
from node.records.registry import EntryNotFound, WrongState
from node.records.vault import Vault
from node.storage.engine import erase_checkpoint
from node.storage.models import EntryRow, LogLeaf, PeerLeaf, ReceiptRow, SubjectRequest, Tombstone
from protocol.embedding import Embedding
from protocol.entry import WatchlistEntry
from protocol.errors import MalformedError, PolicyError
from protocol.fields import format_time

__all__ = [
    "FORWARD_WINDOW",
    "ForwardConflict",
    "ForwardRateLimited",
    "ForwardResult",
    "ReportItem",
    "SubjectRequests",
]

PURGING_KINDS = frozenset({RequestKind.DELETION, RequestKind.CEASE_OF_USE})
"""Ceasing use of watchlist data means deleting the entry: there is no other use to stop."""

FORWARD_WINDOW = timedelta(days=1)
"""The window of a member's forward limit (``limits.forwards_per_member_per_day``), rolling."""


class ForwardConflict(WrongState):
    """A member forwarded one of its requests again, but not as the request we opened for it."""

    code = "forward_conflict"


class ForwardRateLimited(PolicyError):
    """A member forwarded more new requests in 24 hours than ``limits.forwards_per_member_per_day``."""

    code = "forward_rate_limited"


@dataclass(frozen=True)
class ForwardResult:
    """What a forward did: ``opened`` a request, ``merged`` its entry into the one opened before,
    or was a ``repeated`` forward that changed nothing. ``owner_request_id`` is ours either way."""

    owner_request_id: str
    outcome: str


@dataclass(frozen=True)
class ReportItem:
    """One entry held about the person, as the disclosure report states it."""

    owner: str
    owner_name: str
    entry_id: str
    version: int
    category: str
    evidence_kind: str
    registered_at: str
    expires_at: str

    @classmethod
    def of(cls, entry: WatchlistEntry, owner_name: str) -> ReportItem:
        """The report line for a signed entry (ours, or a peer's from its answer)."""
        return cls(
            owner=entry.owner,
            owner_name=owner_name,
            entry_id=entry.entry_id,
            version=entry.version,
            category=entry.category,
            evidence_kind=entry.evidence.kind,
            registered_at=format_time(entry.registered_at),
            expires_at=format_time(entry.expires_at),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "owner_name": self.owner_name,
            "entry_id": self.entry_id,
            "version": self.version,
            "category": self.category,
            "evidence_kind": self.evidence_kind,
            "registered_at": self.registered_at,
            "expires_at": self.expires_at,
        }


class SubjectRequests:
    """All reads and writes of ``subject_request`` rows; the write lock keeps the audit chain in order."""

    def __init__(self, engine: Engine, vault: Vault, node_id: str, write_lock: Any) -> None:
        self._engine = engine
        self._vault = vault
        self.node_id = node_id
        self._lock = write_lock

    def record(
        self,
        *,
        staff: str,
        kind: RequestKind,
        identity_check: str,
        photo: bytes | None,
        embedding: Embedding | None,
        received_at: datetime,
        deadline: datetime | None,
        now: datetime,
    ) -> dict[str, Any]:
        if identity_check not in IDENTITY_CHECKS and not identity_check.startswith("forwarded-by-"):
            raise MalformedError(
                f"identity_check {identity_check!r:.40} is not one of {sorted(IDENTITY_CHECKS)}"
            )
        request_id = f"req-{secrets.token_hex(10)}"
        if photo is not None or embedding is not None:
            self._vault.new_record(request_id)
        row = SubjectRequest(
            id=request_id,
            kind=kind.value,
            identity_check=identity_check,
            received_at=received_at,
            deadline=deadline or received_at + DEFAULT_DEADLINE,
            recorded_by=staff,
            photo_ct=None if photo is None else self._vault.seal_record(request_id, photo, field="photo"),
            embedding_ct=None
            if embedding is None
            else self._vault.seal_record(request_id, embedding.raw, field="embedding"),
        )
        if row.deadline < row.received_at:
            raise MalformedError("the deadline is before the request was received")
        with self._lock, Session(self._engine, expire_on_commit=False) as session:
            session.add(row)
            append_audit(
                session, actor=staff, action="request.record", target=request_id, outcome=kind.value, now=now
            )
            session.commit()
        return _view(row, now)

    def _row(self, session: Session, request_id: str) -> SubjectRequest:
        row = session.get(SubjectRequest, request_id)
        if row is None:
            raise EntryNotFound(f"no data-subject request {request_id!r} on this node")
        return row

    def embedding(self, request_id: str) -> Embedding:
        with Session(self._engine) as session:
            row = self._row(session, request_id)
            if row.embedding_ct is None:
                raise WrongState(f"request {request_id} holds no face to search for (status {row.status})")
            return Embedding(self._vault.open_record(request_id, row.embedding_ct, field="embedding"))

    def save_report(
        self, request_id: str, items: list[ReportItem], staff: str, now: datetime
    ) -> dict[str, Any]:
        with self._lock, Session(self._engine, expire_on_commit=False) as session:
            row = self._row(session, request_id)
            if row.status != "open":
                raise WrongState(f"request {request_id} is {row.status}")
            row.report = json.dumps([i.to_dict() for i in items], ensure_ascii=False, sort_keys=True)
            row.searched_at = now
            session.add(row)
            append_audit(
                session,
                actor=staff,
                action="request.search",
                target=request_id,
                outcome=f"entries={len(items)}",
                now=now,
            )
            session.commit()
            return _view(row, now)

    def get(self, request_id: str, now: datetime) -> dict[str, Any]:
        with Session(self._engine) as session:
            return _view(self._row(session, request_id), now)

    def all(self, now: datetime, status: str | None = None) -> list[dict[str, Any]]:
        with Session(self._engine) as session:
            query = select(SubjectRequest).order_by(col(SubjectRequest.deadline))
            if status is not None:
                query = query.where(SubjectRequest.status == status)
            return [_view(r, now) for r in session.exec(query).all()]

    def close(
        self,
        *,
        staff: str,
        request_id: str,
        outcome: RequestOutcome,
        ground: RefusalGround | None,
        manifest: Manifest,
        now: datetime,
    ) -> dict[str, Any]:
        """Close the request if its outcome is true; erase the photo and embedding."""
        with self._lock, Session(self._engine, expire_on_commit=False) as session:
            row = self._row(session, request_id)
            if row.status != "open":
                raise WrongState(f"request {request_id} is already {row.status}")
            kind = RequestKind(row.kind)
            check_outcome(kind, outcome, ground)
            items = [] if row.report is None else json.loads(row.report)
            if outcome in {RequestOutcome.DISCLOSED, RequestOutcome.NOTHING_HELD} and row.searched_at is None:
                raise RequestRefused("run the disclosure search first ('search'), then close")
            if outcome is RequestOutcome.NOTHING_HELD and items:
                raise RequestRefused(
                    f"the search found {len(items)} entries; the request cannot close as nothing-held"
                )
            receipts: list[Any] = []
            if outcome is RequestOutcome.GRANTED:
                receipts = self._proof_of_change(session, kind, items, manifest)
            row.status = "closed"
            row.outcome = outcome.value
            row.ground = None if ground is None else ground.value
            row.closed_at, row.closed_by = now, staff
            self._vault.shred(request_id)
            row.photo_ct = row.embedding_ct = None
            row.receipts = json.dumps(receipts, sort_keys=True) if receipts else None
            session.add(row)
            append_audit(
                session,
                actor=staff,
                action="request.close",
                target=request_id,
                outcome=outcome.value,
                now=now,
            )
            session.commit()
            view = _view(row, now)
        erase_checkpoint(self._engine)
        return view

    def _proof_of_change(
        self, session: Session, kind: RequestKind, items: list[dict[str, Any]], manifest: Manifest
    ) -> list[Any]:
        """The signed receipts showing the change reached every member; raise while anything is missing."""
        if not items:
            raise RequestRefused("nothing was found about the person; close as nothing-held instead")
        members = manifest.confirming_members(self.node_id)
        wanted = ("deleted", "expired") if kind in PURGING_KINDS else ("corrected",)
        receipts: list[Any] = []
        waiting: list[str] = []
        for item in items:
            owner, entry_id = item["owner"], item["entry_id"]
            if owner != self.node_id:
                changed = (
                    session.get(Tombstone, (owner, entry_id)) is not None
                    if kind in PURGING_KINDS
                    else session.exec(
                        select(PeerLeaf).where(
                            PeerLeaf.peer == owner,
                            PeerLeaf.entry_id == entry_id,
                            PeerLeaf.kind == "corrected",
                        )
                    ).first()
                    is not None
                )
                if not changed:
                    waiting.append(
                        f"{owner} has not yet {'deleted' if kind in PURGING_KINDS else 'corrected'} {entry_id}"
                    )
                continue
            entry = session.get(EntryRow, entry_id)
            if entry is None:
                raise EntryNotFound(f"entry {entry_id} of the report is not on this node")
            leaf = session.exec(
                select(LogLeaf)
                .where(LogLeaf.entry_id == entry_id, col(LogLeaf.kind).in_(wanted))
                .order_by(col(LogLeaf.idx).desc())
            ).first()
            if leaf is None:
                waiting.append(
                    f"entry {entry_id} is still {entry.status}: an officer must {kind.value.replace('-', ' ')} it"
                )
                continue
            got = {
                r.member: r
                for r in session.exec(select(ReceiptRow).where(ReceiptRow.event_id == leaf.event_id)).all()
            }
            missing = [m for m in members if m not in got]
            if missing:
                waiting.append(f"entry {entry_id}: no receipt yet from {', '.join(missing)}")
                continue
            receipts.extend(json.loads(r.signed) for r in got.values())
        if waiting:
            raise WrongState("not done yet: " + "; ".join(waiting))
        return receipts

    def open_forwarded(
        self,
        *,
        origin: str,
        request_id: str,
        kind: RequestKind,
        entry_id: str,
        owner_name: str,
        daily_limit: int,
        now: datetime,
    ) -> ForwardResult:
        """A request forwarded by ``origin`` about our entry: opened for our officer, already "searched".

        Idempotent by (``origin``, ``request_id``): the request opened by the first forward is
        the answer to every later one. A repeat naming another of our entries adds it to that
        request while it is open (one person, one request, one deadline, as the origin has);
        a repeat of another kind, or a new entry once that request is closed, is refused with
        ``ForwardConflict``. Only a forward that opens a request counts against ``daily_limit``
        (per origin, over the last 24 hours); past it ``ForwardRateLimited``. The database's
        unique constraint on the pair decides between two workers opening the same one at once.
        """
        with self._lock, Session(self._engine, expire_on_commit=False) as session:
            existing = self._forwarded(session, origin, request_id)
            if existing is not None:
                return self._repeat(session, existing, origin, request_id, kind, entry_id, owner_name, now)
            since = now - FORWARD_WINDOW
            recent = int(
                session.exec(
                    select(func.count())
                    .select_from(SubjectRequest)
                    .where(SubjectRequest.forwarded_origin == origin, col(SubjectRequest.received_at) > since)
                ).one()
            )
            if recent >= daily_limit:
                raise ForwardRateLimited(
                    f"{origin} forwarded {recent} requests after {format_time(since)}, the limit is "
                    f"{daily_limit} in 24 hours; request {request_id} is not opened (repeats of forwards "
                    "already held are still answered)"
                )
            item = self._item(session, entry_id, owner_name)
            owner_request_id = f"req-{secrets.token_hex(10)}"
            row = SubjectRequest(
                id=owner_request_id,
                kind=kind.value,
                identity_check=f"forwarded-by-{origin}"[:48],
                received_at=now,
                deadline=now + DEFAULT_DEADLINE,
                recorded_by=f"peer:{origin}"[:64],
                report=json.dumps([item.to_dict()], ensure_ascii=False, sort_keys=True),
                searched_at=now,
                forwarded_origin=origin,
                forwarded_request_id=request_id,
            )
            session.add(row)
            try:
                session.flush()  # the unique pair: a worker that opened it first wins
            except IntegrityError:
                session.rollback()
                existing = self._forwarded(session, origin, request_id)
                if existing is None:
                    raise
                return self._repeat(session, existing, origin, request_id, kind, entry_id, owner_name, now)
            append_audit(
                session,
                actor=f"peer:{origin}"[:64],
                action="request.record",
                target=owner_request_id,
                outcome=kind.value,
                now=now,
            )
            append_audit(
                session,
                actor=f"peer:{origin}"[:64],
                action="request.search",
                target=owner_request_id,
                outcome="entries=1",
                now=now,
            )
            session.commit()
            return ForwardResult(owner_request_id, "opened")

    def _forwarded(self, session: Session, origin: str, request_id: str) -> SubjectRequest | None:
        return session.exec(
            select(SubjectRequest).where(
                SubjectRequest.forwarded_origin == origin, SubjectRequest.forwarded_request_id == request_id
            )
        ).first()

    def _item(self, session: Session, entry_id: str, owner_name: str) -> ReportItem:
        entry = session.get(EntryRow, entry_id)
        if entry is None:
            raise EntryNotFound(f"no entry {entry_id!r} on this node")
        return ReportItem(
            owner=self.node_id,
            owner_name=owner_name,
            entry_id=entry_id,
            version=entry.version,
            category=entry.category,
            evidence_kind=entry.evidence_kind,
            registered_at=format_time(entry.registered_at) if entry.registered_at else "",
            expires_at=format_time(entry.expires_at),
        )

    def _repeat(
        self,
        session: Session,
        row: SubjectRequest,
        origin: str,
        request_id: str,
        kind: RequestKind,
        entry_id: str,
        owner_name: str,
        now: datetime,
    ) -> ForwardResult:
        """A forward of a request we already opened: the same answer, its entry merged in if new."""
        if row.kind != kind.value:
            raise ForwardConflict(
                f"{origin} forwarded its request {request_id} as {row.kind} (our {row.id}); "
                f"this forward says {kind.value}: a request of another kind needs a new request id"
            )
        items = [] if row.report is None else json.loads(row.report)
        if any(i["entry_id"] == entry_id for i in items):
            return ForwardResult(row.id, "repeated")
        locked = session.get(SubjectRequest, row.id, with_for_update=True, populate_existing=True)
        assert locked is not None  # requests are never deleted
        row = locked  # what another worker merged meanwhile is in the report we extend
        items = [] if row.report is None else json.loads(row.report)
        if any(i["entry_id"] == entry_id for i in items):
            return ForwardResult(row.id, "repeated")
        if row.status != "open":
            raise ForwardConflict(
                f"our request {row.id} for {origin}'s request {request_id} is {row.status} "
                f"({row.outcome}) with {len(items)} entries; entry {entry_id} needs a new request"
            )
        items.append(self._item(session, entry_id, owner_name).to_dict())
        items.sort(key=lambda i: (i["owner"], i["entry_id"]))
        row.report = json.dumps(items, ensure_ascii=False, sort_keys=True)
        session.add(row)
        append_audit(
            session,
            actor=f"peer:{origin}"[:64],
            action="request.merge",
            target=row.id,
            outcome=f"entries={len(items)}",
            now=now,
        )
        session.commit()
        return ForwardResult(row.id, "merged")


def _view(row: SubjectRequest, now: datetime) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "status": row.status,
        "identity_check": row.identity_check,
        "received_at": format_time(row.received_at),
        "deadline": format_time(row.deadline),
        "overdue": row.status == "open" and now > row.deadline,
        "days_left": None if row.status != "open" else (row.deadline - now) // timedelta(days=1),
        "recorded_by": row.recorded_by,
        "holds_photo": row.photo_ct is not None,
        "searched_at": format_time(row.searched_at) if row.searched_at else None,
        "report": None if row.report is None else json.loads(row.report),
        "outcome": row.outcome,
        "ground": row.ground,
        "ground_text": None if row.ground is None else RefusalGround(row.ground).text,
        "closed_at": format_time(row.closed_at) if row.closed_at else None,
        "receipts": None if row.receipts is None else json.loads(row.receipts),
    }
