"""An auditor's check of a node: signatures, inclusion, consistency and the audit chain.

Two ways in, one set of checks. ``audit_node`` works from what a running node serves over HTTP
and an optional pinned key (the manifest's member entry), so a third party can verify the event
log and the audit log without the database and without seeing any biometric data: events carry
only headers and salted commitments. ``audit_stored_log`` and ``audit_stored_chain`` run the
same ``check_*`` steps on the node's own database, for the auditor's page of the staff console;
there the root is recomputed from the stored leaves themselves, and the earlier head the node
signed stands in for the head an auditor saw before. Each step adds what it verified to
``AuditReport.checks`` and what failed to ``AuditReport.problems``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node.records.auditlog import verify_audit_chain
from node.records.eventlog import LeafHashTree
from node.storage.models import AuditRecord, LogLeaf, TreeHeadRow
from protocol.canonical import b64url_decode, canonical_bytes, parse_json
from protocol.errors import ProofError, VerificationError, WatchnetError
from protocol.fields import parse_time
from protocol.keys import PublicSigningKey
from protocol.merkle import MerkleLog, leaf_hash, verify_consistency, verify_inclusion
from protocol.signed import SignedDocument
from protocol.sync import parse_log_event
from protocol.treehead import TreeHead

__all__ = [
    "AuditReport",
    "StoredLog",
    "audit_node",
    "audit_stored_chain",
    "audit_stored_log",
    "check_audit_chain",
    "check_consistency",
    "check_event",
    "check_head_signature",
    "check_root",
]

PAGE = 500
"""Records per request: the audit log grows by one record per request, so paging stops on a short page."""
STREAM = 2000
"""Rows read from the database at a time when checking the stored logs."""


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


# -- the checks -------------------------------------------------------------------------------


def check_head_signature(
    head_doc: SignedDocument[TreeHead], key: PublicSigningKey, report: AuditReport
) -> TreeHead | None:
    """Step 1: the tree head is signed by the node's key; the head, or ``None`` if it is not."""
    try:
        head_doc.verify([key])
    except WatchnetError as e:
        report.problems.append(f"tree head signature: {e}")
        return None
    head = head_doc.payload
    report.tree_size = head.tree_size
    report.checks.append(f"tree head of size {head.tree_size} is signed by the node")
    return head


def check_event(index: int, leaf: bytes, key: PublicSigningKey, report: AuditReport) -> None:
    """Step 2, per leaf: a log event of a known type, signed by the node, about the node, nothing added."""
    try:
        event = parse_log_event(parse_json(leaf))
    except WatchnetError as e:
        report.problems.append(f"event {index}: {e}")
        return
    try:
        event.verify([key])
    except WatchnetError as e:
        report.problems.append(f"event {index}: {e}")
    if event.payload.owner != report.node_id:
        report.problems.append(f"event {index} claims owner {event.payload.owner}")
    if event.payload.unrecognized_fields:
        report.problems.append(f"event {index} carries unexpected fields")


def check_root(log: MerkleLog, head: TreeHead, report: AuditReport) -> None:
    """Step 3: the first ``tree_size`` leaves hash to the signed root."""
    if log.size < head.tree_size:
        report.problems.append(f"only {log.size} of the {head.tree_size} events of the signed head were read")
    elif log.root(head.tree_size) != head.root_hash:
        report.problems.append("the events do not hash to the signed root")
    else:
        report.checks.append(f"{head.tree_size} signed events hash to the signed root")


def check_consistency(
    old_size: int, old_root: bytes, head: TreeHead, proof: list[bytes], report: AuditReport
) -> None:
    """Step 5: an earlier head of ``old_size`` leaves is a prefix of this one (RFC 9162 consistency)."""
    if old_size > head.tree_size:
        report.problems.append(f"the log shrank from {old_size} to {head.tree_size}")
        return
    try:
        verify_consistency(old_size, head.tree_size, old_root, head.root_hash, proof)
        report.checks.append(f"the log extends the head of size {old_size} seen before")
    except ProofError as e:
        report.problems.append(f"consistency with the earlier head of size {old_size}: {e}")


def check_audit_chain(records: Iterable[AuditRecord], audit_head: bytes | None, report: AuditReport) -> None:
    """Step 6: the audit chain links and hashes (``verify_audit_chain``), read once, in order.

    ``audit_head`` is the chain head signed into the tree head, which must be one of the records.
    """
    wanted = None if audit_head is None else audit_head.hex()
    found = False

    def counted() -> Iterator[AuditRecord]:
        nonlocal found
        for record in records:
            report.audit_records += 1
            found = found or record.record_hash == wanted
            yield record

    stream = counted()
    try:
        verify_audit_chain(stream)
        report.checks.append(f"audit chain of {report.audit_records} records is intact")
    except ProofError as e:
        report.problems.append(f"audit chain: {e}")
        for _ in stream:
            pass
    if wanted is None:
        return
    if found:
        report.checks.append("the signed tree head commits to a record of the audit chain")
    else:
        report.problems.append("the audit head signed into the tree head is not in the audit log")


