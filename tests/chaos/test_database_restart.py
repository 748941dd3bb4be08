"""PostgreSQL stopped and started again while a node serves (#16).

chain-a runs on a PostgreSQL cluster of the test's own (``initdb`` and ``pg_ctl`` as the postgres
user on a free port, ``fsync=off``, removed at the end whatever happened); chain-b on SQLite. An
entry at chain-a is given a retention that ends while the database is down. With the database
stopped (``pg_ctl stop -m fast``) chain-a stays live, readiness is 503 naming ``database``, and
every API request, a deletion among them, is answered a JSON 503 ``database_unavailable`` with
``Retry-After`` (never aiohttp's bare 500), and the deletion is not half-applied. Once it is
started again: the entry whose retention ended expires within a sweep (plus the lease poll that
gives the sweep back to its leader), a deletion made then gets chain-b's signed receipt at
chain-a once, readiness is green again and every duty has passed since. The times from the
database's return to each are printed.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from node.config import CONFIG_FILE, NodeConfig
from node.demo.network import LocalNetwork, LocalNode, wait_for
from node.files import PRIVATE_FILE, write_atomic
from tests.test_federation import register, unit
from tests.throwaway_pg import ThrowawayPostgres

MEMBERS = ["chain-a", "chain-b"]
SWEEP = timedelta(seconds=2)
"""chain-a's ``[retention] sweep_interval``."""
LEASE_POLL = timedelta(seconds=1)
"""chain-a's ``[federation] lease_poll``: how soon after the database is back the leader leads again."""
OUTAGE = 8.0
"""Seconds the database stays down."""
EXPIRY_BOUND = SWEEP.total_seconds() + LEASE_POLL.total_seconds() + 5
"""Database back -> entry expired: one sweep after the lease is held again, with margin for load."""
RECOVERY_DEADLINE = 45.0


def _tune(directory: Path) -> None:
    path = directory / CONFIG_FILE
    config = NodeConfig.from_toml(path.read_text(encoding="utf-8"), directory)
    config = replace(
        config, retention_sweep=SWEEP, federation=replace(config.federation, lease_poll=LEASE_POLL)
    )
    write_atomic(path, config.to_toml().encode("utf-8"), mode=PRIVATE_FILE)


@pytest.fixture(scope="module")
def net(
    tmp_path_factory: pytest.TempPathFactory, throwaway_postgres: ThrowawayPostgres
) -> Iterator[LocalNetwork]:
    url = throwaway_postgres.create_database("chain_a")
    network = LocalNetwork(
        tmp_path_factory.mktemp("dbrestart"), MEMBERS, sync_interval="1s", databases={"chain-a": url}
    )
    network.create()
    _tune(network.node("chain-a").directory)
    try:
        network.start()
        yield network
    finally:
        network.destroy()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def ask(node: LocalNode, method: str, path: str, user: str | None = None, body: Any = None) -> Answer:
    """One request, with the answer's headers and raw text (``LocalNode.call`` keeps neither)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{node.url}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if user is not None:
        request.add_header("Authorization", f"Bearer {node.tokens[user]}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Answer(response.status, dict(response.headers), response.read().decode())
    except urllib.error.HTTPError as e:
        return Answer(e.code, dict(e.headers), e.read().decode("utf-8", "replace"))


def assert_database_unavailable(answer: Answer, what: str) -> None:
    assert answer.status == 503, f"{what}: {answer.status} {answer.text[:300]}"
    assert answer.headers.get("Content-Type", "").startswith("application/json"), (what, answer.headers)
    assert answer.headers.get("Retry-After") == "5", (what, answer.headers)
    assert answer.json()["error"] == "database_unavailable", (what, answer.text)
    assert "Traceback" not in answer.text and "psycopg" not in answer.text, (what, answer.text)


def entry_status(node: LocalNode, entry_id: str) -> str | None:
    status, body = node.call("GET", "/v1/entries", "off1")
    if status != 200:
        return None
    return next((e["status"] for e in body["entries"] if e["entry_id"] == entry_id), None)


def matches(node: LocalNode, seed: int) -> list[str] | None:
    status, body = node.call("POST", "/v1/match", "op1", {"embeddings": [unit(seed).to_str()]})
    return [m["entry_id"] for m in body["matches"]] if status == 200 else None


def events_of(node: LocalNode, entry_id: str, kind: str) -> list[dict[str, Any]]:
    status, body = node.call("GET", "/v1/propagation", "off1")
    assert status == 200, body
    return [e for e in body["events"] if e["entry_id"] == entry_id and e["kind"] == kind]


def log_size(node: LocalNode) -> int:
    status, body = node.call("GET", "/v1/log/head")
    assert status == 200, body
    return int(body["signed"]["tree_size"])


def follows(reader: LocalNode, author: LocalNode, size: int) -> bool:
    status, body = reader.call("GET", "/v1/peers", "off1")
    return status == 200 and any(
        p["node_id"] == author.node_id and p["log_size"] >= size for p in body["peers"]
    )


def stale_duties(node: LocalNode, since: datetime) -> dict[str, str | None]:
    """The leader's duties without a successful pass since ``since`` (all of them off the leader)."""
    status, health = node.call("GET", "/v1/health")
    if status != 200 or not health["leader"]["is_leader"]:
        return {"(not the leader)": None}
    return {
        name: duty["last_ok"]
        for name, duty in health["leader"]["duties"].items()
        if duty["last_ok"] is None or datetime.fromisoformat(duty["last_ok"].replace("Z", "+00:00")) < since
    }


