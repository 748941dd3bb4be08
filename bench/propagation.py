"""Time from a deletion to the last member's signed receipt, on a local group of N real node processes.

For each group size N the script builds a ``LocalNetwork`` (an organisation and N members, each a
``watchnet serve`` process with its own SQLite database on 127.0.0.1), starts it, and waits until
every member has synced every peer once. Then, for each round, it registers an entry on the first
node (propose by reg1, approve by off1), waits until every other member has pulled that event, and
times the deletion: from the moment ``POST /v1/entries/{id}/delete`` returns to the moment the
owner's ``GET /v1/propagation`` lists no missing member for it (polled every ``--poll`` seconds,
so the figure is an upper bound that includes up to one poll period). The same deletion is also
timed from the owner's own clock: the receipts' ``received_at`` in the owner's database (full
precision, read-only) and, as the API shows them, in whole seconds.

As a raw baseline in the same run it times a plain HTTP round trip to every member at once
(``GET /v1/health`` to all N-1 members in parallel over aiohttp, keep-alive), so the ratio shows
what the protocol adds (notify, sealed pull of the log page, verify, apply, sign, deliver the
receipt, record it). It also reports each process's resident memory (VmRSS) and the CPU that the
whole group used during propagation and while idle (from /proc; no psutil needed).

The member nodes' federation schedule defaults to the node's own defaults for the periodic pull
(``sync_interval`` 30 s) and a 5 min manifest poll, so deletions travel by the push notification,
as in production; ``--sync-interval 2s --manifest-poll 2s`` reproduces the demo's busier schedule.

    python bench/propagation.py                     # N = 5 and 20, 10 rounds each
    python bench/propagation.py --sizes 5 --rounds 5
    python bench/propagation.py --quick             # N = 3, 2 rounds
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node.demo.network import LocalNetwork, LocalNode  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
POLLERS = ("aud1", "off1")
"""Accounts that may read /v1/propagation, used in turn so the fast poll stays under the per-account limit."""


# ----- small helpers ------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (with 10 rounds, p90 is the 9th value; with 5 it is the maximum)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}" if seconds >= 0.1 else f"{seconds * 1000:.1f}"


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` (clock ticks of /proc/<pid>/stat, 10 ms resolution)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def group_pids(net: LocalNetwork) -> dict[str, int]:
    pids = {n.node_id: n.process.pid for n in net.nodes.values() if n.process is not None}
    if net.org_process is not None:
        pids["org"] = net.org_process.pid
    return pids


def group_cpu(pids: dict[str, int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids.values())


def sqlite_time(text: str) -> float:
    """A ``received_at`` as SQLAlchemy stores it in SQLite (UTC, no offset) as epoch seconds."""
    parsed = datetime.fromisoformat(text)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def api_time(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


# ----- HTTP ---------------------------------------------------------------------------------------


class Client:
    """Staff calls over one keep-alive aiohttp session (the node's own ``call`` opens a socket each time)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.rate_limited = 0

    async def call(
        self, node: LocalNode, method: str, path: str, user: str | None = None, body: Any = None
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if user is not None:
            headers["Authorization"] = f"Bearer {node.tokens[user]}"
        data = None if body is None else json.dumps(body).encode()
        async with self.session.request(method, f"{node.url}{path}", data=data, headers=headers) as response:
            payload = await response.read()
            if response.status == 429:
                self.rate_limited += 1
            return response.status, json.loads(payload or b"null")

    async def ok(
        self, node: LocalNode, method: str, path: str, user: str | None = None, body: Any = None
    ) -> Any:
        status, answer = await self.call(node, method, path, user, body)
        if status not in (200, 201):
            raise RuntimeError(f"{method} {path} on {node.node_id} answered {status}: {answer}")
        return answer


async def register(client: Client, owner: LocalNode, seed: int) -> str:
    import numpy as np

    from protocol.embedding import Embedding

    v = np.random.default_rng(seed).normal(size=512).astype("<f4")
    embedding = Embedding((v / np.linalg.norm(v)).astype("<f4").tobytes())
    proposed = await client.ok(
        owner,
        "POST",
        "/v1/entries",
        "reg1",
        {
            "embedding": embedding.to_str(),
            "category": "shoplifting",
            "evidence": {"kind": "police-report", "reference": f"BENCH-{seed:06d}"},
            "incident_date": "2026-11-01",
            "site": "store-01",
        },
    )
    entry_id = str(proposed["entry_id"])
    await client.ok(owner, "POST", f"/v1/entries/{entry_id}/approve", "off1")
    return entry_id


async def wait_until(check: Any, timeout: float, interval: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done within {timeout:.0f}s")
        await asyncio.sleep(interval)


async def peer_views(client: Client, node: LocalNode) -> dict[str, dict[str, Any]]:
    answer = await client.ok(node, "GET", "/v1/peers", "off1")
    return {p["node_id"]: p for p in answer["peers"]}


async def all_synced_once(client: Client, net: LocalNetwork) -> bool:
    views = await asyncio.gather(*(peer_views(client, n) for n in net.nodes.values()))
    return all(p["status"] == "ok" and p["last_sync_at"] for view in views for p in view.values())


async def members_hold(client: Client, net: LocalNetwork, owner: str, size: int) -> bool:
    others = [n for n in net.nodes.values() if n.node_id != owner]
    views = await asyncio.gather(*(peer_views(client, n) for n in others))
    return all(view[owner]["log_size"] >= size for view in views)


async def health_fanout(session: aiohttp.ClientSession, members: list[LocalNode]) -> float:
    async def one(node: LocalNode) -> None:
        async with session.get(f"{node.url}/v1/health") as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"health of {node.node_id} answered {response.status}")

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in members))
    return time.perf_counter() - started


