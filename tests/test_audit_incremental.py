"""``audit verify --state``: the second run checks only what is new, and a state that is not the
node's history is a problem, never a fresh start.

The node is the real application (``build_app``) on a node directory made by ``watchnet init``,
served by aiohttp's test server, its log filled in bulk (``tests.logfill``) past one batch of
inclusion proofs. Every request the auditor makes is counted by path and query, so "only the new
events" is asserted on what was asked for, not on what the report says. Histories are rewritten
the way a dishonest or restored node would: leaves edited and a new head signed over them, the
log cut back to an earlier size, an audit record the auditor verified changed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from node.app.server import build_app
from node.context import NodeContext
from node.reporting.auditor import AuditReport, AuditState, CheckedLog, audit_node
from protocol.canonical import b64url_decode
from protocol.merkle import leaf_hash, verify_inclusion
from protocol.signed import SignedDocument
from protocol.treehead import TreeHead
from tests.console_app import Clock, Node, loaded_node
from tests.logfill import fill_log

FIRST = 1203
"""Events before the first run: two batches of inclusion proofs (1000 and 203)."""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Node:
    """One node filled once; each test gets a copy of its directory (keys, database, accounts)."""
    root = tmp_path_factory.mktemp("audit-incremental")
    with loaded_node(root) as made:
        fill_log(made.context, FIRST)
        return made


@pytest.fixture
def node(template: Node, tmp_path: Path) -> Iterator[Node]:
    directory = tmp_path / "node"
    shutil.copytree(template.directory, directory, symlinks=True)
    context = NodeContext.load(directory)
    try:
        yield Node(directory, template.tokens, context)
    finally:
        context.engine.dispose()


Requests = list[tuple[str, dict[str, str]]]


def serve(node: Node, scenario: Callable[[str, Requests, TestClient[Any, Any]], Awaitable[None]]) -> None:
    """Serve ``node`` and run ``scenario`` with the base URL and the list of requests made so far."""

    async def go() -> None:
        app = build_app(node.context, clock=Clock(), sweep=False, federate=False)
        seen: Requests = []

        async def count(request: web.Request, response: web.StreamResponse) -> None:
            query = {k: v[0] for k, v in parse_qs(request.query_string).items()}
            seen.append((request.path, query))

        app.on_response_prepare.append(count)
        server = TestServer(app)
        client: TestClient[Any, Any] = TestClient(server)
        await client.start_server()
        try:
            await scenario(str(server.make_url("")).rstrip("/"), seen, client)
        finally:
            await client.close()

    asyncio.run(go())


def sql(node: Node, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(node.directory / "watchnet.db", timeout=10)
    try:
        with db:
            return list(db.execute(statement, args).fetchall())
    finally:
        db.close()


def asked(seen: Requests, path: str) -> list[dict[str, str]]:
    return [q for p, q in seen if p == path]


def codes(findings: list[str]) -> set[str]:
    return {getattr(f, "code", "") for f in findings}


def test_the_second_run_reads_only_what_is_new(node: Node, tmp_path: Path) -> None:
    state = tmp_path / "auditor.json"
    runs: dict[str, tuple[AuditReport, Requests]] = {}
    states: dict[str, bytes] = {}

    async def scenario(base: str, seen: Requests, client: TestClient[Any, Any]) -> None:
        token = node.tokens["aud1"]
        for name, grow in (("first", 0), ("second", 7), ("unchanged", 0)):
            if grow:
                await asyncio.to_thread(fill_log, node.context, grow, seed=1)
            mark = len(seen)
            report = await audit_node(base, token, state_file=state, witness_wait=0)
            runs[name] = (report, seen[mark:])
            states[name] = state.read_bytes()

    serve(node, scenario)
    first, first_seen = runs["first"]
    assert first.ok, first.problems
    assert (first.events, first.new_events, first.tree_size) == (FIRST, FIRST, FIRST)
    assert "inclusion proofs served for all 1203 events verify" in first.checks
    batches = asked(first_seen, "/v1/log/proof/inclusions")
    assert [(q["start"], q["end"]) for q in batches] == [("0", "1000"), ("1000", "1203")]
    assert not asked(first_seen, "/v1/log/proof/inclusion")  # no request per event
    assert asked(first_seen, "/v1/audit")[0]["after"] == "0"
    saved = AuditState.from_bytes(states["first"])
    assert saved.tree_size == FIRST and saved.compact is not None and saved.chain is not None
    assert saved.compact.root() == saved.root_hash

    second, second_seen = runs["second"]
    assert second.ok, second.problems
    assert (second.events, second.new_events, second.tree_size) == (FIRST + 7, 7, FIRST + 7)
    assert f"the log extends the head of size {FIRST} seen before" in second.checks
    assert f"7 new events checked after the {FIRST} verified before" in second.checks
    assert "inclusion proofs served for the 7 new events verify" in second.checks
    assert [q["after"] for q in asked(second_seen, "/v1/log")] == [str(FIRST)]
    assert [(q["start"], q["end"]) for q in asked(second_seen, "/v1/log/proof/inclusions")] == [
        (str(FIRST), str(FIRST + 7))
    ]
    assert asked(second_seen, "/v1/log/proof/consistency") == [{"old": str(FIRST), "new": str(FIRST + 7)}]
    assert [q["after"] for q in asked(second_seen, "/v1/audit")] == [str(saved.chain.seq)]
    assert second.audit_records > second.new_audit_records >= 1
    assert (
        second.new_audit_records < first.new_audit_records + 20
    )  # the first run's own reads, and this one's

    unchanged, unchanged_seen = runs["unchanged"]
    assert unchanged.ok and unchanged.new_events == 0, unchanged.problems
    assert not asked(unchanged_seen, "/v1/log/proof/inclusions")
    assert asked(unchanged_seen, "/v1/log") == []
    kept = AuditState.from_bytes(states["unchanged"])
    assert kept.tree_size == FIRST + 7 and kept.chain is not None and kept.chain.seq > saved.chain.seq


def _first_run(node: Node, state: Path) -> None:
    async def scenario(base: str, seen: Requests, client: TestClient[Any, Any]) -> None:
        report = await audit_node(base, node.tokens["aud1"], state_file=state, witness_wait=0)
        assert report.ok, report.problems

    serve(node, scenario)


def _again(node: Node, state: Path) -> AuditReport:
    out: list[AuditReport] = []

    async def scenario(base: str, seen: Requests, client: TestClient[Any, Any]) -> None:
        out.append(await audit_node(base, node.tokens["aud1"], state_file=state, witness_wait=0))

    serve(node, scenario)
    return out[0]


def test_a_history_rewritten_under_a_new_signed_head_is_refused(node: Node, tmp_path: Path) -> None:
    """The node edits an event it served and signs a head over the edit: no consistency with the saved head."""
    state = tmp_path / "auditor.json"
    _first_run(node, state)
    before = state.read_bytes()
    leaf = sql(node, "select leaf from log_leaf where idx = 5")[0][0]
    edited = leaf.replace(b"registered", b"registerex")
    sql(node, "update log_leaf set leaf = ?, leaf_hash = ? where idx = 5", edited, leaf_hash(edited))
    node.context.registry.log._tree.cache_clear()  # the node believes its edit
    fill_log(node.context, 3, seed=2)
    report = _again(node, state)
    assert not report.ok
    assert "consistency_failed" in codes(report.problems), report.problems
    assert report.new_events == 0  # the new events of another history are not read
    assert state.read_bytes() == before


def test_a_log_cut_back_to_an_earlier_size_is_refused(node: Node, tmp_path: Path) -> None:
    """A node restored from an old backup serves a shorter log than the auditor verified."""
    state = tmp_path / "auditor.json"
    _first_run(node, state)
    before = state.read_bytes()
    sql(node, "delete from log_leaf where idx >= 1000")
    node.context.registry.log._tree.cache_clear()
    node.context.registry._publish_head(Clock()())
    sql(node, "delete from tree_head where tree_size > 1000")
    report = _again(node, state)
    assert not report.ok
    assert f"the log shrank from {FIRST} to 1000" in report.problems, report.problems
    assert state.read_bytes() == before


def test_an_audit_record_verified_before_that_changed_is_refused(node: Node, tmp_path: Path) -> None:
    state = tmp_path / "auditor.json"
    _first_run(node, state)
    before = state.read_bytes()
    saved = AuditState.from_bytes(before)
    assert saved.chain is not None
    sql(node, "update audit set outcome = ? where seq = ?", "ok:299", saved.chain.seq)
    report = _again(node, state)
    assert not report.ok
    assert (
        f"audit chain: audit record {saved.chain.seq} differs from the one verified before" in report.problems
    )
    assert "audit_chain_rewritten" in codes(report.problems)
    assert state.read_bytes() == before


def test_a_state_of_another_log_is_refused(node: Node, tmp_path: Path) -> None:
    """The same node id with another key (another node, or a node set up again) is not a continuation."""
    state = tmp_path / "auditor.json"
    _first_run(node, state)
    (tmp_path / "other").mkdir()
    with loaded_node(tmp_path / "other") as other:
        fill_log(other.context, 2, seed=3)
        before = state.read_bytes()
        report = _again(other, state)
    assert not report.ok
    assert "state_other_log" in codes(report.problems), report.problems
    assert state.read_bytes() == before


@pytest.mark.parametrize(
    "content", [b"not json", b"[]", b'{"version": 1, "tree_size": -1, "root_hash": "AA"}', b"\xff\xfe"]
)
def test_a_state_file_that_is_not_one_is_a_problem_not_a_fresh_start(
    node: Node, tmp_path: Path, content: bytes
) -> None:
    state = tmp_path / "auditor.json"
    state.write_bytes(content)
    report = _again(node, state)
    assert not report.ok and "state_bad" in codes(report.problems), report.problems
    assert state.read_bytes() == content


def test_a_compact_range_that_does_not_fold_to_the_saved_root_is_refused(node: Node, tmp_path: Path) -> None:
    state = tmp_path / "auditor.json"
    _first_run(node, state)
    saved = json.loads(state.read_text())
    saved["root_hash"] = "A" * 43
    state.write_text(json.dumps(saved))
    report = _again(node, state)
    assert not report.ok and "state_bad" in codes(report.problems), report.problems


def test_batched_inclusion_proofs_are_each_leafs_proof_and_bounded(node: Node) -> None:
    got: dict[str, Any] = {}

    async def scenario(base: str, seen: Requests, client: TestClient[Any, Any]) -> None:
        auth = {"Authorization": f"Bearer {node.tokens['aud1']}"}
        head = await (await client.get("/v1/log/head")).json()
        got["head"] = head
        for name, query in {
            "batch": f"start=990&end=1203&size={FIRST}",
            "default-size": "start=0&end=1",
            "over": "start=0&end=1001",
            "empty": "start=5&end=5",
            "reversed": "start=6&end=5",
            "beyond": f"start=1200&end={FIRST + 1}",
            "size-beyond": f"start=0&end=1&size={FIRST + 1}",
            "no-end": "start=0",
        }.items():
            response = await client.get(f"/v1/log/proof/inclusions?{query}", headers=auth)
            got[name] = (response.status, await response.json())
        for index in (990, 1023, 1024, 1202):
            response = await client.get(f"/v1/log/proof/inclusion?index={index}&size={FIRST}", headers=auth)
            got[index] = (await response.json())["proof"]
        response = await client.get("/v1/log/proof/inclusions?start=0&end=1")
        got["anonymous"] = response.status
        response = await client.get(
            "/v1/log/proof/inclusions?start=0&end=1",
            headers={"Authorization": f"Bearer {node.tokens['op1']}"},
        )
        got["operator"] = response.status

    serve(node, scenario)
    status, batch = got["batch"]
    assert status == 200 and (batch["start"], batch["end"], batch["tree_size"]) == (990, 1203, FIRST)
    assert len(batch["proofs"]) == 213
    for index in (990, 1023, 1024, 1202):
        assert batch["proofs"][index - 990] == got[index]
    root = SignedDocument.from_dict(got["head"], TreeHead).payload.root_hash
    leaves = dict(sql(node, "select idx, leaf_hash from log_leaf where idx >= 990"))
    for offset, proof in enumerate(batch["proofs"]):
        verify_inclusion(leaves[990 + offset], 990 + offset, FIRST, [b64url_decode(p) for p in proof], root)
    assert got["default-size"][0] == 200 and got["default-size"][1]["tree_size"] == FIRST
    for name in ("over", "empty", "reversed", "beyond", "size-beyond", "no-end"):
        status, body = got[name]
        assert (status, body["error"]) == (400, "malformed"), (name, body)
    assert "at most 1000 proofs a request" in got["over"][1]["message"]
    assert (got["anonymous"], got["operator"]) == (401, 403)


def test_roots_below_the_head_come_from_the_saved_range_and_the_new_leaves() -> None:
    """What a witness's smaller checkpoint is compared with on an incremental run: the root at its
    size, from the saved compact range and the leaves read now; below the saved size only a root
    a consistency proof verified, never a guess."""
    from protocol.merkle import CompactRange, MerkleLog
    from protocol.treehead import TreeHead as Head

    log = MerkleLog()
    for i in range(13):
        log.append(f"leaf {i}".encode())
    hashes = [log.leaf_hash_at(i) for i in range(13)]
    start = CompactRange.of_leaf_hashes(hashes[:5])
    compact = CompactRange.of_leaf_hashes(hashes)
    head = Head(log_id="chain-a", tree_size=13, root_hash=log.root(), timestamp=Clock()(), audit_head=None)
    checked = CheckedLog(head, 5, start, hashes[5:], compact)
    assert [checked.root_at(k) for k in range(5, 14)] == [log.root(k) for k in range(5, 14)]
    assert checked.root_at(3) == b""
    checked.proven[3] = log.root(3)
    assert checked.root_at(3) == log.root(3)
