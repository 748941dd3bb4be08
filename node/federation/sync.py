"""Following peers' event logs, applying their deletions and corrections, and the receipts both ways.

Follower side: a page of a peer's log is verified before anything is applied: every event is
signed by the peer's key from the trusted manifest, the page starts exactly at our checkpoint,
and the RFC 9162 root over the leaves we already hold plus the page's equals the root in the
peer's signed head. Then, in one transaction, the leaves, their effects (alerts withdrawn or
moved to the new version, tombstones, receipts to send) and the new checkpoint commit together,
so a crash at any point resumes from the last checkpoint with nothing lost and nothing applied
twice. A page that does not verify is refused and audited; one whose root contradicts the
history we hold is a fork: the peer is flagged and the two signed heads are kept as evidence.

Owner side: receipts from members are checked against our own events and kept, and
``propagation_status`` says for every deletion, expiry and correction which members confirmed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from governance.forkclear import ForkClearance, check_covers, clearance_digest, verify_clearance
from governance.manifest import Manifest, Member
from node.federation.owed import settle
from node.records.auditlog import append_audit
from node.records.eventlog import leaf_count, root_of_leaf_hashes
from node.storage.locks import lock_chains
from node.storage.models import (
    Alert,
    AlertFace,
    AlertSighting,
    AuditRecord,
    LogLeaf,
    OutboxReceipt,
    PeerLeaf,
    PeerState,
    ReceiptRow,
    Tombstone,
    TreeHeadRow,
)
from protocol.canonical import b64url_encode, parse_json
from protocol.errors import MalformedError, ProofError, SignatureError, WatchnetError
from protocol.events import EntryEvent, EventKind, log_leaf_bytes
from protocol.fields import format_time
from protocol.keys import SigningKey
from protocol.merkle import CompactRange, leaf_hash
from protocol.provision import ThirdPartyProvision
from protocol.receipt import RECEIPT_KINDS, DeletionReceipt
from protocol.signed import SignedDocument
from protocol.sync import LogPage, ReceiptDelivery
from protocol.treehead import TreeHead

__all__ = [
    "ForkDetected",
    "PageResult",
    "apply_clearance",
    "apply_page",
    "checkpoint",
    "forked_peers",
    "pending_receipts",
    "propagation_status",
    "record_receipts",
    "refuse_clearance",
    "signed_root",
    "verified_head",
]

PURGED_KINDS = frozenset({EventKind.DELETED, EventKind.EXPIRED})
PROVISION_KIND = "provision"
"""``kind`` of a log row holding a third-party provision record rather than an entry event."""


class ForkDetected(ProofError):
    """A peer's signed head contradicts the history we already verified from it."""

    code = "fork_detected"
    conflicting_head: dict[str, Any] | None = None


LOG = logging.getLogger("watchnet.federation")


@dataclass
class PageResult:
    applied: int = 0
    receipts: int = 0
    tree_size: int = 0
    purged_alerts: int = 0
    events: list[str] = field(default_factory=list)


def checkpoint(engine: Engine, peer: str) -> int:
    with Session(engine) as session:
        state = session.get(PeerState, peer)
        return 0 if state is None else state.tree_size


def verified_head(engine: Engine, peer: str) -> tuple[int, bytes | None]:
    """Our checkpoint in ``peer``'s log and the root its signed head had there (``None`` before any)."""
    with Session(engine) as session:
        state = session.get(PeerState, peer)
        if state is None or state.signed_head is None:
            return (0 if state is None else state.tree_size), None
        head = SignedDocument.from_bytes(state.signed_head.encode("utf-8"), TreeHead).payload
        return state.tree_size, head.root_hash


