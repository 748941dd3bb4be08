"""Every member witnesses every other: a node's checkpoint carries the others' cosignatures within
seconds of an event, and a witness refuses a history that differs from the one it cosigned. A
node that rewrites its log with its own key is refused by ``watchnet audit verify`` with no saved
state, by every witness and by its followers; a log with fewer cosignatures than the group
policy requires is refused too.

Real ``watchnet serve`` processes for three members. The hostile checkpoints are signed with
chain-a's own key (the case the witnesses exist for: a node rewriting its history cannot be
caught by its signature) and sent to chain-b's witness endpoint as any client could.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from governance.manifest import ORGANISATION_WITNESS
from node.cli.main import main
from node.demo.network import LocalNetwork, LocalNode, wait_for
from node.records.witnessing import log_verifier, witness_verifier
from protocol.canonical import b64url_decode
from protocol.checkpoint import Checkpoint
from protocol.merkle import MerkleLog
from protocol.note import NoteSigner, SignedNote
from protocol.witness import AddCheckpoint
from tests.test_federation import _sql, register, rewrite_last_event, unit

MEMBERS = ["chain-a", "chain-b", "chain-c"]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    with LocalNetwork(tmp_path_factory.mktemp("witness"), MEMBERS, sync_interval="1s").running() as network:
        yield network


@dataclass(frozen=True)
class Organisation:
    """The organisation's server (``gov serve --witness-key``) where a test asks a witness."""

    url: str
    node_id: str = ORGANISATION_WITNESS


def get_text(node: LocalNode | Organisation, path: str) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"{node.url}{path}", timeout=30) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def post_text(node: LocalNode | Organisation, path: str, body: bytes) -> tuple[int, str, str]:
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
    verifiers = [witness_verifier(manifest, m) for m in ("chain-b", "chain-c", ORGANISATION_WITNESS)]
    own = log_verifier(manifest, "chain-a")
    assert own is not None and all(v is not None for v in verifiers)
    started = time.monotonic()

    def cosigned() -> SignedNote | None:
        status, text, _ = get_text(a, "/v1/log/checkpoint")
        if status != 200:
            return None
        note = SignedNote.from_text(text)
        return note if len(note.signatures) == 4 else None

    note = wait_for(cosigned, timeout=30)
    print(
        f"\nchain-a's checkpoint cosigned by its three witnesses {time.monotonic() - started:.2f} s after the event"
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


def audit(net: LocalNetwork, node: LocalNode, *extra: str) -> tuple[int, str, str]:
    """``watchnet audit verify`` with no saved state, the organisation's root keys pinned: (exit, stdout, stderr)."""
    roots = [a for k in net.org_keys for a in ("--root-keyid", k.public.keyid)]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["audit", "verify", "--url", node.url, "--token", node.tokens["aud1"], *roots, *extra])
    return code, out.getvalue(), err.getvalue()


def witnessed_by(witness: LocalNode | Organisation, origin: str) -> Checkpoint | None:
    """The checkpoint of ``origin`` that ``witness`` last cosigned (its read endpoint)."""
    status, text, _ = get_text(
        witness, "/v1/witness/checkpoint?" + urllib.parse.urlencode({"origin": origin})
    )
    return Checkpoint.from_text(SignedNote.from_text(text).text) if status == 200 else None


