"""The members' copies of a node's own log: served to its owner, and recovered from after a restore.

Member side (``mirror_page``): an owner asks ``POST /v1/peer/mirror`` for the leaves of its own
log we verified, from an index on; we answer with its signed head we verified, those leaves, the
receipts we signed for its events on the page (we never deliver a receipt twice, so an owner
that lost them gets them back here) and the size of the latest checkpoint of its log we cosigned
as a witness. Only the asker's own log is served: nothing else of ours leaves.

Owner side (``restore_pass``, run by the leader's ``restore`` duty while the node is restoring,
``node.records.restore``): every active member is asked; each head is checked (our key, our log,
the restored log a prefix of it); the missing leaves come from the member that holds the most, are
verified against its head and replayed; the witnesses' sizes are a lower bound the recovered log
must reach; the receipts are kept; then the head is published, the index rebuilt and the marker
cleared, and the node answers again. A pass that cannot finish (a member unreachable, a witness
that cosigned more than any member holds) raises and changes nothing; the duty retries it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from governance.manifest import Member
from node.federation.sync import record_receipts
from node.records.auditlog import append_audit
from node.records.restore import (
    ReplayResult,
    RestoreGate,
    RestoreReport,
    check_head,
    check_prefix,
    clear_marker,
    held_hashes,
    log_size,
    lost_entries,
    replay,
    write_report,
)
from node.storage.models import LogLeaf, OutboxReceipt, PeerLeaf, PeerState, ReceiptRow, WitnessedLog
from protocol.canonical import parse_json
from protocol.checkpoint import origin_of
from protocol.errors import WatchnetError
from protocol.events import log_leaf_bytes
from protocol.fields import format_time
from protocol.mirror import MirrorPage, MirrorRequest
from protocol.receipt import RECEIPT_KINDS, DeletionReceipt
from protocol.signed import SignedDocument
from protocol.sync import MAX_RECEIPTS, SYNC_PURPOSE, ReceiptDelivery, parse_log_event
from protocol.treehead import TreeHead

if TYPE_CHECKING:
    from node.context import NodeContext
    from node.federation.client import PeerClient


class Federation(Protocol):
    """What a restore pass needs of ``node.federation.federation.Federation`` (which runs it)."""

    context: NodeContext
    clock: Callable[[], datetime]
    timeout: float

    @property
    def node_id(self) -> str: ...

    @property
    def client(self) -> PeerClient: ...

    def peers(self, manifest: Any = None, *, include_suspended: bool = True) -> list[Member]: ...


class DutyRecorder(Protocol):
    def ok(self) -> None: ...

    def failed(self, error: BaseException) -> None: ...


__all__ = ["RestoreIncomplete", "mirror_page", "restore_loop", "restore_pass"]

LOG = logging.getLogger("watchnet.restore")
MAX_MIRROR_LEAVES = 100_000
"""The most leaves a restore takes from one member in one pass (200 pages)."""


class RestoreIncomplete(WatchnetError):
    """The restore cannot finish yet: a member did not answer, or what they hold does not reach
    what a witness cosigned. The node stays restoring; the duty tries again."""

    code = "restore_incomplete"


def mirror_page(engine: Engine, *, owner: str, group_id: str, request: MirrorRequest) -> MirrorPage:
    """What we hold of ``owner``'s log from ``request.after`` on, for ``owner`` itself."""
    with Session(engine) as session:
        state = session.get(PeerState, owner)
        head = (
            None
            if state is None or state.signed_head is None
            else SignedDocument.from_bytes(state.signed_head.encode("utf-8"), TreeHead)
        )
        held = 0 if head is None else head.payload.tree_size
        rows = session.exec(
            select(PeerLeaf)
            .where(PeerLeaf.peer == owner, col(PeerLeaf.idx) >= request.after, col(PeerLeaf.idx) < held)
            .order_by(col(PeerLeaf.idx))
            .limit(request.limit)
        ).all()
        events = [parse_log_event(parse_json(r.leaf)) for r in rows]
        ids = [r.event_id for r in rows if r.kind in {k.value for k in RECEIPT_KINDS}]
        receipts = (
            session.exec(
                select(OutboxReceipt)
                .where(OutboxReceipt.owner == owner, col(OutboxReceipt.event_id).in_(ids))
                .limit(MAX_RECEIPTS)
            ).all()
            if ids
            else []
        )
        witnessed = session.exec(
            select(WitnessedLog.tree_size).where(WitnessedLog.origin == origin_of(group_id, owner))
        ).first()
    return MirrorPage(
        head=head,
        held_size=held,
        first=request.after,
        events=events,
        receipts=[SignedDocument.from_bytes(r.signed.encode("utf-8"), DeletionReceipt) for r in receipts],
        witnessed_size=None if witnessed is None else int(witnessed),
    )


