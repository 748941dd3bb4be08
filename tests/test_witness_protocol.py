"""The witness's add-checkpoint decisions, check by check in the spec's order, on a real Merkle log."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.checkpoint import Checkpoint
from protocol.errors import MalformedError, OversizedError, ProofError, SignatureError
from protocol.keys import SigningKey
from protocol.merkle import MerkleLog
from protocol.note import NoteSigner, SignedNote
from protocol.witness import (
    EMPTY_ROOT,
    AddCheckpoint,
    CheckpointConflict,
    UnknownLogError,
    WitnessedHead,
    accept_checkpoint,
    status_of,
)

ORIGIN = "watchnet/demo-group/chain-a"
LOG = NoteSigner(ORIGIN, SigningKey(bytes([0x11]) * 32))
LOGS = {ORIGIN: [LOG.verifier]}


def grown(n: int) -> MerkleLog:
    log = MerkleLog()
    for i in range(n):
        log.append(f"event {i}".encode())
    return log


def signed(size: int, root: bytes, signer: NoteSigner = LOG) -> SignedNote:
    text = Checkpoint(signer.name, size, root).to_text()
    return SignedNote(text, (signer.sign(text),))


def test_a_first_checkpoint_then_a_consistent_one_are_accepted() -> None:
    log = grown(7)
    first = AddCheckpoint(0, (), signed(4, log.root(4)))
    assert AddCheckpoint.from_bytes(first.to_bytes()) == first
    assert accept_checkpoint(first, LOGS, None).size == 4
    second = AddCheckpoint(4, tuple(log.consistency_proof(4, 7)), signed(7, log.root(7)))
    assert AddCheckpoint.from_bytes(second.to_bytes()) == second
    assert accept_checkpoint(second, LOGS, WitnessedHead(4, log.root(4))).size == 7
    same = AddCheckpoint(7, (), signed(7, log.root(7)))
    assert accept_checkpoint(same, LOGS, WitnessedHead(7, log.root(7))).size == 7
    empty = AddCheckpoint(0, (), signed(0, EMPTY_ROOT))
    assert accept_checkpoint(empty, LOGS, None).size == 0


def test_every_refusal_has_the_specs_status() -> None:
    log, fork = grown(7), MerkleLog()
    for i in range(7):
        fork.append(f"rewritten {i}".encode() if i == 2 else f"event {i}".encode())
    seen = WitnessedHead(4, log.root(4))
    stranger = NoteSigner("watchnet/demo-group/chain-x", SigningKey(bytes([0x22]) * 32))
    impostor = NoteSigner(ORIGIN, SigningKey(bytes([0x23]) * 32))
    good_proof = tuple(log.consistency_proof(4, 7))
    cases: list[tuple[AddCheckpoint, WitnessedHead | None, type[Exception], int]] = [
        (AddCheckpoint(0, (), signed(3, grown(3).root(3), stranger)), None, UnknownLogError, 404),
        (AddCheckpoint(4, good_proof, signed(7, log.root(7), impostor)), seen, SignatureError, 403),
        (AddCheckpoint(8, (), signed(7, log.root(7))), seen, MalformedError, 400),
        (AddCheckpoint(3, good_proof, signed(7, log.root(7))), seen, CheckpointConflict, 409),
        (AddCheckpoint(0, (), signed(7, log.root(7))), seen, CheckpointConflict, 409),
        (AddCheckpoint(4, tuple(fork.consistency_proof(4, 7)), signed(7, fork.root(7))), seen, ProofError, 422),
        (AddCheckpoint(4, (), signed(4, fork.root(4))), seen, ProofError, 422),
        (AddCheckpoint(0, (), signed(0, bytes(32))), None, ProofError, 422),
        (AddCheckpoint(0, good_proof, signed(7, log.root(7))), None, ProofError, 422),
    ]
    for request, latest, error, status in cases:
        with pytest.raises(error) as caught:
            accept_checkpoint(AddCheckpoint.from_bytes(request.to_bytes()), LOGS, latest)
        assert status_of(caught.value) == status, (request.old_size, caught.value)
    with pytest.raises(CheckpointConflict) as conflict:
        accept_checkpoint(AddCheckpoint(3, good_proof, signed(7, log.root(7))), LOGS, seen)
    assert conflict.value.size == 4


@pytest.mark.parametrize(
    "body",
    [
        b"old 01\n\nx",
        b"old 1\n",
        b"new 1\n\n" + signed(1, bytes(32)).to_text().encode(),
        b"old 1\nAAAA\n\n" + signed(1, bytes(32)).to_text().encode(),
        b"old 1\n" + b"A" * 43 + b"=\n" * 64 + b"\n",
        b"\xff\xfe",
    ],
)
def test_malformed_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedError):
        AddCheckpoint.from_bytes(body)


def test_an_oversized_body_is_refused_before_parsing() -> None:
    with pytest.raises(OversizedError):
        AddCheckpoint.from_bytes(b"old 0\n" + b"A" * 70_000)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=500))
def test_any_body_is_a_request_or_a_typed_error(body: bytes) -> None:
    try:
        request = AddCheckpoint.from_bytes(body)
    except (MalformedError, OversizedError):
        return
    try:
        accept_checkpoint(request, LOGS, None)
    except (MalformedError, SignatureError, ProofError, UnknownLogError, CheckpointConflict):
        pass
