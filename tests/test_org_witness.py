"""The organisation's witness: its key is the manifest's, never a manifest-signing key; what it
cosigned survives a restart, so it never cosigns a second history of a log."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from governance.manifest import ORGANISATION_WITNESS
from governance.manifest import OrganisationWitness as NamedWitness
from node.org.witness import OrganisationWitness
from node.records.witnessing import witness_verifier
from protocol.checkpoint import Checkpoint, origin_of
from protocol.errors import ConfigurationError, ProofError
from protocol.keys import SigningKey
from protocol.merkle import MerkleLog
from protocol.note import NoteSigner, SignedNote
from protocol.witness import AddCheckpoint, CheckpointConflict
from tests.factories import KEYS, NODE_A_SIGNING, T0, make_manifest

WITNESS_KEY = SigningKey(b"\x77" * 32)


def _manifest(key: SigningKey = WITNESS_KEY):  # type: ignore[no-untyped-def]
    manifest = make_manifest()
    witness = replace(manifest.policy.witness, organisation=NamedWitness(key.public, "http://127.0.0.1:8460"))
    return manifest.with_changes(policy=replace(manifest.policy, witness=witness))


def _request(manifest, log: MerkleLog, old: int, new: int) -> bytes:  # type: ignore[no-untyped-def]
    origin = origin_of(manifest.group_id, "chain-a")
    text = Checkpoint(origin, new, log.root(new)).to_text()
    note = SignedNote(text, (NoteSigner(origin, NODE_A_SIGNING).sign(text),))
    proof = () if old in (0, new) else tuple(log.consistency_proof(old, new))
    return AddCheckpoint(old, proof, note).to_bytes()


def test_the_witness_key_must_be_the_manifests_and_not_a_signing_key() -> None:
    witness = OrganisationWitness(Path("/nonexistent"), WITNESS_KEY)
    witness.check_key(_manifest())
    with pytest.raises(ConfigurationError, match="names no organisation witness"):
        witness.check_key(make_manifest())
    with pytest.raises(ConfigurationError, match="the manifest's organisation witness is"):
        OrganisationWitness(Path("/nonexistent"), SigningKey(b"\x78" * 32)).check_key(_manifest())
    with pytest.raises(ConfigurationError, match="one of the keys that sign the manifest"):
        OrganisationWitness(Path("/nonexistent"), KEYS[0]).check_key(_manifest(KEYS[0]))


def test_what_it_cosigned_survives_a_restart_and_bounds_what_it_cosigns_next(tmp_path: Path) -> None:
    manifest = _manifest()
    assert ORGANISATION_WITNESS in manifest.witnesses_of("chain-a")
    log = MerkleLog()
    for i in range(5):
        log.append(f"event {i}".encode())
    line = OrganisationWitness(tmp_path, WITNESS_KEY).add_checkpoint(
        _request(manifest, log, 0, 3), manifest, T0
    )
    origin = origin_of(manifest.group_id, "chain-a")
    held = OrganisationWitness(tmp_path, WITNESS_KEY).latest(origin)  # another process, later
    assert held is not None and line.strip() in held
    verifier = witness_verifier(manifest, ORGANISATION_WITNESS)
    assert verifier is not None
    SignedNote.from_text(held).verify([verifier])

    restarted = OrganisationWitness(tmp_path, WITNESS_KEY)
    with pytest.raises(CheckpointConflict) as conflict:  # asked from 0 again, as a rolled-back node would
        restarted.add_checkpoint(_request(manifest, log, 0, 5), manifest, T0)
    assert conflict.value.size == 3
    forked = MerkleLog()
    for i in range(5):
        forked.append(f"another history {i}".encode())
    with pytest.raises(ProofError):
        restarted.add_checkpoint(_request(manifest, forked, 3, 3), manifest, T0)
    restarted.add_checkpoint(_request(manifest, log, 3, 5), manifest, T0)
    assert Checkpoint.from_text(SignedNote.from_text(restarted.latest(origin) or "").text).size == 5
