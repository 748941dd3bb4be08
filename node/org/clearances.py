"""The organisation's side of fork clearance: evidence, drafts, the decision record, publication.

``watchnet gov fork-clear draft`` reads the fork reports ``gov serve`` kept about a member, fetches
the member's published head (``GET /v1/log/head``) and, for each head a reporting follower
verified, the member's consistency proof from it (``GET /v1/log/proof/consistency``, with the
auditor token the member gives the organisation), checks them with the pure
``governance.forkclear.check_evidence`` and writes an unsigned ``fork-clearance``. Key holders add
their signatures (``fork-clear sign``) as they do for the manifest; ``fork-clear publish`` puts a
fully signed, current clearance where ``gov serve`` answers ``GET /v1/fork-clearances/<member>``.

Every step, refusals included, is one line of ``decisions.jsonl`` beside the reports: a hash chain
(each record names the SHA-256 of the canonical form of the one before), so the organisation's
auditor can show which evidence each decision rested on and that no decision was removed.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from governance.forkclear import ForkClearance, check_evidence, clearance_digest, verify_clearance
from governance.manifest import Manifest
from node.files import write_atomic
from protocol.canonical import b64url_decode, canonical_bytes, parse_json, sha256_hex
from protocol.errors import ConfigurationError, MalformedError, WatchnetError
from protocol.fields import NODE_ID_RE, format_time
from protocol.signed import SignedDocument
from protocol.treehead import TreeHead

__all__ = [
    "DECISIONS_FILE",
    "Evidence",
    "clearance_path",
    "draft_clearance",
    "gather_evidence",
    "load_clearance",
    "publish_clearance",
    "read_decisions",
    "record_decision",
]

DECISIONS_FILE = "decisions.jsonl"
GENESIS = "0" * 64
MAX_ANSWER_BYTES = 1 << 20


@dataclass(frozen=True)
class Evidence:
    """What a draft rests on: the reports, the member's published head and the proofs."""

    reports: dict[str, TreeHead]
    """Report id (the ``received`` digest) -> the head that reporter verified."""
    head: SignedDocument[TreeHead]
    proofs: dict[int, list[bytes]]


def clearance_path(reports: Path, member: str) -> Path:
    if not NODE_ID_RE.fullmatch(member):
        raise MalformedError(f"{member!r:.70} is not a node id")
    return reports / f"clearance-{member}.json"


def fork_reports(reports: Path, member: str, wanted: list[str] | None = None) -> dict[str, TreeHead]:
    """The kept fork reports about ``member`` (``fork-<member>-<id>.json``), by id: every one, or ``wanted``."""
    found: dict[str, TreeHead] = {}
    for path in sorted(reports.glob(f"fork-{member}-*.json")):
        digest = path.stem.rsplit("-", 1)[1]
        if wanted and digest not in wanted:
            continue
        report = json.loads(path.read_text(encoding="utf-8"))
        found[digest] = SignedDocument.from_dict(report["verified_head"], TreeHead).payload
    missing = sorted(set(wanted or ()) - set(found))
    if missing:
        raise ConfigurationError(f"no fork report {missing[0]} about {member} in {reports}")
    if not found:
        raise ConfigurationError(f"no fork report about {member} in {reports}: nothing to clear")
    return found


def _get(url: str, token: str | None) -> Any:
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"{url[:80]}: not an http(s) address")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (checked above)
            return parse_json(response.read(MAX_ANSWER_BYTES + 1), max_bytes=MAX_ANSWER_BYTES)
    except urllib.error.HTTPError as e:
        raise ConfigurationError(f"{url}: HTTP {e.code} {e.read(200).decode('utf-8', 'replace')}") from e
    except (urllib.error.URLError, TimeoutError) as e:
        raise ConfigurationError(f"{url}: unreachable ({e})") from e