# -- over HTTP --------------------------------------------------------------------------------


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
        check_audit_chain(records, None if head is None else head.audit_head, report)
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
    head = check_head_signature(head_doc, served_key, report)
    if head is None:
        return None
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
            check_event(item["index"], leaf, served_key, report)
            leaves.append(leaf)
            log.append(leaf)
        after = len(leaves)
    report.events = min(len(leaves), head.tree_size)
    check_root(log, head, report)
    for index in range(report.events):
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
        old_size = old["tree_size"]
        if old_size > head.tree_size:
            report.problems.append(f"the log shrank from {old_size} to {head.tree_size}")
        elif old_size > 0:
            proof = await _get(
                session, f"{base}/v1/log/proof/consistency?old={old_size}&new={head.tree_size}"
            )
            old_root = b64url_decode(old["root_hash"])
            check_consistency(old_size, old_root, head, [b64url_decode(p) for p in proof["proof"]], report)

    return head


# -- on the node's own database ---------------------------------------------------------------


@dataclass(frozen=True)
class StoredLog:
    """The outcome of ``audit_stored_log``: the report, and the newest two signed heads it checked."""

    report: AuditReport
    head: SignedDocument[TreeHead] | None
    previous: SignedDocument[TreeHead] | None


def _stored_heads(session: Session, report: AuditReport) -> list[SignedDocument[TreeHead]]:
    """The newest two heads the node signed and kept, newest first (a head that does not parse is a problem)."""
    rows = session.exec(select(TreeHeadRow).order_by(col(TreeHeadRow.tree_size).desc()).limit(2)).all()
    heads = []
    for row in rows:
        try:
            heads.append(SignedDocument.from_dict(parse_json(row.signed), TreeHead))
        except WatchnetError as e:
            report.problems.append(f"stored tree head of size {row.tree_size}: {e}")
    return heads


def audit_stored_log(engine: Engine, key: PublicSigningKey, node_id: str) -> StoredLog:
    """The event log as stored: the newest head's signature, every leaf, the root, the earlier head.

    Each leaf's bytes are hashed again (a stored ``leaf_hash`` that does not match them is a
    problem of its own), so an edited event is caught even if its hash column was left alone.
    """
    report = AuditReport(node_id=node_id)
    log = MerkleLog(LeafHashTree([]))
    with Session(engine) as session:
        heads = _stored_heads(session, report)
        if not heads:
            if report.ok:
                report.checks.append("the event log is empty")
            return StoredLog(report, None, None)
        head_doc, previous = heads[0], heads[1] if len(heads) > 1 else None
        head = check_head_signature(head_doc, key, report)
        if head is None:
            return StoredLog(report, head_doc, previous)
        rows = session.exec(
            select(LogLeaf.idx, LogLeaf.leaf, LogLeaf.leaf_hash)
            .where(col(LogLeaf.idx) < head.tree_size)
            .order_by(col(LogLeaf.idx))
            .execution_options(yield_per=STREAM)
        )
        for index, leaf, stored_hash in rows:
            if index != log.size:
                report.problems.append(f"event {log.size} is missing from the stored log (found {index})")
                break
            if leaf_hash(leaf) != stored_hash:
                report.problems.append(f"event {index}: the stored leaf hash does not match the stored event")
            check_event(index, leaf, key, report)
            log.append(leaf)
    report.events = log.size
    check_root(log, head, report)
    if previous is not None:
        try:
            previous.verify([key])
        except WatchnetError as e:
            report.problems.append(f"earlier tree head of size {previous.payload.tree_size}: {e}")
        else:
            old = previous.payload
            if 1 <= old.tree_size <= log.size and log.size >= head.tree_size:
                proof = log.consistency_proof(old.tree_size, head.tree_size)
                check_consistency(old.tree_size, old.root_hash, head, proof, report)
            elif old.tree_size > head.tree_size:
                report.problems.append(f"the log shrank from {old.tree_size} to {head.tree_size}")
    return StoredLog(report, head_doc, previous)


def audit_stored_chain(engine: Engine, key: PublicSigningKey, node_id: str) -> AuditReport:
    """The audit chain as stored, record by record, and the newest signed head's commitment to it."""
    report = AuditReport(node_id=node_id)
    with Session(engine) as session:
        heads = _stored_heads(session, report)
        head = check_head_signature(heads[0], key, report) if heads else None
        records = session.exec(
            select(AuditRecord).order_by(col(AuditRecord.seq)).execution_options(yield_per=STREAM)
        )
        check_audit_chain(records, None if head is None else head.audit_head, report)
    return report
