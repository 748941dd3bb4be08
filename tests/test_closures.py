"""Deletions fail closed (#16): a decided deletion or expiry stops matching before its write, stays
out of every reload while the write fails, and lands (once) when the database takes writes again.

The failing write is SQLite's own refusal: every connection the registry checks out runs
``PRAGMA query_only`` while the test says so, and SQLite refuses the write as it would a write to
a full disk (the full disk itself is in ``tests/chaos/test_disk_full.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from node.records.auditlog import verify_audit_chain
from node.records.closures import ClosurePending, PendingClosure
from node.records.held_journal import HELD_FILE, SLOT_BYTES, HeldJournal
from node.records.matching import MatchIndex
from node.records.registry import Registry, WrongState
from node.storage.engine import make_engine
from node.storage.models import AuditRecord, LogLeaf
from protocol.events import EntryEvent, EventKind, EventReason
from protocol.signed import SignedDocument
from tests.factories import T0, embedding
from tests.test_registry import Node


class RefusedWrites:
    """While ``on``, SQLite refuses every write of the engine's connections (``query_only``)."""

    def __init__(self, engine: Engine) -> None:
        self.on = False
        event.listen(engine, "checkout", self._checkout)

    def _checkout(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA query_only = {'ON' if self.on else 'OFF'}")
        cursor.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = Node(f"sqlite:///{tmp_path / 'node.db'}")
    yield node
    node.engine.dispose()


def active(node: Node, seed: int, **overrides: object) -> str:
    entry_id = node.propose(seed, **overrides)
    node.registry.approve(node.officer, entry_id, T0)
    return entry_id


def active_after(node: Node, refused: RefusedWrites, seed: int) -> str:
    """An active entry, registered while writes are let through for a moment."""
    refused.on = False
    try:
        return active(node, seed)
    finally:
        refused.on = True


def replace_registry(node: Node) -> Registry:
    """A registry as a restarted process makes it: same database, keys and manifest, nothing in memory."""
    old = node.registry
    return Registry(
        engine=node.engine,
        node_id=old.node_id,
        signing_key=old._key,
        vault=old.vault,
        manifest=old._manifest,
        rules=old.rules,
        index=MatchIndex(512),
    )


def hits(node: Node, seed: int) -> list[str]:
    return [m.key for m in node.registry.index.search([embedding(seed)], 0.9)]


def closing_events(node: Node, entry_id: str) -> list[str]:
    with Session(node.engine) as session:
        return [
            leaf.kind
            for leaf in session.exec(select(LogLeaf).where(LogLeaf.entry_id == entry_id)).all()
            if leaf.kind in ("deleted", "expired")
        ]


def test_a_deletion_whose_write_fails_never_matches_again_and_lands_once_later(node: Node) -> None:
    refused = RefusedWrites(node.engine)
    gone, kept = active(node, 1), active(node, 2)
    assert hits(node, 1) == [gone]
    asked: list[int] = []
    node.registry.make_room = lambda: bool(asked.append(1))
    heads: list[int] = []
    node.registry.listeners.append(heads.append)

    refused.on = True
    with pytest.raises(ClosurePending) as held:
        node.registry.delete(node.officer2, gone, EventReason.DATA_SUBJECT_REQUEST, T0 + timedelta(hours=1))
    assert held.value.code == "deletion_pending" and held.value.pending.kind is EventKind.DELETED
    assert asked == [], "the reserve is asked only when the disk is full"
    assert node.registry.get(gone).status == "active", "nothing was written"
    assert hits(node, 1) == [] and hits(node, 2) == [kept]
    # whatever reloads the index from the database, the decided entry stays out of it
    node.registry.rebuild_index()
    assert node.registry.reload_entries([gone, kept]) == 0
    node.registry.catch_up()
    assert hits(node, 1) == [] and hits(node, 2) == [kept]
    assert node.registry.index.vector(gone) is None
    assert gone not in node.registry.index.snapshot()[0]  # the private gallery's source
    assert node.registry.active_versions([gone, kept]) == {kept: 1}  # the answer-time fence too
    # retried while the database still refuses: held, counted, nothing written
    assert node.registry.land_pending(T0 + timedelta(hours=2)) == 0
    pending = node.registry.pending.get(gone)
    assert pending is not None and pending.attempts == 2 and not pending.written
    assert heads == [] and closing_events(node, gone) == []

    refused.on = False
    assert node.registry.land_pending(T0 + timedelta(hours=3)) == 1
    state = node.registry.get(gone)
    assert (state.status, state.reason, state.officer) == ("deleted", "data-subject-request", node.officer.id)
    assert len(node.registry.pending) == 0 and node.registry.pending.landed == 1
    assert gone not in node.registry.index.suppressed
    assert len(heads) == 1, "the tree head is signed once, which notifies the members"
    assert closing_events(node, gone) == ["deleted"]
    with Session(node.engine) as session:
        leaf = session.exec(select(LogLeaf).where(LogLeaf.entry_id == gone, LogLeaf.kind == "deleted")).one()
        records = session.exec(select(AuditRecord).order_by(AuditRecord.seq)).all()
    signed = SignedDocument.from_bytes(leaf.leaf, EntryEvent)
    assert signed.payload.occurred_at == T0 + timedelta(hours=1), "the event carries the decision's time"
    assert [(r.actor, r.outcome) for r in records if r.action == "entry.deleted"] == [
        (node.officer2.id, "ok")
    ]
    verify_audit_chain(records)
    # nothing is applied twice: another pass, another deletion
    assert node.registry.land_pending(T0 + timedelta(hours=4)) == 0
    with pytest.raises(WrongState):
        node.registry.delete(node.officer2, gone, EventReason.ERROR, T0 + timedelta(hours=4))
    assert closing_events(node, gone) == ["deleted"] and hits(node, 1) == []


def test_an_officer_deletion_of_a_held_entry_lands_it_and_the_retry_drops_it(node: Node) -> None:
    refused = RefusedWrites(node.engine)
    entry_id = active(node, 3)
    refused.on = True
    with pytest.raises(ClosurePending):
        node.registry.delete(node.officer2, entry_id, EventReason.ERROR, T0 + timedelta(hours=1))
    with pytest.raises(ClosurePending):  # asked again while still refused: still held, not refused
        node.registry.delete(node.officer2, entry_id, EventReason.ERROR, T0 + timedelta(hours=1))
    refused.on = False
    node.registry.delete(node.officer2, entry_id, EventReason.ERROR, T0 + timedelta(hours=2))
    assert len(node.registry.pending) == 0
    assert node.registry.land_pending(T0 + timedelta(hours=3)) == 0
    assert closing_events(node, entry_id) == ["deleted"] and hits(node, 3) == []


def test_an_expiry_whose_write_fails_stops_matching_and_lands_later(node: Node) -> None:
    refused = RefusedWrites(node.engine)
    due, later = active(node, 4, retention_days=30), active(node, 5, retention_days=90)
    refused.on = True
    sweep = T0 + timedelta(days=31)
    assert node.registry.expire_due(sweep) == []
    assert hits(node, 4) == [] and hits(node, 5) == [later]
    assert [(p.entry_id, p.kind) for p in node.registry.pending.all()] == [(due, EventKind.EXPIRED)]
    assert node.registry.expire_due(sweep + timedelta(minutes=1)) == []  # held once, not twice
    assert len(node.registry.pending) == 1
    node.registry.rebuild_index()
    assert hits(node, 4) == []
    refused.on = False
    assert node.registry.land_pending(sweep + timedelta(minutes=2)) == 1
    assert node.registry.get(due).status == "expired" and node.registry.get(later).status == "active"
    assert node.registry.expire_due(sweep + timedelta(minutes=3)) == []
    assert closing_events(node, due) == ["expired"]


def test_a_refused_deletion_is_not_held_and_suppresses_nothing(node: Node) -> None:
    proposed = node.propose(6)
    with pytest.raises(WrongState):
        node.registry.delete(node.officer2, proposed, EventReason.ERROR, T0)
    assert len(node.registry.pending) == 0 and proposed not in node.registry.index.suppressed
    node.registry.approve(node.officer, proposed, T0)
    assert hits(node, 6) == [proposed]


def test_held_deletions_outlive_a_restart_and_land_then(node: Node, tmp_path: Path) -> None:
    refused = RefusedWrites(node.engine)
    journal = HeldJournal(tmp_path)
    assert journal.open() == []
    assert (tmp_path / HELD_FILE).stat().st_size == 2 * SLOT_BYTES, "written out at full size at start"
    node.registry.pending.on_change = journal.save
    gone, other = active(node, 7), active(node, 8)
    refused.on = True
    for entry_id in (gone, other):
        with pytest.raises(ClosurePending):
            node.registry.delete(node.officer2, entry_id, EventReason.ERROR, T0 + timedelta(hours=1))
    refused.on = False
    assert node.registry.land_pending(T0 + timedelta(hours=2)) == 2  # both land, then one is decided again
    refused.on = True
    third = active_after(node, refused, 9)
    with pytest.raises(ClosurePending):
        node.registry.delete(node.officer2, third, EventReason.NO_LONGER_NECESSARY, T0 + timedelta(hours=3))

    node.registry = replace_registry(node)  # the process ends; a new one on the same directory
    restarted = node
    kept = HeldJournal(tmp_path).open()
    assert [(c.entry_id, c.kind, c.reason, c.decided_at) for c in kept] == [
        (third, EventKind.DELETED, EventReason.NO_LONGER_NECESSARY, T0 + timedelta(hours=3))
    ]
    restarted.registry.resume_held(kept)
    restarted.registry.rebuild_index()
    assert hits(restarted, 9) == [] and len(restarted.registry.pending) == 1
    refused.on = False
    assert restarted.registry.land_pending(T0 + timedelta(hours=4)) == 1
    assert restarted.registry.get(third).status == "deleted" and closing_events(restarted, third) == [
        "deleted"
    ]


def test_a_torn_slot_of_the_journal_falls_back_to_the_other(tmp_path: Path) -> None:
    journal = HeldJournal(tmp_path)
    journal.open()
    one = PendingClosure("ent-1", "acc-1", EventKind.DELETED, EventReason.ERROR, T0)
    two = PendingClosure("ent-2", "system", EventKind.EXPIRED, EventReason.RETENTION_EXPIRED, T0)
    journal.save([one])
    journal.save([one, two])
    assert [c.entry_id for c in HeldJournal(tmp_path).open()] == ["ent-1", "ent-2"]
    with (tmp_path / HELD_FILE).open("r+b") as f:  # the newer slot (sequence 2, the first) torn
        f.seek(200)
        f.write(b"#")
    assert [c.entry_id for c in HeldJournal(tmp_path).open()] == ["ent-1"]
    size = (tmp_path / HELD_FILE).stat().st_size
    journal.save([])
    assert (tmp_path / HELD_FILE).stat().st_size == size, "overwritten in place, never grown"


class ReadOnlySessions:
    """While ``on``, PostgreSQL refuses every write of the engine's connections (read-only
    transactions), as it refuses writes on a full disk; notifications still go out."""

    def __init__(self, engine: Engine) -> None:
        self.on = False
        event.listen(engine, "checkout", self._checkout)

    def _checkout(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET default_transaction_read_only = {'on' if self.on else 'off'}")
        cursor.close()
        dbapi_connection.commit()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_deletion_one_worker_cannot_write_stops_every_worker_matching(database_url: str) -> None:
    from node.demo.network import wait_for
    from node.storage.notify import Follower

    first = Node(database_url)
    second_engine = make_engine(database_url)
    second = Registry(
        engine=second_engine,
        node_id=first.registry.node_id,
        signing_key=first.registry._key,
        vault=first.registry.vault,
        manifest=first.registry._manifest,
        rules=first.registry.rules,
        index=MatchIndex(512),
    )
    follower = Follower(second_engine, [second.feed(), second.suppress_feed()])
    follower.start()
    refused = ReadOnlySessions(first.engine)
    try:
        assert wait_for(lambda: follower.reconciled_at is not None, 10), follower.status()
        entry_id = active(first, 71)
        second.rebuild_index()
        assert wait_for(lambda: [m.key for m in second.index.search([embedding(71)], 0.9)] == [entry_id], 10)
        refused.on = True
        first.engine.dispose()  # every connection checked out again, read-only
        with pytest.raises(ClosurePending):
            first.registry.delete(first.officer, entry_id, EventReason.DATA_SUBJECT_REQUEST, T0)
        assert hits(first, 71) == []
        assert wait_for(lambda: second.index.search([embedding(71)], 0.9) == [], 5), (
            "the other worker still matches"
        )
        second.rebuild_index()  # a reload from the database, where the entry is still active
        assert second.index.search([embedding(71)], 0.9) == []
        refused.on = False
        first.engine.dispose()
        assert first.registry.land_pending(T0 + timedelta(seconds=1)) == 1
        assert closing_events(first, entry_id) == ["deleted"]
    finally:
        follower.stop()
        first.engine.dispose()
        second_engine.dispose()
