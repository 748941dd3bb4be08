"""An auditor's check of a node: signatures, inclusion, consistency and the audit chain.

Two ways in, one set of checks. ``audit_node`` works from what a running node serves over HTTP
and an optional pinned key (the manifest's member entry), so a third party can verify the event
log and the audit log without the database and without seeing any biometric data: events carry
only headers and salted commitments. ``audit_stored_log`` and ``audit_stored_chain`` run the
same ``check_*`` steps on the node's own database, for the auditor's page of the staff console;
there the root is recomputed from the stored leaves themselves, and the earlier head the node
signed stands in for the head an auditor saw before. Each step adds what it verified to
``AuditReport.checks`` and what failed to ``AuditReport.problems``.

A node publishes only its latest head, so an auditor without a head saved from an earlier run
could not tell a rewritten history from the real one. Over HTTP the auditor therefore also reads
the node's manifest (checked against the organisation's pinned root key ids), the node's
cosigned checkpoint and the checkpoint each witness holds for the log (``GET
/v1/witness/checkpoint``), refuses the log if any of them is not its history, and requires the
group policy's number of witnesses (``policy.witness.required``).

A run with a state file (``AuditState``: the verified head, the compact range of its leaves, the
audit chain's last verified record) checks only what is new: the consistency proof from the saved
head, the events after it (their roots extend the saved range), their inclusion proofs in batches
(``GET /v1/log/proof/inclusions``) and the audit records after the saved one. A state that is not
the node's history is a problem of the run, and the state is rewritten only after a run that
found none. The stored checks resume the same way (``LogMark``, ``ChainMark``) for the console.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from governance.findings import Finding
from governance.manifest import Manifest
from governance.trust import verify_initial
from node.files import write_atomic
from node.records.auditlog import record_hash, verify_audit_chain
from node.records.witnessing import log_verifier, witness_verifier
from node.storage.models import AuditRecord, LogLeaf, TreeHeadRow
from protocol.canonical import b64url_decode, b64url_encode, canonical_bytes, parse_json
from protocol.checkpoint import Checkpoint, origin_of
from protocol.errors import MalformedError, ProofError, VerificationError, WatchnetError
from protocol.fields import format_time, parse_time
from protocol.keys import PublicSigningKey
from protocol.merkle import CompactRange, MerkleLog, leaf_hash, verify_consistency, verify_inclusion
from protocol.note import NoteVerifier, SignedNote
from protocol.signed import SignedDocument
from protocol.sync import parse_log_event
from protocol.treehead import TreeHead
from protocol.witness import (
    CosignedHistoryMismatch,
    TooFewCosignatures,
    check_extends,
    require_cosignatures,
    verify_cosigned,
)

__all__ = [
    "AuditReport",
    "AuditState",
    "ChainMark",
    "LogMark",
    "StoredLog",
    "audit_node",
    "audit_stored_chain",
    "audit_stored_log",
    "check_audit_chain",
    "check_consistency",
    "check_event",
    "check_head_signature",
    "check_root",
    "check_witnessed",
]

PAGE = 500
"""Records per request: the audit log grows by one record per request, so paging stops on a short page."""
STREAM = 2000
"""Rows read from the database at a time when checking the stored logs."""
WITNESS_TIMEOUT = 10.0
"""Seconds for each witness's answer: an unreachable witness is reported, not waited for."""
MAX_NOTE = 64 * 1024


@dataclass(frozen=True)
class ChainMark:
    """The last audit record verified before (its ``seq`` and ``record_hash``), and the hashes of
    earlier records a signed head was seen to commit to: where the next check of the chain resumes."""

    seq: int
    record_hash: str
    committed: frozenset[str] = frozenset()


@dataclass
class AuditReport:
    node_id: str = ""
    tree_size: int = 0
    events: int = 0
    audit_records: int = 0
    new_events: int = 0
    """Of ``events``, those read and checked in this run (all of them without a saved state)."""
    new_audit_records: int = 0
    """Of ``audit_records``, those read and checked in this run."""
    cosigned_by: dict[str, int] = field(default_factory=dict)
    """Witness -> the largest size of this log it cosigned that is consistent with the verified head."""
    cosignatures_required: int = 0
    chain_mark: ChainMark | None = None
    """Where the next check of the audit chain may resume (set by ``audit_stored_chain`` when it verified)."""
    checks: list[Finding] = field(default_factory=list)
    problems: list[Finding] = field(default_factory=list)

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
            "new_events": self.new_events,
            "new_audit_records": self.new_audit_records,
            "witnesses": {"required": self.cosignatures_required, "cosigned_by": self.cosigned_by},
            "checks": self.checks,
            "problems": self.problems,
        }

    def __str__(self) -> str:
        lines = [f"node {self.node_id}: {'VERIFIED' if self.ok else 'FAILED'}"]
        lines += [f"  ok   {c}" for c in self.checks]
        lines += [f"  FAIL {p}" for p in self.problems]
        return "\n".join(lines)


# -- the checks -------------------------------------------------------------------------------


def _event_problem(index: int, e: WatchnetError) -> Finding:
    return Finding("event_bad", "event {index}: {detail}", index=index, error=e.code, detail=str(e))


