"""Background duties run once per node (the leader lease), and SQLite stays single-process.

Real ``watchnet serve`` workers of one node on one PostgreSQL database: exactly one is the leader
and runs the retention sweep; SIGKILL it and another takes over within one lease poll and
finishes the duty, deleting an expired entry exactly once. A second ``serve`` on an SQLite node is
refused at start. In process: a duty that raises is retried and counted in health, and a leader
whose lease connection is cut stops its duties at once while another worker takes them up.
"""

from __future__ import annotations

import asyncio
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from node.config import CONFIG_FILE, NodeConfig
from node.demo.network import LocalNode, _spawn, _wait_http, free_port
from node.files import PRIVATE_FILE, write_atomic
from node.storage.engine import make_engine
from tests.factories import embedding
from tests.nodeproc import NodeProcess

TAKEOVER_BOUND = 10.0
"""Seconds within which a surviving worker must lead after the leader is SIGKILLed."""
SWEEP_SPAN = '"name": "retention sweep"'


@dataclass
class Worker(LocalNode):
    """Another ``watchnet serve`` of a node directory: its own port and log file."""

    name: str = "worker-2"

    @property
    def log_file(self) -> Path:
        return self.directory / f"serve-{self.name}.log"

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        argv = ["serve", "--node", str(self.directory), "--port", str(self.port)]
        self.process = _spawn(argv, self.log_file)
        _wait_http(self.url, self.process, self.log_file)


def set_config(directory: Path, **changes: Any) -> None:
    path = directory / CONFIG_FILE
    config = NodeConfig.from_toml(path.read_text(encoding="utf-8"), directory)
    write_atomic(path, replace(config, **changes).to_toml().encode("utf-8"), mode=PRIVATE_FILE)


def ok(result: tuple[int, Any], status: int = 200) -> Any:
    assert result[0] == status, result
    return result[1]


def health(worker: LocalNode) -> dict[str, Any]:
    return dict(ok(worker.call("GET", "/v1/health", timeout=10)))


def leaders(workers: list[LocalNode]) -> list[LocalNode]:
    return [w for w in workers if health(w)["leader"]["is_leader"]]


