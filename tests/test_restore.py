"""Restore that never resurrects, on real processes (``node.demo.restore_drill``): a backup taken
before a deletion is restored while the deletion and a later registration exist only in the
members' copies of the log. The deleted person never matches at any moment (the node's own
``/v1/match`` and a member's query, polled throughout), the log continues at the size the members
verified with no fork at any of them, the later registration is reported lost, and the owner gets
its receipts back. On SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from node.demo.restore_drill import run_drill
from protocol.errors import MalformedError
from protocol.keys import SigningKey
from protocol.merkle import EMPTY_ROOT
from protocol.mirror import MirrorPage, MirrorRequest
from protocol.signed import SignedDocument
from protocol.treehead import TreeHead

KEY = SigningKey.generate()


def head(size: int) -> SignedDocument[TreeHead]:
    doc = SignedDocument(
        TreeHead(
            log_id="chain-a",
            tree_size=size,
            root_hash=EMPTY_ROOT if size == 0 else bytes(32),
            timestamp=datetime(2026, 12, 1, tzinfo=UTC),
        )
    )
    doc.sign(KEY)
    return doc


def test_a_mirror_page_round_trips_and_refuses_what_it_cannot_hold() -> None:
    page = MirrorPage(head=head(3), held_size=3, first=1, events=[], witnessed_size=2)
    assert MirrorPage.from_dict(page.to_dict()).to_dict() == page.to_dict()
    empty = MirrorPage(head=None, held_size=0, first=0, events=[])
    assert "head" not in empty.to_dict() and MirrorPage.from_dict(empty.to_dict()).head is None
    assert MirrorRequest.from_dict(MirrorRequest(after=7).to_dict()).after == 7
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "held without a head": ({"head": None, "held_size": 2}, "no verified head"),
        "head and held differ": ({"head": head(4), "held_size": 3}, "held_size 3"),
        "leaves beyond what is held": ({"head": head(0), "held_size": 0, "first": 1}, "beyond the 0 held"),
        "negative witnessed": ({"witnessed_size": -1}, "witnessed_size"),
    }
    for name, (change, words) in cases.items():
        fields: dict[str, Any] = {"head": head(3), "held_size": 3, "first": 0, "events": [], **change}
        with pytest.raises(MalformedError, match=words):
            MirrorPage(**fields)
        assert name
    with pytest.raises(MalformedError, match=r"mirror-request\.limit"):
        MirrorRequest(after=0, limit=501)


@pytest.fixture(params=["sqlite", "postgres"])
def database_server(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    return url.rsplit("/", 1)[0]


def test_a_restore_replays_the_deletion_from_the_members_and_reports_the_later_registration_lost(
    tmp_path: Path, database_server: str | None
) -> None:
    seen = run_drill(tmp_path / "net", database_server)
    assert seen.polls > 10, "the deleted face was asked for throughout the restore"
    assert seen.deleted_matched == []
    assert seen.refused_while_restoring > 0 and seen.retry_after == {"10"}, seen
    assert "restore" in seen.readiness_failing
    assert seen.log_size_before == seen.backup_log_size + 2
    assert seen.log_size_after == seen.log_size_before
    assert seen.kept_matches_after
    assert seen.later_status == "lost" and seen.report_lost == [seen.later]
    assert len(seen.restore_audit) == 1 and "replayed=2" in seen.restore_audit[0], seen.restore_audit
    assert seen.later in seen.restore_audit[0]
    assert sorted(seen.receipts_for_deletion) == ["chain-b", "chain-c"]
    assert seen.peer_states == {
        "chain-b": ("ok", seen.size_after_new_event),
        "chain-c": ("ok", seen.size_after_new_event),
    }
    assert seen.size_after_new_event == seen.log_size_before + 1
    assert seen.failures() == []


def test_a_restoring_node_answers_nothing_appends_nothing_and_shows_the_officer_what_was_lost(
    tmp_path: Path,
) -> None:
    """In one process, the marker alone: every worker reads it, so nothing else tells them."""
    import asyncio
    import json

    from aiohttp.test_utils import TestClient, TestServer

    from node.app.server import build_app
    from node.context import NodeContext
    from node.records.restore import MARKER_FILE
    from node.storage.models import EntryRow
    from tests.nodeproc import NodeProcess
    from tests.test_console import Clock, Console

    node = NodeProcess.create(tmp_path)
    context = NodeContext.load(node.directory)
    (node.directory / MARKER_FILE).write_text(
        json.dumps({"backup_created_at": "2026-12-01T00:00:00Z", "backup_log_size": 0})
    )
    seen: dict[str, Any] = {}

    async def go() -> None:
        app = build_app(context, clock=Clock(), sweep=False, federate=False)
        server = TestServer(app)
        client: TestClient[Any, Any] = TestClient(server)
        await client.start_server()
        bearer = {"Authorization": f"Bearer {node.tokens['op1']}"}
        try:
            ready = await client.get("/v1/health/ready")
            seen["ready"] = (ready.status, (await ready.json())["failing"])
            match = await client.post("/v1/match", json={"embeddings": [face_text()]}, headers=bearer)
            seen["match"] = (match.status, (await match.json())["error"], match.headers.get("Retry-After"))
            proposed = await client.post(
                "/v1/entries",
                json={
                    "embedding": face_text(),
                    "category": "shoplifting",
                    "evidence": {"kind": "police-report", "reference": "TKY-1"},
                    "incident_date": "2026-11-01",
                    "site": "store-01",
                },
                headers={"Authorization": f"Bearer {node.tokens['reg1']}"},
            )
            entry_id = (await proposed.json())["entry_id"]  # a proposal is no log event
            approved = await client.post(
                f"/v1/entries/{entry_id}/approve", headers={"Authorization": f"Bearer {node.tokens['off1']}"}
            )
            seen["approve"] = (approved.status, (await approved.json())["error"])
            (node.directory / MARKER_FILE).unlink()
            match = await client.post("/v1/match", json={"embeddings": [face_text()]}, headers=bearer)
            seen["match after"] = match.status
            with Session(context.engine) as session:
                row = session.get(EntryRow, entry_id)
                assert row is not None
                row.status, row.embedding_ct, row.salt_ct, row.crop_ct = "lost", None, None, None
                session.add(row)
                session.commit()
            officer = Console(client, node.directory)
            await officer.login("off1")
            seen["officer"] = await officer.get("/console/officer?lang=en")
            seen["lost id"] = entry_id
        finally:
            await client.close()

    try:
        asyncio.run(go())
    finally:
        context.engine.dispose()
    assert seen["ready"][0] == 503 and "restore" in seen["ready"][1]
    assert seen["match"] == (503, "restoring", "10")
    assert seen["approve"] == (503, "restoring")
    assert seen["match after"] == 200
    status, html, _ = seen["officer"]
    assert status == 200 and "Entries lost in a restore" in html and seen["lost id"] in html


def face_text() -> str:
    from node.demo.restore_drill import face

    return face(7).to_str()


def test_replay_takes_only_our_signed_leaves_that_reach_our_head_and_changes_nothing_otherwise(
    tmp_path: Path,
) -> None:
    import secrets

    from node.context import NodeContext
    from node.records.restore import RestoreReport, log_size, replay
    from node.storage.models import EntryRow
    from protocol.events import EntryEvent, EventKind, EventReason, log_leaf_bytes
    from protocol.merkle import MerkleLog
    from tests.nodeproc import NodeProcess

    node = NodeProcess.create(tmp_path)
    context = NodeContext.load(node.directory)
    ours = context.signing_key
    at = datetime(2026, 12, 1, tzinfo=UTC)

    def event(kind: EventKind, entry_id: str, key: SigningKey = ours, owner: str = "chain-a") -> bytes:
        reason = (
            EventReason.REGISTRATION if kind is EventKind.REGISTERED else EventReason.DATA_SUBJECT_REQUEST
        )
        signed = SignedDocument(
            EntryEvent(
                event_id=f"evt-{secrets.token_hex(8)}",
                owner=owner,
                kind=kind,
                entry_id=entry_id,
                entry_version=1,
                reason=reason,
                occurred_at=at,
                actor="acct-officer-1",
                payload_commitment=bytes(32),
            )
        )
        signed.sign(key)
        return log_leaf_bytes(signed)

    def head_over(
        leaves: list[bytes], key: SigningKey = ours, log_id: str = "chain-a"
    ) -> SignedDocument[TreeHead]:
        log = MerkleLog()
        for leaf in leaves:
            log.append(leaf)
        doc = SignedDocument(
            TreeHead(log_id=log_id, tree_size=len(leaves), root_hash=log.root(), timestamp=at)
        )
        doc.sign(key)
        return doc

    report = RestoreReport(
        node_id="chain-a",
        backup_created_at="2026-12-01T00:00:00Z",
        backup_log_size=0,
        backup_bytes=1,
        engine="sqlite",
        with_keys=False,
        started_at="2026-12-01T00:00:00Z",
    )
    good = [
        event(EventKind.REGISTERED, "ent-0a0a0a0a0a0a0a0a"),
        event(EventKind.DELETED, "ent-0a0a0a0a0a0a0a0a"),
        event(EventKind.REGISTERED, "ent-0b0b0b0b0b0b0b0b"),
    ]
    other = SigningKey.generate()
    forged = [*good[:2], event(EventKind.REGISTERED, "ent-0b0b0b0b0b0b0b0b", key=other)]
    bad: dict[str, tuple[SignedDocument[TreeHead], list[bytes], int, str]] = {
        "a head signed by another key": (head_over(good, key=other), good, 0, "signature"),
        "a head of another log": (head_over(good, log_id="chain-b"), good, 0, "chain-b"),
        "a leaf signed by another key": (head_over(forged), forged, 0, "signature"),
        "leaves that are not the head's": (head_over(good), good[:2] + good[:1], 0, "do not hash"),
        "leaves short of the head": (head_over(good), good[:2], 0, "do not reach"),
        "leaves not from our size": (head_over(good), good, 1, "our log holds 0"),
    }
    try:
        for name, (head, leaves, first, words) in bad.items():
            with pytest.raises(Exception, match=words):
                replay(
                    context.registry,
                    head=head,
                    leaves=leaves,
                    first=first,
                    key=ours.public,
                    report=report,
                    now=at,
                )
            assert log_size(context.engine) == 0, name
        result = replay(
            context.registry,
            head=head_over(good),
            leaves=good,
            first=0,
            key=ours.public,
            report=report,
            now=at,
        )
        assert (result.replayed, result.erased, result.lost, log_size(context.engine)) == (
            3,
            ["ent-0a0a0a0a0a0a0a0a"],
            ["ent-0b0b0b0b0b0b0b0b"],
            3,
        )
        with Session(context.engine) as session:
            statuses = {r.entry_id: (r.status, r.embedding_ct) for r in session.exec(select(EntryRow)).all()}
        assert statuses == {"ent-0a0a0a0a0a0a0a0a": ("deleted", None), "ent-0b0b0b0b0b0b0b0b": ("lost", None)}
    finally:
        context.engine.dispose()
