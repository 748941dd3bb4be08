"""Signed tree heads: a node's signed statement "my log has N events and this root".

Peers and auditors keep the last head they saw from each node. A later head must be at least as
large and provably extend it (RFC 9162 consistency); two heads of the same size with different
roots are a fork, which is evidence of a rewritten history. The optional ``audit_head`` ties the
node's hash-chained audit log into the same signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

from protocol.canonical import b64url_encode
from protocol.errors import MalformedError, ProofError, RollbackError
from protocol.fields import MAX_SAFE_INT, NODE_ID_RE, format_time
from protocol.merkle import verify_consistency
from protocol.signed import SPEC_VERSION, Payload

__all__ = ["TreeHead", "check_consistent"]


@dataclass(kw_only=True)
class TreeHead(Payload):
    """The state of one node's event log at ``timestamp``."""

    TYPE = "tree-head"

    log_id: str
    tree_size: int
    root_hash: bytes
    timestamp: datetime
    audit_head: bytes | None = None
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.root_hash) != 32:
            raise MalformedError(f"tree-head.root_hash: expected 32 bytes, got {len(self.root_hash)}")
        if self.audit_head is not None and len(self.audit_head) != 32:
            raise MalformedError(f"tree-head.audit_head: expected 32 bytes, got {len(self.audit_head)}")

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
        f, spec_version = cls._read_header(data)
        log_id = f.text("log_id", max_len=63, pattern=NODE_ID_RE)
        tree_size = f.integer("tree_size", high=MAX_SAFE_INT)
        root_hash = f.binary("root_hash", length=32)
        timestamp = f.time("timestamp")
        audit_head = f.binary("audit_head", length=32) if f.has("audit_head") else None
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
    """Raise unless ``new`` extends ``old``: same log, not smaller, not a fork, proof verifies."""
    if old.log_id != new.log_id:
        raise MalformedError(f"tree heads of different logs: {old.log_id!r} and {new.log_id!r}")
    if new.tree_size < old.tree_size:
        raise RollbackError(f"log {new.log_id}: tree shrank from {old.tree_size} to {new.tree_size}")
    if new.tree_size == old.tree_size and new.root_hash != old.root_hash:
        raise ProofError(f"log {new.log_id}: two different roots for size {new.tree_size} (a fork)")
    if old.tree_size == 0 or old.tree_size == new.tree_size:
        return
    verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof)
