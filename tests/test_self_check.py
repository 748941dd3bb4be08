"""The node checks its own store against the log it signed, at start and on a schedule, and refuses
to answer queries from a store that disagrees (issue #14, section 7, last finding).

The unit tests run ``StoreChecker`` on a real SQLite store that a registry wrote, edited behind
its back with a second connection as an intruder would; the process tests run ``watchnet serve``
on a database edited while the node was stopped and while it runs; the last test serves the
application in this process to send sealed peer and private-mode queries to the edited store.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import time
import tomllib
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text

import node.demo as node_demo
import node.records.integrity as integrity
from governance.description import manifest_from_description, next_version
from governance.roles import Role
from governance.rules import RegistrationRules
from node.app.integrity_check import INTEGRITY_INTERVAL, INTERVAL_ENV
from node.app.server import build_app
from node.context import NodeContext
from node.http.api import status_for
from node.records.accounts import StaffAccounts
from node.records.eventlog import root_of_leaf_hashes
from node.records.integrity import (
    FAILED,
    OK,
    Frontier,
    IntegrityFailure,
    IntegrityState,
    StoreChecker,
    StoreUnverified,
)
from node.records.matching import MatchIndex
from node.records.registry import Proposal, Registry
from node.storage.engine import make_engine
from node.storage.migrate import upgrade
from protocol.entry import Evidence
from protocol.events import EventReason
from protocol.keys import DataKey
from protocol.merkle import leaf_hash
from protocol.message import MAX_BULK_SEALED_BYTES, compose_sealed
from protocol.private_query import PrivateQuery
from protocol.query import QueryRequest
from tests.factories import (
    KEYS,
    NODE_A_SIGNING,
    NODE_B_ENCRYPTION,
    NODE_B_SIGNING,
    T0,
    embedding,
    group_description,
    make_manifest,
    signed_manifest,
)
from tests.nodeproc import NodeProcess
from tests.vaults import vault_for

RULES = RegistrationRules(
    categories=("shoplifting", "theft"), evidence_kinds=("police-report",), retention_days=180
)
DATA_KEY = DataKey(b"\x42" * 32)
PASSWORD = "correct horse battery"


# -- a store a registry wrote, and an intruder's second connection -----------------------------


class Store:
    def __init__(self, path: Path | str, *, new: bool) -> None:
        self.path = path
        self.engine = make_engine(path if isinstance(path, str) else f"sqlite:///{path}")
        accounts = StaffAccounts(self.engine)
        if new:
            upgrade(self.engine)
            for username, role in (("reg1", Role.REGISTRAR), ("off1", Role.OFFICER), ("off2", Role.OFFICER)):
                accounts.add(username, role, PASSWORD, T0)
        staff = {member.username: member for member, _ in accounts.list()}
        self.registrar, self.officer, self.officer2 = staff["reg1"], staff["off1"], staff["off2"]
        manifest = make_manifest()
        self.vault = vault_for(path, DATA_KEY)
        self.registry = Registry(
            engine=self.engine,
            node_id="chain-a",
            signing_key=NODE_A_SIGNING,
            vault=self.vault,
            manifest=lambda: manifest,
            rules=RULES,
            index=MatchIndex(512),
        )
        self.seed = 0
        self.entries: dict[str, str] = {}

    def propose(self) -> str:
        self.seed += 1
        proposal = Proposal(
            embedding=embedding(self.seed),
            category="shoplifting",
            evidence=Evidence("police-report", f"TKY-{self.seed}"),
            incident_date=date(2026, 10, 30),
            site="shibuya-01",
        )
        return self.registry.propose(self.registrar, proposal, T0).entry_id

    def register(self) -> str:
        entry_id = self.propose()
        self.registry.approve(self.officer, entry_id, T0)
        return entry_id

    def checker(self) -> StoreChecker:
        """A checker as a node has at start: nothing verified yet."""
        return StoreChecker(
            engine=self.engine,
            node_id="chain-a",
            key=NODE_A_SIGNING.public,
            vault=self.vault,
            served=self.registry.log,
            lock=self.registry.write_lock,
        )

    def sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        """The intruder's own connection to the SQLite file."""
        assert isinstance(self.path, Path)
        db = sqlite3.connect(self.path, timeout=10)
        try:
            rows = db.execute(statement, params).fetchall()
            db.commit()
            return rows
        finally:
            db.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Made once (migrations and password hashes are slow): an active entry, a corrected one, a
    deleted one and a proposal, in leaves 0-4 with a signed head after each."""
    s = Store(tmp_path_factory.mktemp("template") / "node.db", new=True)
    active, corrected, deleted = s.register(), s.register(), s.register()
    s.registry.correct(s.officer2, corrected, reason=EventReason.CORRECTION, now=T0, category="theft")
    s.registry.delete(s.officer, deleted, EventReason.NO_LONGER_NECESSARY, T0)
    entries = {"active": active, "corrected": corrected, "deleted": deleted, "proposed": s.propose()}
    s.engine.dispose()
    return s.path, entries


@pytest.fixture
def store(template: tuple[Path, dict[str, str]], tmp_path: Path) -> Iterator[Store]:
    """A copy of the template store (its WAL folded in), opened by a registry as a node would."""
    path = tmp_path / "node.db"
    source = sqlite3.connect(template[0])
    target = sqlite3.connect(path)
    source.backup(target)
    source.close()
    target.close()
    shutil.copytree(vault_for(template[0]).records.directory, tmp_path / "record-keys")
    vault_for(path, directory=tmp_path / "record-keys")
    s = Store(path, new=False)
    s.seed = 100
    s.entries = dict(template[1])
    yield s
    s.engine.dispose()


def _three_entries(store: Store) -> dict[str, str]:
    """The template's entries (see ``template``)."""
    return store.entries