# ----- one group size -----------------------------------------------------------------------------


@dataclass
class Round:
    delete_call: float
    last_polled: float
    poll_period: float
    polls: int
    first_db: float
    last_db: float
    whole_seconds: int
    cpu_busy: float
    owner_cpu: float
    members_cpu: float
    health: list[float]


@dataclass
class SizeResult:
    n: int
    setup_s: float
    start_s: float
    rounds: list[Round] = field(default_factory=list)
    warmup: list[Round] = field(default_factory=list)
    idle_cores: float = 0.0
    rss_kib: dict[str, int] = field(default_factory=dict)
    rate_limited: int = 0


async def one_round(
    client: Client, net: LocalNetwork, owner: LocalNode, seed: int, poll: float, timeout: float
) -> Round:
    members = [n for n in net.nodes.values() if n is not owner]
    entry_id = await register(client, owner, seed)
    head = await client.ok(owner, "GET", "/v1/log/head")
    size = int(head["signed"]["tree_size"])
    await wait_until(
        lambda: members_hold(client, net, owner.node_id, size),
        timeout,
        0.1,
        "members pulling the registration",
    )
    await asyncio.sleep(0.3)  # let the owner's notify round and the members' audit flushes settle
    health = [await health_fanout(client.session, members) for _ in range(5)]

    pids = group_pids(net)
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    sent = time.perf_counter()
    await client.ok(
        owner, "POST", f"/v1/entries/{entry_id}/delete", "off2", {"reason": "data-subject-request"}
    )
    returned = time.perf_counter()
    returned_wall = time.time()

    item: dict[str, Any] | None = None
    polls = 0
    poll_sent: list[float] = []
    while True:
        poll_sent.append(time.perf_counter())
        status, answer = await client.call(owner, "GET", "/v1/propagation", POLLERS[polls % len(POLLERS)])
        polls += 1
        arrived = time.perf_counter()
        if status == 200:
            item = next(
                (e for e in answer["events"] if e["entry_id"] == entry_id and e["kind"] == "deleted"), None
            )
            if item is not None and not item["missing"]:
                break
        elif status == 429:
            await asyncio.sleep(0.5)
        else:
            raise RuntimeError(f"GET /v1/propagation answered {status}: {answer}")
        if arrived - returned > timeout:
            missing = item["missing"] if item else "all"
            raise TimeoutError(
                f"deletion of {entry_id} not confirmed within {timeout:.0f}s; missing {missing}"
            )
        await asyncio.sleep(poll)
    cpu_used = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    assert item is not None
    if len(item["confirmed"]) != len(members):
        raise RuntimeError(f"{len(item['confirmed'])} receipts for {len(members)} members")

    with sqlite3.connect(f"file:{owner.directory / 'watchnet.db'}?mode=ro", uri=True) as db:
        rows = db.execute(
            "select received_at from receipt where event_id = ?", (item["event_id"],)
        ).fetchall()
    received = sorted(sqlite_time(r[0]) for r in rows)
    gaps = [b - a for a, b in itertools.pairwise(poll_sent)]
    return Round(
        delete_call=returned - sent,
        last_polled=arrived - returned,
        poll_period=statistics.mean(gaps) if gaps else 0.0,
        polls=polls,
        first_db=received[0] - returned_wall,
        last_db=received[-1] - returned_wall,
        whole_seconds=max(api_time(c["received_at"]) for c in item["confirmed"])
        - api_time(item["occurred_at"]),
        cpu_busy=sum(cpu_used.values()) / (arrived - sent),
        owner_cpu=cpu_used[owner.node_id],
        members_cpu=sum(v for k, v in cpu_used.items() if k not in (owner.node_id, "org")),
        health=health,
    )


