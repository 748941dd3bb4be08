"""An auditor's check of a running node: signatures, inclusion, consistency and the audit chain.

Works from what the node serves over HTTP and an optional pinned key (the manifest's member
entry), so a third party can verify the event log and the audit log without the database and
without seeing any biometric data: events carry only headers and salted commitments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from node.auditlog import verify_audit_chain
from node.storage.models import AuditRecord
from protocol.canonical import b64url_decode, canonical_bytes, parse_json
from protocol.errors import ProofError, VerificationError, WatchnetError
from protocol.fields import parse_time
from protocol.keys import PublicSigningKey
from protocol.merkle import MerkleLog, leaf_hash, verify_consistency, verify_inclusion
from protocol.signed import SignedDocument
from protocol.sync import parse_log_event
from protocol.treehead import TreeHead

__all__ = ["AuditReport", "audit_node"]

PAGE = 500
"""Records per request: the audit log grows by one record per request, so paging stops on a short page."""


@dataclass
class AuditReport:
    node_id: str = ""
    tree_size: int = 0
    events: int = 0
    audit_records: int = 0
    checks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "node_id": self.node_id,
            "tree_size": self.tree_size,
            "events": self.events,
            "audit_records": self.audit_records,
            "checks": self.checks,
            "problems": self.problems,
        }

    def __str__(self) -> str:
        lines = [f"node {self.node_id}: {'VERIFIED' if self.ok else 'FAILED'}"]
        lines += [f"  ok   {c}" for c in self.checks]
        lines += [f"  FAIL {p}" for p in self.problems]
        return "\n".join(lines)


async def _get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        data = await response.json()
        if response.status != 200:
            raise VerificationError(
                f"GET {url}: {response.status} {data.get('error', '')} {data.get('message', '')}"
            )
        return data


async def audit_node(
    url: str, token: str, *, pinned_key: str | None = None, state_file: Path | None = None
) -> AuditReport:
    report = AuditReport()
    base = url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=60)) as session:
        info = await _get(session, f"{base}/v1/node")
        report.node_id = info["node_id"]
        served_key = PublicSigningKey.from_str(info["signing_key"])
        if pinned_key is not None and served_key != PublicSigningKey.from_str(pinned_key):
            report.problems.append("the node serves a signing key other than the pinned one")
            return report
        report.checks.append(
            "node key matches the pinned key"
            if pinned_key
            else "node key taken from the node (pin it with --signing-key)"
        )
        async with session.get(f"{base}/v1/log/head") as response:
            head_data = await response.json()
            empty = response.status == 404 and head_data.get("error") == "empty_log"
            if response.status != 200 and not empty:
                raise VerificationError(
                    f"GET {base}/v1/log/head: {response.status} {head_data.get('error', '')}"
                )
        head: TreeHead | None = None
        if empty:
            report.checks.append("the event log is empty")
        else:
            head = await _check_log(
                session, base, served_key, SignedDocument.from_dict(head_data, TreeHead), report, state_file
            )
        records: list[AuditRecord] = []
        while True:
            page = await _get(session, f"{base}/v1/audit?after={len(records)}&limit={PAGE}")
            records.extend(AuditRecord(**{**r, "at": parse_time(r["at"])}) for r in page["records"])
            if len(page["records"]) < PAGE:
                break
        report.audit_records = len(records)
        try:
            verify_audit_chain(records)
            report.checks.append(f"audit chain of {len(records)} records is intact")
        except ProofError as e:
            report.problems.append(f"audit chain: {e}")
        if (
            head is not None
            and head.audit_head is not None
            and head.audit_head.hex() not in {r.record_hash for r in records}
        ):
            report.problems.append("the audit head signed into the tree head is not in the audit log")
        elif head is not None and head.audit_head is not None:
            report.checks.append("the signed tree head commits to a record of the audit chain")
    if state_file is not None and report.ok and head is not None:
        state_file.write_text(
            json.dumps({"tree_size": head.tree_size, "root_hash": head.to_dict()["root_hash"]})
        )
    return report


async def _check_log(
    session: aiohttp.ClientSession,
    base: str,
    served_key: PublicSigningKey,
    head_doc: SignedDocument[TreeHead],
    report: AuditReport,
    state_file: Path | None,
) -> TreeHead | None:
    try:
        head_doc.verify([served_key])
    except WatchnetError as e:
        report.problems.append(f"tree head signature: {e}")
        return None
    head = head_doc.payload
    report.tree_size = head.tree_size
    report.checks.append(f"tree head of size {head.tree_size} is signed by the node")

    log = MerkleLog()
    leaves: list[bytes] = []
    after = 0
    while after < head.tree_size:
        page = await _get(session, f"{base}/v1/log?after={after}&limit={PAGE}")
        if not page["events"]:
            break
        for item in page["events"]:
            if item["index"] != len(leaves):
                raise ProofError(f"event index {item['index']} out of order (expected {len(leaves)})")
            leaf = canonical_bytes(item["event"])
            event = parse_log_event(parse_json(leaf))
            try:
                event.verify([served_key])
            except WatchnetError as e:
                report.problems.append(f"event {item['index']}: {e}")
            if event.payload.owner != report.node_id:
                report.problems.append(f"event {item['index']} claims owner {event.payload.owner}")
            if event.payload.unrecognized_fields:
                report.problems.append(f"event {item['index']} carries unexpected fields")
            leaves.append(leaf)
            log.append(leaf)
        after = len(leaves)
    report.events = min(len(leaves), head.tree_size)
    if log.root(head.tree_size) != head.root_hash:
        report.problems.append("the events served do not hash to the signed root")
    else:
        report.checks.append(f"{head.tree_size} signed events hash to the signed root")
    for index in range(head.tree_size):
        proof = await _get(session, f"{base}/v1/log/proof/inclusion?index={index}&size={head.tree_size}")
        try:
            verify_inclusion(
                leaf_hash(leaves[index]),
                index,
                head.tree_size,
                [b64url_decode(p) for p in proof["proof"]],
                head.root_hash,
            )
        except ProofError as e:
            report.problems.append(f"inclusion proof for event {index}: {e}")
    report.checks.append(f"inclusion proofs served for all {head.tree_size} events verify")

    if state_file is not None and state_file.exists():
        old = json.loads(state_file.read_text())
        old_size, old_root = old["tree_size"], b64url_decode(old["root_hash"])
        if old_size > head.tree_size:
            report.problems.append(f"the log shrank from {old_size} to {head.tree_size}")
        elif old_size > 0:
            proof = await _get(
                session, f"{base}/v1/log/proof/consistency?old={old_size}&new={head.tree_size}"
            )
            try:
                verify_consistency(
                    old_size,
                    head.tree_size,
                    old_root,
                    head.root_hash,
                    [b64url_decode(p) for p in proof["proof"]],
                )
                report.checks.append(f"the log extends the head of size {old_size} seen before")
            except ProofError as e:
                report.problems.append(f"consistency with the earlier head of size {old_size}: {e}")

    return head