def _shrank(old_size: int, new_size: int) -> Finding:
    return Finding("log_shrank", "the log shrank from {old} to {new}", old=old_size, new=new_size)


def check_head_signature(
    head_doc: SignedDocument[TreeHead], key: PublicSigningKey, report: AuditReport
) -> TreeHead | None:
    """Step 1: the tree head is signed by the node's key; the head, or ``None`` if it is not."""
    try:
        head_doc.verify([key])
    except WatchnetError as e:
        report.problems.append(
            Finding("head_signature_bad", "tree head signature: {detail}", error=e.code, detail=str(e))
        )
        return None
    head = head_doc.payload
    report.tree_size = head.tree_size
    report.checks.append(
        Finding("head_signed", "tree head of size {size} is signed by the node", size=head.tree_size)
    )
    return head


def check_event(index: int, leaf: bytes, key: PublicSigningKey, report: AuditReport) -> None:
    """Step 2, per leaf: a log event of a known type, signed by the node, about the node, nothing added."""
    try:
        event = parse_log_event(parse_json(leaf))
    except WatchnetError as e:
        report.problems.append(_event_problem(index, e))
        return
    try:
        event.verify([key])
    except WatchnetError as e:
        report.problems.append(_event_problem(index, e))
    if event.payload.owner != report.node_id:
        report.problems.append(
            Finding(
                "event_wrong_owner",
                "event {index} claims owner {owner}",
                index=index,
                owner=event.payload.owner,
            )
        )
    if event.payload.unrecognized_fields:
        report.problems.append(
            Finding("event_unknown_fields", "event {index} carries unexpected fields", index=index)
        )


def check_root(log: MerkleLog | CompactRange, head: TreeHead, report: AuditReport) -> None:
    """Step 3: the first ``tree_size`` leaves hash to the signed root (a compact range of exactly
    that many leaves, or a log of at least as many)."""
    if log.size < head.tree_size:
        report.problems.append(
            Finding(
                "events_missing",
                "only {read} of the {size} events of the signed head were read",
                read=log.size,
                size=head.tree_size,
            )
        )
    elif (log.root(head.tree_size) if isinstance(log, MerkleLog) else log.root()) != head.root_hash:
        report.problems.append(Finding("root_mismatch", "the events do not hash to the signed root"))
    else:
        report.checks.append(
            Finding("root_matches", "{size} signed events hash to the signed root", size=head.tree_size)
        )


def check_consistency(
    old_size: int, old_root: bytes, head: TreeHead, proof: list[bytes], report: AuditReport
) -> None:
    """Step 5: an earlier head of ``old_size`` leaves is a prefix of this one (RFC 9162 consistency)."""
    if old_size > head.tree_size:
        report.problems.append(_shrank(old_size, head.tree_size))
        return
    try:
        verify_consistency(old_size, head.tree_size, old_root, head.root_hash, proof)
        report.checks.append(
            Finding("log_extends", "the log extends the head of size {size} seen before", size=old_size)
        )
    except ProofError as e:
        report.problems.append(
            Finding(
                "consistency_failed",
                "consistency with the earlier head of size {size}: {detail}",
                size=old_size,
                error=e.code,
                detail=str(e),
            )
        )


def check_audit_chain(
    records: Iterable[AuditRecord],
    audit_head: bytes | None,
    report: AuditReport,
    *,
    resume: ChainMark | None = None,
) -> str | None:
    """Step 6: the audit chain links and hashes (``verify_audit_chain``), read once, in order.

    ``audit_head`` is the chain head signed into the tree head, which must be one of the records.
    With ``resume``, ``records`` start at the record verified before, which must still be there
    unchanged, and the chain is checked from it; ``audit_head`` may then also be a hash the mark
    says was committed to before. ``report.audit_records`` counts the chain's records in all,
    ``report.new_audit_records`` those read and checked now. Returns the chain's last record
    hash, or ``None`` if the chain did not verify.
    """
    wanted = None if audit_head is None else audit_head.hex()
    found = (
        resume is not None
        and wanted is not None
        and (wanted == resume.record_hash or wanted in resume.committed)
    )
    last: str | None = None
    broken = False
    report.audit_records = 0 if resume is None else resume.seq

    def counted() -> Iterator[AuditRecord]:
        nonlocal found
        for record in records:
            report.audit_records += 1
            report.new_audit_records += 1
            found = found or record.record_hash == wanted
            yield record

    stream = counted()
    try:
        if resume is None:
            last = verify_audit_chain(stream)
        else:
            first = next(stream, None)
            if first is None or first.seq != resume.seq:
                raise ChainRewritten(
                    f"audit record {resume.seq}, verified before, is no longer served"
                    + ("" if first is None else f" (found {first.seq})")
                )
            report.new_audit_records -= 1  # verified before: read again only to resume from it
            if first.record_hash != resume.record_hash or record_hash(first) != first.record_hash:
                raise ChainRewritten(f"audit record {resume.seq} differs from the one verified before")
            last = verify_audit_chain(stream, first_seq=resume.seq + 1, previous=resume.record_hash)
        report.checks.append(
            Finding(
                "audit_chain_intact",
                "audit chain of {records} records is intact",
                records=report.audit_records,
            )
        )
        if resume is not None:
            report.checks.append(
                Finding(
                    "audit_chain_resumed",
                    "{new} audit records checked after record {seq}, verified before",
                    new=report.new_audit_records,
                    seq=resume.seq,
                )
            )
    except ChainRewritten as e:
        broken = True
        report.problems.append(
            Finding("audit_chain_rewritten", "audit chain: {detail}", error=e.code, detail=str(e))
        )
    except ProofError as e:
        broken = True
        report.problems.append(
            Finding("audit_chain_broken", "audit chain: {detail}", error=e.code, detail=str(e))
        )
    if broken:
        for _ in stream:
            pass
    if wanted is None:
        return last
    if found:
        report.checks.append(
            Finding("audit_head_signed", "the signed tree head commits to a record of the audit chain")
        )
    else:
        report.problems.append(
            Finding("audit_head_missing", "the audit head signed into the tree head is not in the audit log")
        )
    return last


