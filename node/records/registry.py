"""The watchlist registry: propose, approve (two-person rule), reject, correct, delete, expire.

Each operation is one database transaction holding the entry change, the signed event's log
leaf, its encrypted payload and the audit record, so a crash leaves either all of them or none.
A refused operation still writes its audit record (in its own transaction). Deletion and expiry
erase the embedding, the face crop, the evidence reference, the signed entry and every event
payload of the entry; the tombstone row and the signed events remain, and the log still verifies.

Deletion and expiry fail closed (``node.records.closures``): the entry is suppressed in the match
index before its transaction runs; a write that fails for the database or the disk is held in
``pending`` and answered ``ClosurePending``, and ``land_pending`` (the node's retry duty) writes it
later. A write that fails for a full disk first asks ``make_room`` (the node's disk reserve) and,
when that freed space, is tried once more at once.
"""

from __future__ import annotations

import builtins
import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from governance.manifest import Manifest
from governance.provision import require_legal_basis
from governance.roles import Action, require_permission
from governance.rules import RegistrationRules, check_entry, check_registration
from node.records.accounts import StaffMember
from node.records.alert_faces import erase_crops_in
from node.records.auditlog import append_audit, audit_head, record_audit
from node.records.closures import DATABASE_ERRORS, ClosurePending, PendingClosure, PendingClosures
from node.records.eventlog import leaf_count, open_event_log
from node.records.integrity import IntegrityState
from node.records.matching import Match, MatchIndex
from node.records.record_keys import RecordKeyDestroyed
from node.records.vault import Vault
from node.storage.engine import erase_checkpoint
from node.storage.locks import lock_chains
from node.storage.models import (
    Alert,
    AlertSighting,
    EntryRow,
    EventPayloadRow,
    LogLeaf,
    ProvisionRow,
    TreeHeadRow,
)
from node.storage.notify import ENTRIES, SUPPRESS, Feed, Follower, announce, notify, shared
from node.storage.reserve import is_disk_full
from protocol.canonical import b64url_encode, canonical_bytes, parse_json
from protocol.commitment import commit, new_salt
from protocol.embedding import Embedding
from protocol.entry import Evidence, WatchlistEntry
from protocol.errors import MalformedError, PolicyError, WatchnetError
from protocol.events import EntryEvent, EventKind, EventReason, log_leaf_bytes
from protocol.keys import SigningKey
from protocol.merkle import leaf_hash
from protocol.provision import ThirdPartyProvision
from protocol.signed import SignedDocument
from protocol.treehead import TreeHead

__all__ = [
    "EntryFacts",
    "EntryNotFound",
    "EntryState",
    "NoReferenceFace",
    "Proposal",
    "Registry",
    "TwoPersonRuleViolation",
    "WrongState",
]

PROPOSED, ACTIVE, REJECTED, DELETED, EXPIRED = "proposed", "active", "rejected", "deleted", "expired"
SYSTEM = "system"
LOG = logging.getLogger("watchnet.registry")


class EntryNotFound(PolicyError):
    code = "entry_not_found"


class WrongState(PolicyError):
    code = "wrong_state"


class NoReferenceFace(EntryNotFound):
    """A live entry registered without a face crop (from an embedding): there is no face to show."""

    code = "no_reference_face"


class TwoPersonRuleViolation(PolicyError):
    code = "two_person_rule"


@dataclass(frozen=True)
class Proposal:
    """What a registrar submits: a face, the incident category and the objective evidence."""

    embedding: Embedding
    category: str
    evidence: Evidence
    incident_date: date
    site: str
    retention_days: int | None = None
    face_crop: bytes | None = None


@dataclass(frozen=True)
class EntryState:
    """An entry as staff see it: never the embedding or the crop."""

    entry_id: str
    version: int
    status: str
    category: str
    site: str
    evidence_kind: str
    registrar: str
    officer: str | None
    expires_at: datetime
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry_id": self.entry_id,
            "version": self.version,
            "status": self.status,
            "category": self.category,
            "site": self.site,
            "evidence_kind": self.evidence_kind,
            "registrar": self.registrar,
            "officer": self.officer,
            "expires_at": self.expires_at.isoformat(),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class EntryFacts:
    """What an officer weighs before deciding, beyond ``EntryState``: the evidence reference, the
    incident date, when it was proposed, and whether a face crop is held. Never the embedding."""

    evidence_reference: str | None
    incident_date: date | None
    proposed_at: datetime
    has_face_crop: bool


def _state(row: EntryRow) -> EntryState:
    return EntryState(
        row.entry_id,
        row.version,
        row.status,
        row.category,
        row.site,
        row.evidence_kind,
        row.registrar,
        row.officer,
        row.expires_at,
        row.reason,
    )


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(10)}"


