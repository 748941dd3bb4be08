"""Fork clearance: the organisation's signed decision that a flagged member's log is whole again.

A follower that sees a member sign two roots for one tree size flags it and stops following it for
good (``node/federation/sync.py``): nothing the member says can undo that, because the member is
the party whose word failed. After the member restores honestly (its log again extends the history
its followers verified), the organisation checks the evidence and its key holders sign a
``fork-clearance``: the member, the signed head that is now its true history (``tree_size`` and
``root_hash``), the fork reports it clears, the decision time, an expiry, and for each head the
reporting followers verified, the member's RFC 9162 consistency proof from that head to the
cleared one. A follower accepts it only when

1. it is signed by a threshold of the manifest's organisation keys (the manifest role, as the
   manifest itself) (``ThresholdError``);
2. it names the member the follower flagged (``ClearanceMismatch``);
3. it is not expired and was not decided in the future (``ExpiredError``, ``ClockSkewError``);
4. the cleared head extends the follower's own last verified head of that member: a consistency
   proof in the clearance from exactly that head verifies, or, when the follower holds at least
   the cleared size, its own leaves give the cleared root (``ClearanceInconsistent``).

Only then does the follower resume; every page after that is verified against the leaves it
already holds, as before the fork. The format is pure: the follower's store and the
organisation's files stay in ``node/``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Self

from governance.manifest import Manifest, Member
from protocol.canonical import b64url_decode, b64url_encode, sha256_hex
from protocol.errors import (
    ClockSkewError,
    ExpiredError,
    MalformedError,
    PolicyError,
    ProofError,
)
from protocol.fields import MAX_SAFE_INT, NODE_ID_RE, Fields, check_wire_time, format_time
from protocol.merkle import EMPTY_ROOT, HASH_BYTES, verify_consistency
from protocol.signed import SPEC_VERSION, Payload, SignedDocument, VerificationResult
from protocol.treehead import TreeHead

__all__ = [
    "MAX_CLEARED_REPORTS",
    "ClearanceInconsistent",
    "ClearanceMismatch",
    "ConsistencyStep",
    "ForkClearance",
    "check_covers",
    "check_evidence",
    "clearance_digest",
    "verify_clearance",
]

MAX_CLEARED_REPORTS = 100
"""As many as the organisation keeps about one member (``MAX_FORK_REPORTS_PER_PEER``)."""
MAX_PROOF_HASHES = 64
"""A consistency proof within a tree of 2^53 leaves has at most about 2 * 53 hashes; 64 covers 2^32."""
DECISION_SKEW = timedelta(minutes=5)
"""How far in the future ``decided_at`` may be on the follower's clock."""
REPORT_DIGEST_LEN = 32


class ClearanceMismatch(PolicyError):
    """A clearance of another member than the one it was fetched for."""

    code = "fork_clearance_mismatch"


class ClearanceInconsistent(ProofError):
    """The cleared head does not extend the head this follower verified: the member still
    rewrites what the follower holds (or the clearance carries no proof from its head)."""

    code = "fork_clearance_inconsistent"


@dataclass(frozen=True)
class ConsistencyStep:
    """The member's proof that its head of ``tree_size`` / ``root_hash`` is a prefix of the cleared head."""

    tree_size: int
    root_hash: bytes
    proof: tuple[bytes, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "tree_size": self.tree_size,
            "root_hash": b64url_encode(self.root_hash),
            "proof": [b64url_encode(p) for p in self.proof],
        }

    @classmethod
    def from_dict(cls, data: Any) -> ConsistencyStep:
        f = Fields(data, "fork-clearance.consistency[]")
        tree_size = f.integer("tree_size", low=1, high=MAX_SAFE_INT)
        root_hash = f.binary("root_hash", length=HASH_BYTES)
        proof = []
        for item in f.array("proof", max_items=MAX_PROOF_HASHES):
            if not isinstance(item, str):
                raise MalformedError("fork-clearance.consistency[].proof: expected base64url strings")
            digest = b64url_decode(item, field="fork-clearance.consistency[].proof")
            if len(digest) != HASH_BYTES:
                raise MalformedError(
                    f"fork-clearance.consistency[].proof: expected {HASH_BYTES}-byte hashes, got {len(digest)}"
                )
            proof.append(digest)
        f.finish()
        return cls(tree_size, root_hash, tuple(proof))