def test_a_node_that_rewrites_its_history_is_refused_by_auditors_witnesses_and_followers(
    net: LocalNetwork,
) -> None:
    a, b, c = (net.node(m) for m in MEMBERS)
    manifest = net.current_manifest()
    assert manifest.policy.witness.required == 1  # the demo group's policy
    origin = f"watchnet/{manifest.group_id}/chain-c"
    register(c, unit(903))
    register(c, unit(904))
    size = c.call("GET", "/v1/log/head")[1]["signed"]["tree_size"]
    assert wait_for(
        lambda: all((w := witnessed_by(x, origin)) and w.size == size for x in (a, b)), timeout=30
    )
    assert wait_for(lambda: _sql(b, "select tree_size from peer_state where peer='chain-c'") == [(size,)], 15)
    code, out, err = audit(net, c, "--json")
    honest = json.loads(out)
    assert (code, honest["ok"]) == (0, True), (out, err)
    assert honest["witnesses"] == {
        "required": 1,
        "cosigned_by": {"chain-a": size, "chain-b": size, ORGANISATION_WITNESS: size},
    }
    org = Organisation(net.org_url)
    before = {x.node_id: witnessed_by(x, origin) for x in (a, b, org)}

    # chain-c rewrites its last event: another event at the same index, signed with its own key
    rewrite_last_event(c, size, unit(905))
    status, head = c.call("GET", "/v1/log/head")
    assert status == 200 and head["signed"]["tree_size"] == size
    rewritten_root = b64url_decode(head["signed"]["root_hash"])
    assert rewritten_root != before["chain-b"].root_hash  # type: ignore[union-attr]

    # its followers flag the fork
    for follower in (a, b):
        assert wait_for(
            lambda f=follower: _sql(f, "select status from peer_state where peer='chain-c'") == [("forked",)],
            15,
        )
    # every witness refuses the rewritten checkpoint, signed by chain-c's own key, from the size it cosigned
    status, text, _ = get_text(c, "/v1/log/checkpoint")
    note = SignedNote.from_text(text)
    assert Checkpoint.from_text(note.text).root_hash == rewritten_root
    assert len(note.signatures) == 1  # the cosignatures of the old history are not shown for the new one
    plain = SignedNote(note.text, note.signatures[:1])
    for witness in (a, b, org):
        status, text, _ = post_text(
            witness, "/v1/witness/add-checkpoint", AddCheckpoint(size, (), plain).to_bytes()
        )
        assert status == 422, text
        assert witnessed_by(witness, origin) == before[witness.node_id]  # still the history it cosigned
    # and an auditor with no saved state refuses it, in one line, with no traceback
    code, out, err = audit(net, c, "--witness-wait", "0s")
    failures = [line for line in out.splitlines() if line.strip().startswith("FAIL")]
    print("\n" + "\n".join(failures))
    assert code == 1 and "Traceback" not in out + err, (out, err)
    assert len(failures) == 1, out
    reason = (
        "FAIL witness_mismatch: chain-c's log differs from the history held by witness chain-a, "
        "witness chain-b, witness organisation"
    )
    assert failures[0].strip().split(" (")[0] == reason, out


def test_a_log_with_fewer_cosignatures_than_the_policy_requires_is_refused(net: LocalNetwork) -> None:
    a = net.node("chain-a")
    register(a, unit(906))
    size = a.call("GET", "/v1/log/head")[1]["signed"]["tree_size"]
    origin = f"watchnet/{net.current_manifest().group_id}/chain-a"
    assert wait_for(
        lambda: (w := witnessed_by(net.node("chain-b"), origin)) is not None and w.size == size, 30
    )
    published = net.update(
        lambda m: m.with_changes(policy=replace(m.policy, witness=replace(m.policy.witness, required=4)))
    ).payload
    try:
        assert wait_for(
            lambda: a.call("GET", "/v1/manifest")[1]["signed"]["version"] == published.version, 30
        )
        code, out, _ = audit(net, a, "--witness-wait", "0s", "--json")
        report = json.loads(out)
        assert code == 1 and not report["ok"], out
        assert report["witnesses"]["required"] == 4 and "chain-b" in report["witnesses"]["cosigned_by"]
        found = len(report["witnesses"]["cosigned_by"])
        assert report["problems"] == [
            f"cosignatures_missing: found {found} of the 4 required witness cosignatures "
            f"(3 witnesses in the manifest; cosigned: "
            + ", ".join(f"{w} at size {n}" for w, n in sorted(report["witnesses"]["cosigned_by"].items()))
            + ")"
        ], report["problems"]
    finally:
        restored = net.update(
            lambda m: m.with_changes(policy=replace(m.policy, witness=replace(m.policy.witness, required=1)))
        )
        assert wait_for(
            lambda: a.call("GET", "/v1/manifest")[1]["signed"]["version"] == restored.payload.version, 30
        )


def test_the_witness_read_endpoint_answers_what_it_cosigned_and_refuses_bad_origins(
    net: LocalNetwork,
) -> None:
    a, b = net.node("chain-a"), net.node("chain-b")
    register(a, unit(907))
    size = a.call("GET", "/v1/log/head")[1]["signed"]["tree_size"]
    origin = f"watchnet/{net.current_manifest().group_id}/chain-a"
    assert wait_for(lambda: (w := witnessed_by(b, origin)) is not None and w.size >= size, 30)
    status, text, headers = get_text(
        b, "/v1/witness/checkpoint?" + urllib.parse.urlencode({"origin": origin})
    )
    note = SignedNote.from_text(text)
    keys = [
        log_verifier(net.current_manifest(), "chain-a"),
        witness_verifier(net.current_manifest(), "chain-b"),
    ]
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert note.verify(keys) == keys  # type: ignore[arg-type]
    status, text, _ = get_text(b, "/v1/witness/checkpoint?origin=" + urllib.parse.quote(f"{origin}-x"))
    assert status == 404 and text.startswith("unknown_log: ")
    for bad in (
        "",
        "?origin=",
        "?origin=" + urllib.parse.quote("a b"),
        "?origin=a%2Bb",
        "?origin=" + "x" * 161,
    ):
        status, text, _ = get_text(b, "/v1/witness/checkpoint" + bad)
        assert (status, json.loads(text)["error"]) == (400, "malformed"), bad
