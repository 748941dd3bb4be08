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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from protocol.checkpoint import Checkpoint
from protocol.errors import (
    MalformedError,
    OversizedError,
    ProofError,
    SignatureError,
    VerificationError,
    WatchnetError,
)
from protocol.merkle import verify_consistency
from protocol.note import NoteVerifier, SignedNote, decode_base64

__all__ = [
    "AddCheckpoint",
    "CheckpointConflict",
    "CosignedCheckpoint",
    "CosignedHistoryMismatch",
    "TooFewCosignatures",
    "UnknownLogError",
    "WitnessedHead",
    "accept_checkpoint",
    "check_extends",
    "require_cosignatures",
    "status_of",
    "verify_cosigned",
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


class CosignedHistoryMismatch(VerificationError):
    """A checkpoint signed by the log's key (and perhaps cosigned) that the log it serves does not extend."""

    code = "witness_mismatch"


class TooFewCosignatures(VerificationError):
    """Fewer witnesses cosigned a checkpoint consistent with the log than the group policy requires."""

    code = "cosignatures_missing"


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


@dataclass(frozen=True)
class CosignedCheckpoint:
    """A checkpoint whose log signature verified, and the witnesses whose cosignatures verified."""

    checkpoint: Checkpoint
    cosigners: tuple[str, ...]


def verify_cosigned(
    note: SignedNote, log_key: NoteVerifier, witnesses: Mapping[str, NoteVerifier]
) -> CosignedCheckpoint:
    """Check a checkpoint note for an auditor: the log's own signature, then each witness's line.

    ``witnesses`` maps each witness that counts (by its id) to its cosignature key. Lines by other
    keys are ignored, as c2sp.org/signed-note requires; a known key's line that fails raises
    ``SignatureError``, and so does a note without a valid signature by ``log_key``."""
    checkpoint = Checkpoint.from_text(note.text)
    if checkpoint.origin != log_key.name:
        raise MalformedError(f"a checkpoint of {checkpoint.origin[:80]!r}, expected {log_key.name!r}")
    note.verify([log_key])
    cosigners = []
    for witness, key in witnesses.items():
        lines = [s for s in note.signatures if (s.name, s.key_id) == (key.name, key.key_id)]
        if lines:
            for line in lines:
                key.check(note.text, line)
            cosigners.append(witness)
    return CosignedCheckpoint(checkpoint, tuple(cosigners))


def check_extends(
    checkpoint: Checkpoint,
    head_size: int,
    head_root: bytes,
    root_at: Callable[[int], bytes],
    proof: tuple[bytes, ...] = (),
) -> None:
    """Raise ``CosignedHistoryMismatch`` unless the log with head (``head_size``, ``head_root``) and
    the checkpoint are one history: for a checkpoint no larger than the head, ``root_at(size)`` (the
    root the verifier recomputed from the log's leaves) equals its root; for a larger one, ``proof``
    is the consistency proof from the head to it."""
    size = checkpoint.size
    if size <= head_size:
        expected = EMPTY_ROOT if size == 0 else root_at(size)
        if expected != checkpoint.root_hash:
            raise CosignedHistoryMismatch(
                f"the checkpoint of size {size} has root {checkpoint.root_hash.hex()[:16]}..., the log "
                f"served has root {expected.hex()[:16]}... at that size: its history differs"
            )
        return
    try:
        verify_consistency(head_size, size, head_root, checkpoint.root_hash, proof)
    except ProofError as e:
        raise CosignedHistoryMismatch(
            f"the checkpoint of size {size} does not extend the verified head of size {head_size}: {e}"
        ) from e


def require_cosignatures(cosigned: Mapping[str, int], required: int, candidates: int) -> None:
    """Raise ``TooFewCosignatures`` when fewer than ``required`` witnesses (of ``candidates``) cosigned."""
    if len(cosigned) < required:
        named = ", ".join(f"{w} at size {n}" for w, n in sorted(cosigned.items())) or "none"
        raise TooFewCosignatures(
            f"found {len(cosigned)} of the {required} required witness cosignatures "
            f"({candidates} witnesses in the manifest; cosigned: {named})"
        )