async def measure(net: LocalNetwork, result: SizeResult, args: argparse.Namespace) -> None:
    owner = net.node(sorted(net.nodes)[0])
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        client = Client(session)
        await wait_until(
            lambda: all_synced_once(client, net), args.timeout * 2, 0.25, "first sync of every peer"
        )
        pids = group_pids(net)
        await asyncio.sleep(args.settle)  # start-up work (first builds, witnessing, reports) ends
        before, t0 = group_cpu(pids), time.perf_counter()
        await asyncio.sleep(args.idle)
        result.idle_cores = (group_cpu(pids) - before) / (time.perf_counter() - t0)
        for i in range(args.warmup + args.rounds):
            r = await one_round(client, net, owner, 1000 * result.n + i, args.poll, args.timeout)
            (result.warmup if i < args.warmup else result.rounds).append(r)
            label = "warm-up" if i < args.warmup else f"round {i - args.warmup + 1}"
            print(
                f"  N={result.n} {label:>8}: delete call {ms(r.delete_call)} ms, last receipt {ms(r.last_polled)} ms "
                f"polled / {ms(r.last_db)} ms owner clock (first {ms(r.first_db)} ms), "
                f"health fan-out {ms(statistics.median(r.health))} ms, group CPU {r.cpu_busy:.2f} cores "
                f"(owner {r.owner_cpu * 1000:.0f} ms, members {r.members_cpu * 1000:.0f} ms)",
                flush=True,
            )
        result.rss_kib = {name: rss_kib(pid) for name, pid in group_pids(net).items()}
        result.rss_kib["bench"] = rss_kib(os.getpid())
        result.rate_limited = client.rate_limited


def run_size(n: int, args: argparse.Namespace) -> SizeResult:
    members = [f"chain-{i:02d}" for i in range(n)]
    tmp = tempfile.mkdtemp(prefix=f"watchnet-prop-{n}-")
    net = LocalNetwork(Path(tmp), members, sync_interval=args.sync_interval, manifest_poll=args.manifest_poll)
    try:
        t = time.perf_counter()
        net.create()
        setup = time.perf_counter() - t
        t = time.perf_counter()
        net.start()
        result = SizeResult(n=n, setup_s=setup, start_s=time.perf_counter() - t)
        print(f"N={n}: created in {setup:.1f}s, started in {result.start_s:.1f}s ({tmp})", flush=True)
        asyncio.run(measure(net, result, args))
        return result
    finally:
        net.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


# ----- report -------------------------------------------------------------------------------------