def test_postgres_stopped_and_started_while_chain_a_serves(
    net: LocalNetwork, throwaway_postgres: ThrowawayPostgres
) -> None:
    a, b = net.node("chain-a"), net.node("chain-b")
    expiring, deleted_after, deleted_during = (register(a, unit(seed)) for seed in (21, 22, 23))
    assert matches(a, 21) == [expiring]
    size = log_size(a)
    assert wait_for(lambda: follows(b, a, size), 20, interval=0.2), (
        "chain-b follows chain-a before the outage"
    )
    soon = (datetime.now(UTC) + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, body = a.call(
        "POST", f"/v1/entries/{expiring}/correct", "off2", {"reason": "error", "expires_at": soon}
    )
    assert status == 200, body

    throwaway_postgres.stop("fast")
    down = time.monotonic()
    try:
        assert entry_status(a, expiring) is None, "chain-a's database is down"
        ready = wait_for(lambda: (r := ask(a, "GET", "/v1/health/ready")).status == 503 and r, 10)
        assert ready, "readiness turns red while the database is down"
        assert "database" in ready.json()["failing"], ready.text
        assert "unreachable" in ready.json()["checks"]["database"]["detail"], ready.text
        assert ask(a, "GET", "/v1/health/live").status == 200
        for method, path, user, body in (
            ("GET", "/v1/entries", "off1", None),
            ("POST", "/v1/match", "op1", {"embeddings": [unit(21).to_str()]}),
            ("GET", "/v1/propagation", "off1", None),
            ("POST", f"/v1/entries/{deleted_during}/delete", "off2", {"reason": "error"}),
            ("POST", "/v1/entries", "reg1", {"category": "shoplifting"}),
        ):
            assert_database_unavailable(ask(a, method, path, user, body), f"{method} {path}")
        console = urllib.request.Request(
            f"{a.url}/console/login", data=b"username=off1&password=x", method="POST"
        )
        console.add_header("Content-Type", "application/x-www-form-urlencoded")
        with pytest.raises(urllib.error.HTTPError) as signing_in:
            urllib.request.urlopen(console, timeout=30)
        page = signing_in.value.read().decode()
        assert signing_in.value.code == 503, (signing_in.value.code, page[:300])
        assert signing_in.value.headers["Content-Type"].startswith("text/html"), signing_in.value.headers
        assert "database_unavailable" in page and "Traceback" not in page, page[:300]
        status, answer = b.call("POST", "/v1/query", "op1", {"embeddings": [unit(22).to_str()]})
        assert status == 200, answer
        (peer,) = answer["peers"]
        assert peer["node_id"] == "chain-a" and peer["status"] != "ok", peer  # unknown, never "no match"
        print(
            f"\nchain-b's query while chain-a's database is down: chain-a {peer['status']} {peer.get('error')}"
        )
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - down)))
        assert a.process is not None and a.process.poll() is None, "chain-a keeps serving"
    finally:
        throwaway_postgres.start()
    back = time.monotonic()
    back_wall = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    print(f"database down {back - down:.1f} s")

    deleted: dict[str, float] = {}

    def delete_after() -> bool:
        answer = ask(a, "POST", f"/v1/entries/{deleted_after}/delete", "off2", {"reason": "error"})
        if answer.status == 503:
            assert answer.json()["error"] == "database_unavailable", answer.text
            return False
        assert answer.status == 200, answer.text
        deleted["at"] = time.monotonic() - back
        return True

    assert wait_for(delete_after, 20, interval=0.2), "a deletion succeeds once the database is back"

    done: dict[str, float] = {}
    checks = {
        "expiry": lambda: entry_status(a, expiring) == "expired" and matches(a, 21) == [],
        "readiness": lambda: ask(a, "GET", "/v1/health/ready").status == 200,
        "receipt": lambda: any(
            c["member"] == "chain-b" for e in events_of(a, deleted_after, "deleted") for c in e["confirmed"]
        ),
        "every duty passed": lambda: stale_duties(a, back_wall) == {},
    }

    def all_done() -> bool:
        for name, check in checks.items():
            if name not in done and check():
                done[name] = time.monotonic() - back
        return len(done) == len(checks)

    wait_for(all_done, RECOVERY_DEADLINE, interval=0.2)
    figures = ", ".join(f"-> {name} {seconds:.2f} s" for name, seconds in done.items())
    print(f"database back {figures}; deletion accepted {deleted['at']:.2f} s after")
    assert set(done) == set(checks), f"not within {RECOVERY_DEADLINE:.0f} s: {set(checks) - set(done)}"
    assert done["expiry"] < EXPIRY_BOUND, f"the expired entry expired {done['expiry']:.1f} s after recovery"

    # the receipt arrived once; the expiry is an event of the log and propagates too
    (deletion,) = events_of(a, deleted_after, "deleted")
    assert [c["member"] for c in deletion["confirmed"]] == ["chain-b"], deletion
    assert len(events_of(a, expiring, "expired")) == 1
    assert wait_for(lambda: events_of(a, expiring, "expired")[0]["confirmed"], 20, interval=0.2)

    status, health = a.call("GET", "/v1/health")
    assert health["leader"]["is_leader"] and not stale_duties(a, back_wall), health["leader"]

    # the deletion refused during the outage was not half-applied: still active, no event, no receipt
    assert entry_status(a, deleted_during) == "active"
    assert events_of(a, deleted_during, "deleted") == []
    assert matches(a, 23) == [deleted_during]
    status, body = a.call("POST", f"/v1/entries/{deleted_during}/delete", "off2", {"reason": "error"})
    assert status == 200, body
    assert entry_status(a, deleted_during) == "deleted"

    # and its failure is in the audit log, written once the database was back
    def audited() -> bool:
        status, body = a.call("GET", "/v1/audit?limit=1000", "aud1")
        return status == 200 and any(
            r["action"] == "POST /v1/entries/{entry_id}/delete"
            and r["target"] == deleted_during
            and r["outcome"] == "failed:database_unavailable"
            for r in body["records"]
        )

    assert wait_for(audited, 10, interval=0.2), "the deletion refused during the outage is audited"

    # what the operator's log shows: no aiohttp error page, and the outage in a few lines, not a flood
    log = a.log_file.read_text(encoding="utf-8", errors="replace")
    assert "Error handling request" not in log, "aiohttp answered a bare 500"
    flush_failures = log.count("audit flush failed")
    assert 1 <= flush_failures <= OUTAGE / 10 + 2, f"{flush_failures} lines about failed audit flushes"
    outage_lines = log.count("database unavailable in")
    assert 1 <= outage_lines <= OUTAGE / 10 + 2, f"{outage_lines} lines about requests answered 503"
