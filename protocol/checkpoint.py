"""C2SP transparency-log checkpoints (c2sp.org/tlog-checkpoint): a tree head as a note text.

Three lines, each ending in a newline: the origin (the log's identity), the tree size in
decimal without leading zeroes, the RFC 6962 root in standard base64; then optional extension
lines, which watchnet does not write (witnesses make no statement about them). A node's log is
named ``watchnet/<group>/<node id>``, so no two groups' logs share an origin, and signed with the
node's Ed25519 key under that name (note type 0x01).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

from protocol.errors import MalformedError
from protocol.note import decode_base64

__all__ = ["Checkpoint", "origin_of"]

_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")


def origin_of(group_id: str, node_id: str) -> str:
    """The origin line of a node's log within a group."""
    origin = f"watchnet/{group_id}/{node_id}"
    if any(c.isspace() or c == "+" for c in origin):
        raise MalformedError(f"origin {origin[:80]!r}: no spaces or '+'")
    return origin


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise MalformedError("a checkpoint's origin is one non-empty line")
        if not (0 <= self.size < 1 << 64):
            raise MalformedError(f"checkpoint size {self.size} outside 0..2^64-1")
        if len(self.root_hash) != 32:
            raise MalformedError(f"checkpoint root: expected 32 bytes, got {len(self.root_hash)}")
        if any(not line or "\n" in line for line in self.extensions):
            raise MalformedError("checkpoint extension lines are non-empty single lines")

    def to_text(self) -> str:
        lines = [
            self.origin,
            str(self.size),
            base64.b64encode(self.root_hash).decode("ascii"),
            *self.extensions,
        ]
        return "".join(f"{line}\n" for line in lines)

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        if not text.endswith("\n"):
            raise MalformedError("a checkpoint's text ends with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise MalformedError(f"a checkpoint has at least 3 lines, not {len(lines)}")
        origin, size, root, *extensions = lines
        if not _SIZE.fullmatch(size):
            raise MalformedError(f"checkpoint size {size[:30]!r}: decimal without leading zeroes")
        return cls(origin, int(size), decode_base64(root, "checkpoint root"), tuple(extensions))