def _receipts_from(engine: Engine, members: list[str]) -> int:
    """The first index of ours whose deletion, expiry or correction lacks a member's receipt."""
    kinds = [k.value for k in RECEIPT_KINDS]
    with Session(engine) as session:
        counted = (
            select(ReceiptRow.event_id, func.count().label("n"))
            .where(col(ReceiptRow.member).in_(members))
            .group_by(col(ReceiptRow.event_id))
            .subquery()
        )
        first = session.exec(
            select(func.min(LogLeaf.idx))
            .outerjoin(counted, counted.c.event_id == LogLeaf.event_id)
            .where(col(LogLeaf.kind).in_(kinds), func.coalesce(counted.c.n, 0) < len(members))
        ).one()
    return int(first) if first is not None else -1


class _Copy:
    """One member's answers: its head, the leaves it sent from ``start``, its receipts."""

    def __init__(self, member: Member, start: int) -> None:
        self.member = member
        self.start = start
        self.head: SignedDocument[TreeHead] | None = None
        self.held = 0
        self.leaves: list[bytes] = []
        self.receipts: list[SignedDocument[DeletionReceipt]] = []
        self.witnessed: int | None = None


async def _fetch(federation: Federation, member: Member, start: int) -> _Copy:
    copy = _Copy(member, start)
    after = start
    while True:
        page = await federation.client.exchange(
            member,
            "/v1/peer/mirror",
            SYNC_PURPOSE,
            MirrorRequest(after=after),
            MirrorPage,
            now=federation.clock(),
            manifest_version=federation.context.manifest.version,
            timeout=federation.timeout,
        )
        if page.first != after:
            raise RestoreIncomplete(
                f"{member.node_id} answered leaves from {page.first}, we asked from {after}"
            )
        copy.head, copy.held, copy.witnessed = page.head, page.held_size, page.witnessed_size
        copy.leaves += [log_leaf_bytes(e) for e in page.events]
        copy.receipts += page.receipts
        after += len(page.events)
        if not page.events or after >= page.held_size or len(copy.leaves) >= MAX_MIRROR_LEAVES:
            return copy