class ChainRewritten(ProofError):
    """The audit record an earlier check ended at is gone or different: the chain was rewritten."""


def check_witnessed(
    notes: Iterable[tuple[str, str, tuple[bytes, ...]]],
    log_key: NoteVerifier,
    witnesses: dict[str, NoteVerifier],
    head: TreeHead,
    root_at: Callable[[int], bytes],
    report: AuditReport,
) -> None:
    """Step 7: every checkpoint note read (``source``, text, consistency proof from the head when
    the note is larger; ``root_at(size)`` the root the auditor verified at a smaller size) is this
    log's history; ``report.cosigned_by`` gains each witness whose
    cosignature verified on one of them. A note that is not the log's history is one problem
    naming every source that holds one (the history differs from what was signed or cosigned);
    a note that does not verify, or a witness's line that fails, is a problem of its own."""
    differing: list[str] = []
    first: CosignedHistoryMismatch | None = None
    for source, text, proof in notes:
        try:
            cosigned = verify_cosigned(SignedNote.from_text(text), log_key, witnesses)
            check_extends(cosigned.checkpoint, head.tree_size, head.root_hash, root_at, proof)
        except CosignedHistoryMismatch as e:
            first = first or e
            differing.append(source)
            continue
        except WatchnetError as e:
            report.problems.append(
                Finding(
                    "checkpoint_bad",
                    "{error}: the checkpoint {source} holds: {detail}",
                    source=source,
                    error=e.code,
                    detail=str(e),
                )
            )
            continue
        for witness in cosigned.cosigners:
            size = max(report.cosigned_by.get(witness, 0), cosigned.checkpoint.size)
            report.cosigned_by[witness] = size
    if first is not None:
        report.problems.append(
            Finding(
                "history_differs",
                "{error}: {node}'s log differs from the history held by {holders} ({detail})",
                node=report.node_id,
                holders=", ".join(differing),
                error=first.code,
                detail=str(first),
            )
        )


# -- over HTTP --------------------------------------------------------------------------------


async def _get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        data = await response.json()
        if response.status != 200:
            raise VerificationError(
                f"GET {url}: {response.status} {data.get('error', '')} {data.get('message', '')}"
            )
        return data


async def _get_note(
    session: aiohttp.ClientSession, url: str, params: dict[str, str] | None = None
) -> str | None:
    """A signed note served as text, or None where none is (404) or the server cannot be reached."""
    try:
        async with session.get(
            url, params=params, timeout=aiohttp.ClientTimeout(total=WITNESS_TIMEOUT)
        ) as response:
            data = await response.content.read(MAX_NOTE + 1)
            if response.status != 200 or len(data) > MAX_NOTE:
                return None
            return data.decode("utf-8", "replace")
    except (aiohttp.ClientError, TimeoutError):
        return None


def _trusted_manifest(
    data: Any, root_keyids: list[str], now: datetime, report: AuditReport
) -> Manifest | None:
    """The manifest the node serves, trusted only under the organisation's pinned root key ids."""
    try:
        document = SignedDocument.from_dict(data, Manifest)
        pinned = root_keyids or list(document.payload.manifest_role.keyids)
        manifest = verify_initial(document, pinned, now)
    except WatchnetError as e:
        report.problems.append(
            Finding("manifest_bad", "{error}: the node's manifest: {detail}", error=e.code, detail=str(e))
        )
        return None
    report.checks.append(
        Finding(
            "manifest_pinned" if root_keyids else "manifest_self_signed",
            "manifest version {version} of {group} is signed by a threshold of "
            + (
                "the pinned root keys"
                if root_keyids
                else "its own keys (pin the organisation's with --root-keyid)"
            ),
            version=manifest.version,
            group=manifest.group_id,
        )
    )
    return manifest


STATE_VERSION = 1
"""The form of the state ``--state`` keeps (docs/protocol.md, "Auditor endpoints")."""
PROOF_BATCH = 1000
"""Inclusion proofs asked for at a time: the node's ``MAX_PROOFS``."""


