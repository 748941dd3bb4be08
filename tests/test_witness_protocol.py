"""The witness's add-checkpoint decisions, check by check in the spec's order, on a real Merkle log;
and an auditor's check of cosigned checkpoints against the log it verified."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.checkpoint import Checkpoint
from protocol.errors import MalformedError, OversizedError, ProofError, SignatureError
from protocol.keys import SigningKey
from protocol.merkle import MerkleLog
from protocol.note import COSIGNATURE, NoteSignature, NoteSigner, SignedNote
from protocol.witness import (
    EMPTY_ROOT,
    AddCheckpoint,
    CheckpointConflict,
    CosignedHistoryMismatch,
    TooFewCosignatures,
    UnknownLogError,
    WitnessedHead,
    accept_checkpoint,
    check_extends,
    require_cosignatures,
    status_of,
    verify_cosigned,
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
        (
            AddCheckpoint(4, tuple(fork.consistency_proof(4, 7)), signed(7, fork.root(7))),
            seen,
            ProofError,
            422,
        ),
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


WITNESSES = {
    name: NoteSigner(f"{ORIGIN}/{name}", SigningKey(bytes([seed]) * 32), COSIGNATURE)
    for name, seed in (("chain-b", 0x33), ("chain-c", 0x44))
}
WITNESS_KEYS = {name: signer.verifier for name, signer in WITNESSES.items()}


def cosigned(size: int, root: bytes, *by: str, signer: NoteSigner = LOG) -> SignedNote:
    note = signed(size, root, signer)
    for name in by:
        note = note.with_signature(WITNESSES[name].sign(note.text, timestamp=1796000000 + size))
    return note


def test_an_auditor_counts_the_witnesses_of_the_history_it_verified() -> None:
    log = grown(7)
    note = cosigned(5, log.root(5), "chain-b", "chain-c")
    result = verify_cosigned(note, LOG.verifier, WITNESS_KEYS)
    assert (result.checkpoint.size, result.cosigners) == (5, ("chain-b", "chain-c"))
    check_extends(result.checkpoint, 7, log.root(7), log.root)  # a prefix of the head: recomputed
    ahead = grown(9)
    later = verify_cosigned(cosigned(9, ahead.root(9), "chain-b"), LOG.verifier, WITNESS_KEYS)
    check_extends(later.checkpoint, 7, log.root(7), log.root, tuple(ahead.consistency_proof(7, 9)))
    assert verify_cosigned(signed(5, log.root(5)), LOG.verifier, WITNESS_KEYS).cosigners == ()
    stranger = NoteSigner(f"{ORIGIN}/chain-x", SigningKey(bytes([0x55]) * 32), COSIGNATURE)
    extra = note.with_signature(stranger.sign(note.text, timestamp=1796000000))
    assert verify_cosigned(extra, LOG.verifier, WITNESS_KEYS).cosigners == ("chain-b", "chain-c")


def test_an_auditor_refuses_a_history_other_than_the_one_cosigned() -> None:
    log, rewritten = grown(7), MerkleLog()
    for i in range(7):
        rewritten.append(f"event {i}".encode() if i != 4 else b"another event 4")
    other = verify_cosigned(cosigned(5, rewritten.root(5), "chain-b"), LOG.verifier, WITNESS_KEYS)
    with pytest.raises(CosignedHistoryMismatch, match="size 5 has root"):
        check_extends(other.checkpoint, 7, log.root(7), log.root)
    same_size = verify_cosigned(cosigned(7, rewritten.root(7), "chain-b"), LOG.verifier, WITNESS_KEYS)
    with pytest.raises(CosignedHistoryMismatch):
        check_extends(same_size.checkpoint, 7, log.root(7), log.root)
    longer = grown(9)
    fork = verify_cosigned(cosigned(9, longer.root(9), "chain-b"), LOG.verifier, WITNESS_KEYS)
    with pytest.raises(CosignedHistoryMismatch, match="does not extend the verified head of size 7"):
        check_extends(
            fork.checkpoint, 7, rewritten.root(7), rewritten.root, tuple(longer.consistency_proof(7, 9))
        )
    with pytest.raises(CosignedHistoryMismatch):
        check_extends(Checkpoint(ORIGIN, 0, b"\x01" * 32), 7, log.root(7), log.root)
    # a witness holds a larger size than the log now serves, and the node proves nothing: rolled back
    with pytest.raises(CosignedHistoryMismatch, match="size 9 does not extend the verified head of size 7"):
        check_extends(Checkpoint(ORIGIN, 9, longer.root(9)), 7, log.root(7), log.root)


def test_an_auditor_refuses_a_note_the_log_or_a_witness_did_not_sign() -> None:
    log = grown(3)
    impostor = NoteSigner(ORIGIN, SigningKey(bytes([0x66]) * 32))
    with pytest.raises(SignatureError):
        verify_cosigned(cosigned(3, log.root(3), "chain-b", signer=impostor), LOG.verifier, WITNESS_KEYS)
    with pytest.raises(MalformedError, match="expected"):
        other = NoteSigner("watchnet/demo-group/chain-z", LOG.key)
        verify_cosigned(cosigned(3, log.root(3), signer=other), LOG.verifier, WITNESS_KEYS)
    note = cosigned(3, log.root(3), "chain-b")
    line = note.signatures[1]
    forged = SignedNote(
        note.text, (note.signatures[0], NoteSignature(line.name, line.key_id, line.signature[:8] + bytes(64)))
    )
    with pytest.raises(SignatureError, match="chain-b"):
        verify_cosigned(forged, LOG.verifier, WITNESS_KEYS)


def test_too_few_cosignatures_say_how_many_were_found_and_required() -> None:
    require_cosignatures({"chain-b": 5}, 1, 2)
    require_cosignatures({}, 0, 0)
    with pytest.raises(TooFewCosignatures) as caught:
        require_cosignatures({"chain-b": 5}, 2, 2)
    assert str(caught.value) == (
        "found 1 of the 2 required witness cosignatures (2 witnesses in the manifest; cosigned: chain-b at size 5)"
    )
    with pytest.raises(TooFewCosignatures, match=r"found 0 of the 1 required .*cosigned: none"):
        require_cosignatures({}, 1, 0)