async def restore_pass(federation: Federation, gate: RestoreGate) -> RestoreReport | None:
    """One attempt to finish the restore; the report when it finished, ``None`` when not restoring."""
    facts = gate.facts()
    if facts is None:
        return None
    context = federation.context
    registry = context.registry
    engine = context.engine
    key = context.signing_key.public
    report = RestoreReport.from_json(facts)
    members = federation.peers(include_suspended=False)
    held = await asyncio.to_thread(held_hashes, engine)
    size = len(held)
    owed_from = await asyncio.to_thread(_receipts_from, engine, [m.node_id for m in members])
    start = size if owed_from < 0 else min(size, owed_from)
    copies: list[_Copy] = []
    missing: list[str] = []
    for member in members:
        try:
            copies.append(await _fetch(federation, member, start))
        except WatchnetError as e:
            code = getattr(e, "peer_code", e.code)
            LOG.warning("restore: %s did not give its copy of our log: %s: %s", member.node_id, code, e)
            missing.append(f"{member.node_id} ({code})")
    if missing:
        raise RestoreIncomplete(
            f"{len(missing)} of {len(members)} members did not answer with their copy of our log: "
            f"{', '.join(missing)}; the node stays restoring until every active member has"
        )
    for copy in copies:
        if copy.head is not None:
            check_head(copy.head, registry.node_id, key)
            check_prefix(held, copy.head.payload)
        report.members[copy.member.node_id] = copy.held
    best = max(copies, key=lambda c: c.held, default=None)
    witnessed = max((c.witnessed for c in copies if c.witnessed is not None), default=0)
    result = ReplayResult(size=size)
    now = federation.clock().replace(microsecond=0)
    if best is not None and best.head is not None and best.held > size:
        head, leaves = best.head, best.leaves[size - start :]
        result = await asyncio.to_thread(
            lambda: replay(registry, head=head, leaves=leaves, first=size, key=key, report=report, now=now)
        )
    if result.size < witnessed:
        raise RestoreIncomplete(
            f"a witness cosigned our log at size {witnessed}, the members' copies reach {result.size}: "
            "the events between are lost to every follower (see docs/operations.md, Restore)"
        )
    report.receipts += await asyncio.to_thread(_keep_receipts, federation, copies, now)
    await asyncio.to_thread(_finish, federation, gate, report, result, now)
    return report


def _keep_receipts(federation: Federation, copies: list[_Copy], now: datetime) -> int:
    kept = 0
    for copy in copies:
        for at in range(0, len(copy.receipts), MAX_RECEIPTS):
            chunk = copy.receipts[at : at + MAX_RECEIPTS]
            with federation.context.registry.write_lock:
                kept += len(
                    record_receipts(
                        federation.context.engine,
                        node_id=federation.node_id,
                        member=copy.member,
                        delivery=ReceiptDelivery(receipts=chunk),
                        now=now,
                    )
                )
    return kept


def _finish(
    federation: Federation, gate: RestoreGate, report: RestoreReport, result: ReplayResult, now: datetime
) -> None:
    """The head at the new size, the index rebuilt from storage, the marker cleared, the report kept."""
    registry = federation.context.registry
    if result.replayed == 0:  # nothing was missing: the restore record still lands in the audit chain
        with registry.write_lock, Session(registry.engine) as session:
            append_audit(
                session,
                actor="system",
                action="node.restore",
                target=f"backup={report.backup_bytes}B@{report.backup_log_size} replayed=0 lost=0:"[:128],
                outcome="ok",
                now=now,
            )
            session.commit()
    registry.publish_head(now)
    registry.reload_entries(result.changed)
    registry.catch_up(reloaded=result.changed)
    registry.rebuild_index()
    report.log_size = log_size(registry.engine)
    report.replayed += result.replayed
    report.erased = sorted(set(report.erased) | set(result.erased))
    report.lost = [e["entry_id"] for e in lost_entries(registry.engine)]
    report.completed_at = format_time(now)
    write_report(gate.directory, report)
    clear_marker(gate.directory)
    LOG.warning(
        "restore complete: log %d -> %d (%d replayed, %d erased again, %d lost: %s)",
        report.backup_log_size,
        report.log_size,
        report.replayed,
        len(report.erased),
        len(report.lost),
        ", ".join(report.lost) or "none",
    )


async def restore_loop(
    federation: Federation, gate: RestoreGate, interval: timedelta, duty: DutyRecorder
) -> None:
    """The ``restore`` duty: while the node is restoring, try to finish every ``interval``."""
    while True:
        if gate.active:
            try:
                await restore_pass(federation, gate)
                duty.ok()
            except WatchnetError as e:
                LOG.warning("restore not finished: %s: %s", e.code, e)
                duty.failed(e)
        else:
            duty.ok()
        await asyncio.sleep(interval.total_seconds())
