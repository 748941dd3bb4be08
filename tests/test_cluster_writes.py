"""Two workers of one node on one PostgreSQL database: the chains and the replay nonces are shared.

Real ``watchnet serve`` processes: the registrar proposes through one worker while officers
approve through the other, all at once, and every request is answered, every audit record is
numbered once, and every signed tree head is the root of the leaves it counts. A sealed peer
message admitted by one worker is refused as a replay by the other. The nonce store itself is
tested on SQLite and PostgreSQL, and behind the peer gate.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from governance.errors import PurposeNotAllowed
from governance.manifest import Manifest
from node.demo.network import LocalNode
from node.records.auditlog import verify_audit_chain
from node.records.eventlog import root_of_leaf_hashes
from node.records.manifests import ManifestStore
from node.storage.engine import make_engine
from node.storage.migrate import upgrade
from node.storage.models import AuditRecord, LogLeaf, TreeHeadRow
from protocol.errors import ClockSkewError, ReplayCacheFullError, ReplayError
from protocol.merkle import leaf_hash
from protocol.message import compose_sealed
from protocol.query import QueryRequest
from protocol.signed import SignedDocument
from protocol.treehead import TreeHead
from tests.factories import (
    KEYS,
    NODE_A_ENCRYPTION,
    NODE_A_SIGNING,
    NODE_B_ENCRYPTION,
    NODE_B_SIGNING,
    T0,
    embedding,
    make_manifest,
    signed_manifest,
)
from tests.nodeproc import NodeProcess, cli
from tests.test_peer_gate import BODIES, Clock, a_query, message

PAIRS = 24
WINDOW = timedelta(seconds=60)


@dataclass
@dataclass
class Cluster:
    workers: list[LocalNode]
    engine: Engine
    manifest: Manifest


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[Cluster]:
    """chain-a as two workers on a database of its own (beside the session's throwaway one)."""
    admin = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    name = f"{admin.rsplit('/', 1)[1]}_cluster_{secrets.token_hex(3)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{postgres_url.rsplit('/', 1)[0]}/{name}"
    root = tmp_path_factory.mktemp("cluster")
    first = NodeProcess.create(root, database_url=url)
    second = first.worker(_free_port(first.port))
    engine = make_engine(url)
    manifest = SignedDocument.from_bytes((root / "group-manifest.json").read_bytes(), Manifest).payload
    try:
        first.start()
        second.start()
        yield Cluster([first, second], engine, manifest)
    finally:
        for worker in (first, second):
            worker.stop()
        engine.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port(taken: int) -> int:
    from node.demo.network import free_port

    port = free_port()
    while port == taken:
        port = free_port()
    return port


def _propose(worker: LocalNode, seed: int) -> tuple[int, Any]:
    return worker.call(
        "POST",
        "/v1/entries",
        "reg1",
        {
            "embedding": embedding(1000 + seed).to_str(),
            "category": "shoplifting",
            "evidence": {"kind": "police-report", "reference": f"TKY-{seed:04d}"},
            "incident_date": "2026-11-01",
            "site": "store-01",
        },
    )


def test_concurrent_proposals_and_approvals_on_two_workers_keep_both_chains_whole(cluster: Cluster) -> None:
    """24 propose+approve pairs at once, each proposed on one worker and approved on the other."""
    start = threading.Barrier(PAIRS)

    def pair(i: int) -> list[tuple[str, int, Any]]:
        proposer, approver = cluster.workers[i % 2], cluster.workers[(i + 1) % 2]
        start.wait()
        status, proposed = _propose(proposer, i)
        answers = [("propose", status, proposed)]
        if status == 201:
            officer = "off1" if i % 4 < 2 else "off2"
            path = f"/v1/entries/{proposed['entry_id']}/approve"
            answers.append(("approve", *approver.call("POST", path, officer)))
        return answers

    with ThreadPoolExecutor(PAIRS) as pool:
        answers = [a for result in pool.map(pair, range(PAIRS)) for a in result]
    failed = [(what, status, body) for what, status, body in answers if not 200 <= status < 300]
    kinds = Counter((what, status) for what, status, _ in answers)
    assert not failed, f"{len(failed)} of {len(answers)} requests failed {dict(kinds)}: {failed[:3]}"
    assert len(answers) == 2 * PAIRS
    approved = {body["entry_id"] for what, _, body in answers if what == "approve"}
    assert len(approved) == PAIRS

    with Session(cluster.engine) as session:
        records = session.exec(select(AuditRecord).order_by(col(AuditRecord.seq))).all()
        leaves = session.exec(select(LogLeaf).order_by(col(LogLeaf.idx))).all()
        heads = session.exec(select(TreeHeadRow).order_by(col(TreeHeadRow.tree_size))).all()
    assert [r.seq for r in records] == list(range(len(records))), "audit numbers are unique and gap-free"
    chain_head = verify_audit_chain(records)
    assert chain_head == records[-1].record_hash
    oks = {(r.action, r.target) for r in records if r.outcome == "ok"}
    assert all(("entry.approve", entry) in oks for entry in approved), "every approval kept its record"
    assert all(("entry.propose", entry) in oks for entry in approved)

    assert [leaf.idx for leaf in leaves] == list(range(PAIRS)), "one leaf per approval, gap-free"
    assert all(leaf_hash(leaf.leaf) == leaf.leaf_hash for leaf in leaves)
    hashes = [leaf.leaf_hash for leaf in leaves]
    audit_hashes = {r.record_hash for r in records}
    signing_key = cluster.workers[0].signing_key().public
    assert heads and heads[-1].tree_size == PAIRS
    for row in heads:
        document = SignedDocument.from_bytes(row.signed.encode("utf-8"), TreeHead)
        document.verify([signing_key], threshold=1)
        head = document.payload
        assert head.tree_size == row.tree_size
        assert head.root_hash == root_of_leaf_hashes(hashes[: head.tree_size]), (
            f"the head of size {head.tree_size} signs a root that is not its leaves' root"
        )
        assert head.audit_head.hex() in audit_hashes

    for worker in cluster.workers:
        out = json.loads(
            cli("audit", "verify", "--url", worker.url, "--token", worker.tokens["aud1"], "--json")
        )
        assert out["ok"], out


def test_a_peer_message_admitted_by_one_worker_is_a_replay_at_the_other(cluster: Cluster) -> None:
    first, second = cluster.workers
    recipient = first.encryption_key().public

    def sealed(seed: int) -> bytes:
        body = QueryRequest(
            query_id=f"qry-{secrets.token_hex(10)}",
            model_id=cluster.manifest.policy.model.model_id,
            embeddings=[embedding(seed)],
        )
        return compose_sealed(
            sender="chain-b",
            recipient="chain-a",
            manifest_version=cluster.manifest.version,
            purpose="crime-prevention",
            body=body,
            issued_at=datetime.now(UTC),
            signing_key=NODE_B_SIGNING,
            sender_key=NODE_B_ENCRYPTION,
            recipient_key=recipient,
        )

    raw = sealed(7)
    status, body = first.call("POST", "/v1/peer/query", raw=raw)
    assert status == 200, body
    status, body = second.call("POST", "/v1/peer/query", raw=raw)
    assert (status, body.get("error") if isinstance(body, dict) else body) == (409, "replay")
    status, body = second.call("POST", "/v1/peer/query", raw=sealed(8))
    assert status == 200, "a fresh message is admitted by the second worker"
    status, body = first.call("POST", "/v1/peer/query", raw=raw)
    assert status == 409 and body["error"] == "replay"


# The nonce store on its own, on SQLite and on PostgreSQL.


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _rows(engine: Engine, sender: str | None = None) -> int:
    from node.storage.models import ReplayNonce

    with Session(engine) as session:
        query = select(func.count()).select_from(ReplayNonce)
        if sender is not None:
            query = query.where(ReplayNonce.sender == sender)
        return int(session.exec(query).one())


def _store(engine: Engine, **options: Any) -> Any:
    from node.federation.nonces import NonceStore

    return NonceStore(engine, WINDOW, **options)


def test_a_nonce_is_refused_by_every_store_on_the_database(engine: Engine) -> None:
    first, second = _store(engine), _store(engine)
    nonce = secrets.token_bytes(16)
    first.check("chain-b", nonce, T0, T0)
    with pytest.raises(ReplayError) as seen:
        second.check("chain-b", nonce, T0, T0 + timedelta(seconds=30))
    assert seen.value.code == "replay" and not isinstance(seen.value, ReplayCacheFullError)
    second.check("chain-c", nonce, T0, T0)  # another sender's nonces are its own
    with pytest.raises(ClockSkewError):
        second.check("chain-b", secrets.token_bytes(16), T0 - timedelta(seconds=61), T0)
    assert _rows(engine) == 2, "a refused message leaves no row"


def test_racing_stores_admit_a_nonce_once(engine: Engine) -> None:
    stores = [_store(engine) for _ in range(8)]
    nonce = secrets.token_bytes(16)
    start = threading.Barrier(len(stores))

    def attempt(store: Any) -> bool:
        start.wait()
        try:
            store.check("chain-b", nonce, T0, T0)
        except ReplayError:
            return False
        return True

    with ThreadPoolExecutor(len(stores)) as pool:
        assert sorted(pool.map(attempt, stores)) == [False] * 7 + [True]


def test_an_expired_nonce_is_freed_and_swept(engine: Engine) -> None:
    clock = Clock()
    store = _store(engine, sweep_every=1000, sweep_interval=10.0, monotonic=clock)
    nonce = secrets.token_bytes(16)
    store.check("chain-b", nonce, T0, T0)
    for i in range(3):
        store.check("chain-c", bytes([i]) * 16, T0, T0)
    later = T0 + WINDOW + timedelta(seconds=1)
    with pytest.raises(ClockSkewError):
        store.check("chain-b", nonce, T0, later)
    store.check("chain-b", nonce, later, later)  # past its window the nonce is free again
    with pytest.raises(ReplayError):
        _store(engine).check("chain-b", nonce, later, later)
    assert _rows(engine) == 4 and store.swept == 0
    much_later = T0 + 3 * WINDOW
    clock.t = 11.0
    store.check("chain-d", secrets.token_bytes(16), much_later, much_later)
    assert store.swept == 3 and store.last_sweep == much_later, "rows expired for a window are deleted"
    assert _rows(engine, "chain-c") == 0 and _rows(engine, "chain-b") == 1


def test_a_sender_holds_at_most_the_limit_of_live_nonces(engine: Engine) -> None:
    store = _store(engine, max_entries=3)
    for _ in range(3):
        store.check("chain-b", secrets.token_bytes(16), T0, T0)
    with pytest.raises(ReplayCacheFullError):
        store.check("chain-b", secrets.token_bytes(16), T0, T0)
    assert _rows(engine, "chain-b") == 3, "the refused nonce was not kept"
    store.check("chain-c", secrets.token_bytes(16), T0, T0)  # the limit is per sender
    later = T0 + WINDOW + timedelta(seconds=1)
    store.check("chain-b", secrets.token_bytes(16), later, later)  # expired nonces do not count


def test_far_from_the_limit_live_nonces_are_counted_now_and_then_and_the_limit_still_holds(
    engine: Engine,
) -> None:
    """Counting a sender's live nonces reads them all; it runs every ``COUNT_EVERY`` inserts until
    the estimate nears the limit, then at every insert, so the limit holds to within that."""
    from node.federation.nonces import COUNT_EVERY

    limit = 3 * COUNT_EVERY
    counts: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "count(" in statement.lower() and "replay_nonce" in statement:
            counts.append(statement)

    sqlalchemy_event.listen(engine, "before_cursor_execute", seen)
    store, other = _store(engine, max_entries=limit), _store(engine, max_entries=limit)
    admitted = 0
    for i in range(2 * limit):
        try:
            (store if i % 2 else other).check("chain-b", secrets.token_bytes(16), T0, T0)
        except ReplayCacheFullError:
            break
        admitted += 1
        if admitted == COUNT_EVERY:
            assert len(counts) <= 4, "far from the limit, a count at every insert"
    assert limit <= admitted <= limit + 2 * COUNT_EVERY, admitted
    assert _rows(engine, "chain-b") == admitted
    before = len(counts)
    with pytest.raises(ReplayCacheFullError):
        store.check("chain-b", secrets.token_bytes(16), T0, T0)
    assert len(counts) == before + 1, "near the limit every insert counts"


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_the_table_is_unlogged_on_postgresql(engine: Engine) -> None:
    with engine.connect() as conn:
        persistence = conn.exec_driver_sql(
            "SELECT relpersistence FROM pg_class WHERE relname = 'replay_nonce'"
        ).scalar_one()
    assert persistence == "u"


def test_two_gates_on_one_database_share_nonces_and_refusals_consume_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    from node.federation.gate import PeerGate, PeerRateLimited

    document = signed_manifest(make_manifest(now=T0), KEYS[0], KEYS[1])
    path = tmp_path / "manifest.json"
    path.write_bytes(document.to_bytes())

    def gate() -> Any:
        return PeerGate(
            node_id="chain-a",
            signing_key=NODE_A_SIGNING,
            encryption_key=NODE_A_ENCRYPTION,
            manifests=ManifestStore(path, engine, document, accepted_at=T0),
            replay=_store(engine),
            per_minute=1,
            monotonic=Clock(),
        )

    first, second = gate(), gate()
    refused = message(a_query(), purpose="marketing")
    with pytest.raises(PurposeNotAllowed):
        first.admit(refused, T0, BODIES)
    assert _rows(engine) == 0, "a message refused before the nonce check leaves no nonce"
    raw = message(a_query())
    first.admit(raw, T0, BODIES)
    with pytest.raises(ReplayError):
        second.admit(raw, T0, BODIES)
    second.admit(message(a_query()), T0, BODIES)  # the replay did not charge the second gate's rate
    with pytest.raises(PeerRateLimited):
        second.admit(message(a_query()), T0, BODIES)