def wait_for(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def expiring_entry(worker: LocalNode, seed: int, seconds: int) -> str:
    """An approved entry whose retention ends ``seconds`` from now."""
    body = {
        "embedding": embedding(seed).to_str(),
        "category": "shoplifting",
        "evidence": {"kind": "police-report", "reference": f"TKY-{seed}"},
        "incident_date": "2026-11-01",
        "site": "store-01",
    }
    entry_id = str(ok(worker.call("POST", "/v1/entries", "reg1", body), 201)["entry_id"])
    ok(worker.call("POST", f"/v1/entries/{entry_id}/approve", "off1"))
    soon = (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ok(
        worker.call(
            "POST", f"/v1/entries/{entry_id}/correct", "off2", {"reason": "error", "expires_at": soon}
        )
    )
    return entry_id


def expired_events(database_url: str, entry_id: str) -> int:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT count(*) FROM log_leaf WHERE entry_id = :e AND kind = 'expired'"),
                    {"e": entry_id},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def sweeps_logged(worker: LocalNode) -> int:
    """Retention sweeps this worker ran, from the spans its console exporter printed."""
    return worker.log_file.read_text(encoding="utf-8", errors="replace").count(SWEEP_SPAN)


# ----- PostgreSQL: two workers, one leader --------------------------------------------------------


@pytest.fixture
def two_workers(tmp_path: Path, database_url: str) -> Iterator[tuple[list[LocalNode], str]]:
    """chain-a on a fresh PostgreSQL database, served by two workers; a sweep every second and
    spans printed to each worker's log (so the sweeps each worker ran can be counted)."""
    node = NodeProcess.create(tmp_path, database_url=database_url)
    set_config(node.directory, retention_sweep=timedelta(seconds=1), telemetry_exporter="console")
    other = Worker(node.node_id, node.directory, free_port(), tokens=node.tokens)
    workers: list[LocalNode] = [node, other]
    try:
        node.start()
        other.start()
        yield workers, database_url
    finally:
        for worker in workers:
            worker.stop()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_one_leader_runs_the_duties_and_another_takes_over_after_sigkill(
    two_workers: tuple[list[LocalNode], str],
) -> None:
    workers, database_url = two_workers

    # the sweep runs in one worker only (counted from its spans, which exist with or without a lease)
    first = [expiring_entry(workers[1], seed, 2) for seed in (1, 2)]
    for entry_id in first:
        wait_for(f"{entry_id} expired", lambda e=entry_id: expired_events(database_url, e), 20)
    time.sleep(6)  # the span exporter writes every 5 s
    swept = {w.log_file.name: sweeps_logged(w) for w in workers}
    print(f"retention sweeps per worker: {swept}")
    assert sorted(swept.values())[0] == 0 and sorted(swept.values())[1] > 0, (
        f"the retention sweep ran in {sum(1 for n in swept.values() if n)} of 2 workers: {swept}"
    )
    for entry_id in first:
        assert expired_events(database_url, entry_id) == 1

    # health names exactly one leader, and it is the worker that swept
    states = {w.log_file.name: health(w)["leader"] for w in workers}
    assert sum(s["is_leader"] for s in states.values()) == 1, states
    (leader,) = (w for w in workers if states[w.log_file.name]["is_leader"])
    assert swept[leader.log_file.name] > 0
    lead = states[leader.log_file.name]
    assert lead["lease"] == "advisory-lock" and lead["since"] is not None
    assert str(leader.process.pid if leader.process else "") in lead["worker"]
    assert lead["duties"]["retention"]["runs"] > 0 and lead["duties"]["retention"]["running"]
    assert lead["duties"]["retention"]["last_ok"] is not None
    assert set(lead["duties"]) == {"retention", "alert_faces", "complaint_answers", "follow", "notify", "manifest", "witness", "restore"}
    follower = next(s for s in states.values() if not s["is_leader"])
    assert follower["since"] is None
    assert all(d["runs"] == 0 and not d["running"] for d in follower["duties"].values()), follower

    # SIGKILL the leader (twice, alternating): the survivor leads within one lease poll
    takeovers: list[float] = []
    for round_ in range(2):
        (leader,) = wait_for(
            "exactly one leader", lambda: len(leaders(workers)) == 1 and leaders(workers), 15
        )
        survivor = next(w for w in workers if w is not leader)
        due = expiring_entry(survivor, 10 + round_, 2)  # falls due while the lease changes hands
        started = time.monotonic()
        leader.kill()
        wait_for(
            "the survivor leads",
            lambda s=survivor: health(s)["leader"]["is_leader"],
            TAKEOVER_BOUND + 5,
        )
        takeovers.append(time.monotonic() - started)
        # the duty the new leader started completes: the entry expires, exactly once
        wait_for(f"{due} expired", lambda e=due: expired_events(database_url, e), 20)
        time.sleep(2.5)  # two more sweeps: none may expire it again
        assert expired_events(database_url, due) == 1
        retention = health(survivor)["leader"]["duties"]["retention"]
        assert retention["running"] and retention["runs"] > 0 and retention["errors"] == 0, retention
        leader.start()  # back as a follower
        assert not health(leader)["leader"]["is_leader"]
    print(f"takeover after SIGKILL of the leader: {', '.join(f'{t:.2f} s' for t in takeovers)}")
    assert max(takeovers) < TAKEOVER_BOUND, takeovers
    assert len(leaders(workers)) == 1


# ----- SQLite: one process ------------------------------------------------------------------------


def test_a_second_serve_on_an_sqlite_node_is_refused(tmp_path: Path) -> None:
    node = NodeProcess.create(tmp_path)
    node.start()
    try:
        assert node.process is not None
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "node.cli.main",
                "serve",
                "--node",
                str(node.directory),
                "--port",
                str(free_port()),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert second.returncode == 2, (second.returncode, second.stdout[-2000:], second.stderr[-2000:])
        database = NodeConfig.load(node.directory).effective_database_url.removeprefix("sqlite:///")
        assert (
            f"another watchnet serve (pid {node.process.pid}) is using {database}; "
            "for several workers use PostgreSQL: see docs/operations.md"
        ) in second.stderr, second.stderr
        assert "serving node" not in second.stdout
        assert health(node)["status"] == "ok", "the first keeps serving"
        lock = node.directory / "serve.lock"
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        assert lock.read_text().strip() == str(node.process.pid)
        assert health(node)["leader"]["lease"] == "single-process"
        assert health(node)["leader"]["is_leader"]
    finally:
        node.stop()

    again = Worker(node.node_id, node.directory, free_port(), tokens=node.tokens, name="again")
    again.start()  # after the first stopped, a new one starts
    try:
        assert health(again)["status"] == "ok"
        again.kill()  # a lock held by a killed process ends with it: no stale lock file blocks
        again.start()
        assert again.process is not None
        assert (node.directory / "serve.lock").read_text().strip() == str(again.process.pid)
    finally:
        again.stop()


# ----- in process: supervision and a cut lease connection ------------------------------------------


def test_a_duty_that_raises_is_retried_and_counted_in_health(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from node.app.server import build_app
    from node.context import NodeContext

    node = NodeProcess.create(tmp_path)
    context = NodeContext.load(node.directory)
    calls: list[datetime] = []
    expire_due = context.registry.expire_due

    def flaky(now: datetime) -> list[str]:
        calls.append(now)
        if len(calls) <= 2:
            raise RuntimeError("the database went away")
        return expire_due(now)

    context.registry.expire_due = flaky  # type: ignore[method-assign]
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        app = build_app(context, federate=False)
        async with TestClient(TestServer(app)) as client:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                seen["health"] = await (await client.get("/v1/health")).json()
                if seen["health"]["leader"]["duties"]["retention"]["runs"] >= 1:
                    break
                await asyncio.sleep(0.1)

    try:
        asyncio.run(scenario())
    finally:
        context.engine.dispose()
    retention = seen["health"]["leader"]["duties"]["retention"]
    assert retention["errors"] == 2 and retention["last_error"] == "RuntimeError", retention
    assert retention["runs"] >= 1 and retention["last_ok"] is not None and retention["running"], retention
    assert len(calls) >= 3
    assert calls[2] - calls[0] >= timedelta(seconds=2.5), "backed off: 1 s, then 2 s"


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_leader_whose_lease_connection_is_cut_stops_its_duties_at_once(database_url: str) -> None:
    from node.app.leader import DutyState, LeaderLease, lease_key

    engine = make_engine(database_url)
    passes: dict[str, int] = {"a": 0, "b": 0}

    def duty_of(name: str) -> Any:
        async def loop(duty: DutyState) -> None:
            while True:
                passes[name] += 1
                duty.ok()
                await asyncio.sleep(0.05)

        return loop

    def lease_holders() -> list[int]:
        key = lease_key("chain-a") & 0xFFFFFFFFFFFFFFFF
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND classid = :hi AND objid = :lo AND objsubid = 1 "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                {"hi": key >> 32, "lo": key & 0xFFFFFFFF},
            ).all()
        return [int(r[0]) for r in rows]

    def now() -> datetime:
        return datetime.now(UTC)

    async def scenario() -> dict[str, Any]:
        a = LeaderLease(engine, "chain-a", now, poll=0.5, worker="a")
        b = LeaderLease(engine, "chain-a", now, poll=0.5, worker="b")
        a.add_duty("work", duty_of("a"))
        b.add_duty("work", duty_of("b"))
        await a.start()
        for _ in range(50):
            if a.is_leader:
                break
            await asyncio.sleep(0.1)
        await b.start()
        await asyncio.sleep(1.5)
        out: dict[str, Any] = {"a_led": a.is_leader, "b_led": b.is_leader, "b_passes": passes["b"]}
        (holder,) = await asyncio.to_thread(lease_holders)
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": holder})
        cut = time.monotonic()
        while time.monotonic() - cut < 10:
            if a.is_leader is False and "dropped" not in out:
                out["dropped"] = time.monotonic() - cut
            if b.is_leader and "takeover" not in out:
                out["takeover"] = time.monotonic() - cut
            if "dropped" in out and "takeover" in out:
                break
            await asyncio.sleep(0.02)
        out["a_after"], out["b_after"] = a.is_leader, b.is_leader
        a_passes = passes["a"]
        await asyncio.sleep(1.5)
        out["a_passes_after_cut"] = passes["a"] - a_passes
        out["a_running"] = a.duty("work").running
        out["holders"] = await asyncio.to_thread(lease_holders)
        await b.stop()  # a graceful stop hands the lease over at once
        for _ in range(30):
            if a.is_leader:
                break
            await asyncio.sleep(0.1)
        out["a_leads_again"] = a.is_leader
        await a.stop()
        out["holders_at_end"] = await asyncio.to_thread(lease_holders)
        return out

    try:
        out = asyncio.run(scenario())
    finally:
        engine.dispose()
    print(
        f"lease connection of the leader cut: it dropped leadership after {out['dropped']:.2f} s, "
        f"the other worker led after {out['takeover']:.2f} s (poll 0.5 s)"
    )
    assert out["a_led"] and not out["b_led"] and out["b_passes"] == 0, out
    assert not out["a_after"] and out["b_after"], out
    assert out["dropped"] < 1.5 and out["takeover"] < 1.5, out
    assert out["a_passes_after_cut"] == 0 and not out["a_running"], "the old leader's duties stopped"
    assert len(out["holders"]) == 1, out
    assert out["a_leads_again"] and out["holders_at_end"] == [], out