@dataclass(kw_only=True)
class ForkClearance(Payload):
    """The organisation clears the fork flag on ``member`` for the history ending at ``tree_size``."""

    TYPE = "fork-clearance"

    member: str
    tree_size: int
    root_hash: bytes
    reports: tuple[str, ...]
    consistency: tuple[ConsistencyStep, ...]
    decided_at: datetime
    expires: datetime
    manifest_version: int
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not NODE_ID_RE.fullmatch(self.member):
            raise MalformedError(f"fork-clearance.member: {self.member!r:.60} is not a node id")
        if not 1 <= self.tree_size <= MAX_SAFE_INT:
            raise MalformedError(f"fork-clearance.tree_size: {self.tree_size} outside [1, {MAX_SAFE_INT}]")
        if len(self.root_hash) != HASH_BYTES or self.root_hash == EMPTY_ROOT:
            raise MalformedError(
                f"fork-clearance.root_hash: expected a {HASH_BYTES}-byte root of a non-empty tree"
            )
        if not 1 <= len(self.reports) <= MAX_CLEARED_REPORTS:
            raise MalformedError(
                f"fork-clearance.reports: {len(self.reports)} reports, expected 1..{MAX_CLEARED_REPORTS}"
            )
        for digest in self.reports:
            if len(digest) != REPORT_DIGEST_LEN or any(c not in "0123456789abcdef" for c in digest):
                raise MalformedError(
                    f"fork-clearance.reports: {digest!r:.40} is not a {REPORT_DIGEST_LEN}-digit report id"
                )
        if len(set(self.reports)) != len(self.reports):
            raise MalformedError("fork-clearance.reports: a report named twice")
        if len(self.consistency) > MAX_CLEARED_REPORTS:
            raise MalformedError(
                f"fork-clearance.consistency: {len(self.consistency)} proofs, at most {MAX_CLEARED_REPORTS}"
            )
        for step in self.consistency:
            if step.tree_size > self.tree_size:
                raise MalformedError(
                    f"fork-clearance.consistency: a proof from size {step.tree_size}, past the cleared "
                    f"size {self.tree_size}"
                )
        check_wire_time(self.decided_at, "fork-clearance.decided_at")
        check_wire_time(self.expires, "fork-clearance.expires")
        if self.expires <= self.decided_at:
            raise MalformedError(
                f"fork-clearance.expires: {format_time(self.expires)} is not after decided_at "
                f"{format_time(self.decided_at)}"
            )
        if not 1 <= self.manifest_version <= MAX_SAFE_INT:
            raise MalformedError(f"fork-clearance.manifest_version: {self.manifest_version} is not a version")

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "member": self.member,
                "tree_size": self.tree_size,
                "root_hash": b64url_encode(self.root_hash),
                "reports": list(self.reports),
                "consistency": [step.to_dict() for step in self.consistency],
                "decided_at": format_time(self.decided_at),
                "expires": format_time(self.expires),
                "manifest_version": self.manifest_version,
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        reports = []
        for item in f.array("reports", max_items=MAX_CLEARED_REPORTS):
            if not isinstance(item, str):
                raise MalformedError("fork-clearance.reports: expected report ids (strings)")
            reports.append(item)
        return cls(
            member=f.text("member", max_len=63, pattern=NODE_ID_RE),
            tree_size=f.integer("tree_size", low=1, high=MAX_SAFE_INT),
            root_hash=f.binary("root_hash", length=HASH_BYTES),
            reports=tuple(reports),
            consistency=tuple(
                ConsistencyStep.from_dict(item)
                for item in f.array("consistency", max_items=MAX_CLEARED_REPORTS)
            ),
            decided_at=f.time("decided_at"),
            expires=f.time("expires"),
            manifest_version=f.integer("manifest_version", low=1),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )


def clearance_digest(clearance: ForkClearance) -> str:
    """Names a clearance in audit records and file names: hex SHA-256 of its canonical payload, 16 digits."""
    return sha256_hex(clearance.canonical())[:16]


def verify_clearance(
    document: SignedDocument[ForkClearance], manifest: Manifest, *, member: str, now: datetime
) -> VerificationResult:
    """Steps 1-3 of the module docstring: raise, typed, unless ``document`` is an authentic,
    current clearance of ``member`` under ``manifest``'s organisation keys."""
    clearance = document.payload
    result = document.verify(manifest.role_keys(), manifest.manifest_role.threshold)
    if clearance.member != member:
        raise ClearanceMismatch(f"fork-clearance.member: got {clearance.member!r}, expected {member!r}")
    if now >= clearance.expires:
        raise ExpiredError(
            f"fork-clearance of {member} expired at {format_time(clearance.expires)}, now {format_time(now)}"
        )
    if clearance.decided_at > now + DECISION_SKEW:
        raise ClockSkewError(
            f"fork-clearance of {member} decided at {format_time(clearance.decided_at)}, in the future "
            f"(now {format_time(now)}, allowed {int(DECISION_SKEW.total_seconds())} s)"
        )
    return result


