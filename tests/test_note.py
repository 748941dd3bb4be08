"""C2SP signed notes and checkpoints: the specs' own examples verify, watchnet's checkpoint vector is
what the code makes, and the parser refuses everything the specs forbid with a typed error."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.checkpoint import Checkpoint, origin_of
from protocol.errors import MalformedError, OversizedError, SignatureError
from protocol.keys import SigningKey
from protocol.note import COSIGNATURE, ED25519, NoteSigner, NoteVerifier, SignedNote, cosignature_time

VECTOR = Path(__file__).parent / "vectors" / "note-checkpoint.json"

SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n"
    "— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)
"""c2sp.org/signed-note, "Example"."""
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_NOTE = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n\n"
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
"""golang.org/x/mod/sumdb/note's test note, the format's first implementation."""
SPEC_CHECKPOINT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
"""c2sp.org/tlog-checkpoint's example text."""


@pytest.mark.parametrize(("vkey", "note"), [(SPEC_VKEY, SPEC_NOTE), (GO_VKEY, GO_NOTE)])
def test_the_specs_examples_verify_and_round_trip(vkey: str, note: str) -> None:
    verifier = NoteVerifier.from_vkey(vkey)
    assert verifier.vkey() == vkey and verifier.kind == ED25519
    parsed = SignedNote.from_text(note.encode())
    assert parsed.verify([verifier]) == [verifier]
    assert parsed.to_text() == note
    changed = SignedNote(parsed.text.replace("a", "b", 1), parsed.signatures)
    with pytest.raises(SignatureError):
        changed.verify([verifier])
    other = NoteVerifier.from_vkey(GO_VKEY if vkey == SPEC_VKEY else SPEC_VKEY)
    with pytest.raises(SignatureError, match="no signature"):
        parsed.verify([other])


def test_the_spec_checkpoint_parses_to_its_three_parts() -> None:
    checkpoint = Checkpoint.from_text(SPEC_CHECKPOINT)
    assert checkpoint.origin == "example.com/behind-the-sofa" and checkpoint.size == 20852163
    assert checkpoint.root_hash.hex().startswith("0ac5186a") and checkpoint.to_text() == SPEC_CHECKPOINT
    for bad in (
        "o\n020852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "o\n-1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "o\n1\nCsUYapGGPo4dkMgIAUqom_Xajj7h2fB2MPA3j2jxq2I=\n",
        "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jx\n",
        "o\n1\n",
        "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=",
        "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n",
    ):
        with pytest.raises(MalformedError):
            Checkpoint.from_text(bad)


def build_vector() -> dict[str, object]:
    log_key = SigningKey(bytes([0x11]) * 32)
    witness_key = SigningKey(bytes([0x33]) * 32)
    origin = origin_of("demo-group", "chain-a")
    root = hashlib.sha256(b"watchnet checkpoint vector").digest()
    text = Checkpoint(origin, 3, root).to_text()
    log = NoteSigner(origin, log_key)
    witness = NoteSigner("witness/chain-b", witness_key, COSIGNATURE)
    note = SignedNote(text, (log.sign(text),)).with_signature(witness.sign(text, timestamp=1_796_000_000))
    return {
        "log_seed_hex": log_key.seed.hex(),
        "witness_seed_hex": witness_key.seed.hex(),
        "log_vkey": log.verifier.vkey(),
        "witness_vkey": witness.verifier.vkey(),
        "note": note.to_text(),
    }


def test_the_checkpoint_vector_is_what_the_code_makes_and_verifies() -> None:
    vector = json.loads(VECTOR.read_text(encoding="utf-8"))
    assert vector == build_vector(), "regenerate tests/vectors/note-checkpoint.json from build_vector()"
    log = NoteVerifier.from_vkey(vector["log_vkey"])
    witness = NoteVerifier.from_vkey(vector["witness_vkey"])
    note = SignedNote.from_text(vector["note"])
    assert note.verify([log, witness]) == [log, witness]
    assert note.verify([witness]) == [witness]
    assert cosignature_time(note.signatures[1]) == 1_796_000_000
    checkpoint = Checkpoint.from_text(note.text)
    assert (checkpoint.origin, checkpoint.size) == ("watchnet/demo-group/chain-a", 3)
    forged = note.with_signature(
        NoteSigner("witness/chain-b", SigningKey(bytes([0x44]) * 32), COSIGNATURE).sign(note.text, timestamp=1)
    )
    assert forged.verify([witness]) == [witness], "another key under the same name is ignored, not trusted"
    broken = SignedNote(note.text, (note.signatures[0], type(note.signatures[1])(
        "witness/chain-b", witness.key_id, note.signatures[1].signature[:8] + bytes(64)
    )))  # fmt: skip
    with pytest.raises(SignatureError, match="witness/chain-b"):
        broken.verify([log, witness])


def test_a_cosignature_commits_to_its_time() -> None:
    text = Checkpoint("o", 1, bytes(32)).to_text()
    signer = NoteSigner("w", SigningKey(bytes([7]) * 32), COSIGNATURE)
    line = signer.sign(text, timestamp=100)
    moved = type(line)(line.name, line.key_id, (101).to_bytes(8, "big") + line.signature[8:])
    with pytest.raises(SignatureError):
        SignedNote(text, (moved,)).verify([signer.verifier])
    SignedNote(text, (line,)).verify([signer.verifier])


@pytest.mark.parametrize(
    ("note", "error"),
    [
        ("no blank line\n— a AAAAAAAA\n", MalformedError),
        ("text\n\n", MalformedError),
        ("text\n\n— a AAAAAAAA", MalformedError),
        ("text\n\n— a b c\n", MalformedError),
        ("text\n\n- a AAAAAAAA\n", MalformedError),
        ("text\n\n— a+b AAAAAAAA\n", MalformedError),
        ("text\n\n— a AAAA\n", MalformedError),
        ("text\n\n— a A===\n", MalformedError),
        ("te\tx\n\n— a AAAAAAAA\n", MalformedError),
        ("text\n\n" + "— a AAAAAAAA\n" * 65, OversizedError),
    ],
)
def test_what_the_spec_forbids_is_refused(note: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        SignedNote.from_text(note)


def test_a_vkey_whose_id_is_not_its_keys_is_refused() -> None:
    name, _, material = SPEC_VKEY.split("+")
    with pytest.raises(MalformedError, match="key id"):
        NoteVerifier.from_vkey(f"{name}+00000000+{material}")
    with pytest.raises(MalformedError):
        NoteVerifier.from_vkey("no-plus-signs")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.binary(max_size=300))
def test_any_input_is_a_note_or_a_typed_error(text: str, raw: bytes) -> None:
    for candidate in (text, raw, SPEC_NOTE[: len(text)] + text):
        try:
            SignedNote.from_text(candidate)
        except (MalformedError, OversizedError):
            pass
    try:
        Checkpoint.from_text(text)
    except MalformedError:
        pass