def _frontier(session: Session, state: PeerState, peer: str, after: int) -> CompactRange:
    """The compact range of the ``after`` leaves of ``peer`` we hold: stored with our checkpoint,
    or (for a node from before the frontier was kept, or one whose copy does not fit) rebuilt
    once from the held leaves, which must then be exactly ``after``."""
    if after == 0 and state.tree_size == 0:
        return CompactRange()
    if state.frontier is not None and state.tree_size == after:
        try:
            return CompactRange.from_bytes(after, state.frontier)
        except ProofError:
            LOG.warning(
                "peer %s: the stored Merkle frontier does not fit size %d; rebuilding it", peer, after
            )
    held = list(
        session.exec(
            select(PeerLeaf.leaf_hash).where(PeerLeaf.peer == peer).order_by(col(PeerLeaf.idx))
        ).all()
    )
    if len(held) != after:
        raise MalformedError(f"we hold {len(held)} leaves of {peer}, checkpoint says {after}")
    return CompactRange.of_leaf_hashes([bytes(h) for h in held])


def _verify_page(
    session: Session, state: PeerState, member: Member, page: LogPage, after: int
) -> tuple[list[bytes], CompactRange]:
    """Everything that must hold before a page touches our state; returns the new leaf hashes and
    the frontier they extend ours to (O(page + log E): no held leaf is read)."""
    if page.owner != member.node_id:
        raise MalformedError(f"log page of {page.owner!r} received from {member.node_id!r}")
    if page.first != after:
        raise MalformedError(f"log page starts at {page.first}, we asked for events after {after}")
    page.head.verify([member.signing_key], threshold=1)
    hashes: list[bytes] = []
    for offset, event in enumerate(page.events):
        try:
            event.verify([member.signing_key], threshold=1)
        except SignatureError as e:
            raise SignatureError(f"event {page.first + offset} of {member.node_id}: {e}") from e
        hashes.append(leaf_hash(log_leaf_bytes(event)))
    frontier = _frontier(session, state, member.node_id, after)
    frontier.extend(hashes)
    if frontier.size != page.head.payload.tree_size or frontier.root() != page.head.payload.root_hash:
        raise ForkDetected(
            f"{member.node_id}'s signed head for size {page.head.payload.tree_size} does not match the "
            f"{after} events verified before plus the {len(hashes)} on this page: its log was rewritten"
        )
    return hashes, frontier


def apply_page(
    engine: Engine,
    *,
    node_id: str,
    signing_key: SigningKey,
    member: Member,
    page: LogPage,
    after: int,
    now: datetime,
) -> PageResult:
    """Verify ``page`` from ``member`` and apply it atomically; raise (and change nothing) if it fails."""
    result = PageResult(tree_size=after)
    with Session(engine, expire_on_commit=False) as session:
        lock_chains(session)  # first: the page's alerts and audit records are written under it
        state = session.get(PeerState, member.node_id) or PeerState(peer=member.node_id)
        if state.status == "forked":
            raise ForkDetected(f"{member.node_id} was flagged for a forked log; it is not followed any more")
        try:
            hashes, frontier = _verify_page(session, state, member, page, after)
        except ForkDetected as e:
            e.conflicting_head = page.head.to_dict()
            _flag_fork(session, state, page.head, str(e), now)
            session.commit()
            raise
        size = page.head.payload.tree_size
        for offset, (event, digest) in enumerate(zip(page.events, hashes, strict=True)):
            header = event.payload
            if isinstance(header, ThirdPartyProvision):
                session.add(
                    PeerLeaf(
                        peer=member.node_id,
                        idx=page.first + offset,
                        event_id=header.record_id,
                        entry_id=header.record_id,
                        kind=PROVISION_KIND,
                        leaf_hash=digest,
                        leaf=log_leaf_bytes(event),
                    )
                )
                result.applied += 1
                continue
            session.add(
                PeerLeaf(
                    peer=member.node_id,
                    idx=page.first + offset,
                    event_id=header.event_id,
                    entry_id=header.entry_id,
                    kind=header.kind.value,
                    leaf_hash=digest,
                    leaf=log_leaf_bytes(event),
                )
            )
            if header.kind in RECEIPT_KINDS:
                result.purged_alerts += _apply_change(session, header, now)
                receipt = DeletionReceipt.for_event(
                    header,
                    member=node_id,
                    tree_size=size,
                    root_hash=page.head.payload.root_hash,
                    applied_at=now,
                )
                signed = SignedDocument(receipt)
                signed.sign(signing_key)
                if session.get(OutboxReceipt, (header.owner, header.event_id)) is None:
                    session.add(
                        OutboxReceipt(
                            owner=header.owner,
                            event_id=header.event_id,
                            signed=signed.to_bytes().decode("utf-8"),
                            created_at=now,
                        )
                    )
                    result.receipts += 1
                append_audit(
                    session,
                    actor=f"peer:{member.node_id}",
                    action=f"peer.event.{header.kind.value}",
                    target=f"{header.owner}/{header.entry_id}",
                    outcome="applied",
                    now=now,
                )
                result.events.append(header.event_id)
            result.applied += 1
        state.tree_size = size
        state.frontier = frontier.to_bytes()
        state.signed_head = page.head.to_bytes().decode("utf-8")
        state.status, state.last_error, state.failures = "ok", "", 0
        state.last_sync_at = now
        session.add(state)
        session.commit()
    result.tree_size = size
    return result