def report(results: list[SizeResult], args: argparse.Namespace) -> None:
    print()
    print(
        f"propagation of a deletion, {args.rounds} rounds per size (+{args.warmup} warm-up not counted), "
        f"poll every {args.poll * 1000:.0f} ms, sync_interval {args.sync_interval}, manifest_poll {args.manifest_poll}"
    )
    print()
    print(
        "| nodes | DELETE call p50 | last receipt p50 | p90 | max | owner clock p50 | p90 | max "
        "| first receipt p50 | whole-s max | health fan-out p50 | ratio |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        polled = [x.last_polled for x in r.rounds]
        db = [x.last_db for x in r.rounds]
        health = [h for x in r.rounds for h in x.health]
        p50 = statistics.median(polled)
        print(
            f"| {r.n} | {ms(statistics.median([x.delete_call for x in r.rounds]))} ms "
            f"| {ms(p50)} ms | {ms(pct(polled, 90))} ms | {ms(max(polled))} ms "
            f"| {ms(statistics.median(db))} ms | {ms(pct(db, 90))} ms | {ms(max(db))} ms "
            f"| {ms(statistics.median([x.first_db for x in r.rounds]))} ms "
            f"| {max(x.whole_seconds for x in r.rounds)} s "
            f"| {ms(statistics.median(health))} ms | {p50 / statistics.median(health):.0f}x |"
        )
    print()
    print(
        "| nodes | create | start | idle CPU: all (cores), per process (% of a core) | CPU while propagating (cores) | CPU per deletion: owner "
        "| members (sum) | RSS per node p50 | max | all nodes | polls/round | 429s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        nodes = [v for k, v in r.rss_kib.items() if k.startswith("chain-")]
        print(
            f"| {r.n} | {r.setup_s:.1f} s | {r.start_s:.1f} s | {r.idle_cores:.2f}, {100 * r.idle_cores / (r.n + 1):.1f}% "
            f"| {statistics.median([x.cpu_busy for x in r.rounds]):.2f} "
            f"| {statistics.median([x.owner_cpu for x in r.rounds]) * 1000:.0f} ms "
            f"| {statistics.median([x.members_cpu for x in r.rounds]) * 1000:.0f} ms "
            f"| {statistics.median(nodes) / 1024:.0f} MiB | {max(nodes) / 1024:.0f} MiB "
            f"| {sum(nodes) / 1024:.0f} MiB | {statistics.median([x.polls for x in r.rounds]):.0f} "
            f"| {r.rate_limited} |"
        )
    print()
    for r in results:
        per_process = ", ".join(f"{k} {v / 1024:.0f}" for k, v in r.rss_kib.items())
        print(f"RSS (MiB) N={r.n}: {per_process}")
    print()
    print(
        "last receipt: DELETE returned -> first poll of GET /v1/propagation showing no missing member "
        "(upper bound; mean poll period "
        + ", ".join(
            f"N={r.n} {statistics.mean([x.poll_period for x in r.rounds]) * 1000:.0f} ms" for r in results
        )
        + "). owner clock: the receipts' received_at in the owner's database minus the wall-clock time the "
        "DELETE returned (a receipt can precede the response). whole-s: latest received_at minus the event's "
        "occurred_at as the API shows them (seconds). health fan-out: GET /v1/health to the N-1 members in "
        "parallel; ratio = last receipt p50 / health p50. CPU: user+system of every node and the organisation "
        f"process over the interval, in cores ({os.cpu_count()} available); per deletion: CPU time from the "
        "DELETE sent to the last poll, of the owner and of all other members together (10 ms ticks)."
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 20], help="group sizes (members)")
    parser.add_argument("--rounds", type=int, default=10, help="measured deletions per size")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured deletions first")
    parser.add_argument("--poll", type=float, default=0.02, help="seconds between polls of /v1/propagation")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for any one step")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of idle CPU measurement")
    parser.add_argument(
        "--settle",
        type=float,
        default=1.0,
        help="seconds to wait after every peer synced once before measuring idle CPU "
        "(20 s or more shows the steady state: start-up duties are done)",
    )
    parser.add_argument("--sync-interval", default="30s", help="members' periodic pull (node default 30s)")
    parser.add_argument("--manifest-poll", default="5m", help="members' manifest poll (node default 5m)")
    parser.add_argument("--keep", action="store_true", help="keep the node directories and logs")
    parser.add_argument("--quick", action="store_true", help="N=3, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.rounds = [3], 2
    if min(args.sizes) < 2 or args.rounds < 1:
        parser.error("sizes must be at least 2 and rounds at least 1")

    def terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through run_size's finally: LocalNetwork.stop()

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"aiohttp {aiohttp.__version__}",
        flush=True,
    )
    results = []
    try:
        for n in args.sizes:
            results.append(run_size(n, args))
    except KeyboardInterrupt:
        print("interrupted; nodes stopped", file=sys.stderr)
        return 130
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
