"""The backup and restore drill, on real processes: back a node up, delete someone and register
someone else, restore the backup, and watch that nobody deleted ever matches again, that the log
goes on without a fork at every member, and that the later registration is reported lost.

``run_drill`` returns what it observed (``Observations``) rather than a verdict, so a test can
assert on each fact and ``deploy/restore-drill.sh`` can print them; ``main`` exits 1 when one of
the checks fails. Polling runs in a thread from before the restored node starts until its restore
is complete: its own ``/v1/match`` and a member's ``/v1/query`` for the deleted face, every
``POLL`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from node.demo.network import LocalNetwork, LocalNode, wait_for
from protocol.embedding import Embedding

__all__ = ["Observations", "main", "run_drill"]

POLL = 0.1
PASSPHRASE = "restore drill passphrase"  # noqa: S105 (the drill's own throwaway backup)
MEMBERS = ["chain-a", "chain-b", "chain-c"]


def face(seed: int) -> Embedding:
    v = np.random.default_rng(seed).normal(size=512).astype("<f4")
    return Embedding((v / np.linalg.norm(v)).astype("<f4").tobytes())


def register(node: LocalNode, embedding: Embedding) -> str:
    status, proposed = node.call(
        "POST",
        "/v1/entries",
        "reg1",
        {
            "embedding": embedding.to_str(),
            "category": "shoplifting",
            "evidence": {"kind": "police-report", "reference": f"TKY-{secrets.token_hex(3)}"},
            "incident_date": "2026-11-01",
            "site": "store-01",
        },
    )
    if status != 201:
        raise RuntimeError(f"registration refused: {status} {proposed}")
    status, approved = node.call("POST", f"/v1/entries/{proposed['entry_id']}/approve", "off1")
    if status != 200:
        raise RuntimeError(f"approval refused: {status} {approved}")
    return str(proposed["entry_id"])


@dataclass
class Observations:
    engine: str
    log_size_before: int = 0
    backup_log_size: int = 0
    deleted: str = ""
    kept: str = ""
    later: str = ""
    polls: int = 0
    refused_while_restoring: int = 0
    retry_after: set[str] = field(default_factory=set)
    deleted_matched: list[str] = field(default_factory=list)
    """Every moment the deleted face matched anywhere (must stay empty)."""
    readiness_failing: list[str] = field(default_factory=list)
    log_size_after: int = 0
    kept_matches_after: bool = False
    later_status: str = ""
    report_lost: list[str] = field(default_factory=list)
    restore_audit: list[str] = field(default_factory=list)
    receipts_for_deletion: list[str] = field(default_factory=list)
    peer_states: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Each follower's (status, size) of the restored node's log after one more event."""
    size_after_new_event: int = 0
    seconds: float = 0.0

    def failures(self) -> list[str]:
        found = []
        if self.deleted_matched:
            found.append(f"the deleted entry matched: {self.deleted_matched[:3]}")
        if self.log_size_after != self.log_size_before:
            found.append(f"log size {self.log_size_after} after the restore, {self.log_size_before} before")
        if self.later_status != "lost" or self.later not in self.report_lost:
            found.append(f"the later registration is {self.later_status!r}, report lost {self.report_lost}")
        if not self.kept_matches_after:
            found.append("the entry kept does not match after the restore")
        bad = {p: s for p, s in self.peer_states.items() if s != ("ok", self.size_after_new_event)}
        if bad:
            found.append(f"followers not in step after the next event: {bad}")
        if sorted(self.receipts_for_deletion) != sorted(m for m in MEMBERS if m != "chain-a"):
            found.append(f"receipts for the deletion from {self.receipts_for_deletion}")
        return found

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["retry_after"] = sorted(self.retry_after)
        data["failures"] = self.failures()
        return data