def _apply_change(session: Session, event: EntryEvent, now: datetime) -> int:
    """Apply a peer's correction or deletion to everything we derived from the entry."""
    alerts = session.exec(
        select(Alert).where(Alert.owner == event.owner, Alert.entry_id == event.entry_id)
    ).all()
    if event.kind is EventKind.CORRECTED:
        for alert in alerts:
            if alert.status != "withdrawn" and alert.entry_version < event.entry_version:
                alert.entry_version = event.entry_version
                alert.signed_entry = None
                session.add(alert)
        return 0
    for alert in alerts:
        alert.status = "withdrawn"
        alert.score = None
        alert.band = None
        alert.category = None
        alert.signed_entry = None
        session.add(alert)
        _withdraw_crops(session, alert.id, now)
    if session.get(Tombstone, (event.owner, event.entry_id)) is None:
        session.add(
            Tombstone(
                owner=event.owner,
                entry_id=event.entry_id,
                event_id=event.event_id,
                kind=event.kind.value,
                applied_at=now,
            )
        )
    return len(alerts)


def _withdraw_crops(session: Session, alert_id: str, now: datetime) -> None:
    """The camera crops of a withdrawn alert: the ciphertext goes now, in this transaction; the
    alert's key is destroyed (and the erasure audited) by the next pass of the ``alert_faces`` duty,
    which holds the key store (``node.records.alert_faces``)."""
    face = session.get(AlertFace, alert_id)
    if face is None or face.erased_at is not None:
        return
    for sighting in session.exec(
        select(AlertSighting).where(
            AlertSighting.alert_id == alert_id, col(AlertSighting.probe_ct).is_not(None)
        )
    ).all():
        sighting.probe_ct = None
        session.add(sighting)
    face.erase_after, face.erased_because = min(face.erase_after, now), "withdrawn"
    session.add(face)


def _flag_fork(
    session: Session, state: PeerState, head: SignedDocument[TreeHead], reason: str, now: datetime
) -> None:
    state.status = "forked"
    state.last_error = reason[:512]
    session.add(state)
    append_audit(
        session,
        actor=f"peer:{state.peer}",
        action="peer.log.fork",
        target=state.peer,
        outcome="flagged",
        now=now,
    )


FORK_CLEARED = "peer.log.fork_cleared"
CLEARANCE_REFUSED = "peer.log.fork_clearance_refused"


def forked_peers(engine: Engine) -> list[str]:
    """The peers we flagged for a forked log and no longer follow."""
    with Session(engine) as session:
        return list(session.exec(select(PeerState.peer).where(PeerState.status == "forked")).all())