def _reseal_embedding(store: Store, entry_id: str) -> None:
    """Someone holding the key store (not the signing key) puts another face under an entry."""
    store.sql(
        "update entry set embedding_ct = ? where entry_id = ?",
        store.vault.seal_record(entry_id, embedding(999).raw, field="embedding"),
        entry_id,
    )


def _leaf(store: Store, index: int) -> bytes:
    return bytes(store.sql("select leaf from log_leaf where idx = ?", index)[0][0])


def _rewrite_leaf(store: Store, index: int) -> None:
    """Rewrite an event's time and store a matching hash: only its signature gives it away."""
    leaf = _leaf(store, index).replace(b'"occurred_at":"2026', b'"occurred_at":"2027', 1)
    assert leaf != _leaf(store, index)
    store.sql("update log_leaf set leaf = ?, leaf_hash = ? where idx = ?", leaf, leaf_hash(leaf), index)


Edit = Callable[[Store, dict[str, str]], None]
FULL_PASS_ONLY = {"leaf columns"}
"""Edits of a verified leaf that leave its hash alone: the incremental check cannot see them, the
full pass (every start, every ``FULL_EVERY``-th scheduled check) does."""
EDITS: list[tuple[str, Edit, str]] = [
    (
        "leaf hash",
        lambda s, e: s.sql("update log_leaf set leaf_hash = ? where idx = 1", bytes(32)),
        "leaf 1: stored leaf hash is not the hash of its bytes (expected ",
    ),
    ("leaf rewritten, hash to match", lambda s, e: _rewrite_leaf(s, 1), "leaf 1: not a log event signed"),
    (
        "leaf deleted",
        lambda s, e: s.sql("delete from log_leaf where idx = 2"),
        "leaf 2: missing from the stored log",
    ),
    (
        "last leaf deleted",
        lambda s, e: s.sql("delete from log_leaf where idx = (select max(idx) from log_leaf)"),
        "tree head of size 5: leaf rows are missing",
    ),
    (
        "leaf columns",
        lambda s, e: s.sql("update log_leaf set entry_id = ? where idx = 0", e["corrected"]),
        "leaf 0: column entry_id differs from the signed event",
    ),
    (
        "signed entry",
        lambda s, e: s.sql(
            "update entry set signed_entry = (select signed_entry from entry where entry_id = ?) "
            "where entry_id = ?",
            e["corrected"],
            e["active"],
        ),
        "entry at leaf 0 (entry {active}): the stored signed entry is not the one its leaf committed to",
    ),
    (
        "embedding swapped",
        lambda s, e: s.sql(
            "update entry set embedding_ct = (select embedding_ct from entry where entry_id = ?) "
            "where entry_id = ?",
            e["corrected"],
            e["active"],
        ),
        "entry at leaf 0 (entry {active}): the sealed embedding or salt does not open (decryption_failed)",
    ),
    (
        "embedding resealed with the data key",
        lambda s, e: _reseal_embedding(s, e["active"]),
        "entry at leaf 0 (entry {active}): the stored embedding does not open the signed entry's commitment",
    ),
    (
        "category",
        lambda s, e: s.sql("update entry set category = 'theft' where entry_id = ?", e["active"]),
        "column category differs from the signed entry (expected shoplifting, found theft)",
    ),
    (
        "retention extended",
        lambda s, e: s.sql(
            "update entry set expires_at = '2030-01-01 00:00:00' where entry_id = ?", e["active"]
        ),
        "column expires_at differs from the signed entry",
    ),
    (
        "proposal activated",
        lambda s, e: s.sql(
            "update entry set status = 'active', version = 1 where entry_id = ?", e["proposed"]
        ),
        "entry (entry {proposed}): the entry is active, the log's latest event for it is not its version",
    ),
    (
        "deleted entry revived",
        lambda s, e: s.sql("update entry set status = 'active' where entry_id = ?", e["deleted"]),
        "(entry {deleted}): the entry is active, the log's latest event for it is not its version",
    ),
    (
        "event payload erased",
        lambda s, e: s.sql(
            "update event_payload set payload_ct = NULL where event_id = "
            "(select event_id from log_leaf where idx = 0)"
        ),
        "entry at leaf 0 (entry {active}): the sealed payload of its latest event is missing",
    ),
    (
        "entry row deleted",
        lambda s, e: s.sql("delete from entry where entry_id = ?", e["deleted"]),
        "(entry {deleted}): the log records the entry, the entry table does not hold it",
    ),
    (
        "tree head edited",
        lambda s, e: s.sql(
            "update tree_head set signed = replace(signed, '\"tree_size\":5', '\"tree_size\":4') "
            "where tree_size = 5"
        ),
        "tree head of size 5: not a tree head signed by this node's key",
    ),
]