class Registry:
    """All writes to the watchlist go through here."""

    def __init__(
        self,
        *,
        engine: Engine,
        node_id: str,
        signing_key: SigningKey,
        vault: Vault,
        manifest: Callable[[], Manifest],
        rules: RegistrationRules,
        index: MatchIndex,
    ) -> None:
        self._engine = engine
        self.node_id = node_id
        self._key = signing_key
        self._vault = vault
        self._manifest = manifest
        self.rules = rules
        self.index = index
        self.log = open_event_log(engine)
        self.write_lock = threading.RLock()
        """Serialises this process's writes to the log and the audit chain (one sequence each)."""
        self.listeners: list[Callable[[int], None]] = []
        """Called with the new tree size after every event is committed (e.g. to notify peers)."""
        self.integrity = IntegrityState()
        """The self-check's verdict on this store (``node.records.integrity``): while it is failed
        the match index refuses every search, so no answer comes from an edited store."""
        self.serving_checks: list[Callable[[], None]] = []
        """More conditions every answer needs, each raising when it does not hold (a node being
        restored, ``node.records.restore.RestoreGate``); they also stop every append to the log."""
        index.guard = self.require_serving
        index.fence = self.fence
        self.index_listeners: list[Callable[[int], None]] = []
        """Called with the applied log size after the index took in changes another worker (or
        the fence) found in the database, e.g. to mark the private-mode gallery stale."""
        self.fence_dropped = 0
        """Matches the answer-time fence dropped because the database no longer holds the entry active."""
        self._fence_lock = threading.Lock()
        self._follow_lock = threading.RLock()
        self._applied_log_size = 0
        self.follower: Follower | None = None
        self.pending = PendingClosures()
        """Deletions and expiries decided whose write has not landed yet (their entries are suppressed)."""
        self.make_room: Callable[[], bool] = lambda: False
        """Called when a closure's write failed for a full disk; True when it freed space (the node
        sets its disk reserve's ``make_room``)."""
        self.pending_listeners: list[Callable[[], None]] = []
        """Called when a closure is newly held (e.g. to wake the retry duty)."""

    @property
    def engine(self) -> Engine:
        return self._engine

    def require_serving(self) -> None:
        """Raise unless this node may answer now: its store agrees with its log, nothing else holds it."""
        self.integrity.require_intact()
        for check in self.serving_checks:
            check()

    def erase_replayed(
        self, session: Session, row: EntryRow, status: str, reason: str, now: datetime
    ) -> None:
        """A closure recovered by a restore (``node.records.restore``), erased by the same path as
        every other: the entry's key destroyed, its data gone, the tombstone kept."""
        self._erase(session, row, status, reason, now)

    def publish_head(self, now: datetime) -> None:
        """Sign and keep the log's head now (after a restore replayed events into the log)."""
        self._publish_head(now)

    @property
    def vault(self) -> Vault:
        """The data key's box: the self-check opens sealed payloads and embeddings with it."""
        return self._vault

    def _refuse(
        self, staff: StaffMember | None, action: str, target: str, error: WatchnetError, now: datetime
    ) -> None:
        record_audit(
            self._engine,
            self.write_lock,
            actor=staff.id if staff else SYSTEM,
            action=action,
            target=target,
            outcome=f"refused:{error.code}",
            now=now,
        )

    def _guarded(
        self, staff: StaffMember | None, action: str, target: str, now: datetime, work: Callable[[], Any]
    ) -> Any:
        try:
            with self.write_lock:
                return work()
        except ClosurePending:  # decided, not refused: its audit record lands with its write
            raise
        except WatchnetError as e:
            self._refuse(staff, action, target, e, now)
            raise

    def propose(self, staff: StaffMember, proposal: Proposal, now: datetime) -> EntryState:
        now = now.replace(microsecond=0)

        def work() -> EntryState:
            require_permission(staff.role, Action.PROPOSE_ENTRY)
            manifest = self._manifest()
            retention = proposal.retention_days or self.rules.retention_days
            expires_at = now + timedelta(days=retention)
            if proposal.embedding.dimension != manifest.policy.model.dimension:
                raise MalformedError(
                    f"embedding has {proposal.embedding.dimension} dimensions, the pinned model "
                    f"{manifest.policy.model.model_id} has {manifest.policy.model.dimension}"
                )
            check_registration(
                manifest,
                self.rules,
                category=proposal.category,
                evidence_kind=proposal.evidence.kind,
                incident_date=proposal.incident_date,
                registered_at=now,
                expires_at=expires_at,
                model_id=manifest.policy.model.model_id,
                now=now,
            )
            entry_id = _new_id("ent")
            salt = new_salt()
            self._vault.new_record(entry_id)
            row = EntryRow(
                entry_id=entry_id,
                version=0,
                status=PROPOSED,
                category=proposal.category,
                site=proposal.site,
                evidence_kind=proposal.evidence.kind,
                evidence_reference=proposal.evidence.reference,
                incident_date=proposal.incident_date.isoformat(),
                registrar=staff.id,
                proposed_at=now,
                expires_at=expires_at,
                embedding_ct=self._vault.seal_record(entry_id, proposal.embedding.raw, field="embedding"),
                salt_ct=self._vault.seal_record(entry_id, salt, field="salt"),
                crop_ct=None
                if proposal.face_crop is None
                else self._vault.seal_record(entry_id, proposal.face_crop, field="crop"),
            )
            with Session(self._engine, expire_on_commit=False) as session:
                session.add(row)
                append_audit(
                    session, actor=staff.id, action="entry.propose", target=entry_id, outcome="ok", now=now
                )
                session.commit()
                session.refresh(row)
                return _state(row)

        return self._guarded(staff, "entry.propose", "", now, work)  # type: ignore[no-any-return]

    def _load(self, session: Session, entry_id: str) -> EntryRow:
        row = session.get(EntryRow, entry_id)
        if row is None:
            raise EntryNotFound(f"no entry {entry_id!r} on this node")
        return row

    def _embedding(self, row: EntryRow) -> tuple[Embedding, bytes]:
        if row.embedding_ct is None or row.salt_ct is None:
            raise WrongState(f"entry {row.entry_id} holds no embedding (status {row.status})")
        embedding = Embedding(self._vault.open_record(row.entry_id, row.embedding_ct, field="embedding"))
        return embedding, self._vault.open_record(row.entry_id, row.salt_ct, field="salt")

    def _openable(self, row: EntryRow) -> Embedding | None:
        """The active entry's embedding, or None when its key is destroyed: a closure was decided
        and its write has not landed (it is suppressed), so it must not come back into the index."""
        try:
            return self._embedding(row)[0]
        except RecordKeyDestroyed:
            LOG.warning(
                "entry %s is active but its key is destroyed; it stays out of the index", row.entry_id
            )
            return None

    def _sign_entry(
        self, row: EntryRow, officer: str, version: int, now: datetime
    ) -> SignedDocument[WatchlistEntry]:
        embedding, salt = self._embedding(row)
        manifest = self._manifest()
        entry = WatchlistEntry(
            entry_id=row.entry_id,
            owner=self.node_id,
            version=version,
            category=row.category,
            evidence=Evidence(row.evidence_kind, row.evidence_reference or ""),
            incident_date=date.fromisoformat(row.incident_date or ""),
            site=row.site,
            model_id=manifest.policy.model.model_id,
            embedding_commitment=commit(salt, embedding.raw),
            registered_at=row.registered_at or now,
            expires_at=row.expires_at,
            registrar=row.registrar,
            officer=officer,
        )
        check_entry(manifest, self.rules, entry, now)
        doc = SignedDocument(entry)
        doc.sign(self._key)
        return doc

    def _append_event(
        self,
        session: Session,
        *,
        kind: EventKind,
        reason: EventReason,
        row: EntryRow,
        version: int,
        actor: str,
        entry: SignedDocument[WatchlistEntry] | None,
        now: datetime,
    ) -> SignedDocument[EntryEvent]:
        event, payload = EntryEvent.create(
            entry=entry,
            event_id=_new_id("evt"),
            owner=self.node_id,
            kind=kind,
            entry_id=row.entry_id,
            entry_version=version,
            reason=reason,
            occurred_at=now.replace(microsecond=0),
            actor=actor,
        )
        signed = SignedDocument(event)
        signed.sign(self._key)
        self._append_leaf(
            session, signed, event_id=event.event_id, entry_id=row.entry_id, kind=kind.value, now=now
        )
        # a closing event's payload is erased with the entry in this same transaction, so it is
        # never sealed: its entry's key may already be destroyed (a held closure's retry)
        sealed = (
            None
            if entry is None
            else self._vault.seal_record(
                row.entry_id, canonical_bytes(payload.to_dict()), field=f"payload/{event.event_id}"
            )
        )
        session.add(EventPayloadRow(event_id=event.event_id, entry_id=row.entry_id, payload_ct=sealed))
        return signed

    def _append_leaf(
        self,
        session: Session,
        signed: SignedDocument[Any],
        *,
        event_id: str,
        entry_id: str,
        kind: str,
        now: datetime,
    ) -> int:
        """Append a signed log event as the next leaf, in the caller's transaction; return its index.

        The chain lock (``lock_chains``) is held from here to the caller's commit, so on PostgreSQL
        no other worker of this node counts the leaves between this count and that commit.
        """
        for check in self.serving_checks:  # a node being restored appends nothing: no fork
            check()
        leaf = log_leaf_bytes(signed)
        lock_chains(session)
        index = leaf_count(session)
        session.add(
            LogLeaf(
                idx=index,
                event_id=event_id,
                entry_id=entry_id,
                kind=kind,
                leaf_hash=leaf_hash(leaf),
                leaf=leaf,
                created_at=now,
            )
        )
        return index

    def _publish_head(self, now: datetime) -> None:
        """Sign the log's head: size, root and audit head read in one transaction under the chain lock."""
        with Session(self._engine, expire_on_commit=False) as session:
            lock_chains(session)
            size, root = self.log.head_in(session)
            head = TreeHead(
                log_id=self.node_id,
                tree_size=size,
                root_hash=root,
                timestamp=now.replace(microsecond=0),
                audit_head=bytes.fromhex(audit_head(session)),
            )
            doc = SignedDocument(head)
            doc.sign(self._key)
            existing = session.get(TreeHeadRow, head.tree_size)
            if existing is None:
                session.add(TreeHeadRow(tree_size=head.tree_size, signed=doc.to_bytes().decode("utf-8")))
            else:
                existing.signed = doc.to_bytes().decode("utf-8")
                session.add(existing)
            session.commit()
        for listener in self.listeners:
            listener(head.tree_size)

    def _issue_version(
        self,
        session: Session,
        row: EntryRow,
        officer: str,
        kind: EventKind,
        reason: EventReason,
        now: datetime,
    ) -> None:
        """Sign the next version of ``row`` and log it (registration is version 1, corrections follow)."""
        version = 1 if kind is EventKind.REGISTERED else row.version + 1
        signed = self._sign_entry(row, officer, version, now)
        self._append_event(
            session, kind=kind, reason=reason, row=row, version=version, actor=officer, entry=signed, now=now
        )
        row.version, row.officer = version, officer
        row.signed_entry = signed.to_bytes().decode("utf-8")
        session.add(row)

    def approve(self, staff: StaffMember, entry_id: str, now: datetime) -> EntryState:
        def work() -> EntryState:
            require_permission(staff.role, Action.APPROVE_ENTRY)
            with Session(self._engine, expire_on_commit=False) as session:
                row = self._load(session, entry_id)
                if row.status != PROPOSED:
                    raise WrongState(
                        f"entry {entry_id} is {row.status}, only a proposed entry can be approved"
                    )
                if row.registrar == staff.id:
                    raise TwoPersonRuleViolation(
                        "the registrar of an entry cannot approve it; another officer must"
                    )
                row.registered_at = now.replace(microsecond=0)
                self._issue_version(
                    session, row, staff.id, EventKind.REGISTERED, EventReason.REGISTRATION, now
                )
                row.status = ACTIVE
                append_audit(
                    session, actor=staff.id, action="entry.approve", target=entry_id, outcome="ok", now=now
                )
                notify(session, ENTRIES, entry_id)
                session.commit()
                embedding, _ = self._embedding(row)
                state = _state(row)
            self.index.upsert(entry_id, embedding)
            self._publish_head(now)
            return state

        return self._guarded(staff, "entry.approve", entry_id, now, work)  # type: ignore[no-any-return]

    def reject(self, staff: StaffMember, entry_id: str, reason: str, now: datetime) -> EntryState:
        def work() -> EntryState:
            require_permission(staff.role, Action.REJECT_ENTRY)
            with Session(self._engine, expire_on_commit=False) as session:
                row = self._load(session, entry_id)
                if row.status != PROPOSED:
                    raise WrongState(
                        f"entry {entry_id} is {row.status}, only a proposed entry can be rejected"
                    )
                self._erase(session, row, REJECTED, reason, now)
                append_audit(
                    session, actor=staff.id, action="entry.reject", target=entry_id, outcome="ok", now=now
                )
                session.commit()
                state = _state(row)
            erase_checkpoint(self._engine)
            return state

        return self._guarded(staff, "entry.reject", entry_id, now, work)  # type: ignore[no-any-return]

    def correct(
        self,
        staff: StaffMember,
        entry_id: str,
        *,
        reason: EventReason,
        now: datetime,
        category: str | None = None,
        evidence: Evidence | None = None,
        expires_at: datetime | None = None,
    ) -> EntryState:
        def work() -> EntryState:
            require_permission(staff.role, Action.CORRECT_ENTRY)
            with Session(self._engine, expire_on_commit=False) as session:
                row = self._load(session, entry_id)
                if row.status != ACTIVE:
                    raise WrongState(
                        f"entry {entry_id} is {row.status}, only an active entry can be corrected"
                    )
                if row.registrar == staff.id:
                    raise TwoPersonRuleViolation("the registrar of an entry cannot also correct it")
                if category is not None:
                    row.category = category
                if evidence is not None:
                    row.evidence_kind, row.evidence_reference = evidence.kind, evidence.reference
                if expires_at is not None:
                    row.expires_at = expires_at
                self._issue_version(session, row, staff.id, EventKind.CORRECTED, reason, now)
                append_audit(
                    session, actor=staff.id, action="entry.correct", target=entry_id, outcome="ok", now=now
                )
                notify(session, ENTRIES, entry_id)
                session.commit()
                state = _state(row)
            self._publish_head(now)
            return state

        return self._guarded(staff, "entry.correct", entry_id, now, work)  # type: ignore[no-any-return]

    def _erase(self, session: Session, row: EntryRow, status: str, reason: str, now: datetime) -> None:
        """Destroy the entry's key, erase the biometric and personal parts, keep the tombstone.

        The key goes first, inside the caller's transaction: once the closure commits no copy of
        the entry's ciphertext anywhere opens. A commit that then fails leaves an active row that
        cannot be opened; the held closure writes it later."""
        self._vault.shred(row.entry_id)
        row.status, row.reason, row.closed_at = status, reason, now
        row.embedding_ct = row.salt_ct = row.crop_ct = None
        row.signed_entry = None
        row.evidence_reference = None
        row.incident_date = None
        session.add(row)
        for payload in session.exec(
            select(EventPayloadRow).where(EventPayloadRow.entry_id == row.entry_id)
        ).all():
            payload.payload_ct = None
            session.add(payload)
        for alert in session.exec(select(Alert).where(Alert.entry_id == row.entry_id)).all():
            erase_crops_in(session, self._vault, alert.id, "entry-closed", now)
            for sighting in session.exec(
                select(AlertSighting).where(AlertSighting.alert_id == alert.id)
            ).all():
                session.delete(sighting)
            session.delete(alert)

    def delete(self, staff: StaffMember, entry_id: str, reason: EventReason, now: datetime) -> EntryState:
        def work() -> EntryState:
            require_permission(staff.role, Action.DELETE_ENTRY)
            return self._close(staff.id, entry_id, EventKind.DELETED, reason, now)

        return self._guarded(staff, "entry.delete", entry_id, now, work)  # type: ignore[no-any-return]

    def _close(
        self, actor: str, entry_id: str, kind: EventKind, reason: EventReason, now: datetime
    ) -> EntryState:
        """Close an active entry, failing closed: it stops matching before the write, and a write
        that fails is held and retried (``ClosurePending``) rather than undone."""
        self.index.suppress(entry_id)
        closure = PendingClosure(entry_id, actor, kind, reason, now)
        try:
            state = self._write_close(closure)
        except WatchnetError:  # refused (not active, not found): nothing to hold
            if entry_id not in self.pending:
                self.index.readmit(entry_id)
            raise
        except DATABASE_ERRORS as e:
            if not (is_disk_full(e) and self.make_room()):
                raise self._hold(closure, e) from e
            try:  # the reserve was released: the space is there now
                state = self._write_close(closure)
            except WatchnetError:
                if entry_id not in self.pending:
                    self.index.readmit(entry_id)
                raise
            except DATABASE_ERRORS as again:
                raise self._hold(closure, again) from again
        self._after_close(replace(closure, written=True), now)
        return state

    def _hold(self, closure: PendingClosure, error: BaseException) -> ClosurePending:
        """Keep a closure whose write failed; the entry stays suppressed until it lands."""
        disk_full = is_disk_full(error)
        first = closure.entry_id not in self.pending
        held = self.pending.hold(closure, error, disk_full=disk_full)
        if first:
            LOG.error(
                "the %s of %s %s (%s%s); it no longer matches and is retried",
                "deletion" if closure.kind is EventKind.DELETED else "expiry",
                closure.entry_id,
                "is written, its tree head not yet" if closure.written else "could not be written",
                type(error).__name__,
                ", the disk is full" if disk_full else "",
            )
            self._changed()  # the private gallery is rebuilt without it
            self._announce_suppressed(closure.entry_id)
            for listener in list(self.pending_listeners):
                listener()
        return ClosurePending(held)

    def _announce_suppressed(self, entry_id: str) -> None:
        """Tell the node's other workers (PostgreSQL) to stop matching ``entry_id`` now: its write
        failed, so no row tells them yet. Best effort: when not even a notification goes out the
        database is unreachable, and their answer-time check against it refuses every hit."""
        try:
            announce(self._engine, SUPPRESS, entry_id)
        except DATABASE_ERRORS as e:
            LOG.warning(
                "could not tell the other workers to stop matching %s (%s)", entry_id, type(e).__name__
            )

    def _write_close(self, closure: PendingClosure) -> EntryState:
        """The closure's one transaction: the event, the erasure, the audit record."""
        entry_id, kind, now = closure.entry_id, closure.kind, closure.decided_at
        with Session(self._engine, expire_on_commit=False) as session:
            row = self._load(session, entry_id)
            if row.status != ACTIVE:
                raise WrongState(
                    f"entry {entry_id} is {row.status}, only an active entry can be {kind.value}"
                )
            self._append_event(
                session,
                kind=kind,
                reason=closure.reason,
                row=row,
                version=row.version,
                actor=closure.actor,
                entry=None,
                now=now,
            )
            status = DELETED if kind is EventKind.DELETED else EXPIRED
            self._erase(session, row, status, closure.reason.value, now)
            append_audit(
                session,
                actor=closure.actor,
                action=f"entry.{kind.value}",
                target=entry_id,
                outcome="ok",
                now=now,
            )
            notify(session, ENTRIES, entry_id)
            session.commit()
            return _state(row)

    def _after_close(self, closure: PendingClosure, now: datetime) -> None:
        """After the commit: the WAL truncated, the head signed (which notifies the members). A
        failure here keeps the closure held as written, so its head is published later."""
        try:
            erase_checkpoint(self._engine)
            self._publish_head(now)
        except DATABASE_ERRORS as e:
            self._hold(closure, e)
            return
        self.pending.drop(closure.entry_id, landed=False)
        self.index.readmit(closure.entry_id)

    def resume_held(self, held: builtins.list[PendingClosure]) -> None:
        """Hold again the closures kept from before a restart: suppressed before the index loads."""
        for closure in held:
            self.index.suppress(closure.entry_id)
        self.pending.restore(held)
        if held:
            LOG.error(
                "%d deletion(s) or expiries decided before the restart are not written yet; they "
                "do not match and are retried",
                len(held),
            )

    def land_pending(self, now: datetime) -> int:
        """Write the held closures, oldest first, until one fails again; returns how many landed.

        One refused as not active (another worker or a second request closed it) is dropped: its
        event and notices went out with that write. A write that fails for a full disk asks
        ``make_room`` and, when that freed space, is tried once more at once."""
        landed = 0
        for closure in self.pending.all():
            try:
                written = self._land(closure, now)
            except DATABASE_ERRORS as e:
                if not (is_disk_full(e) and self.make_room()):
                    self.pending.hold(closure, e, disk_full=is_disk_full(e))
                    break
                closure = self.pending.get(closure.entry_id) or closure  # it may be written by now
                try:
                    written = self._land(closure, now)
                except DATABASE_ERRORS as again:
                    self.pending.hold(closure, again, disk_full=is_disk_full(again))
                    break
            self.pending.drop(closure.entry_id, landed=written)
            self.index.readmit(closure.entry_id)
            if written:
                landed += 1
                LOG.warning(
                    "the held %s of %s is written now (decided %s)",
                    "deletion" if closure.kind is EventKind.DELETED else "expiry",
                    closure.entry_id,
                    closure.decided_at.isoformat(timespec="seconds"),
                )
        return landed

    def _land(self, closure: PendingClosure, now: datetime) -> bool:
        """One held closure written and its head published; False when the entry was closed meanwhile."""
        with self.write_lock:
            if not closure.written:
                try:
                    self._write_close(closure)
                except (EntryNotFound, WrongState):
                    LOG.info("held closure of %s: the entry was closed meanwhile", closure.entry_id)
                    return False
                self.pending.mark_written(closure.entry_id)
            erase_checkpoint(self._engine)
            self._publish_head(now)
        return True

    def record_provision(
        self,
        staff: StaffMember,
        *,
        legal_basis: str,
        requester_kind: str,
        requester: str,
        reference: str,
        entry_ids: list[str],
        items: list[str],
        now: datetime,
    ) -> dict[str, Any]:
        """Log a signed third-party provision, then (and only then) assemble what is handed over.

        The record commits to the details (requester, reference, entries, items) with a fresh salt;
        the details and the salt stay in ``provision``; the export is built after the commit, so
        no data leaves without its record.
        """

        def work() -> dict[str, Any]:
            require_permission(staff.role, Action.RECORD_PROVISION)
            require_legal_basis(legal_basis, requester_kind, items)
            if not entry_ids or len(set(entry_ids)) != len(entry_ids):
                raise MalformedError("entry_ids: one or more distinct entries of this node")
            stamp = now.replace(microsecond=0)
            with Session(self._engine, expire_on_commit=False) as session:
                rows = [self._load(session, entry_id) for entry_id in entry_ids]
                held = [r for r in rows if r.status != ACTIVE]
                if held:
                    raise WrongState(
                        f"entry {held[0].entry_id} is {held[0].status}: only active entries hold data to provide"
                    )
                record_id = _new_id("prv")
                salt = new_salt()
                details = {
                    "requester": requester,
                    "reference": reference,
                    "entry_ids": sorted(entry_ids),
                    "items": sorted(items),
                }
                record = ThirdPartyProvision(
                    record_id=record_id,
                    owner=self.node_id,
                    legal_basis=legal_basis,
                    requester_kind=requester_kind,
                    occurred_at=stamp,
                    actor=staff.id,
                    entry_count=len(entry_ids),
                    items=sorted(items),
                    details_commitment=commit(salt, canonical_bytes(details)),
                )
                signed = SignedDocument(record)
                signed.sign(self._key)
                index = self._append_leaf(
                    session, signed, event_id=record_id, entry_id=record_id, kind="provision", now=stamp
                )
                session.add(
                    ProvisionRow(
                        id=record_id,
                        legal_basis=legal_basis,
                        requester_kind=requester_kind,
                        received_at=stamp,
                        outcome="provided",
                        recorded_by=staff.id,
                        entry_count=len(entry_ids),
                        log_index=index,
                        details=canonical_bytes({**details, "salt": b64url_encode(salt)}).decode("utf-8"),
                    )
                )
                append_audit(
                    session,
                    actor=staff.id,
                    action="provision.record",
                    target=record_id,
                    outcome=legal_basis,
                    now=now,
                )
                session.commit()
                export = [self._export(row, items) for row in rows]
            self._publish_head(now)
            return {
                "record_id": record_id,
                "log_index": index,
                "record": signed.to_dict(),
                "provided": export,
            }

        return self._guarded(staff, "provision.record", legal_basis, now, work)  # type: ignore[no-any-return]

    def _export(self, row: EntryRow, items: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"entry_id": row.entry_id}
        if "incident-category" in items:
            out["category"] = row.category
        if "evidence-kind" in items:
            out["evidence_kind"] = row.evidence_kind
        if "evidence-reference" in items:
            out["evidence_reference"] = row.evidence_reference
        if "registration-period" in items:
            out["incident_date"] = row.incident_date
            out["registered_at"] = row.registered_at.isoformat() if row.registered_at else None
            out["expires_at"] = row.expires_at.isoformat()
        if "face-image" in items and row.crop_ct is not None:
            out["face_image_jpeg"] = b64url_encode(
                self._vault.open_record(row.entry_id, row.crop_ct, field="crop")
            )
        return out

    def record_refused_provision(
        self, staff: StaffMember, *, legal_basis: str, requester_kind: str, now: datetime
    ) -> dict[str, Any]:
        """A third party's request that was refused: counted, nothing provided, nothing in the log."""
        require_permission(staff.role, Action.RECORD_PROVISION)
        record_id = _new_id("prv")
        with self.write_lock, Session(self._engine) as session:
            session.add(
                ProvisionRow(
                    id=record_id,
                    legal_basis=legal_basis[:48],
                    requester_kind=requester_kind[:32],
                    received_at=now.replace(microsecond=0),
                    outcome="refused",
                    recorded_by=staff.id,
                )
            )
            append_audit(
                session,
                actor=staff.id,
                action="provision.refuse",
                target=record_id,
                outcome="refused",
                now=now,
            )
            session.commit()
        return {"record_id": record_id, "outcome": "refused"}

    def expire_due(self, now: datetime) -> list[str]:
        """Delete every active entry whose retention has ended (the background sweep).

        Every due entry is suppressed before the first write, so none matches while the others are
        written; one whose write fails is held (``pending``) and the sweep goes on with the next."""
        with Session(self._engine, expire_on_commit=False) as session:
            due = [
                entry_id
                for entry_id in session.exec(
                    select(EntryRow.entry_id).where(
                        EntryRow.status == ACTIVE, col(EntryRow.expires_at) <= now
                    )
                ).all()
                if entry_id not in self.pending
            ]
        for entry_id in due:
            self.index.suppress(entry_id)
        expired: list[str] = []
        for entry_id in due:
            with self.write_lock:
                try:
                    self._close(SYSTEM, entry_id, EventKind.EXPIRED, EventReason.RETENTION_EXPIRED, now)
                except ClosurePending:
                    continue
                except (EntryNotFound, WrongState):  # deleted by an officer since it was read
                    continue
            expired.append(entry_id)
        return expired

    def get(self, entry_id: str) -> EntryState:
        with Session(self._engine, expire_on_commit=False) as session:
            return _state(self._load(session, entry_id))

    def list(self, status: str | None = None) -> list[EntryState]:
        with Session(self._engine, expire_on_commit=False) as session:
            query = select(EntryRow).order_by(col(EntryRow.proposed_at))
            if status is not None:
                query = query.where(EntryRow.status == status)
            return [_state(r) for r in session.exec(query).all()]

    def facts(self, staff: StaffMember, entry_id: str) -> EntryFacts:
        require_permission(staff.role, Action.REVIEW_ENTRY)
        with Session(self._engine, expire_on_commit=False) as session:
            row = self._load(session, entry_id)
            return EntryFacts(
                evidence_reference=row.evidence_reference,
                incident_date=None if row.incident_date is None else date.fromisoformat(row.incident_date),
                proposed_at=row.proposed_at,
                has_face_crop=row.crop_ct is not None,
            )

    def face_crop(self, staff: StaffMember, entry_id: str) -> bytes:
        """The entry's face crop (JPEG) for an officer deciding on it; erased entries hold none."""
        require_permission(staff.role, Action.REVIEW_ENTRY)
        with Session(self._engine, expire_on_commit=False) as session:
            row = self._load(session, entry_id)
            if row.crop_ct is None:
                raise WrongState(f"entry {entry_id} is {row.status} and holds no face crop")
            return self._vault.open_record(entry_id, row.crop_ct, field="crop")

    def live_face_crop(self, entry_id: str) -> tuple[int, bytes]:
        """An active entry's version and face crop (JPEG), for the reviewer of an alert it raised
        (ours, or a member's through ``/v1/peer/reference-face``); the caller checks who asks.
        A closed or unknown entry is ``entry_not_found``: a deleted face is gone for everyone."""
        with Session(self._engine, expire_on_commit=False) as session:
            row = session.get(EntryRow, entry_id)
            if row is None or row.status != ACTIVE:
                raise EntryNotFound(f"{entry_id!r} is not a live entry of {self.node_id}")
            if row.crop_ct is None:
                raise NoReferenceFace(f"entry {entry_id} was registered without a face crop")
            return row.version, self._vault.open_record(entry_id, row.crop_ct, field="crop")

    def signed_entry(self, entry_id: str) -> SignedDocument[WatchlistEntry]:
        with Session(self._engine, expire_on_commit=False) as session:
            row = self._load(session, entry_id)
            if row.signed_entry is None:
                raise WrongState(f"entry {entry_id} is {row.status} and has no signed version")
            return SignedDocument.from_dict(parse_json(row.signed_entry), WatchlistEntry)

    def rebuild_index(self) -> int:
        """Load every active embedding from storage into a fresh index and swap it in."""
        with self._follow_lock, Session(self._engine, expire_on_commit=False) as session:
            # the log size first: a change committed while the rows are read is replayed by catch_up
            size = _log_size(session)
            rows = session.exec(select(EntryRow).where(EntryRow.status == ACTIVE)).all()
            items = [(row.entry_id, embedding) for row in rows if (embedding := self._openable(row))]
            self.index.replace_all(items)
            self._applied_log_size = size
        return len(items)

    # ----- the answer-time fence and following the database (several workers, one database) -----

    def active_versions(self, entry_ids: Iterable[str], session: Session | None = None) -> dict[str, int]:
        """The version of each of ``entry_ids`` that is active in the database now (one indexed query)."""
        ids = sorted(set(entry_ids) - self.index.suppressed)  # decided closures are not active any more
        if not ids:
            return {}
        query = select(EntryRow.entry_id, EntryRow.version).where(
            col(EntryRow.entry_id).in_(ids), EntryRow.status == ACTIVE
        )
        if session is not None:
            return {entry_id: version for entry_id, version in session.exec(query).all()}
        with Session(self._engine) as own:
            return {entry_id: version for entry_id, version in own.exec(query).all()}

    def fence(self, matches: Sequence[Match]) -> builtins.list[Match]:
        """Keep the matches whose entry is active in the database at this moment, with its version.

        The index of this worker may be behind a deletion committed by another worker (by the
        notification's delay, at most the reconcile interval); an answer never is: a dropped
        entry is removed from the index at once and counted in ``fence_dropped``.
        """
        if not matches:
            return []
        active = self.active_versions(m.key for m in matches)
        kept = [replace(m, version=active[m.key]) for m in matches if m.key in active]
        if len(kept) == len(matches):
            return kept
        stale = sorted({m.key for m in matches} - active.keys())
        with self._fence_lock:
            self.fence_dropped += len(matches) - len(kept)
        LOG.info(
            "the answer-time fence dropped %d match(es) on %d entries no longer active",
            len(matches) - len(kept),
            len(stale),
        )
        for key in stale:
            self.index.remove(key)
        self._changed()
        return kept

    def _changed(self) -> None:
        for listener in list(self.index_listeners):
            try:
                listener(self._applied_log_size)
            except Exception:  # a listener's fault must not stop the index from following
                LOG.exception("index listener failed")

    def reload_entries(self, entry_ids: Iterable[str]) -> int:
        """Bring these entries' place in the index in line with the database; return how many moved.

        Idempotent: an active entry already indexed stays (its embedding never changes between
        versions), one that is no longer active leaves, one newly active is loaded.
        """
        ids = sorted(set(entry_ids))
        if not ids:
            return 0
        with Session(self._engine, expire_on_commit=False) as session:
            rows = {
                row.entry_id: row
                for row in session.exec(select(EntryRow).where(col(EntryRow.entry_id).in_(ids))).all()
            }
        moved = 0
        for entry_id in ids:
            row = rows.get(entry_id)
            if row is not None and row.status == ACTIVE and row.embedding_ct is not None:
                embedding = None if entry_id in self.index else self._openable(row)
                if embedding is not None and self.index.upsert(entry_id, embedding):
                    moved += 1
            elif self.index.remove(entry_id):
                moved += 1
        return moved

    def catch_up(self, *, reloaded: Iterable[str] = ()) -> int:
        """Reload every entry named by a log leaf the index has not applied yet (the reconcile).

        Every change to an entry in the index (registration, correction, deletion, expiry) appends
        a leaf, and leaves commit in index order under the chain lock, so the applied log size is a
        cursor: one indexed query when nothing changed. ``reloaded`` were just reloaded by a
        notification and are not read again.
        """
        with self._follow_lock:
            seen = self._applied_log_size
            with Session(self._engine) as session:
                leaves = session.exec(
                    select(LogLeaf.idx, LogLeaf.entry_id)
                    .where(col(LogLeaf.idx) >= seen)
                    .order_by(col(LogLeaf.idx))
                ).all()
            size = seen
            for idx, _ in leaves:  # up to the first gap (a leaf not committed yet)
                if idx != size:
                    break
                size += 1
            skip = set(reloaded)
            moved = self.reload_entries({e for i, e in leaves if i < size} - skip)
            self._applied_log_size = size
        if moved or skip:
            self._changed()
        return size - seen

    @property
    def applied_log_size(self) -> int:
        """How many log leaves the index has taken in (every change before it is in the index)."""
        return self._applied_log_size

    def feed(self) -> Feed:
        """What this worker does on ``watchnet_entries``: reload the named entries, then catch up."""

        def apply(entry_ids: builtins.list[str]) -> None:
            with self._follow_lock:  # no rebuild swaps an older snapshot in between
                self.reload_entries(entry_ids)
                self.catch_up(reloaded=entry_ids)

        return Feed(ENTRIES, apply, self.catch_up)

    def suppress_feed(self) -> Feed:
        """What this worker does on ``watchnet_suppress``: stop matching entries whose closure
        another worker decided and could not write yet (once written, ``watchnet_entries`` follows)."""

        def apply(entry_ids: builtins.list[str]) -> None:
            for entry_id in entry_ids:
                self.index.suppress(entry_id)
            self._changed()

        return Feed(SUPPRESS, apply, lambda: None)

    def following(self, *feeds: Feed) -> Callable[[object], Any]:
        """An aiohttp ``cleanup_ctx`` that follows the database (``node.storage.notify``) with this
        registry's feed and ``feeds``; on SQLite (one process) it follows nothing."""
        self.follower = Follower(self._engine, [self.feed(), self.suppress_feed(), *feeds])
        return self.follower.beside

    def freshness(self) -> dict[str, Any]:
        """For ``/v1/health``: how this worker's index follows the database (no entry counts)."""
        follower = self.follower.status() if self.follower is not None else {"following": "local"}
        return {
            **follower,
            **({"log_size": self._applied_log_size} if shared(self._engine) else {}),
            "fence_dropped": self.fence_dropped,
        }


def _log_size(session: Session) -> int:
    last = session.exec(select(func.max(LogLeaf.idx))).one()
    return 0 if last is None else int(last) + 1