def apply_clearance(
    engine: Engine, *, member: Member, manifest: Manifest, data: bytes, now: datetime
) -> str | None:
    """Clear our fork flag on ``member`` with the organisation's signed ``fork-clearance`` in ``data``.

    Checks ``governance.forkclear``: a threshold of the manifest's organisation keys, the member we
    flagged, not expired, and a cleared head that extends the head we last verified (a proof from
    exactly our head, or our own leaves when we hold at least the cleared size). On success the
    flag is cleared (status ``ok``; our checkpoint, leaves and the ``peer.log.fork`` record stay as
    they were) and ``peer.log.fork_cleared`` is audited with the clearance's digest; returns that
    digest, or ``None`` if ``member`` is not flagged. A refusal raises, typed, and is audited as
    ``peer.log.fork_clearance_refused`` once per code while the flag stands, so the organisation
    serving the same bad clearance at every poll adds no records.
    """
    peer = member.node_id
    with Session(engine, expire_on_commit=False) as session:
        lock_chains(session)
        state = session.get(PeerState, peer)
        if state is None or state.status != "forked":
            return None
        try:
            document = SignedDocument.from_bytes(data, ForkClearance)
            verify_clearance(document, manifest, member=peer, now=now)
            clearance = document.payload
            held_size, held_root = 0, None
            if state.signed_head is not None:
                held = SignedDocument.from_bytes(state.signed_head.encode("utf-8"), TreeHead).payload
                held_size, held_root = held.tree_size, held.root_hash
            prefix_root = None
            if held_size >= clearance.tree_size:
                hashes = list(
                    session.exec(
                        select(PeerLeaf.leaf_hash)
                        .where(PeerLeaf.peer == peer, col(PeerLeaf.idx) < clearance.tree_size)
                        .order_by(col(PeerLeaf.idx))
                    ).all()
                )
                prefix_root = root_of_leaf_hashes(hashes)
            check_covers(clearance, held_size=held_size, held_root=held_root, held_prefix_root=prefix_root)
        except WatchnetError as e:
            _audit_refused_clearance(session, peer, e.code, now)
            session.commit()
            raise
        digest = clearance_digest(clearance)
        state.status, state.last_error, state.failures = "ok", "", 0
        session.add(state)
        append_audit(
            session,
            actor="organisation",
            action=FORK_CLEARED,
            target=peer,
            outcome=f"cleared:{digest}",
            now=now,
        )
        session.commit()
        return digest


def refuse_clearance(engine: Engine, peer: str, code: str, now: datetime) -> None:
    """Audit a clearance refused before it could be read (an answer over the size limit), once per code."""
    with Session(engine) as session:
        lock_chains(session)
        _audit_refused_clearance(session, peer, code, now)
        session.commit()


def _audit_refused_clearance(session: Session, peer: str, code: str, now: datetime) -> None:
    """One record per refusal code since the peer was last flagged (the same as ``record_failure``
    does per distinct reason): a bad clearance fetched at every poll is audited once."""
    flagged = session.exec(
        select(func.max(AuditRecord.seq)).where(
            AuditRecord.action == "peer.log.fork", AuditRecord.target == peer
        )
    ).one()
    outcome = f"refused:{code}"[:48]
    seen = session.exec(
        select(AuditRecord.seq)
        .where(
            AuditRecord.action == CLEARANCE_REFUSED,
            AuditRecord.target == peer,
            AuditRecord.outcome == outcome,
            col(AuditRecord.seq) > (-1 if flagged is None else flagged),
        )
        .limit(1)
    ).first()
    if seen is None:
        append_audit(
            session, actor="organisation", action=CLEARANCE_REFUSED, target=peer, outcome=outcome, now=now
        )


def fork_evidence(engine: Engine, peer: str) -> dict[str, Any] | None:
    """The last head we verified from ``peer`` (the one a forked head contradicts), for the organisation."""
    with Session(engine) as session:
        state = session.get(PeerState, peer)
        if state is None or state.signed_head is None:
            return None
        return {"peer": peer, "verified_head": parse_json(state.signed_head), "reason": state.last_error}