def check_covers(
    clearance: ForkClearance,
    *,
    held_size: int,
    held_root: bytes | None,
    held_prefix_root: bytes | None = None,
) -> None:
    """Step 4: raise ``ClearanceInconsistent`` unless the cleared head extends the follower's head.

    ``held_size`` / ``held_root`` is the follower's last verified head of the member (size 0 and
    ``None`` before any). When ``held_size >= clearance.tree_size`` the caller passes
    ``held_prefix_root``, the root over its first ``clearance.tree_size`` leaves, which must equal
    the cleared root; otherwise a proof in ``clearance.consistency`` from exactly
    (``held_size``, ``held_root``) must verify.
    """
    member = clearance.member
    if held_size == 0 or held_root is None:
        return
    if held_size >= clearance.tree_size:
        if held_prefix_root != clearance.root_hash:
            raise ClearanceInconsistent(
                f"fork-clearance of {member}: our {held_size} verified leaves give another root at the "
                f"cleared size {clearance.tree_size}"
            )
        return
    steps = [s for s in clearance.consistency if s.tree_size == held_size]
    if not steps:
        raise ClearanceInconsistent(
            f"fork-clearance of {member}: no consistency proof from our verified size {held_size} "
            f"(it has proofs from sizes {sorted({s.tree_size for s in clearance.consistency})})"
        )
    if not any(s.root_hash == held_root for s in steps):
        raise ClearanceInconsistent(
            f"fork-clearance of {member}: its proof from size {held_size} starts at root "
            f"{b64url_encode(steps[0].root_hash)[:16]}..., ours is {b64url_encode(held_root)[:16]}..."
        )
    step = next(s for s in steps if s.root_hash == held_root)
    try:
        verify_consistency(held_size, clearance.tree_size, held_root, clearance.root_hash, list(step.proof))
    except ProofError as e:
        raise ClearanceInconsistent(f"fork-clearance of {member}: {e}") from e


def check_evidence(
    *,
    member: Member,
    current: SignedDocument[TreeHead],
    verified_heads: Sequence[TreeHead],
    proofs: Mapping[int, Sequence[bytes]],
) -> tuple[ConsistencyStep, ...]:
    """What the organisation checks before drafting a clearance; raise, typed, if it fails.

    1. ``current`` (the member's published head) is a head of ``member``'s log signed by its key in
       the manifest (``MalformedError``, ``ThresholdError``).
    2. For each head a reporting follower verified (the ``verified_head`` of each fork report):
       it is of the same log, not larger than ``current`` (the member would have dropped events
       followers hold), and ``proofs[size]`` (fetched from the member's
       ``/v1/log/proof/consistency``) proves it a prefix of ``current`` (``ClearanceInconsistent``).

    Returns the steps the clearance carries, one per distinct verified head, by size then root.
    """
    head = current.payload
    if head.log_id != member.node_id:
        raise MalformedError(f"the member's head is of log {head.log_id!r}, expected {member.node_id!r}")
    current.verify([member.signing_key], threshold=1)
    steps: dict[tuple[int, bytes], ConsistencyStep] = {}
    for verified in verified_heads:
        if verified.log_id != member.node_id:
            raise MalformedError(f"a verified head of log {verified.log_id!r}, expected {member.node_id!r}")
        if verified.tree_size == 0:
            continue
        if verified.tree_size > head.tree_size:
            raise ClearanceInconsistent(
                f"{member.node_id}'s log has {head.tree_size} events, a follower verified {verified.tree_size}: "
                "it still lacks events its followers hold"
            )
        proof = list(proofs.get(verified.tree_size, ()))
        try:
            verify_consistency(verified.tree_size, head.tree_size, verified.root_hash, head.root_hash, proof)
        except ProofError as e:
            raise ClearanceInconsistent(
                f"{member.node_id}'s head of size {head.tree_size} does not extend the head of size "
                f"{verified.tree_size} a follower verified: {e}"
            ) from e
        key = (verified.tree_size, verified.root_hash)
        steps.setdefault(key, ConsistencyStep(verified.tree_size, verified.root_hash, tuple(proof)))
    return tuple(steps[k] for k in sorted(steps))