def gather_evidence(
    reports: Path, member: str, *, endpoint: str, token: str | None, wanted: list[str] | None = None
) -> Evidence:
    """The reports, the member's head and a consistency proof from every reported size below it."""
    kept = fork_reports(reports, member, wanted)
    base = endpoint.rstrip("/")
    head = SignedDocument.from_dict(_get(f"{base}/v1/log/head", None), TreeHead)
    proofs: dict[int, list[bytes]] = {}
    for size in sorted({h.tree_size for h in kept.values()}):
        if 0 < size < head.payload.tree_size:
            query = urllib.parse.urlencode({"old": size, "new": head.payload.tree_size})
            answer = _get(f"{base}/v1/log/proof/consistency?{query}", token)
            if not isinstance(answer, dict) or not isinstance(answer.get("proof"), list):
                raise MalformedError(f"{base}/v1/log/proof/consistency: expected {{'proof': [...]}}")
            proofs[size] = [b64url_decode(p, field="proof") for p in answer["proof"]]
    return Evidence(kept, head, proofs)


def draft_clearance(
    manifest: Manifest, member: str, evidence: Evidence, *, now: datetime, valid_for: timedelta
) -> SignedDocument[ForkClearance]:
    """Check ``evidence`` (``governance.forkclear.check_evidence``) and write nothing: the unsigned draft."""
    entry = manifest.member(member)
    if entry is None:
        raise ConfigurationError(f"{member} is not a member of manifest version {manifest.version}")
    steps = check_evidence(
        member=entry,
        current=evidence.head,
        verified_heads=list(evidence.reports.values()),
        proofs=evidence.proofs,
    )
    head = evidence.head.payload
    return SignedDocument(
        ForkClearance(
            member=member,
            tree_size=head.tree_size,
            root_hash=head.root_hash,
            reports=tuple(sorted(evidence.reports)),
            consistency=steps,
            decided_at=now,
            expires=now + valid_for,
            manifest_version=manifest.version,
        )
    )


def load_clearance(path: Path) -> SignedDocument[ForkClearance]:
    try:
        return SignedDocument.from_bytes(path.read_bytes(), ForkClearance)
    except FileNotFoundError as e:
        raise ConfigurationError(f"clearance file {path} not found") from e


def publish_clearance(
    reports: Path, document: SignedDocument[ForkClearance], manifest: Manifest, *, now: datetime
) -> Path:
    """Verify as a follower will (threshold, expiry) and put it where ``gov serve`` answers it."""
    verify_clearance(document, manifest, member=document.payload.member, now=now)
    path = clearance_path(reports, document.payload.member)
    reports.mkdir(parents=True, exist_ok=True)
    write_atomic(path, document.to_bytes())
    return path


def read_decisions(reports: Path) -> list[dict[str, Any]]:
    """The decision records, oldest first; raise ``MalformedError`` if the chain is broken."""
    path = reports / DECISIONS_FILE
    if not path.exists():
        return []
    records = []
    previous = GENESIS
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        record = json.loads(line)
        claimed = record.pop("record_hash", None)
        if record.get("prev_hash") != previous or sha256_hex(canonical_bytes(record)) != claimed:
            raise MalformedError(f"{path}: record {number} does not continue the chain")
        record["record_hash"] = previous = claimed
        records.append(record)
    return records


def record_decision(
    reports: Path,
    *,
    action: str,
    member: str,
    outcome: str,
    now: datetime,
    clearance: ForkClearance | None = None,
    detail: str = "",
    actor: str = "",
) -> dict[str, Any]:
    """Append one record to the organisation's hash-chained decision log."""
    records = read_decisions(reports)
    record: dict[str, Any] = {
        "seq": len(records),
        "at": format_time(now),
        "action": action,
        "member": member,
        "outcome": outcome,
        "actor": actor,
        "detail": detail[:500],
        "prev_hash": records[-1]["record_hash"] if records else GENESIS,
    }
    if clearance is not None:
        record["clearance"] = clearance_digest(clearance)
        record["reports"] = list(clearance.reports)
        record["tree_size"] = clearance.tree_size
        record["root_hash"] = clearance.to_dict()["root_hash"]
    record["record_hash"] = sha256_hex(canonical_bytes(record))
    reports.mkdir(parents=True, exist_ok=True)
    with (reports / DECISIONS_FILE).open("a", encoding="utf-8") as out:
        out.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
    return record


def refusal_text(e: WatchnetError) -> str:
    return f"{e.code}: {e}"
