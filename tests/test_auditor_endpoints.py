"""The auditor's endpoints behave as docs/protocol.md ("Auditor endpoints") says, edge cases included.

A real node process: the empty log (404 ``empty_log``, no proof of or from size 0), then a log of
three events whose head, pages, inclusion proofs and consistency proofs (equal sizes too) verify
with the RFC 9162 verifiers alone, and whose ``audit_head`` is a record of the audit chain.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.records.auditlog import verify_audit_chain
from node.storage.models import AuditRecord
from protocol.canonical import b64url_decode
from protocol.fields import parse_time
from protocol.keys import PublicSigningKey
from protocol.merkle import MerkleLog, leaf_hash, verify_consistency, verify_inclusion
from protocol.signed import SignedDocument
from protocol.treehead import TreeHead
from tests.factories import embedding
from tests.nodeproc import NodeProcess


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = NodeProcess.create(Path(tmp_path_factory.mktemp("auditor")))
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _register(node: NodeProcess, seed: int) -> None:
    status, state = node.call(
        "POST",
        "/v1/entries",
        "reg1",
        {
            "embedding": embedding(seed).to_str(),
            "category": "shoplifting",
            "evidence": {"kind": "police-report", "reference": f"TKY-2026-{seed:04d}"},
            "incident_date": "2026-11-01",
            "site": "shibuya-01",
        },
    )
    assert status == 201, state
    status, approved = node.call("POST", f"/v1/entries/{state['entry_id']}/approve", "off1")
    assert status == 200, approved


def _refused(node: NodeProcess, path: str) -> str:
    status, body = node.call("GET", path, "aud1")
    assert status == 400, (path, status, body)
    return str(body["error"])


def test_an_empty_log_has_no_head_and_no_proofs(node: NodeProcess) -> None:
    status, info = node.call("GET", "/v1/node")
    assert status == 200 and info["node_id"] == "chain-a"
    assert set(info) == {"node_id", "signing_key", "encryption_key", "manifest_version", "group_id"}
    status, head = node.call("GET", "/v1/log/head")
    assert (status, head["error"]) == (404, "empty_log")
    status, page = node.call("GET", "/v1/log", "aud1")
    assert (status, page) == (200, {"events": [], "tree_size": 0})
    assert _refused(node, "/v1/log/proof/inclusion?index=0") == "malformed"
    assert _refused(node, "/v1/log/proof/consistency?old=0&new=0") == "malformed"


def test_heads_pages_and_proofs_verify_with_rfc_9162_alone(node: NodeProcess) -> None:
    started = time.monotonic()
    for seed in (1, 2, 3):
        _register(node, seed)
    status, info = node.call("GET", "/v1/node")
    key = PublicSigningKey.from_str(info["signing_key"])
    status, head_data = node.call("GET", "/v1/log/head")
    assert status == 200
    doc = SignedDocument.from_dict(head_data, TreeHead)
    doc.verify([key], threshold=1)
    head = doc.payload
    assert (head.log_id, head.tree_size) == ("chain-a", 3)

    status, page = node.call("GET", "/v1/log?after=1&limit=1", "aud1")
    assert status == 200 and [e["index"] for e in page["events"]] == [1] and page["tree_size"] == 3
    assert _refused(node, "/v1/log?limit=0") == "malformed"
    status, everything = node.call("GET", "/v1/log?limit=5000", "aud1")
    assert status == 200 and [e["index"] for e in everything["events"]] == [0, 1, 2]
    log = MerkleLog()
    for item in everything["events"]:
        log.append(SignedDocument.from_dict(item["event"], _event_type(item["event"])).to_bytes())
    assert log.root() == head.root_hash

    for index in range(3):
        status, proof = node.call("GET", f"/v1/log/proof/inclusion?index={index}&size=3", "aud1")
        assert status == 200 and (proof["index"], proof["tree_size"]) == (index, 3)
        leaf = SignedDocument.from_dict(
            everything["events"][index]["event"], _event_type(everything["events"][index]["event"])
        ).to_bytes()
        verify_inclusion(
            leaf_hash(leaf), index, 3, [b64url_decode(p) for p in proof["proof"]], head.root_hash
        )
    status, single = node.call("GET", "/v1/log/proof/inclusion?index=0&size=1", "aud1")
    assert status == 200 and single["proof"] == []
    assert _refused(node, "/v1/log/proof/inclusion?index=3&size=3") == "malformed"
    assert _refused(node, "/v1/log/proof/inclusion?index=0&size=4") == "malformed"
    assert _refused(node, "/v1/log/proof/inclusion?index=0&size=0") == "malformed"

    for old in (1, 2):
        status, proof = node.call("GET", f"/v1/log/proof/consistency?old={old}&new=3", "aud1")
        assert status == 200 and (proof["old"], proof["new"]) == (old, 3) and proof["proof"]
        verify_consistency(old, 3, log.root(old), head.root_hash, [b64url_decode(p) for p in proof["proof"]])
    status, same = node.call("GET", "/v1/log/proof/consistency?old=3", "aud1")
    assert status == 200 and (same["old"], same["new"], same["proof"]) == (3, 3, [])
    verify_consistency(3, 3, head.root_hash, head.root_hash, [])
    assert _refused(node, "/v1/log/proof/consistency?old=3&new=2") == "malformed"
    assert _refused(node, "/v1/log/proof/consistency?old=1&new=4") == "malformed"
    assert _refused(node, "/v1/log/proof/consistency?old=0&new=3") == "malformed"

    status, audit = node.call("GET", "/v1/audit?limit=1000", "aud1")
    records = [AuditRecord(**{**r, "at": parse_time(r["at"])}) for r in audit["records"]]
    verify_audit_chain(records)
    assert head.audit_head is not None
    named = [r for r in records if r.record_hash == head.audit_head.hex()]
    assert len(named) == 1 and named[0].action == "entry.approve", [(r.seq, r.action) for r in records[-4:]]
    print(f"3 registrations, head, pages and proofs checked in {time.monotonic() - started:.1f} s")


def test_the_log_endpoints_need_an_officer_or_auditor(node: NodeProcess) -> None:
    status, body = node.call("GET", "/v1/log")
    assert (status, body["error"]) == (401, "unauthenticated")
    status, body = node.call("GET", "/v1/log/proof/consistency?old=1", "op1")
    assert (status, body["error"]) == (403, "forbidden")


def _event_type(event: dict[str, object]) -> type:
    from protocol.events import EntryEvent
    from protocol.provision import ThirdPartyProvision

    signed = event["signed"]
    assert isinstance(signed, dict)
    return ThirdPartyProvision if signed["type"] == "third-party-provision" else EntryEvent