@dataclass(frozen=True)
class AuditState:
    """What a run verified, kept so that the next run checks only what is new.

    The head (``tree_size``, ``root_hash``) and the compact range of its leaves, so new leaves
    extend the verified root; the head's ``audit_head``; the audit chain's last verified record.
    A state of the form before compact ranges were kept (size and root only) has ``compact`` and
    ``chain`` ``None``: the next run checks the whole log again, and consistency with the head.
    """

    node_id: str
    signing_key: str
    tree_size: int
    root_hash: bytes
    compact: CompactRange | None
    audit_head: str | None
    chain: ChainMark | None
    verified_at: str = ""

    def to_bytes(self) -> bytes:
        out: dict[str, Any] = {
            "version": STATE_VERSION,
            "node_id": self.node_id,
            "signing_key": self.signing_key,
            "tree_size": self.tree_size,
            "root_hash": b64url_encode(self.root_hash),
            "compact_range": None if self.compact is None else b64url_encode(self.compact.to_bytes()),
            "audit_head": self.audit_head,
            "audit": None
            if self.chain is None
            else {
                "seq": self.chain.seq,
                "record_hash": self.chain.record_hash,
                "committed": sorted(self.chain.committed),
            },
            "verified_at": self.verified_at,
        }
        return (json.dumps(out, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> AuditState:
        """Parse a state file; ``MalformedError`` for anything that is not one (the file is never trusted
        beyond what it says: its compact range must fold to its root)."""
        try:
            obj = json.loads(data)
            if not isinstance(obj, dict):
                raise MalformedError("not a JSON object")
            size = obj["tree_size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise MalformedError(f"tree_size {size!r:.40} is not a size")
            root = b64url_decode(str(obj["root_hash"]), field="root_hash")
            if "version" not in obj:  # size and root only, as before compact ranges were kept
                return cls("", "", size, root, None, None, None)
            if obj["version"] != STATE_VERSION:
                raise MalformedError(f"version {obj['version']!r:.20}, expected {STATE_VERSION}")
            compact = None
            if obj.get("compact_range") is not None:
                compact = CompactRange.from_bytes(
                    size, b64url_decode(str(obj["compact_range"]), field="compact_range")
                )
                if compact.root() != root:
                    raise MalformedError("its compact range does not fold to its root hash")
            chain = None
            if obj.get("audit") is not None:
                mark = obj["audit"]
                seq, hashed, committed = mark["seq"], mark["record_hash"], mark.get("committed", [])
                if (
                    not isinstance(seq, int)
                    or isinstance(seq, bool)
                    or seq < 0
                    or not isinstance(hashed, str)
                ):
                    raise MalformedError("audit: expected a record's seq and record_hash")
                chain = ChainMark(seq, hashed, frozenset(str(c) for c in committed))
            audit_head = obj.get("audit_head")
            return cls(
                str(obj["node_id"]),
                str(obj["signing_key"]),
                size,
                root,
                compact,
                None if audit_head is None else str(audit_head),
                chain,
                str(obj.get("verified_at", "")),
            )
        except (ValueError, KeyError, TypeError, WatchnetError) as e:
            raise MalformedError(f"not an auditor state file: {e}") from e


def read_state(path: Path | None, report: AuditReport) -> AuditState | None:
    """The state kept at ``path`` (``None`` where there is none yet); a file that is not a state
    is a problem of the run (``state_bad``), never taken as "no state"."""
    if path is None or not path.exists():
        return None
    try:
        return AuditState.from_bytes(path.read_bytes())
    except (OSError, MalformedError) as e:
        report.problems.append(
            Finding(
                "state_bad",
                "the state file {path}: {detail}",
                path=str(path),
                error="malformed",
                detail=str(e),
            )
        )
        return None


@dataclass
class CheckedLog:
    """The log as one run verified it: from the saved head (``start`` leaves, their compact range)
    to ``head``, with the leaf hashes read this run."""

    head: TreeHead
    start: int
    start_range: CompactRange
    hashes: list[bytes]
    compact: CompactRange
    proven: dict[int, bytes] = field(default_factory=dict)
    """Roots of sizes below ``start`` that a consistency proof to the head verified."""
    _roots: dict[int, bytes] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.compact.size == self.head.tree_size

    def root_at(self, size: int) -> bytes:
        """MTH(D[0:size]) as verified: recomputed for sizes from ``start`` to the head, or proven."""
        if size == self.head.tree_size:
            return self.head.root_hash
        if self.start <= size <= self.compact.size:
            if size not in self._roots:
                at = CompactRange.from_bytes(self.start_range.size, self.start_range.to_bytes())
                at.extend(self.hashes[: size - self.start])
                self._roots[size] = at.root()
            return self._roots[size]
        return self.proven.get(size, b"")


async def audit_node(
    url: str,
    token: str,
    *,
    pinned_key: str | None = None,
    state_file: Path | None = None,
    root_keyids: list[str] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    witness_wait: float = 10.0,
) -> AuditReport:
    """Verify the node at ``url``; with ``state_file``, only what is new since the run that wrote it.

    The state is written (atomically) only when the run found no problem; a state that does not
    match what the node serves is a problem, and the file is left as it was.
    """
    report = AuditReport()
    base = url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"}
    state = read_state(state_file, report)
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=60)) as session:
        info = await _get(session, f"{base}/v1/node")
        report.node_id = info["node_id"]
        served_key = PublicSigningKey.from_str(info["signing_key"])
        if pinned_key is not None and served_key != PublicSigningKey.from_str(pinned_key):
            report.problems.append(
                Finding("key_not_pinned", "the node serves a signing key other than the pinned one")
            )
            return report
        if (
            state is not None
            and state.node_id
            and (state.node_id != report.node_id or state.signing_key != info["signing_key"])
        ):
            report.problems.append(
                Finding(
                    "state_other_log",
                    "the state file is of {saved}'s log (key {saved_key}), not of {node}'s (key {key}): "
                    "give this node's state file, or a new file to verify it from the start",
                    saved=state.node_id,
                    saved_key=PublicSigningKey.from_str(state.signing_key).keyid
                    if _is_key(state.signing_key)
                    else "?",
                    node=report.node_id,
                    key=served_key.keyid,
                )
            )
            state = None
        manifest = _trusted_manifest(
            await _get(session, f"{base}/v1/manifest"), root_keyids or [], now(), report
        )
        if manifest is None:
            return report
        member = manifest.member(report.node_id)
        listed = member is not None and member.signing_key == served_key
        if listed:
            report.checks.append(
                Finding("key_in_manifest_pinned", "node key is the manifest's and the pinned key")
                if pinned_key
                else Finding("key_in_manifest", "node key is the manifest's (pin it with --signing-key)")
            )
        else:  # a node outside its group (e.g. a test node) can be audited, not witnessed
            report.checks.append(
                Finding(
                    "key_not_in_manifest",
                    "node key taken from the node: it is not the key manifest version {version} "
                    "lists for {node}, so no witness can vouch for its log",
                    version=manifest.version,
                    node=report.node_id,
                )
            )
            if manifest.policy.witness.required:
                report.problems.append(
                    Finding(
                        "cosignatures_impossible",
                        "cosignatures_missing: {node} does not sign with the key manifest version "
                        "{version} lists for it, so none of the {required} required witness cosignatures can count",
                        node=report.node_id,
                        version=manifest.version,
                        required=manifest.policy.witness.required,
                    )
                )
        async with session.get(f"{base}/v1/log/head") as response:
            head_data = await response.json()
            empty = response.status == 404 and head_data.get("error") == "empty_log"
            if response.status != 200 and not empty:
                raise VerificationError(
                    f"GET {base}/v1/log/head: {response.status} {head_data.get('error', '')}"
                )
        head: TreeHead | None = None
        checked: CheckedLog | None = None
        if empty:
            report.checks.append(Finding("log_empty", "the event log is empty"))
            if state is not None and state.tree_size > 0:
                report.problems.append(_shrank(state.tree_size, 0))
        else:
            checked = await _check_log(
                session, base, served_key, SignedDocument.from_dict(head_data, TreeHead), report, state
            )
            if checked is not None:
                head = checked.head
                if listed and checked.complete:  # else nothing to compare with
                    await _check_witnesses(session, base, manifest, head, checked, report, witness_wait)
        resume = None if state is None else state.chain
        if resume is not None and state is not None and state.audit_head:
            resume = ChainMark(resume.seq, resume.record_hash, resume.committed | {state.audit_head})
        first = 0 if resume is None else resume.seq

        async def pages() -> list[AuditRecord]:
            records: list[AuditRecord] = []
            while True:
                page = await _get(session, f"{base}/v1/audit?after={first + len(records)}&limit={PAGE}")
                records.extend(AuditRecord(**{**r, "at": parse_time(r["at"])}) for r in page["records"])
                if len(page["records"]) < PAGE:
                    return records

        records = await pages()
        last = check_audit_chain(records, None if head is None else head.audit_head, report, resume=resume)
        committed = await _committed_since(session, base, records, resume) if state_file else frozenset()
    if state_file is not None and report.ok and checked is not None and last is not None and records:
        new_state = AuditState(
            node_id=report.node_id,
            signing_key=served_key.to_str(),
            tree_size=checked.head.tree_size,
            root_hash=checked.head.root_hash,
            compact=checked.compact,
            audit_head=None if checked.head.audit_head is None else checked.head.audit_head.hex(),
            chain=ChainMark(records[-1].seq, last, committed),
            verified_at=format_time(now()),
        )
        write_atomic(state_file, new_state.to_bytes())
    return report


async def _committed_since(
    session: aiohttp.ClientSession, base: str, records: list[AuditRecord], resume: ChainMark | None
) -> frozenset[str]:
    """The audit head of the head published now, if it is one of the records just verified.

    A head signed while this run read the audit log commits to a record before the last one read;
    the next run, resuming after the last one, must still accept it. Every head signed after this
    moment commits to the last record read or a later one.
    """
    with contextlib.suppress(WatchnetError, aiohttp.ClientError, KeyError, TypeError, ValueError):
        async with session.get(f"{base}/v1/log/head") as response:
            if response.status == 200:
                now_head = SignedDocument.from_dict(await response.json(), TreeHead).payload
                hashed = None if now_head.audit_head is None else now_head.audit_head.hex()
                seen = {r.record_hash for r in records} | (set() if resume is None else resume.committed)
                if hashed is not None and hashed in seen:
                    return frozenset({hashed})
    return frozenset()


def _is_key(text: str) -> bool:
    try:
        PublicSigningKey.from_str(text)
    except WatchnetError:
        return False
    return True


async def _check_witnesses(
    session: aiohttp.ClientSession,
    base: str,
    manifest: Manifest,
    head: TreeHead,
    log: CheckedLog,
    report: AuditReport,
    wait: float,
) -> None:
    """Step 7 over HTTP: the node's cosigned checkpoint and each witness's, until the policy's
    number of witnesses have cosigned or ``wait`` seconds have passed (a fresh event is cosigned
    within seconds). The witnesses are asked without the auditor's token, which is the node's.
    A checkpoint of a size the run did not read the leaves of (below the saved head) is checked
    with a consistency proof from it to the head."""
    node_id = report.node_id
    log_key = log_verifier(manifest, node_id)
    assert log_key is not None  # the node is a member: checked before
    witnesses = {
        w: v
        for w in manifest.witnesses_of(node_id)
        if (v := witness_verifier(manifest, w)) is not None and manifest.witness_endpoint(w) is not None
    }
    report.cosignatures_required = manifest.policy.witness.required
    origin = origin_of(manifest.group_id, node_id)
    deadline = time.monotonic() + wait
    async with aiohttp.ClientSession() as anonymous:
        while True:
            texts = await asyncio.gather(
                _get_note(session, f"{base}/v1/log/checkpoint"),
                *(
                    _get_note(
                        anonymous,
                        f"{str(manifest.witness_endpoint(w)).rstrip('/')}/v1/witness/checkpoint",
                        {"origin": origin},
                    )
                    for w in witnesses
                ),
            )
            sources = ["the node's own checkpoint", *(f"witness {w}" for w in witnesses)]
            notes = []
            for source, text in zip(sources, texts, strict=True):
                if text is None:
                    continue
                proof: tuple[bytes, ...] = ()
                size = _note_size(text)
                if size is not None and size > head.tree_size:  # grown since, or rolled back
                    with contextlib.suppress(WatchnetError):  # no proof: the check below refuses it
                        answer = await _get(
                            session, f"{base}/v1/log/proof/consistency?old={head.tree_size}&new={size}"
                        )
                        proof = tuple(b64url_decode(p) for p in answer["proof"])
                elif size is not None and 0 < size < log.start and size not in log.proven:
                    await _prove_older(session, base, head, text, size, log)
                notes.append((source, text, proof))
            problems, report.cosigned_by = len(report.problems), {}
            check_witnessed(notes, log_key, witnesses, head, log.root_at, report)
            enough = len(report.cosigned_by) >= report.cosignatures_required
            if len(report.problems) > problems or enough or time.monotonic() >= deadline:
                break
            await asyncio.sleep(1.0)
    unreachable = [w for w, text in zip(witnesses, texts[1:], strict=True) if text is None]
    if unreachable:
        report.checks.append(
            Finding(
                "witness_unreachable",
                "no checkpoint of this log from witness {witnesses}",
                witnesses=", ".join(unreachable),
            )
        )
    if len(report.problems) > problems:  # a differing history: that is the reason, not the count
        return
    try:
        require_cosignatures(report.cosigned_by, report.cosignatures_required, len(witnesses))
    except TooFewCosignatures as e:
        report.problems.append(
            Finding("too_few_cosignatures", "{error}: {detail}", error=e.code, detail=str(e))
        )
        return
    named = ", ".join(f"{w} (size {n})" for w, n in sorted(report.cosigned_by.items())) or "no witness"
    report.checks.append(
        Finding(
            "cosigned",
            "the log is the history cosigned by {named}: {count} of the {required} required",
            named=named,
            witnesses=", ".join(sorted(report.cosigned_by)),
            count=len(report.cosigned_by),
            required=report.cosignatures_required,
        )
    )


async def _prove_older(
    session: aiohttp.ClientSession, base: str, head: TreeHead, text: str, size: int, log: CheckedLog
) -> None:
    """A checkpoint below the leaves read this run: its root counts as verified at its size if the
    node's consistency proof from it to the head verifies (else ``check_witnessed`` refuses it)."""
    with contextlib.suppress(WatchnetError):
        root = Checkpoint.from_text(SignedNote.from_text(text).text).root_hash
        answer = await _get(session, f"{base}/v1/log/proof/consistency?old={size}&new={head.tree_size}")
        verify_consistency(
            size, head.tree_size, root, head.root_hash, [b64url_decode(p) for p in answer["proof"]]
        )
        log.proven[size] = root


def _note_size(text: str) -> int | None:
    lines = text.split("\n", 2)
    return int(lines[1]) if len(lines) > 2 and lines[1].isdigit() and len(lines[1]) < 21 else None


async def _check_log(
    session: aiohttp.ClientSession,
    base: str,
    served_key: PublicSigningKey,
    head_doc: SignedDocument[TreeHead],
    report: AuditReport,
    state: AuditState | None,
) -> CheckedLog | None:
    """Steps 1-5 over HTTP: from the saved head (if any) to the published one, only the events after it."""
    head = check_head_signature(head_doc, served_key, report)
    if head is None:
        return None
    start, start_range = 0, CompactRange()
    if state is not None and state.tree_size > 0:
        if state.tree_size > head.tree_size:
            report.problems.append(_shrank(state.tree_size, head.tree_size))
            return None
        proof = await _get(
            session, f"{base}/v1/log/proof/consistency?old={state.tree_size}&new={head.tree_size}"
        )
        problems = len(report.problems)
        check_consistency(
            state.tree_size, state.root_hash, head, [b64url_decode(p) for p in proof["proof"]], report
        )
        if len(report.problems) > problems:  # another history: its events prove nothing new
            return None
        if state.compact is not None:
            start, start_range = state.tree_size, state.compact
    compact = CompactRange.from_bytes(start_range.size, start_range.to_bytes())
    hashes: list[bytes] = []
    after = start
    while after < head.tree_size:
        page = await _get(session, f"{base}/v1/log?after={after}&limit={PAGE}")
        if not page["events"]:
            break
        for item in page["events"]:
            index = start + len(hashes)
            if item["index"] != index:
                raise ProofError(f"event index {item['index']} out of order (expected {index})")
            if index >= head.tree_size:
                break
            leaf = canonical_bytes(item["event"])
            check_event(index, leaf, served_key, report)
            hashed = leaf_hash(leaf)
            hashes.append(hashed)
            compact.append(hashed)
        after = start + len(hashes)
    report.events, report.new_events = compact.size, len(hashes)
    check_root(compact, head, report)
    if start:
        report.checks.append(
            Finding(
                "log_resumed",
                "{new} new events checked after the {size} verified before",
                new=len(hashes),
                size=start,
            )
        )
    failed = 0
    for low in range(start, compact.size, PROOF_BATCH):
        high = min(low + PROOF_BATCH, compact.size)
        answer = await _get(
            session, f"{base}/v1/log/proof/inclusions?start={low}&end={high}&size={head.tree_size}"
        )
        proofs = answer["proofs"]
        if not isinstance(proofs, list) or len(proofs) != high - low:
            raise ProofError(f"the node served {len(proofs)} inclusion proofs for the {high - low} asked for")
        for index, proof in enumerate(proofs, start=low):
            try:
                verify_inclusion(
                    hashes[index - start],
                    index,
                    head.tree_size,
                    [b64url_decode(p) for p in proof],
                    head.root_hash,
                )
            except ProofError as e:
                failed += 1
                report.problems.append(
                    Finding(
                        "inclusion_failed",
                        "inclusion proof for event {index}: {detail}",
                        index=index,
                        error=e.code,
                        detail=str(e),
                    )
                )
    if not failed and start:
        report.checks.append(
            Finding(
                "inclusion_verified_new",
                "inclusion proofs served for the {count} new events verify",
                count=len(hashes),
            )
        )
    elif not failed:
        report.checks.append(
            Finding(
                "inclusion_verified",
                "inclusion proofs served for all {size} events verify",
                size=head.tree_size,
            )
        )
    return CheckedLog(head, start, start_range, hashes, compact)


# -- on the node's own database ---------------------------------------------------------------


@dataclass(frozen=True)
class LogMark:
    """How far a check of the stored event log got: the compact range of the leaves it verified
    and the roots of the signed heads it verified against them (size -> root)."""

    compact: CompactRange
    roots: tuple[tuple[int, bytes], ...]

    @property
    def size(self) -> int:
        return self.compact.size


@dataclass(frozen=True)
class StoredLog:
    """The outcome of ``audit_stored_log``: the report, the newest two signed heads it checked, and
    where the next check may resume (``None`` unless the log verified)."""

    report: AuditReport
    head: SignedDocument[TreeHead] | None
    previous: SignedDocument[TreeHead] | None
    mark: LogMark | None = None


def _stored_heads(session: Session, report: AuditReport) -> list[SignedDocument[TreeHead]]:
    """The newest two heads the node signed and kept, newest first (a head that does not parse is a problem)."""
    rows = session.exec(select(TreeHeadRow).order_by(col(TreeHeadRow.tree_size).desc()).limit(2)).all()
    heads = []
    for row in rows:
        try:
            heads.append(SignedDocument.from_dict(parse_json(row.signed), TreeHead))
        except WatchnetError as e:
            report.problems.append(
                Finding(
                    "stored_head_bad",
                    "stored tree head of size {size}: {detail}",
                    size=row.tree_size,
                    error=e.code,
                    detail=str(e),
                )
            )
    return heads


def audit_stored_log(
    engine: Engine, key: PublicSigningKey, node_id: str, *, resume: LogMark | None = None
) -> StoredLog:
    """The event log as stored: the newest head's signature, every leaf, the root, the earlier head.

    Each leaf's bytes are hashed again (a stored ``leaf_hash`` that does not match them is a
    problem of its own), so an edited event is caught even if its hash column was left alone.
    With ``resume`` (a ``StoredLog.mark`` of an earlier check), only the leaves after the ones it
    verified are read: their hashes extend its compact range to the head's root, and the earlier
    head is checked against the roots verified before or recomputed now. The signed heads are
    checked at every call; a head smaller than the verified leaves is the log shrinking.
    """
    report = AuditReport(node_id=node_id)
    with Session(engine) as session:
        heads = _stored_heads(session, report)
        if not heads:
            if report.ok:
                report.checks.append(Finding("log_empty", "the event log is empty"))
            if resume is not None and resume.size:
                report.problems.append(_shrank(resume.size, 0))
            return StoredLog(report, None, None)
        head_doc, previous = heads[0], heads[1] if len(heads) > 1 else None
        head = check_head_signature(head_doc, key, report)
        if head is None:
            return StoredLog(report, head_doc, previous)
        if resume is not None and resume.size > head.tree_size:
            report.problems.append(_shrank(resume.size, head.tree_size))
            return StoredLog(report, head_doc, previous)
        start = 0 if resume is None else resume.size
        compact = (
            CompactRange() if resume is None else CompactRange.from_bytes(start, resume.compact.to_bytes())
        )
        known = {} if resume is None else dict(resume.roots)
        hashes: list[bytes] = []
        rows = session.exec(
            select(LogLeaf.idx, LogLeaf.leaf, LogLeaf.leaf_hash)
            .where(col(LogLeaf.idx) >= start, col(LogLeaf.idx) < head.tree_size)
            .order_by(col(LogLeaf.idx))
            .execution_options(yield_per=STREAM)
        )
        for index, leaf, stored_hash in rows:
            if index != compact.size:
                report.problems.append(
                    Finding(
                        "stored_event_missing",
                        "event {index} is missing from the stored log (found {found})",
                        index=compact.size,
                        found=index,
                    )
                )
                break
            hashed = leaf_hash(leaf)
            if hashed != stored_hash:
                report.problems.append(
                    Finding(
                        "stored_leaf_mismatch",
                        "event {index}: the stored leaf hash does not match the stored event",
                        index=index,
                    )
                )
            check_event(index, leaf, key, report)
            compact.append(hashed)
            hashes.append(hashed)
    report.events, report.new_events = compact.size, len(hashes)
    check_root(compact, head, report)
    if resume is not None:
        report.checks.append(
            Finding(
                "log_resumed",
                "{new} new events checked after the {size} verified before",
                new=len(hashes),
                size=start,
            )
        )
    if previous is not None:
        try:
            previous.verify([key])
        except WatchnetError as e:
            report.problems.append(
                Finding(
                    "earlier_head_bad",
                    "earlier tree head of size {size}: {detail}",
                    size=previous.payload.tree_size,
                    error=e.code,
                    detail=str(e),
                )
            )
        else:
            old = previous.payload
            if old.tree_size > head.tree_size:
                report.problems.append(_shrank(old.tree_size, head.tree_size))
            elif 1 <= old.tree_size and compact.size >= head.tree_size:
                _check_earlier_head(old, head, start, resume, known, hashes, report)
    mark = None
    if report.ok and compact.size == head.tree_size:
        roots = {**known, head.tree_size: head.root_hash}
        if previous is not None:
            roots[previous.payload.tree_size] = previous.payload.root_hash
        newest = sorted(roots)[-2:]  # the two newest heads: what the next check's earlier head is
        mark = LogMark(compact, tuple((size, roots[size]) for size in newest))
    return StoredLog(report, head_doc, previous, mark)


def _check_earlier_head(
    old: TreeHead,
    head: TreeHead,
    start: int,
    resume: LogMark | None,
    known: dict[int, bytes],
    hashes: list[bytes],
    report: AuditReport,
) -> None:
    """The earlier signed head is a prefix of the newest: its root is the root of the verified
    leaves at its size (recomputed from the leaves read now, or verified at an earlier check)."""
    if resume is None or old.tree_size >= start:
        at = CompactRange() if resume is None else CompactRange.from_bytes(start, resume.compact.to_bytes())
        at.extend(hashes[: old.tree_size - start])
        root = at.root()
    elif old.tree_size in known:
        root = known[old.tree_size]
    else:  # neither read now nor verified before: a check from the start is needed
        report.problems.append(
            Finding(
                "earlier_head_unverified",
                "the earlier tree head of size {size} is older than the leaves checked before; verify everything again",
                size=old.tree_size,
            )
        )
        return
    if root == old.root_hash:
        report.checks.append(
            Finding("log_extends", "the log extends the head of size {size} seen before", size=old.tree_size)
        )
    else:
        report.problems.append(
            Finding(
                "consistency_failed",
                "consistency with the earlier head of size {size}: {detail}",
                size=old.tree_size,
                error="bad_proof",
                detail=f"the stored leaves do not hash to its root at size {old.tree_size}",
            )
        )


def audit_stored_chain(
    engine: Engine, key: PublicSigningKey, node_id: str, *, resume: ChainMark | None = None
) -> AuditReport:
    """The audit chain as stored, record by record, and the newest signed head's commitment to it.

    With ``resume`` (``stored_chain_mark`` of an earlier check's report), only the records from
    the one it ended at are read, and the head may commit to that record or one it accepted.
    """
    report = AuditReport(node_id=node_id)
    with Session(engine) as session:
        heads = _stored_heads(session, report)
        head = check_head_signature(heads[0], key, report) if heads else None
        query = select(AuditRecord).order_by(col(AuditRecord.seq))
        if resume is not None:
            query = query.where(col(AuditRecord.seq) >= resume.seq)
        records = session.exec(query.execution_options(yield_per=STREAM))
        last = check_audit_chain(records, None if head is None else head.audit_head, report, resume=resume)
    if report.ok and last is not None and report.audit_records:
        committed = {head.audit_head.hex()} if head is not None and head.audit_head is not None else set()
        report.chain_mark = ChainMark(report.audit_records - 1, last, frozenset(committed))
    return report
