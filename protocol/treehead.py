"""Signed tree heads: a node's signed statement "my event log has N events and this root".

Peers and auditors keep the last head they accepted from each node. A later head must be at
least as large and provably extend it (RFC 9162 consistency), so a node cannot quietly rewrite
or drop a registration, correction or deletion it once published: a smaller head is a rollback,
and two heads of the same size with different roots are a fork, evidence of a rewritten history.
The optional ``audit_head`` ties the node's hash-chained audit log into the same signature.

The head is a ``Payload`` signed by the node key through ``SignedDocument[TreeHead]``;
``check_consistent`` is the step a peer or auditor runs between two heads it has verified.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

from protocol.canonical import b64url_encode
from protocol.errors import MalformedError, ProofError, RollbackError
from protocol.fields import MAX_SAFE_INT, NODE_ID_RE, check_wire_time, format_time
from protocol.merkle import EMPTY_ROOT, HASH_BYTES, verify_consistency
from protocol.signed import SPEC_VERSION, Payload

__all__ = ["TreeHead", "check_consistent"]


@dataclass(kw_only=True)
class TreeHead(Payload):
    """The state of node ``log_id``'s event log at ``timestamp``: ``tree_size`` leaves, ``root_hash``.

    ``audit_head`` is the head of the node's audit hash chain, or ``None``; on the wire it is
    absent (``null`` is read as absent), so one head has one canonical form.
    """

    TYPE = "tree-head"

    log_id: str
    tree_size: int
    root_hash: bytes
    timestamp: datetime
    audit_head: bytes | None = None
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not NODE_ID_RE.fullmatch(self.log_id):
            raise MalformedError(f"tree-head.log_id: {self.log_id!r:.60} does not match {NODE_ID_RE.pattern}")
        if not 0 <= self.tree_size <= MAX_SAFE_INT:
            raise MalformedError(f"tree-head.tree_size: {self.tree_size} outside [0, {MAX_SAFE_INT}]")
        if len(self.root_hash) != HASH_BYTES:
            raise MalformedError(
                f"tree-head.root_hash: expected {HASH_BYTES} bytes, got {len(self.root_hash)}"
            )
        if self.tree_size == 0 and self.root_hash != EMPTY_ROOT:
            raise MalformedError("tree-head.root_hash: a tree of size 0 has the empty root SHA-256()")
        if self.audit_head is not None and len(self.audit_head) != HASH_BYTES:
            raise MalformedError(
                f"tree-head.audit_head: expected {HASH_BYTES} bytes, got {len(self.audit_head)}"
            )
        check_wire_time(self.timestamp, "tree-head.timestamp")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            **self._header(),
            "log_id": self.log_id,
            "tree_size": self.tree_size,
            "root_hash": b64url_encode(self.root_hash),
            "timestamp": format_time(self.timestamp),
        }
        if self.audit_head is not None:
            d["audit_head"] = b64url_encode(self.audit_head)
        return self._with_unrecognized(d)

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        if isinstance(data, dict) and "audit_head" in data and data["audit_head"] is None:
            data = {key: value for key, value in data.items() if key != "audit_head"}
        f, spec_version = cls._read_header(data)
        log_id = f.text("log_id", max_len=63, pattern=NODE_ID_RE)
        tree_size = f.integer("tree_size", high=MAX_SAFE_INT)
        root_hash = f.binary("root_hash", length=HASH_BYTES)
        timestamp = f.time("timestamp")
        audit_head = f.binary("audit_head", length=HASH_BYTES) if f.has("audit_head") else None
        return cls(
            log_id=log_id,
            tree_size=tree_size,
            root_hash=root_hash,
            timestamp=timestamp,
            audit_head=audit_head,
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )


def check_consistent(old: TreeHead, new: TreeHead, proof: Sequence[bytes]) -> None:
    """Raise unless ``new`` extends ``old``: what a peer or auditor checks between two verified heads.

    - heads of two different logs: ``MalformedError`` (the caller compared the wrong heads);
    - ``new`` smaller than ``old``: ``RollbackError``;
    - same size, different root: ``ProofError`` (a fork);
    - otherwise ``proof`` must be the RFC 9162 consistency proof from ``old`` to ``new``
      (empty when the sizes are equal or ``old`` is the empty tree): ``ProofError`` if not.
    """
    if old.log_id != new.log_id:
        raise MalformedError(f"tree heads of two different logs: {old.log_id!r} and {new.log_id!r}")
    if new.tree_size < old.tree_size:
        raise RollbackError(f"log {new.log_id}: tree shrank from {old.tree_size} to {new.tree_size} leaves")
    if old.tree_size == 0:
        if proof:
            raise ProofError(f"log {new.log_id}: the empty tree needs no proof, got {len(proof)} hashes")
        return
    try:
        verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof)
    except ProofError as e:
        raise ProofError(f"log {new.log_id}: {e}") from e
