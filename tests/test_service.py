"""The node over real HTTP, as a separate process: roles per endpoint, refusals, audit, erasure, audit verify."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.canonical import b64url_encode
from tests.factories import embedding
from tests.nodeproc import NodeProcess, cli


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    n = NodeProcess.create(tmp_path_factory.mktemp("svc"))
    n.start()
    yield n
    n.stop()


def proposal(seed: int, **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "embedding": embedding(seed).to_str(),
        "category": "shoplifting",
        "evidence": {"kind": "police-report", "reference": f"TKY-2026-{seed:04d}"},
        "incident_date": "2026-11-01",
        "site": "shibuya-01",
    }
    body.update(overrides)
    return body


def register(node: NodeProcess, seed: int) -> str:
    status, state = node.call("POST", "/v1/entries", "reg1", proposal(seed))
    assert status == 201, state
    status, state = node.call("POST", f"/v1/entries/{state['entry_id']}/approve", "off1")
    assert status == 200 and state["status"] == "active", state
    return str(state["entry_id"])


def test_register_match_delete_end_to_end(node: NodeProcess) -> None:
    entry_id = register(node, 11)
    status, result = node.call(
        "POST", "/v1/match", "op1", {"embeddings": [embedding(11).to_str(), embedding(99).to_str()]}
    )
    assert status == 200
    assert [(m["query_index"], m["entry_id"]) for m in result["matches"]] == [(0, entry_id)]
    status, state = node.call(
        "POST", f"/v1/entries/{entry_id}/delete", "off2", {"reason": "data-subject-request"}
    )
    assert status == 200 and state["status"] == "deleted"
    assert node.call("POST", "/v1/match", "op1", {"embeddings": [embedding(11).to_str()]})[1]["matches"] == []
    db = sqlite3.connect(node.directory / "watchnet.db")
    assert db.execute("select count(*) from alert where entry_id = ?", (entry_id,)).fetchone() == (0,)
    assert db.execute(
        "select embedding_ct, crop_ct, signed_entry from entry where entry_id = ?", (entry_id,)
    ).fetchone() == (None, None, None)


ROLE_CASES = [
    ("POST", "/v1/entries", "op1"),
    ("POST", "/v1/entries", "off1"),
    ("POST", "/v1/entries", "adm1"),
    ("POST", "/v1/match", "reg1"),
    ("POST", "/v1/match", "aud1"),
    ("GET", "/v1/audit", "op1"),
    ("GET", "/v1/audit", "off1"),
    ("GET", "/v1/log", "op1"),
    ("GET", "/v1/log", "reg1"),
    ("GET", "/v1/entries", "op1"),
]


@pytest.mark.parametrize(("method", "path", "user"), ROLE_CASES)
def test_every_endpoint_checks_the_role(node: NodeProcess, method: str, path: str, user: str) -> None:
    body = (
        proposal(1) if path == "/v1/entries" and method == "POST" else {"embeddings": [embedding(1).to_str()]}
    )
    status, error = node.call(method, path, user, body if method == "POST" else None)
    assert (status, error["error"]) == (403, "forbidden")


@pytest.mark.parametrize("action", ["approve", "reject", "correct", "delete"])
def test_officer_actions_refused_to_other_roles(node: NodeProcess, action: str) -> None:
    for user in ("reg1", "op1", "aud1", "adm1"):
        status, error = node.call("POST", f"/v1/entries/ent-00000000/{action}", user, {"reason": "error"})
        assert (status, error["error"]) == (403, "forbidden"), user


def test_two_person_rule_over_http(node: NodeProcess) -> None:
    status, state = node.call("POST", "/v1/entries", "reg1", proposal(21))
    assert status == 201
    status, error = node.call("POST", f"/v1/entries/{state['entry_id']}/approve", "reg1")
    assert (status, error["error"]) == (403, "forbidden")
    status, state = node.call("POST", f"/v1/entries/{state['entry_id']}/approve", "off1")
    assert status == 200


BAD_INPUTS = [
    ("malformed-json", b'{"embedding": ', 400, "malformed"),
    ("not-an-object", b"[1, 2]", 400, "malformed"),
    ("free-text-field", json.dumps(proposal(2, note="arrested yesterday")).encode(), 400, "malformed"),
    (
        "procedure-in-reference",
        json.dumps(
            proposal(2, evidence={"kind": "police-report", "reference": "arrested on 10/30"})
        ).encode(),
        400,
        "malformed",
    ),
    (
        "wrong-dimension",
        json.dumps(proposal(2, embedding=embedding(2, 128).to_str())).encode(),
        400,
        "malformed",
    ),
    (
        "not-normalised",
        json.dumps(proposal(2, embedding=b64url_encode(b"\x00\x00\x80\x3f" * 512))).encode(),
        400,
        "malformed",
    ),
    (
        "category-not-allowed",
        json.dumps(proposal(2, category="loitering")).encode(),
        403,
        "registration_refused",
    ),
    (
        "no-evidence",
        json.dumps({k: v for k, v in proposal(2).items() if k != "evidence"}).encode(),
        400,
        "malformed",
    ),
    ("oversized", b'{"x": "' + b"a" * (9 << 20) + b'"}', 413, "oversized"),
]


@pytest.mark.parametrize(
    ("raw", "status", "code"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_is_refused_typed_and_audited(
    node: NodeProcess, raw: bytes, status: int, code: str
) -> None:
    before = sqlite3.connect(node.directory / "watchnet.db").execute("select count(*) from entry").fetchone()
    got_status, error = node.call("POST", "/v1/entries", "reg1", raw=raw)
    assert (got_status, error["error"]) == (status, code)
    db = sqlite3.connect(node.directory / "watchnet.db")
    assert db.execute("select count(*) from entry").fetchone() == before
    last = db.execute("select outcome from audit order by seq desc limit 1").fetchone()
    assert last == (f"refused:{code}",)


def test_unauthenticated_and_unknown_token(node: NodeProcess) -> None:
    status, error = node.call("POST", "/v1/match", None, {"embeddings": []})
    assert (status, error["error"]) == (401, "unauthenticated")
    node.tokens["ghost"] = "not-a-real-token"
    status, error = node.call("GET", "/v1/audit", "ghost")
    assert (status, error["error"]) == (401, "unauthenticated")


def test_audit_verify_command_on_the_running_node(node: NodeProcess, tmp_path: Path) -> None:
    register(node, 31)
    state = tmp_path / "auditor-state.json"
    out = json.loads(
        cli(
            "audit",
            "verify",
            "--node",
            node.url,
            "--token",
            node.tokens["aud1"],
            "--state",
            str(state),
            "--json",
        )
    )
    assert out["ok"] and out["tree_size"] >= 1, out
    deleted = register(node, 32)
    node.call("POST", f"/v1/entries/{deleted}/delete", "off2", {"reason": "error"})
    out = json.loads(
        cli(
            "audit",
            "verify",
            "--node",
            node.url,
            "--token",
            node.tokens["aud1"],
            "--state",
            str(state),
            "--json",
        )
    )
    assert out["ok"] and any("extends the head" in c for c in out["checks"]), out


def test_audit_verify_detects_a_rewritten_event(tmp_path: Path) -> None:
    n = NodeProcess.create(tmp_path)
    n.start()
    try:
        register(n, 41)
        register(n, 42)
        db = sqlite3.connect(n.directory / "watchnet.db")
        leaf = db.execute("select leaf from log_leaf where idx = 0").fetchone()[0]
        db.execute(
            "update log_leaf set leaf = ? where idx = 0", (leaf.replace(b"registered", b"registerex"),)
        )
        db.commit()
        db.close()
        from node.cli.main import main

        assert main(["audit", "verify", "--url", n.url, "--token", n.tokens["aud1"]]) == 1
    finally:
        n.stop()
