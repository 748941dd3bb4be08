"""Every member witnesses every other: a node's checkpoint carries the others' cosignatures within
seconds of an event, and a witness refuses a history that differs from the one it cosigned.

Real ``watchnet serve`` processes for three members. The hostile checkpoints are signed with
chain-a's own key (the case the witnesses exist for: a node rewriting its history cannot be
caught by its signature) and sent to chain-b's witness endpoint as any client could.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from node.demo.network import LocalNetwork, LocalNode, wait_for
from node.records.witnessing import log_verifier, witness_verifier
from protocol.canonical import b64url_decode
from protocol.checkpoint import Checkpoint
from protocol.merkle import MerkleLog
from protocol.note import NoteSigner, SignedNote
from protocol.witness import AddCheckpoint
from tests.test_federation import register, unit

MEMBERS = ["chain-a", "chain-b", "chain-c"]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    with LocalNetwork(tmp_path_factory.mktemp("witness"), MEMBERS, sync_interval="1s").running() as network:
        yield network


def get_text(node: LocalNode, path: str) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"{node.url}{path}", timeout=30) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def post_text(node: LocalNode, path: str, body: bytes) -> tuple[int, str, str]:
    request = urllib.request.Request(f"{node.url}{path}", data=body, method="POST")
    request.add_header("Content-Type", "text/plain; charset=utf-8")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode(), response.headers.get_content_type()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers.get_content_type()


def test_a_checkpoint_is_cosigned_by_every_other_member(net: LocalNetwork) -> None:
    a = net.node("chain-a")
    register(a, unit(901))
    manifest = net.current_manifest()
    verifiers = [witness_verifier(manifest, m) for m in ("chain-b", "chain-c")]
    own = log_verifier(manifest, "chain-a")
    assert own is not None and all(v is not None for v in verifiers)
    started = time.monotonic()

    def cosigned() -> SignedNote | None:
        status, text, _ = get_text(a, "/v1/log/checkpoint")
        if status != 200:
            return None
        note = SignedNote.from_text(text)
        return note if len(note.signatures) == 3 else None

    note = wait_for(cosigned, timeout=30)
    print(
        f"\nchain-a's checkpoint cosigned by both witnesses {time.monotonic() - started:.2f} s after the event"
    )
    assert note.verify([own, *verifiers]) == [own, *verifiers]  # type: ignore[list-item]
    checkpoint = Checkpoint.from_text(note.text)
    status, head = a.call("GET", "/v1/log/head")
    assert status == 200
    assert checkpoint.size == head["signed"]["tree_size"]
    assert checkpoint.root_hash == b64url_decode(head["signed"]["root_hash"])
    assert checkpoint.origin == f"watchnet/{manifest.group_id}/chain-a"


def test_a_witness_refuses_a_rewritten_history(net: LocalNetwork) -> None:
    a, b = net.node("chain-a"), net.node("chain-b")
    manifest = net.current_manifest()
    origin = f"watchnet/{manifest.group_id}/chain-a"
    signer = NoteSigner(origin, a.signing_key())

    def witnessed_size() -> int:
        status, text, _ = get_text(a, "/v1/log/checkpoint")
        if status != 200:
            return 0
        note = SignedNote.from_text(text)
        return Checkpoint.from_text(note.text).size if len(note.signatures) > 1 else 0

    size = wait_for(witnessed_size, timeout=30)

    def note_for(n: int, root: bytes, key: NoteSigner = signer) -> SignedNote:
        text = Checkpoint(key.name, n, root).to_text()
        return SignedNote(text, (key.sign(text),))

    fake = MerkleLog()
    for i in range(size + 2):
        fake.append(f"rewritten {i}".encode())
    # a second root for the size chain-b cosigned: a fork, however well signed
    status, text, _ = post_text(
        b, "/v1/witness/add-checkpoint", AddCheckpoint(size, (), note_for(size, fake.root(size))).to_bytes()
    )
    assert status == 422, text
    # a longer history whose proof starts from another root
    forged = AddCheckpoint(
        size, tuple(fake.consistency_proof(size, size + 2)), note_for(size + 2, fake.root(size + 2))
    )
    status, text, _ = post_text(b, "/v1/witness/add-checkpoint", forged.to_bytes())
    assert status == 422, text
    # asking from zero, as a node restored from an old copy would: told the size it must prove from
    status, text, kind = post_text(
        b, "/v1/witness/add-checkpoint", AddCheckpoint(0, (), note_for(2, fake.root(2))).to_bytes()
    )
    assert (status, text, kind) == (409, f"{size}\n", "text/x.tlog.size")
    # not chain-a's key, an unknown log, and bytes that are no request
    impostor = NoteSigner(origin, net.node("chain-c").signing_key())
    status, text, _ = post_text(
        b,
        "/v1/witness/add-checkpoint",
        AddCheckpoint(size, (), note_for(size, fake.root(size), impostor)).to_bytes(),
    )
    assert status == 403, text
    stranger = NoteSigner(f"watchnet/{manifest.group_id}/chain-x", a.signing_key())
    status, _, _ = post_text(
        b, "/v1/witness/add-checkpoint", AddCheckpoint(0, (), note_for(1, fake.root(1), stranger)).to_bytes()
    )
    assert status == 404
    status, _, _ = post_text(b, "/v1/witness/add-checkpoint", b"old 1\nnot base64!\n\nx")
    assert status == 400
    status, _, _ = post_text(b, "/v1/witness/add-checkpoint", b"old 0\n" + b"A" * (70 << 10))
    assert status == 413
    # through all of it chain-b kept the history it cosigned: chain-a's real next checkpoint still gets its cosignature
    register(a, unit(902))
    wait_for(lambda: witnessed_size() > size, timeout=30)
