"""The C2SP witness protocol's add-checkpoint exchange (c2sp.org/tlog-witness), as pure decisions.

A node that shows one history to one peer and another to the next is caught only if someone
remembers what it showed. Witnesses are that memory: each keeps the latest checkpoint it
cosigned per log and cosigns a new one only with a consistency proof from it, so a log that
rewrites its past cannot collect cosignatures for the rewrite. The request body is ``old <size>``,
up to 63 base64 proof lines, an empty line, then the signed checkpoint; the answers are the
spec's statuses, each raised here as a typed error carrying it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Final

from protocol.checkpoint import Checkpoint
from protocol.errors import MalformedError, OversizedError, ProofError, SignatureError, WatchnetError
from protocol.merkle import verify_consistency
from protocol.note import NoteVerifier, SignedNote, decode_base64

__all__ = [
    "AddCheckpoint",
    "CheckpointConflict",
    "UnknownLogError",
    "WitnessedHead",
    "accept_checkpoint",
    "status_of",
]

MAX_PROOF_LINES: Final = 63
MAX_BODY: Final = 64 * 1024
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
_SIZE = re.compile(r"old (0|[1-9][0-9]{0,19})")


class UnknownLogError(WatchnetError):
    """The checkpoint's origin is no log this witness follows (404)."""

    code = "unknown_log"
    status = 404


class CheckpointConflict(WatchnetError):
    """The old size is not the size this witness last cosigned (409, with that size)."""

    code = "checkpoint_conflict"
    status = 409

    def __init__(self, size: int) -> None:
        super().__init__(f"this witness last cosigned size {size}")
        self.size = size


@dataclass(frozen=True)
class WitnessedHead:
    """What a witness keeps per log: the latest size and root it cosigned."""

    size: int
    root_hash: bytes


@dataclass(frozen=True)
class AddCheckpoint:
    old_size: int
    proof: tuple[bytes, ...]
    note: SignedNote

    def to_bytes(self) -> bytes:
        lines = [f"old {self.old_size}\n", *(base64.b64encode(h).decode("ascii") + "\n" for h in self.proof)]
        return ("".join(lines) + "\n" + self.note.to_text()).encode("utf-8")

    @classmethod
    def from_bytes(cls, body: bytes) -> AddCheckpoint:
        if len(body) > MAX_BODY:
            raise OversizedError(f"an add-checkpoint body of {len(body)} bytes, more than {MAX_BODY}")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise MalformedError("an add-checkpoint body must be UTF-8") from e
        head, sep, rest = text.partition("\n\n")
        if not sep:
            raise MalformedError(
                "an add-checkpoint body is 'old N', proof lines, an empty line, a checkpoint"
            )
        lines = head.split("\n")
        size = _SIZE.fullmatch(lines[0])
        if size is None:
            raise MalformedError(
                f"first line {lines[0][:40]!r}: expected 'old <size>' without leading zeroes"
            )
        if len(lines) - 1 > MAX_PROOF_LINES:
            raise MalformedError(f"{len(lines) - 1} consistency proof lines, more than {MAX_PROOF_LINES}")
        proof = tuple(decode_base64(line, "consistency proof line") for line in lines[1:])
        if any(len(h) != 32 for h in proof):
            raise MalformedError("a consistency proof line is not a 32-byte hash")
        return cls(int(size.group(1)), proof, SignedNote.from_text(rest))


def accept_checkpoint(
    request: AddCheckpoint,
    logs: dict[str, list[NoteVerifier]],
    latest: WitnessedHead | None,
) -> Checkpoint:
    """Decide an add-checkpoint as the spec orders the checks; return the checkpoint to cosign.

    ``logs`` maps each origin this witness follows to the keys it trusts for it; ``latest`` is
    what it last cosigned for this origin (None: never). Raises ``UnknownLogError`` (404),
    ``SignatureError`` (403), ``MalformedError`` (400), ``CheckpointConflict`` (409) or
    ``ProofError`` (422)."""
    checkpoint = Checkpoint.from_text(request.note.text)
    verifiers = logs.get(checkpoint.origin)
    if verifiers is None:
        raise UnknownLogError(f"no log with origin {checkpoint.origin[:80]!r} is witnessed here")
    request.note.verify(verifiers)
    if request.old_size > checkpoint.size:
        raise MalformedError(f"old size {request.old_size} is above the checkpoint's {checkpoint.size}")
    known = latest or WitnessedHead(0, EMPTY_ROOT)
    if request.old_size != known.size:
        raise CheckpointConflict(known.size)
    if checkpoint.size == 0 and checkpoint.root_hash != EMPTY_ROOT:
        raise ProofError("a checkpoint of size 0 must carry the empty tree's root")
    if request.old_size == 0:
        if request.proof:
            raise ProofError("no consistency proof is given from size 0")
    elif request.old_size == checkpoint.size:
        if checkpoint.root_hash != known.root_hash or request.proof:
            raise ProofError(f"a second root for size {checkpoint.size}: the log forked")
    else:
        verify_consistency(
            request.old_size, checkpoint.size, known.root_hash, checkpoint.root_hash, request.proof
        )
    return checkpoint


def status_of(error: WatchnetError) -> int:
    """The HTTP status the spec gives each refusal."""
    if isinstance(error, UnknownLogError | CheckpointConflict):
        return error.status
    if isinstance(error, SignatureError):
        return 403
    if isinstance(error, ProofError):
        return 422
    return 400