# -- unit: the Merkle arithmetic and the incremental check -------------------------------------


def test_the_frontier_gives_the_rfc_9162_root_of_every_size() -> None:
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(70)]
    frontier = Frontier()
    assert frontier.root() == root_of_leaf_hashes([])
    for n, digest in enumerate(hashes, 1):
        frontier.append(digest)
        assert frontier.size == n
        assert frontier.root() == root_of_leaf_hashes(hashes[:n]), n
    copy = frontier.copy()
    copy.append(hashes[0])
    assert frontier.size == 70 and copy.size == 71


def test_an_untouched_store_passes_and_a_recheck_hashes_only_the_new_leaves(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[bytes] = []

    def counting(data: bytes) -> bytes:
        hashed.append(data)
        return leaf_hash(data)

    monkeypatch.setattr(integrity, "leaf_hash", counting)
    entries = _three_entries(store)
    checker = store.checker()

    first = checker.check()
    assert first.ok, first.problems
    assert (first.checked_size, first.leaves_hashed, len(hashed)) == (5, 5, 5)
    assert (first.entries_checked, first.entries_unchanged) == (4, 0)

    for _ in range(3):
        store.register()
    hashed.clear()
    second = checker.check()
    assert second.ok, second.problems
    assert second.checked_size == 8
    assert second.leaves_hashed == len(hashed) == 3, "only the three new leaves are hashed"
    assert hashed == [_leaf(store, i) for i in (5, 6, 7)]
    assert (second.entries_checked, second.entries_unchanged) == (3, 4)

    hashed.clear()
    third = checker.check()
    assert third.ok and third.leaves_hashed == 0 and not hashed
    assert (third.entries_checked, third.entries_unchanged) == (0, 7)

    full = checker.check(full=True)
    assert full.ok and full.leaves_hashed == 8 and full.entries_checked == 7
    assert entries["deleted"] not in store.registry.index


@pytest.mark.parametrize("running", [False, True], ids=["at-start", "while-running"])
@pytest.mark.parametrize(("name", "edit", "expected"), EDITS, ids=[e[0] for e in EDITS])
def test_an_edit_behind_the_nodes_back_is_named(
    store: Store, name: str, edit: Edit, expected: str, running: bool
) -> None:
    entries = _three_entries(store)
    checker = store.checker()
    if running:
        assert checker.check().ok
    edit(store, entries)
    result = checker.check(full=running and name in FULL_PASS_ONLY)
    assert not result.ok
    assert any(expected.format(**entries) in str(p) for p in result.problems), [
        str(p) for p in result.problems
    ]
    assert all(entries["active"] not in p.public() for p in result.problems)
    assert not store.checker().check().ok, "a fresh start finds it too"


def test_an_edit_to_an_old_leafs_bytes_alone_waits_for_the_full_pass(store: Store) -> None:
    """The incremental check sees the verified prefix through its stored hashes; bytes edited under
    an unchanged hash are the full pass's (every start, every ``FULL_EVERY``-th scheduled check)."""
    _three_entries(store)
    checker = store.checker()
    assert checker.check().ok
    original = _leaf(store, 0)
    store.sql(
        "update log_leaf set leaf = ? where idx = 0",
        original.replace(b'"occurred_at":"2026', b'"occurred_at":"2027'),
    )
    assert checker.check().ok
    full = checker.check(full=True)
    assert str(full.problems[0]).startswith(
        "leaf 0: stored leaf hash is not the hash of its bytes (expected "
    )
    assert str(full.problems[0]).endswith(f"found {leaf_hash(original).hex()[:12]})")
    assert str(full.problems[1]).startswith("leaf 0: not a log event signed by this node's key")


def test_a_head_signed_over_an_edited_prefix_is_caught_while_running(store: Store) -> None:
    """An intruder edits a verified leaf's hash; the node then signs a head over it. The verified
    prefix (kept in memory) and the new leaves no longer give the signed root."""
    _three_entries(store)
    checker = store.checker()
    assert checker.check().ok
    store.sql("update log_leaf set leaf_hash = ? where idx = 0", leaf_hash(b"someone else"))
    store.register()
    result = checker.check()
    assert not result.ok and result.full, "a changed prefix goes on with a full pass that names the leaf"
    text = [str(p) for p in result.problems]
    assert any(t.startswith("leaf 0: stored leaf hash is not the hash of its bytes") for t in text), text
    assert any(
        t.startswith("tree head of size 6: the stored leaves do not hash to the signed root") for t in text
    )


def test_a_rollback_while_running_is_caught_but_not_at_start(store: Store) -> None:
    """The last registration taken out whole (leaf, head, entry, payload): an older, consistent
    store. The running node remembers the bigger head; a restarted one cannot know (#17's witness)."""
    newest = store.register()
    checker = store.checker()
    assert checker.check().ok and checker.checkpoint is not None and checker.checkpoint.size == 6
    event = store.sql("select event_id from log_leaf where idx = 5")[0][0]
    store.sql("delete from log_leaf where idx = 5")
    store.sql("delete from tree_head where tree_size = 6")
    store.sql("delete from event_payload where event_id = ?", event)
    store.sql("delete from entry where entry_id = ?", newest)
    result = checker.check()
    assert not result.ok
    assert str(result.problems[0]) == (
        "tree heads: the newest signed head is older than the one verified before (heads or leaves "
        "were removed) (expected size >= 6, found size 5)"
    )
    restarted = store.checker().check()
    assert restarted.ok and restarted.checked_size == 5


def test_leaves_after_the_newest_head_are_checked_by_their_signature(store: Store) -> None:
    """A crash between a leaf's commit and its head leaves an unsigned tail: checked, not trusted."""
    _three_entries(store)
    store.sql("delete from tree_head where tree_size = 5")
    result = store.checker().check()
    assert result.ok, result.problems
    assert (result.head_size, result.checked_size, result.stored_size) == (4, 4, 5)
    _rewrite_leaf(store, 4)
    assert "leaf 4: not a log event signed by this node's key" in str(store.checker().check().problems[0])


def test_the_verdict_stops_matching_until_the_store_agrees_again(store: Store) -> None:
    entries = _three_entries(store)
    store.registry.rebuild_index()
    state = store.registry.integrity
    probe = [embedding(1)]
    assert [m.key for m in store.registry.index.search(probe, 0.5)] == [entries["active"]]

    state.begin()
    with pytest.raises(StoreUnverified) as unverified:
        store.registry.index.search(probe, 0.5)
    assert status_for(unverified.value) == 503

    checker = store.checker()
    original = store.sql("select category from entry where entry_id = ?", entries["active"])[0][0]
    store.sql("update entry set category = 'theft' where entry_id = ?", entries["active"])
    now = datetime.now(UTC)
    assert state.record(checker.check(), now) == "failed"
    assert state.state == FAILED
    for ask in (
        lambda: store.registry.index.search(probe, 0.5),
        lambda: store.registry.index.vector(entries["active"]),
    ):
        with pytest.raises(IntegrityFailure) as refused:
            ask()
        assert refused.value.code == "store_tampered" and status_for(refused.value) == 503
        message = str(refused.value)
        assert "leaf 0" in message and "expected shoplifting, found theft" in message
        assert "restore the database from a backup" in message and "watchnet audit verify" in message
    health = state.to_dict()
    assert health["state"] == "failed" and health["disagreements"] == 1
    assert health["error"].startswith("entry at leaf 0: column category differs")
    assert entries["active"] not in json.dumps(health)

    assert state.record(checker.check(), now) is None, "the same disagreement is not reported twice"
    store.sql("update entry set category = ? where entry_id = ?", original, entries["active"])
    assert state.record(checker.check(), now + timedelta(seconds=1)) == "recovered"
    assert state.state == OK
    assert [m.key for m in store.registry.index.search(probe, 0.5)] == [entries["active"]]


def test_a_state_never_checked_refuses_nothing() -> None:
    """A CLI command's registry (no self-check runs there) answers as before."""
    state = IntegrityState()
    state.require_intact()
    assert state.to_dict()["state"] == "unchecked"


# -- through a real node process ----------------------------------------------------------------


def _register(node: NodeProcess, seed: int) -> str:
    status, proposed = node.call(
        "POST",
        "/v1/entries",
        "reg1",
        {
            "embedding": embedding(seed).to_str(),
            "category": "shoplifting",
            "evidence": {"kind": "police-report", "reference": f"OSK-{seed}"},
            "incident_date": "2026-11-02",
            "site": "namba-01",
        },
    )
    assert status == 201, proposed
    status, approved = node.call("POST", f"/v1/entries/{proposed['entry_id']}/approve", "off1")
    assert status == 200, approved
    return str(proposed["entry_id"])


def _match(node: NodeProcess, seed: int) -> tuple[int, Any]:
    return node.call("POST", "/v1/match", "op1", {"embeddings": [embedding(seed).to_str()]})


def _integrity(node: NodeProcess) -> dict[str, Any]:
    status, health = node.call("GET", "/v1/health")
    assert status == 200 and health["status"] == "ok"
    return dict(health["integrity"])


def _wait_for(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _integrity_audit(node: NodeProcess) -> list[tuple[str, str, str]]:
    status, body = node.call("GET", "/v1/audit?limit=1000", "aud1")
    assert status == 200
    return [
        (r["actor"], r["outcome"], r["target"]) for r in body["records"] if r["action"] == "integrity.check"
    ]


def _sql(node: NodeProcess, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(node.directory / "watchnet.db", timeout=10)
    try:
        rows = db.execute(statement, params).fetchall()
        db.commit()
        return rows
    finally:
        db.close()


def _start(node: NodeProcess) -> None:
    """``watchnet serve``, checking every second (the environment is read by the new process)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(INTERVAL_ENV, "1s")
        node.start()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One node with two entries (leaves 0 and 1), running."""
    made = NodeProcess.create(tmp_path_factory.mktemp("self-check"))
    _start(made)
    try:
        made.entries = [_register(made, 11), _register(made, 12)]  # type: ignore[attr-defined]
        yield made
    finally:
        made.stop()


def test_a_running_node_catches_an_edit_on_its_next_scheduled_check(node: NodeProcess) -> None:
    first = _integrity(node)
    assert first["state"] == "ok" and first["error"] is None, first
    assert _wait_for(lambda: _integrity(node)["checked_size"] == 2, 10), "the schedule checks the new leaves"
    assert _match(node, 11)[0] == 200

    original = _sql(node, "select leaf_hash from log_leaf where idx = 1")[0][0]
    _sql(node, "update log_leaf set leaf_hash = ? where idx = 1", bytes(32))
    try:
        assert _wait_for(lambda: _integrity(node)["state"] == "failed", 10)
        failed = _integrity(node)
        assert failed["error"].startswith("leaf 1: stored leaf hash is not the hash of its bytes (expected ")
        assert failed["error"].endswith("found 000000000000)") and failed["next_step"]
        status, refused = _match(node, 11)
        assert status == 503 and refused["error"] == "store_tampered", refused
        assert "leaf 1" in refused["message"] and "watchnet audit verify" in refused["message"]
        status, refused = node.call("POST", "/v1/query", "op1", {"embeddings": [embedding(11).to_str()]})
        assert status == 503 and refused["error"] == "store_tampered", refused
        assert node.call("GET", "/v1/log/head")[0] == 200
        assert node.call("GET", "/v1/log?after=0", "aud1")[0] == 200
    finally:
        _sql(node, "update log_leaf set leaf_hash = ? where idx = 1", original)
    assert _wait_for(lambda: _integrity(node)["state"] == "ok", 10)
    assert _match(node, 11)[0] == 200
    records = _integrity_audit(node)
    assert [r[:2] for r in records] == [("system", "failed:store_tampered"), ("system", "ok:recovered")]
    assert records[0][2].startswith("leaf 1: stored leaf hash")


def test_a_node_started_on_an_edited_database_refuses_queries_and_keeps_its_records_open(
    node: NodeProcess,
) -> None:
    first, second = node.entries  # type: ignore[attr-defined]
    node.stop()
    original = _sql(node, "select signed_entry from entry where entry_id = ?", first)[0][0]
    _sql(
        node,
        "update entry set signed_entry = (select signed_entry from entry where entry_id = ?) where entry_id = ?",
        second,
        first,
    )
    _start(node)
    try:
        health = _integrity(node)
        assert health["state"] == "failed", health
        assert health["error"].startswith(
            "entry at leaf 0: the stored signed entry is not the one its leaf committed to"
        ), health
        assert first not in json.dumps(health), "the public health names no entry"
        status, refused = _match(node, 11)
        assert status == 503 and refused["error"] == "store_tampered", refused
        assert f"entry at leaf 0 (entry {first})" in refused["message"]
        assert "(expected " in refused["message"] and "restore the database" in refused["message"]
        assert node.call("GET", "/v1/log/head")[0] == 200
        assert node.call("GET", "/v1/entries", "off1")[0] == 200
        records = _integrity_audit(node)
        assert records[-1][:2] == ("system", "failed:store_tampered"), records
    finally:
        node.stop()
        _sql(node, "update entry set signed_entry = ? where entry_id = ?", original, first)


def _allow_private_mode(context: NodeContext) -> None:
    """Manifest version 2, the group's as before plus private mode (the demo group's parameters)."""
    description = group_description()
    demo = tomllib.loads((Path(node_demo.__file__).parent / "demo_group.toml").read_text(encoding="utf-8"))
    description["policy"]["query_modes"] = demo["policy"]["query_modes"]
    policy = manifest_from_description(description, [k.public for k in KEYS], 2, T0).policy
    offered = signed_manifest(next_version(context.manifest, policy=policy), KEYS[0], KEYS[1])
    context.manifests.offer(offered, datetime.now(UTC), "test")
    assert context.manifest.policy.query_modes.he is not None


def test_peer_and_private_mode_answers_refuse_an_edited_store(node: NodeProcess) -> None:
    """The sealed peer query and private-mode round 1, from chain-b's keys to this node's app."""
    node.stop()
    deleted = _sql(node, "select * from log_leaf where idx = 1")[0]
    _sql(node, "delete from log_leaf where idx = 1")
    context = NodeContext.load(node.directory)
    _allow_private_mode(context)
    manifest = context.manifest
    own = context.encryption_key.public

    def sealed(body: Any) -> bytes:
        return compose_sealed(
            sender="chain-b",
            recipient="chain-a",
            manifest_version=manifest.version,
            purpose="crime-prevention",
            body=body,
            issued_at=datetime.now(UTC),
            signing_key=NODE_B_SIGNING,
            sender_key=NODE_B_ENCRYPTION,
            recipient_key=own,
            max_bytes=MAX_BULK_SEALED_BYTES,
        )

    model = manifest.policy.model.model_id
    plain = QueryRequest(query_id="qry-selfcheck0001", model_id=model, embeddings=[embedding(11)])
    private = PrivateQuery(query_id="qry-selfcheck0002", model_id=model, key_id="0" * 64, ciphertexts=[b"x"])
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        app = build_app(context, sweep=False, federate=False)
        app[INTEGRITY_INTERVAL] = 0.2
        async with TestClient(TestServer(app)) as client:
            seen["health"] = await (await client.get("/v1/health")).json()
            for path, body in (("/v1/peer/query", plain), ("/v1/peer/private/query", private)):
                response = await client.post(path, data=sealed(body))
                seen[path] = (response.status, await response.json())
            _sql(node, "insert into log_leaf values (?, ?, ?, ?, ?, ?, ?)", *deleted)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and context.registry.integrity.state != "ok":
                await asyncio.sleep(0.1)
            response = await client.post("/v1/peer/query", data=sealed(plain))
            seen["after"] = response.status

    try:
        asyncio.run(scenario())
    finally:
        context.engine.dispose()
    assert seen["health"]["integrity"]["state"] == "failed"
    assert seen["health"]["integrity"]["error"].startswith("tree head of size 2: leaf rows are missing")
    for path in ("/v1/peer/query", "/v1/peer/private/query"):
        status, body = seen[path]
        assert status == 503 and body["error"] == "store_tampered", (path, body)
        assert (
            "tree head of size 2: leaf rows are missing (expected 2 leaves, found 1 stored)"
            in body["message"]
        )
    assert seen["after"] == 200, "the restored store answers again, without a restart"


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgresql_an_untouched_store_passes_and_edits_are_named(database_url: str) -> None:
    """Times, blobs and text come back from PostgreSQL as the registry wrote them, or not at all."""
    s = Store(database_url, new=True)
    try:
        active, corrected, deleted = s.register(), s.register(), s.register()
        s.registry.correct(s.officer2, corrected, reason=EventReason.CORRECTION, now=T0, category="theft")
        s.registry.delete(s.officer, deleted, EventReason.NO_LONGER_NECESSARY, T0)
        s.propose()
        checker = s.checker()
        first = checker.check()
        assert first.ok and first.checked_size == 5 and first.entries_checked == 4, first.problems
        s.register()
        assert checker.check().leaves_hashed == 1
        with s.engine.begin() as conn:
            conn.execute(text("update entry set category = 'theft' where entry_id = :id"), {"id": active})
            conn.execute(text("update log_leaf set leaf_hash = :h where idx = 1"), {"h": bytes(32)})
        running = [str(p) for p in checker.check().problems]
        assert any(p.startswith("leaf 1: stored leaf hash is not the hash of its bytes") for p in running), (
            running
        )
        assert f"entry at leaf 0 (entry {active}): column category differs from the signed entry" in " ".join(
            running
        )
        assert not s.checker().check().ok
    finally:
        s.engine.dispose()
