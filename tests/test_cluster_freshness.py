"""Two ``watchnet serve`` workers of one node (chain-a) on one PostgreSQL database.

What one worker commits, the other enforces: a registration through worker 1 is matchable
through worker 2 within the stated bound; a deletion through worker 1 is never reported by
worker 2 after the deletion's HTTP answer (the answer-time fence), and leaves worker 2's index
within the bound (LISTEN/NOTIFY, and the periodic reconcile when a notification is lost); a
manifest suspending chain-b accepted by worker 1 makes worker 2 refuse chain-b's next query.

The delays are measured and printed (``pytest -s``). Some measurements run on an in-process
third "worker" (a ``NodeContext`` with its own engine and ``Follower``) on the same database,
where the index can be watched directly without going through HTTP.
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from governance.description import next_version
from governance.errors import MemberNotActive
from governance.manifest import Manifest, MemberStatus
from node.context import NodeContext
from node.demo.network import LocalNode, wait_for
from node.storage.notify import RECONCILE_EVERY, Follower
from protocol.message import PeerKeys, compose_sealed, decode_body, open_sealed
from protocol.query import QueryRequest, QueryResponse
from protocol.signed import SignedDocument
from tests.conftest import PG_ADMIN_URL
from tests.factories import KEYS, NODE_B_ENCRYPTION, NODE_B_SIGNING, embedding, signed_manifest
from tests.nodeproc import NodeProcess

BOUND = RECONCILE_EVERY + 1.0
"""The stated worst case for a worker's index to follow a change: one reconcile interval plus
the time one catch-up takes (a notification normally makes it milliseconds)."""
BATCH = 12
"""Entries registered through worker 1 before worker 2 starts (so worker 2 holds them on any code)."""


@dataclass
@dataclass
class Cluster:
    w1: LocalNode
    w2: LocalNode
    database_url: str
    batch: dict[str, int] = field(default_factory=dict)
    """Entry id -> embedding seed, registered through worker 1 before worker 2 started."""


def proposal(seed: int) -> dict[str, object]:
    return {
        "embedding": embedding(seed).to_str(),
        "category": "shoplifting",
        "evidence": {"kind": "police-report", "reference": f"TKY-2026-{seed:04d}"},
        "incident_date": "2026-11-01",
        "site": "shibuya-01",
    }


def register(worker: LocalNode, seed: int) -> str:
    status, state = worker.call("POST", "/v1/entries", "reg1", proposal(seed))
    assert status == 201, state
    status, state = worker.call("POST", f"/v1/entries/{state['entry_id']}/approve", "off1")
    assert status == 200 and state["status"] == "active", state
    return str(state["entry_id"])


def delete(worker: LocalNode, entry_id: str) -> None:
    status, state = worker.call("POST", f"/v1/entries/{entry_id}/delete", "off2", {"reason": "error"})
    assert status == 200 and state["status"] == "deleted", state


def matched(worker: LocalNode, seeds: list[int]) -> set[str]:
    status, result = worker.call(
        "POST", "/v1/match", "op1", {"embeddings": [embedding(s).to_str() for s in seeds]}
    )
    assert status == 200, result
    return {m["entry_id"] for m in result["matches"]}


def index_state(worker: LocalNode) -> dict[str, Any]:
    status, body = worker.call("GET", "/v1/health", timeout=5)
    assert status == 200, body
    index: dict[str, Any] = body.get("index", {})
    return index


def tree_size(worker: LocalNode) -> int:
    status, head = worker.call("GET", "/v1/log/head")
    assert status == 200, head
    return int(head["signed"]["tree_size"])


def sql(cluster: Cluster, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(cluster.database_url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        return list(conn.execute(statement, args).fetchall())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[Cluster]:
    name = f"watchnet_cluster_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{postgres_url.rsplit('/', 1)[0]}/{name}"
    made = NodeProcess.create(tmp_path_factory.mktemp("cluster"), database_url=url)
    w1 = made.worker(made.port)
    w2 = made.worker()
    group = Cluster(w1, w2, url)
    try:
        w1.start()
        for seed in range(100, 100 + BATCH):
            group.batch[register(w1, seed)] = seed
        w2.start()
        yield group
    finally:
        w2.stop()
        w1.stop()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def worker_in_process(cluster: Cluster, *, follow: bool = True, listen: bool = True) -> Iterator[NodeContext]:
    """A third worker in this process (own engine): following the database, by reconcile alone
    (``listen=False``: as if every notification were lost), or not at all (``follow=False``)."""
    context = NodeContext.load(cluster.w1.directory)
    context.registry.rebuild_index()
    follower = None
    try:
        if follow:
            feeds = [context.registry.feed(), context.manifests.feed()]
            follower = Follower(context.engine, feeds, listen=listen)
            follower.start()
            assert wait_for(lambda: follower.reconciled_at is not None, 10), follower.status()
        yield context
    finally:
        if follower is not None:
            follower.stop()
        context.engine.dispose()


def _ms(seconds: list[float]) -> str:
    return (
        f"p50 {statistics.median(seconds) * 1000:.1f} ms, max {max(seconds) * 1000:.1f} ms (n={len(seconds)})"
    )


def test_a_registration_through_one_worker_is_matchable_through_the_other(cluster: Cluster) -> None:
    entry_id = register(cluster.w1, 500)
    answered = time.monotonic()
    found = wait_for(lambda: entry_id in matched(cluster.w2, [500]), BOUND + 2, interval=0.005)
    delay = time.monotonic() - answered
    print(
        f"\nregistered through worker 1, matchable through worker 2 {delay * 1000:.1f} ms after the approval's answer"
    )
    assert found, f"worker 2 did not match an entry registered through worker 1 within {BOUND + 2:.0f} s"
    assert delay <= BOUND


def test_a_deletion_through_one_worker_is_not_matched_by_the_other_after_its_answer(cluster: Cluster) -> None:
    entry_id, seed = next(iter(cluster.batch.items()))
    assert matched(cluster.w2, [seed]) == {entry_id}, "worker 2 holds the entry before the deletion"
    with worker_in_process(cluster, follow=False) as stale:
        threshold = stale.manifest.policy.match_threshold
        assert [m.key for m in stale.registry.index.search([embedding(seed)], threshold)] == [entry_id]
        delete(cluster.w1, entry_id)
        answered = time.monotonic()
        got = matched(cluster.w2, [seed])
        print(f"\nworker 2 right after the deletion's answer: matches {sorted(got)}")
        assert got == set(), f"worker 2 matched {entry_id} after its deletion through worker 1 was answered"
        # the fence alone: this index follows nothing, yet reports nothing and drops the entry
        assert stale.registry.index.search([embedding(seed)], threshold) == []
        assert stale.registry.fence_dropped == 1 and entry_id not in stale.registry.index
    size = tree_size(cluster.w1)
    caught = wait_for(lambda: index_state(cluster.w2).get("log_size", -1) >= size, BOUND + 2, interval=0.002)
    delay = time.monotonic() - answered
    print(f"worker 2's index applied the deletion (log size {size}) {delay * 1000:.1f} ms after its answer")
    assert caught, f"worker 2's index did not reach log size {size}: {index_state(cluster.w2)}"
    assert delay <= BOUND
    assert sql(cluster, "select count(*) from alert where entry_id = %s", entry_id) == [(0,)]


def test_deletions_racing_a_matcher_on_the_other_worker_are_never_reported_after_their_answer(
    cluster: Cluster,
) -> None:
    targets = list(cluster.batch.items())[1:-1]
    seeds = [seed for _, seed in targets]
    deleted_at: dict[str, float] = {}
    answers: list[tuple[float, set[str]]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                started = time.monotonic()
                answers.append((started, matched(cluster.w2, seeds)))
            except BaseException as e:  # noqa: BLE001  (reported by the main thread)
                errors.append(e)
                return

    matchers = [threading.Thread(target=hammer) for _ in range(2)]
    for thread in matchers:
        thread.start()
    try:
        time.sleep(0.3)
        rng = random.Random(15)
        for entry_id, _ in targets:
            time.sleep(rng.uniform(0.05, 0.3))
            delete(cluster.w1, entry_id)
            deleted_at[entry_id] = time.monotonic()
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in matchers:
            thread.join(timeout=30)
    assert not errors, errors
    late = [
        (entry_id, round(started - deleted_at[entry_id], 3))
        for started, got in answers
        for entry_id in got
        if entry_id in deleted_at and started > deleted_at[entry_id]
    ]
    before = sum(1 for started, got in answers for e in got if e in deleted_at and started < deleted_at[e])
    print(
        f"\n{len(answers)} matches on worker 2 during {len(targets)} deletions through worker 1: "
        f"{before} hits before a deletion's answer, {len(late)} after; worker 2: {index_state(cluster.w2)}"
    )
    assert before > 0, "the matcher never saw an entry before its deletion: nothing raced"
    assert late == [], f"worker 2 reported deleted entries after their deletion's answer: {late[:10]}"
    ids = [entry_id for entry_id, _ in targets]
    assert sql(cluster, "select count(*) from alert where entry_id = any(%s)", ids) == [(0,)]


def test_the_index_follows_by_notification_in_milliseconds_and_by_reconcile_alone_within_the_bound(
    cluster: Cluster,
) -> None:
    with worker_in_process(cluster) as notified, worker_in_process(cluster, listen=False) as reconciled:
        registered: list[float] = []
        ids: list[str] = []
        for seed in range(600, 610):
            entry_id = register(cluster.w1, seed)
            answered = time.monotonic()
            assert wait_for(lambda e=entry_id: e in notified.registry.index, BOUND + 2, interval=0.0005)
            registered.append(time.monotonic() - answered)
            ids.append(entry_id)
        assert wait_for(lambda: all(e in reconciled.registry.index for e in ids), BOUND + 2)
        sent: dict[str, float] = {}
        answered_at: dict[str, float] = {}
        gone: dict[tuple[str, str], float] = {}
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                now = time.monotonic()
                for name, context in (("notify", notified), ("reconcile", reconciled)):
                    for entry_id in list(sent):
                        if (name, entry_id) not in gone and entry_id not in context.registry.index:
                            gone[(name, entry_id)] = now
                time.sleep(0.0005)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            for entry_id in ids:
                sent[entry_id] = time.monotonic()
                delete(cluster.w1, entry_id)
                answered_at[entry_id] = time.monotonic()
                time.sleep(0.25)
            wait_for(lambda: len(gone) == 2 * len(ids), BOUND + 2)
        finally:
            done.set()
            watcher.join(timeout=10)
        fence: list[float] = []
        for _ in range(200):
            started = time.perf_counter()
            notified.registry.active_versions(ids[:1])
            fence.append(time.perf_counter() - started)
    assert len(gone) == 2 * len(ids), f"not every deletion left both indexes: {len(gone)} of {2 * len(ids)}"
    by_notify = [gone[("notify", e)] - answered_at[e] for e in ids]
    by_notify_sent = [gone[("notify", e)] - sent[e] for e in ids]
    by_reconcile = [gone[("reconcile", e)] - answered_at[e] for e in ids]
    print(
        f"\nregistration -> index (notify), after the approval's answer: {_ms(registered)}"
        f"\ndeletion -> index (notify), after the deletion's answer: {_ms(by_notify)}"
        f"\ndeletion -> index (notify), after the deletion was sent (commit inside): {_ms(by_notify_sent)}"
        f"\ndeletion -> index (reconcile every {RECONCILE_EVERY:.0f} s alone): {_ms(by_reconcile)}"
        f"\nfence query (one indexed select, one candidate): {_ms(fence)}"
    )
    assert max(by_notify_sent) < 1.0
    assert max(by_reconcile) <= BOUND


def _suspend(manifest: Manifest, node_id: str) -> Manifest:
    members = tuple(
        replace(m, status=MemberStatus.SUSPENDED) if m.node_id == node_id else m
        for m in manifest.joint_use.members
    )
    return manifest.with_changes(joint_use=replace(manifest.joint_use, members=members))


def peer_query(worker: LocalNode, seed: int, manifest: Manifest) -> tuple[int, Any]:
    """A plain query sealed with chain-b's keys to ``worker`` (naming ``manifest``'s version)."""
    own_signing, own_encryption = worker.signing_key().public, worker.encryption_key().public
    body = QueryRequest(
        query_id=f"qry-{secrets.token_hex(10)}",
        model_id=manifest.policy.model.model_id,
        embeddings=[embedding(seed)],
    )
    raw = compose_sealed(
        sender="chain-b",
        recipient="chain-a",
        manifest_version=manifest.version,
        purpose="crime-prevention",
        body=body,
        issued_at=datetime.now(UTC),
        signing_key=NODE_B_SIGNING,
        sender_key=NODE_B_ENCRYPTION,
        recipient_key=own_encryption,
    )
    status, answer = worker.call("POST", "/v1/peer/query", raw=raw)
    if status != 200:
        return status, answer
    signed = open_sealed(
        json.dumps(answer).encode(),
        recipient_id="chain-b",
        recipient_key=NODE_B_ENCRYPTION,
        lookup_sender=lambda _: PeerKeys(own_signing, own_encryption),
    )
    return status, decode_body(signed.payload, {QueryResponse.TYPE: QueryResponse})


def test_a_suspension_accepted_by_one_worker_is_enforced_by_the_other_at_once(cluster: Cluster) -> None:
    """Last in the file: chain-b stays suspended."""
    entry_id, seed = list(cluster.batch.items())[-1]
    v1 = SignedDocument.from_bytes((cluster.w1.directory / "manifest.json").read_bytes(), Manifest)
    status, answer = peer_query(cluster.w2, seed, v1.payload)
    assert status == 200 and [m.entry.payload.entry_id for m in answer.matches] == [entry_id], answer
    with worker_in_process(cluster, follow=False) as unit:
        v2 = signed_manifest(_suspend(next_version(v1.payload), "chain-b"), KEYS[0], KEYS[1])
        status, body = cluster.w1.call("POST", "/v1/manifest", "adm1", raw=v2.to_bytes())
        assert (status, body.get("outcome")) == (200, "accepted"), body
        accepted = time.monotonic()
        status, answer = peer_query(cluster.w2, seed, v1.payload)  # chain-b has not heard of v2
        answered = (
            [m.entry.payload.entry_id for m in answer.matches]
            if isinstance(answer, QueryResponse)
            else answer
        )
        print(
            f"\nchain-b's query to worker 2 right after worker 1 accepted the suspension: {status} {answered}"
        )
        assert (status, answer.get("error") if isinstance(answer, dict) else answer) == (
            403,
            "member_not_active",
        ), "worker 2 answered a member that worker 1 had just suspended"
        # a store on another engine that heard nothing: its cache is behind, its fresh read is not
        assert unit.manifest.version == v1.payload.version
        with pytest.raises(MemberNotActive):
            unit.manifests.require_active("chain-b")
        assert unit.manifest.version == v2.payload.version
    switched = wait_for(
        lambda: cluster.w2.call("GET", "/v1/node")[1]["manifest_version"] == v2.payload.version,
        BOUND + 2,
        interval=0.002,
    )
    delay = time.monotonic() - accepted
    print(
        f"worker 2 switched its cached manifest to version {v2.payload.version} {delay * 1000:.1f} ms after"
    )
    assert switched and delay <= BOUND