def record_failure(
    engine: Engine, peer: str, error: str, now: datetime, *, audit_as: str | None = None
) -> None:
    """Count a failed sync; a refused page (``audit_as``) is audited once per distinct reason."""
    with Session(engine) as session:
        state = session.get(PeerState, peer) or PeerState(peer=peer)
        repeated = state.last_error == error[:512]
        state.failures += 1
        state.last_error = error[:512]
        session.add(state)
        if audit_as is not None and not repeated:
            append_audit(
                session,
                actor=f"peer:{peer}",
                action="peer.log.refused",
                target=peer,
                outcome=audit_as,
                now=now,
            )
        session.commit()


def pending_receipts(
    engine: Engine, owner: str, signing_key: SigningKey | None = None
) -> list[SignedDocument[DeletionReceipt]]:
    """The receipts still owed to ``owner``, oldest first. Given our ``signing_key``, a receipt
    signed before receipts named the owner's root is signed again with the root of the leaves we
    verified up to its ``tree_size``, so an upgrade loses no owed receipt."""
    with Session(engine) as session:
        rows = session.exec(
            select(OutboxReceipt)
            .where(OutboxReceipt.owner == owner, col(OutboxReceipt.delivered_at).is_(None))
            .order_by(col(OutboxReceipt.created_at))
            .limit(500)
        ).all()
        if signing_key is not None:
            for row in rows:
                legacy = parse_json(row.signed).get("signed")
                if isinstance(legacy, dict) and "root_hash" not in legacy:
                    row.signed = _signed_with_root(session, owner, legacy, signing_key)
                    session.add(row)
            session.commit()
        return [SignedDocument.from_bytes(r.signed.encode("utf-8"), DeletionReceipt) for r in rows]


def _signed_with_root(session: Session, owner: str, legacy: dict[str, Any], key: SigningKey) -> str:
    size = legacy.get("tree_size")
    if not isinstance(size, int):
        raise MalformedError(f"an owed receipt to {owner} without an integer tree_size")
    hashes = session.exec(
        select(PeerLeaf.leaf_hash)
        .where(PeerLeaf.peer == owner, col(PeerLeaf.idx) < size)
        .order_by(col(PeerLeaf.idx))
    ).all()
    if len(hashes) != size:
        raise MalformedError(
            f"an owed receipt names size {size} of {owner}'s log; we hold {len(hashes)} leaves"
        )
    root = root_of_leaf_hashes([bytes(h) for h in hashes])
    receipt = DeletionReceipt.from_dict({**legacy, "root_hash": b64url_encode(root)})
    signed = SignedDocument(receipt)
    signed.sign(key)
    return signed.to_bytes().decode("utf-8")


def mark_delivered(engine: Engine, owner: str, event_ids: list[str], now: datetime) -> None:
    with Session(engine) as session:
        for event_id in event_ids:
            row = session.get(OutboxReceipt, (owner, event_id))
            if row is not None and row.delivered_at is None:
                row.delivered_at = now
                row.attempts += 1
                session.add(row)
        session.commit()


def is_tombstoned(engine: Engine, owner: str, entry_id: str) -> bool:
    with Session(engine) as session:
        return session.get(Tombstone, (owner, entry_id)) is not None


def signed_root(session: Session, node_id: str, size: int) -> bytes | None:
    """The root of the head we signed at ``size``, if we signed one (the registry keeps one for
    every size it published). Reading it back costs one row; recomputing it from our log costs
    a read of its size and of the leaves of every subtree below pymerkle's cached width."""
    row = session.get(TreeHeadRow, size)
    if row is None:
        return None
    head = SignedDocument.from_bytes(row.signed.encode("utf-8"), TreeHead).payload
    return head.root_hash if (head.log_id, head.tree_size) == (node_id, size) else None