def _watchnet(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (our own command)
        [sys.executable, "-m", "node.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        env={**os.environ, "WATCHNET_BACKUP_PASSPHRASE": PASSPHRASE},
        stdin=subprocess.DEVNULL,
    )


def _log_size(node: LocalNode) -> int:
    status, body = node.call("GET", "/v1/log/head")
    return int(body.get("signed", body)["tree_size"]) if status == 200 else -1


def _followed(node: LocalNode, owner: str) -> tuple[str, int]:
    status, body = node.call("GET", "/v1/peers", "aud1")
    peer: dict[str, Any] = (
        next((p for p in body.get("peers", []) if p.get("node_id") == owner), {}) if status == 200 else {}
    )
    return str(peer.get("status")), int(peer.get("log_size", -1))


def _poll(
    a: LocalNode, b: LocalNode, target: Embedding, deleted: str, seen: Observations, stop: threading.Event
) -> None:
    import urllib.error
    import urllib.request

    def match_on_a() -> None:
        request = urllib.request.Request(  # noqa: S310 (the drill's own node)
            f"{a.url}/v1/match",
            data=json.dumps({"embeddings": [target.to_str()]}).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {a.tokens['op1']}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                body = json.loads(response.read())
        except urllib.error.HTTPError as e:
            body = json.loads(e.read() or b"{}")
            if e.code == 503 and body.get("error") == "restoring":
                seen.refused_while_restoring += 1
                seen.retry_after.add(str(e.headers.get("Retry-After")))
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return  # not listening yet
        for hit in body.get("matches", []):
            if hit.get("entry_id") == deleted:
                seen.deleted_matched.append(f"{time.monotonic():.2f} /v1/match on chain-a")

    while not stop.is_set():
        match_on_a()
        status, body = b.call("POST", "/v1/query", "op1", {"embeddings": [target.to_str()]}, timeout=10)
        if status == 200:
            for hit in body.get("matches", []):
                if hit.get("entry_id") == deleted:
                    seen.deleted_matched.append(f"{time.monotonic():.2f} /v1/query from chain-b")
        seen.polls += 1
        time.sleep(POLL)


def run_drill(root: Path, database_server: str | None, progress: Any = lambda _m: None) -> Observations:
    started = time.monotonic()
    seen = Observations(engine="postgresql" if database_server else "sqlite")
    net = LocalNetwork(root, MEMBERS, sync_interval="1s", database_server=database_server)
    with net.running():
        a, b, c = (net.node(n) for n in MEMBERS)
        deleted_face, kept_face, later_face = face(9001), face(9002), face(9003)
        seen.deleted = register(a, deleted_face)
        seen.kept = register(a, kept_face)
        size = _log_size(a)
        wait_for(lambda: all(_followed(p, "chain-a") == ("ok", size) for p in (b, c)), 30)
        backup = root / "chain-a.wnbackup"
        progress("backup")
        _watchnet("backup", "create", "--node", str(a.directory), "--out", str(backup), "--with-keys")
        seen.backup_log_size = size
        status, _ = a.call(
            "POST", f"/v1/entries/{seen.deleted}/delete", "off2", {"reason": "data-subject-request"}
        )
        if status != 200:
            raise RuntimeError(f"deletion refused: {status}")
        seen.later = register(a, later_face)
        seen.log_size_before = _log_size(a)

        def confirmed() -> bool:
            events = a.call("GET", "/v1/propagation", "aud1")[1]["events"]
            return any(e["entry_id"] == seen.deleted and not e["missing"] for e in events)

        wait_for(confirmed, 30)
        wait_for(lambda: all(_followed(p, "chain-a") == ("ok", seen.log_size_before) for p in (b, c)), 30)
        progress("restore")
        a.stop()
        _watchnet("restore", str(backup), "--node", str(a.directory))
        stop = threading.Event()
        poller = threading.Thread(target=_poll, args=(a, b, deleted_face, seen.deleted, seen, stop))
        poller.start()
        try:
            a.start()

            def restored() -> bool:
                _status, body = a.call("GET", "/v1/health/ready")
                check = body.get("checks", {}).get("restore", {}) if isinstance(body, dict) else {}
                if not check.get("ok", False) and "restore" not in seen.readiness_failing:
                    seen.readiness_failing += list(body.get("failing", []))
                return bool(check.get("ok"))

            if not wait_for(restored, 60, interval=0.2):
                raise RuntimeError(f"the restore did not complete within 60 s; see {a.log_file}")
            time.sleep(1.0)  # a few more polls after the restore completed
        finally:
            stop.set()
            poller.join(timeout=30)
        seen.log_size_after = _log_size(a)
        status, body = a.call("POST", "/v1/match", "op1", {"embeddings": [kept_face.to_str()]})
        seen.kept_matches_after = status == 200 and any(h["entry_id"] == seen.kept for h in body["matches"])
        entries = a.call("GET", "/v1/entries", "off1")[1]["entries"]
        seen.later_status = next((str(e["status"]) for e in entries if e["entry_id"] == seen.later), "absent")
        report = json.loads(_watchnet("restore", "--report", "--json", "--node", str(a.directory)).stdout)
        seen.report_lost = list((report.get("last") or {}).get("lost", []))
        status, audit = a.call("GET", "/v1/audit?limit=1000", "aud1")
        seen.restore_audit = [r["target"] for r in audit.get("records", []) if r["action"] == "node.restore"]
        events = a.call("GET", "/v1/propagation", "aud1")[1]["events"]
        seen.receipts_for_deletion = next(
            ([x["member"] for x in e["confirmed"]] for e in events if e["entry_id"] == seen.deleted), []
        )
        progress("one more event")
        register(a, face(9004))
        seen.size_after_new_event = _log_size(a)
        wait_for(
            lambda: all(_followed(p, "chain-a") == ("ok", seen.size_after_new_event) for p in (b, c)), 30
        )
        seen.peer_states = {p.node_id: _followed(p, "chain-a") for p in (b, c)}
    net.destroy()
    seen.seconds = round(time.monotonic() - started, 1)
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="directory for the drill's network (made fresh)")
    parser.add_argument(
        "--database-server",
        default=os.environ.get("WATCHNET_DEMO_DATABASE_SERVER"),
        help="a PostgreSQL server URL without a database name (default: SQLite)",
    )
    args = parser.parse_args(argv)
    seen = run_drill(Path(args.root), args.database_server, lambda m: print(f"drill: {m}", file=sys.stderr))
    print(json.dumps(seen.to_json(), indent=1, sort_keys=True))
    return 1 if seen.failures() else 0


if __name__ == "__main__":
    raise SystemExit(main())