def record_receipts(
    engine: Engine, *, node_id: str, member: Member, delivery: ReceiptDelivery, now: datetime
) -> list[str]:
    """Check every receipt against our own log and keep it; return the event ids now confirmed."""
    confirmed: list[str] = []
    with Session(engine) as session:
        size = leaf_count(session)
        roots: dict[int, bytes] = {}

        def root_at(n: int) -> bytes:
            """Our own log's root over its first ``n`` events (read once per size named): from the
            head we signed at that size (a member names the size of a head we served it), else
            recomputed from the leaves."""
            if n not in roots:
                signed_at_n = signed_root(session, node_id, n)
                if signed_at_n is not None:
                    roots[n] = signed_at_n
                else:
                    hashes = session.exec(
                        select(LogLeaf.leaf_hash).where(col(LogLeaf.idx) < n).order_by(col(LogLeaf.idx))
                    ).all()
                    roots[n] = root_of_leaf_hashes(list(hashes))
            return roots[n]

        for signed in delivery.receipts:
            receipt = signed.payload
            if receipt.owner != node_id or receipt.member != member.node_id:
                raise MalformedError(
                    f"receipt from {receipt.member!r} for {receipt.owner!r} delivered by {member.node_id!r} to {node_id!r}"
                )
            signed.verify([member.signing_key], threshold=1)
            leaf = session.exec(select(LogLeaf).where(LogLeaf.event_id == receipt.event_id)).first()
            if leaf is None or leaf.kind == PROVISION_KIND:
                raise MalformedError(f"receipt for {receipt.event_id}, which is not an event of our log")
            event = SignedDocument.from_bytes(leaf.leaf, EntryEvent).payload
            if receipt.tree_size > size:
                raise MalformedError(f"receipt names log size {receipt.tree_size}, our log has {size} events")
            receipt.check_against(event, leaf_index=leaf.idx, root_at=root_at)
            if session.get(ReceiptRow, (receipt.event_id, member.node_id)) is None:
                session.add(
                    ReceiptRow(
                        event_id=receipt.event_id,
                        member=member.node_id,
                        signed=signed.to_bytes().decode("utf-8"),
                        applied_at=receipt.applied_at,
                        received_at=now,
                    )
                )
                settle(session, receipt.event_id, member.node_id)
                append_audit(
                    session,
                    actor=f"peer:{member.node_id}",
                    action="peer.receipt",
                    target=f"{receipt.event_id}",
                    outcome="ok",
                    now=now,
                )
            confirmed.append(receipt.event_id)
        session.commit()
    return confirmed


def propagation_status(
    engine: Engine, manifest: Manifest, node_id: str, *, after: int = 0, limit: int = 1000
) -> list[dict[str, Any]]:
    """Per deletion, expiry and correction of ours from log index ``after`` on (at most ``limit``):
    who confirmed (with when) and who not yet."""
    members = manifest.confirming_members(node_id)
    kinds = [k.value for k in RECEIPT_KINDS]
    with Session(engine) as session:
        leaves = session.exec(
            select(LogLeaf)
            .where(col(LogLeaf.kind).in_(kinds), col(LogLeaf.idx) >= after)
            .order_by(col(LogLeaf.idx))
            .limit(limit)
        ).all()
        receipts = session.exec(  # the columns shown, not each receipt's signed document
            select(
                ReceiptRow.event_id, ReceiptRow.member, ReceiptRow.applied_at, ReceiptRow.received_at
            ).where(col(ReceiptRow.event_id).in_([leaf.event_id for leaf in leaves]))
        ).all()
    by_event: dict[str, dict[str, tuple[datetime, datetime]]] = {}
    for event_id, member, applied_at, received_at in receipts:
        by_event.setdefault(event_id, {})[member] = (applied_at, received_at)
    out = []
    for leaf in leaves:
        event = SignedDocument.from_bytes(leaf.leaf, EntryEvent).payload
        got = by_event.get(event.event_id, {})
        out.append(
            {
                "event_id": event.event_id,
                "index": leaf.idx,
                "entry_id": event.entry_id,
                "kind": event.kind.value,
                "reason": event.reason.value,
                "occurred_at": format_time(event.occurred_at),
                "confirmed": [
                    {"member": m, "applied_at": format_time(applied), "received_at": format_time(received)}
                    for m, (applied, received) in sorted(got.items())
                ],
                "missing": [m for m in members if m not in got],
            }
        )
    return out
