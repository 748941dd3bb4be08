"""Peer queries and local matches through haproxy with 1 and 2 workers of one node, beside one worker alone.

The question (#15): does a second ``watchnet serve`` worker of the same node, behind the shipped
haproxy, add throughput on this 2-core machine, and how much of the machine does the load
generator itself take?

chain-a runs on a fresh PostgreSQL database on the shared server (``CREATE DATABASE`` with a
random name, ``DROP DATABASE ... WITH (FORCE)`` at the end) and is filled with N entries
(``bench.query.build_group``: ``--targets`` through the registry, the rest signed and logged in
bulk). Its ``config.toml`` trusts 127.0.0.1 as a proxy (as deploy/haproxy.cfg asks) and raises
``limits.peer_requests_per_minute`` and ``limits.requests_per_minute`` to 100000 so no rate limit
refuses. Two workers of it serve (``LocalNode.worker``), both until the end; haproxy runs
``deploy/haproxy.cfg`` as tests/test_tls_proxy.py does (its server lines replaced by the two
workers, the root-only lines dropped), TLS included with a throwaway CA
(``deploy/make-test-ca.sh``), because that is what production runs. For a 1-worker run the
second worker is put in maintenance on haproxy's admin socket (``disable server``; it stays
running, idle), for a 2-worker run it is enabled again and its health check waited for.

This process acts as chain-b (``bench.query.Querier``) and as a store's operator:

- ``peer``: sealed peer queries, ``POST /v1/peer/query``, sealed before the clock starts; every
  answer opened, verified and checked against the expected hit or miss after the run;
- ``match``: local matches, ``POST /v1/match`` with an operator's token, one embedding each; every
  answer checked (200, one face, exactly the expected entry or none).

Every run draws fresh faces (``Probes``), ``--hit-rate`` of them a registered face plus noise
(cosine ~0.71) with the hits going to the registered entries in turn, because the node refuses
near-identical probes and more than ``hits_per_entry_per_day`` hits on one entry per asker.

At each ``--concurrency`` level and for each kind, three runs back to back: ``direct`` (one
worker, plain HTTP, no haproxy), ``haproxy`` with 1 worker and with 2 workers (the client speaks
TLS to haproxy; each run opens its connections afresh, so the handshakes are in the figures).
Interleaving them this way keeps the other sessions' load on the machine from favouring one
setup. The ratio column ``x1 worker`` is req/s over the 1-worker haproxy run at the same level.
The raw limit rows come first, on the same vectors: ``faiss`` (one-query ``IndexFlatIP.search``,
one thread, the node's BLAS setting) and ``bare http`` (``bench.query.bare_http``: one aiohttp
process doing that search from JSON).

Each run's CPU is split by process from /proc: this client, the workers (and their children),
haproxy, the database's backends serving chain-a, and everything else on the machine
(``others``: the other sessions' work); each as a share of the machine's capacity (cores x wall
time). The client shares the 2 cores with what it drives, so 2 workers cannot reach 2x here: the
workers get what the client, haproxy and PostgreSQL leave. Runs where others took more than 10%
are flagged. The load average (``uptime``) is printed at the start and the end.

    python bench/cluster.py                 # 10k entries, 1000 requests a run, concurrency 1 8 32
    python bench/cluster.py --quick         # 1k entries, 200 requests, concurrency 1 16: 1-2 minutes
    python bench/cluster.py --entries 10000 --requests 2000 --concurrency 16 32
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.query import (  # noqa: E402 (after the path above)
    DIM,
    HIT_NOISE,
    PEER_RATE,
    WARMUP,
    Group,
    MachineLoad,
    Querier,
    Run,
    Vectors,
    b64url,
    bare_faiss,
    bare_http,
    build_group,
    drive,
    free_port,
    gallery,
    make_queries,
    pct,
    say,
)

if TYPE_CHECKING:
    from node.demo.network import LocalNode
    from protocol.query import QueryRequest

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
STAFF_RATE = 100_000
"""chain-a's limits.requests_per_minute for the run (per staff account; default 600)."""
BUSY = 0.10
"""A run during which other processes used more than this share of the machine is flagged."""
MAKE_CA = ROOT / "deploy" / "make-test-ca.sh"
BACKEND = "watchnet_workers"
IDLE_SECONDS = 5.0
"""How long the workers' own idle CPU (health checks, background duties) is measured before the runs."""


# ----- CPU accounting ----------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of one process (all its threads), or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    tick = float(os.sysconf("SC_CLK_TCK"))
    return (user + nice + system + irq + softirq + steal) / tick, sum(values) / tick


@dataclass
class Shares:
    """Each part's CPU over one run, as a share of the machine (cores x wall time)."""

    client: float
    workers: float
    haproxy: float
    postgres: float
    others: float
    cores: float
    wall: float

    def ms_per_request(self, share: float, requests: int) -> float:
        return share * self.cores * self.wall / requests * 1000


class CpuMeter:
    """CPU time of this process, of named process groups and of the machine over one block."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups

    def _snapshot(self) -> tuple[float, dict[str, dict[int, float]], tuple[float, float], float]:
        pids = {name: list_pids() for name, list_pids in self.groups.items()}
        seconds = {
            name: {pid: s for pid in group if (s := _cpu_seconds(pid)) is not None}
            for name, group in pids.items()
        }
        return time.process_time(), seconds, _machine_busy(), time.perf_counter()

    @contextmanager
    def measure(self) -> Iterator[list[Shares]]:
        out: list[Shares] = []
        start = self._snapshot()
        yield out
        end = self._snapshot()
        wall = end[3] - start[3]
        busy = end[2][0] - start[2][0]
        total = end[2][1] - start[2][1]
        cores = total / wall if wall > 0 else float(os.cpu_count() or 1)
        parts: dict[str, float] = {}
        for name in self.groups:
            before, after = start[1][name], end[1][name]
            # a process born during the run counts whole; one that ended is lost (rare: pooled)
            parts[name] = sum(s - before.get(pid, 0.0) for pid, s in after.items())
        client = end[0] - start[0]
        others = max(0.0, busy - client - sum(parts.values()))
        capacity = total if total > 0 else 1.0
        out.append(
            Shares(
                client / capacity,
                parts.get("workers", 0.0) / capacity,
                parts.get("haproxy", 0.0) / capacity,
                parts.get("postgres", 0.0) / capacity,
                others / capacity,
                cores,
                wall,
            )
        )


def process_tree(pids: list[int]) -> list[int]:
    """The given processes and all their descendants (a worker's helper processes count as its)."""
    import psutil

    out: list[int] = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            out += [pid, *(child.pid for child in process.children(recursive=True))]
        except psutil.Error:
            continue
    return out


# ----- the database, the CA and haproxy ----------------------------------------------------------


@contextmanager
def fresh_database(admin: str) -> Iterator[tuple[str, Callable[[], list[int]]]]:
    """A new database on the shared server: its SQLAlchemy URL and a function listing its backends."""
    import psycopg

    name = f"watchnet_bench_{secrets.token_hex(6)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    watcher = psycopg.connect(admin, autocommit=True)

    def backends() -> list[int]:
        rows = watcher.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,)).fetchall()
        return [int(row[0]) for row in rows]

    try:
        yield f"{base}/{name}", backends
    finally:
        watcher.close()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise SystemExit("haproxy is not installed (apt-get install haproxy)")
    return found


def haproxy_command(sock: Path, command: str) -> str:
    """One command on haproxy's admin socket; its answer."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(sock))
        s.sendall(command.encode() + b"\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode()


def haproxy_servers(sock: Path) -> dict[str, dict[str, str]]:
    """``show stat``: the backend's server rows by name."""
    lines = haproxy_command(sock, "show stat").splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
    return {r["svname"]: r for r in rows if r["pxname"] == BACKEND and r["svname"] != "BACKEND"}


@dataclass
class Proxy:
    process: subprocess.Popen[bytes]
    port: int
    socket: Path
    log: Path
    ports: list[int]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def servers(self) -> dict[str, dict[str, str]]:
        return haproxy_servers(self.socket)

    def use(self, workers: int, timeout: float = 30) -> None:
        """Put the first ``workers`` servers in service and the rest in maintenance; wait until
        haproxy routes to exactly those."""
        for i, port in enumerate(self.ports):
            verb = "enable" if i < workers else "disable"
            haproxy_command(self.socket, f"{verb} server {BACKEND}/worker{port}")
        want = {f"worker{p}": ("UP" if i < workers else "MAINT") for i, p in enumerate(self.ports)}
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"haproxy exited {self.process.returncode}: {self.log.read_text()[-2000:]}"
                )
            state = {name: row["status"] for name, row in self.servers().items()}
            if state == want:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"haproxy's servers are {state}, expected {want} within {timeout:.0f}s")
            time.sleep(0.2)

    def answered(self) -> dict[str, int]:
        """2xx responses so far, per server."""
        return {name: int(row["hrsp_2xx"] or 0) for name, row in self.servers().items()}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=15)


def start_haproxy(root: Path, ports: list[int], pem: Path) -> Proxy:
    """deploy/haproxy.cfg with one server line per worker (tests/test_tls_proxy.py's rewrite)."""
    from tests.test_tls_proxy import haproxy_config

    port = free_port()
    while port in ports:
        port = free_port()
    sock = root / "haproxy.sock"
    config = root / "haproxy.cfg"
    config.write_text(haproxy_config(ports))
    log = root / "haproxy.log"
    env = {
        **os.environ,
        "WATCHNET_BIND": f"127.0.0.1:{port}",
        "WATCHNET_TLS_PEM": str(pem),
        "WATCHNET_HAPROXY_SOCKET": str(sock),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [haproxy_binary(), "-db", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    proxy = Proxy(process, port, sock, log, ports)
    deadline = time.monotonic() + 30
    while not sock.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            proxy.stop()
            raise RuntimeError(f"haproxy did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    return proxy


def wait_ready(node: LocalNode, timeout: float = 180) -> None:
    """Until the worker's readiness says 200 (its first store check over: queries are answered)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if node.process is None or node.process.poll() is not None:
            raise RuntimeError(f"worker on port {node.port} exited: {node.log_file.read_text()[-1500:]}")
        try:
            with urllib.request.urlopen(f"{node.url}/v1/health/ready", timeout=5) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as e:
            last = e.read().decode("utf-8", "replace")[:300]
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(0.3)
    raise RuntimeError(f"worker on port {node.port} not ready within {timeout:.0f}s: {last}")


# ----- the two kinds of request --------------------------------------------------------------------


class Probes:
    """Fresh query vectors for every run, hits spread evenly over the registered entries.

    The node refuses what looks like probing (``policy.disclosure``): near-identical probes
    hitting one entry ``burst_hits`` times within ``burst_window``, and more than
    ``hits_per_entry_per_day`` hits on one entry for one asker. A store's cameras never send the
    same face vector twice, so neither does this: every run draws new faces and new noise, and
    the hits go to the registered entries in turn.
    """

    def __init__(self, targets: Vectors, hit_rate: float, seed: int) -> None:
        self.targets = targets
        self.hit_rate = hit_rate
        self.rng = np.random.default_rng(seed)
        self.turn = 0

    def draw(self, count: int) -> tuple[Vectors, list[int | None]]:
        out = self.rng.standard_normal((count, DIM), dtype=np.float32)
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        expected: list[int | None] = [None] * count
        for i in self.rng.choice(count, size=round(count * self.hit_rate), replace=False):
            target = self.turn % len(self.targets)
            self.turn += 1
            noisy = self.targets[target] + HIT_NOISE * out[i]
            out[i] = noisy / np.linalg.norm(noisy)
            expected[int(i)] = target
        return out, expected


@dataclass
class Kind:
    """One kind of request: where it goes, fresh bodies for a run, and the check of every reply."""

    name: str
    path: str
    headers: dict[str, str]
    bodies: Callable[[int], list[bytes]]
    check: Callable[[Run], int]
    """Raises on any wrong reply of the last bodies drawn; returns the number of hits."""


def peer_kind(group: Group, probes: Probes) -> Kind:
    querier = Querier(group)
    sealed: list[tuple[QueryRequest, bytes]] = []
    expected: list[int | None] = []

    def bodies(count: int) -> list[bytes]:
        vectors, expected[:] = probes.draw(count)
        sealed[:] = [querier.seal(q) for q in vectors]
        return [raw for _, raw in sealed]

    def check(run: Run) -> int:
        hits = 0
        for i, (status, reply) in enumerate(zip(run.statuses, run.replies, strict=True)):
            if status != 200:
                raise RuntimeError(f"peer query {i} answered {status}: {reply[:300]!r}")
            response = querier.open(reply, sealed[i][0])
            found = [m.entry.payload.entry_id for m in response.matches]
            target = expected[i]
            want = [] if target is None else [group.entry_ids[target]]
            if found != want:
                raise RuntimeError(f"peer query {i} matched {found}, expected {want}")
            hits += len(found)
        return hits

    return Kind("peer", "/v1/peer/query", {}, bodies, check)


def match_kind(group: Group, probes: Probes) -> Kind:
    expected: list[int | None] = []

    def bodies(count: int) -> list[bytes]:
        vectors, expected[:] = probes.draw(count)
        return [json.dumps({"embeddings": [b64url(q)]}).encode() for q in vectors]

    def check(run: Run) -> int:
        hits = 0
        for i, (status, reply) in enumerate(zip(run.statuses, run.replies, strict=True)):
            if status != 200:
                raise RuntimeError(f"match {i} answered {status}: {reply[:300]!r}")
            answer = json.loads(reply)
            found = [m["entry_id"] for m in answer["matches"]]
            target = expected[i]
            want = [] if target is None else [group.entry_ids[target]]
            if answer["faces"] != 1 or found != want:
                raise RuntimeError(f"match {i}: {answer['faces']} faces, matched {found}, expected {want}")
            hits += len(found)
        return hits

    token = group.a.tokens["op1"]
    return Kind("match", "/v1/match", {"Authorization": f"Bearer {token}"}, bodies, check)


# ----- rows ----------------------------------------------------------------------------------------


@dataclass
class Row:
    mode: str
    workers: str
    concurrency: int
    rps: float
    p50: float
    p99: float
    requests: int
    shares: Shares | None = None
    one_worker: float | None = None
    direct: float | None = None
    split: str = ""

    @property
    def busy(self) -> bool:
        return self.shares is not None and self.shares.others > BUSY


def print_table(rows: list[Row]) -> None:
    head = (
        f"{'mode':<14} | {'wk':>2} | {'conc':>4} | {'req/s':>6} | {'p50 ms':>7} | {'p99 ms':>7} | "
        f"{'x1 worker':>9} | {'x direct':>8} | {'client':>6} | {'workers':>7} | {'haproxy':>7} | "
        f"{'pg':>5} | {'others':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        one = f"{r.one_worker:.2f}x" if r.one_worker is not None else ""
        direct = f"{r.direct:.2f}x" if r.direct is not None else ""
        s = r.shares
        cpu = (
            f"{s.client:>6.0%} | {s.workers:>7.0%} | {s.haproxy:>7.0%} | {s.postgres:>5.0%} | {s.others:>6.0%}"
            if s is not None
            else f"{'':>6} | {'':>7} | {'':>7} | {'':>5} | {'':>6}"
        )
        flag = " *" if r.busy else ""
        print(
            f"{r.mode:<14} | {r.workers:>2} | {r.concurrency:>4} | {r.rps:>6.0f} | {r.p50:>7.2f} | "
            f"{r.p99:>7.2f} | {one:>9} | {direct:>8} | {cpu}{flag}"
        )


def ceiling(s: Shares, requests: int) -> str:
    """What 2 workers could reach over 1 on this machine were it quiet, from one run's CPU per request.

    A worker is one process: alone it gets at most one core, and the client, haproxy and
    PostgreSQL (``rest``) fit on the other cores. Two workers share the cores with the rest:
    req/s = cores / (worker + rest). The ratio is an estimate from CPU accounting, not a run.
    """
    worker = s.ms_per_request(s.workers, requests)
    rest = s.ms_per_request(s.client + s.haproxy + s.postgres, requests)
    cores = round(s.cores)
    one = 1000 / max(worker, (worker + rest) / cores)
    two = 1000 / max(worker / 2, (worker + rest) / cores)
    return (
        f"quiet-machine ceiling from that CPU: 1 worker {one:.0f} req/s, 2 workers {two:.0f} req/s on "
        f"{cores} cores, {two / one:.2f}x (the client, haproxy and PostgreSQL take {rest:.2f} of "
        f"{worker + rest:.2f} ms a request)"
    )


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


# ----- the run ---------------------------------------------------------------------------------------


def configure(group: Group) -> None:
    """Trust haproxy's forwarding headers (deploy/haproxy.cfg asks for it); lift the staff rate limit."""
    from node.config import NodeConfig
    from node.files import PRIVATE_FILE, write_atomic

    config = NodeConfig.load(group.a.directory)
    config = replace(
        config,
        server=replace(config.server, trusted_proxies=("127.0.0.1",)),
        limits=replace(config.limits, requests_per_minute=STAFF_RATE),
    )
    write_atomic(group.a.directory / "config.toml", config.to_toml().encode(), mode=PRIVATE_FILE)


def measure(
    kind: Kind,
    url: str,
    requests: int,
    concurrency: int,
    meter: CpuMeter,
    tls: ssl.SSLContext | None,
) -> tuple[Run, Shares, int]:
    bodies = kind.bodies(requests)
    with meter.measure() as out:
        run = asyncio.run(drive(url + kind.path, bodies, concurrency, headers=kind.headers, ssl_context=tls))
    hits = kind.check(run)
    return run, out[0], hits


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=10_000, help="chain-a's active entries (10000)")
    parser.add_argument("--requests", type=int, default=1000, help="requests per run (1000)")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 8, 32], help="requests in flight (1 8 32)"
    )
    parser.add_argument(
        "--hit-rate", type=float, default=0.1, help="share of requests that match an entry (0.1)"
    )
    parser.add_argument(
        "--targets", type=int, default=100, help="entries registered through the registry (100)"
    )
    parser.add_argument(
        "--admin-url", default=ADMIN_URL, help=f"PostgreSQL to create the throwaway database on ({ADMIN_URL})"
    )
    parser.add_argument(
        "--quick", action="store_true", help="1k entries, 200 requests, concurrency 1 16: a smoke run"
    )
    args = parser.parse_args()
    if args.quick:
        args.entries, args.requests, args.concurrency = 1000, 200, [1, 16]
    if (
        not 0 <= args.hit_rate <= 1
        or min(args.targets, args.requests, args.entries, *args.concurrency) < 1
        or max(args.concurrency) > 64
    ):
        parser.error(
            "--hit-rate must be in [0, 1]; --entries, --targets, --requests at least 1; "
            "--concurrency 1 to 64 (haproxy's cap per client)"
        )

    import faiss

    importlib.import_module("node.records.matching")  # the node's faiss settings, as in 'watchnet serve'
    node_blas = int(faiss.cvar.distance_compute_blas_threshold)
    started = datetime_now()
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"faiss {faiss.__version__}; {started}; client, workers, haproxy and PostgreSQL share the cores"
    )
    print(f"at the start: {load_average()}")
    print(
        f"{args.entries:,} entries on PostgreSQL, {args.requests} requests per run, 1 embedding each, "
        f"{args.hit_rate:.0%} hits; limits raised for the run (peer {PEER_RATE}, staff {STAFF_RATE} a minute)"
    )
    levels: list[int] = args.concurrency
    targets = min(args.targets, args.entries)
    machine = MachineLoad()
    rows: list[Row] = []
    notes: list[str] = []

    say(f"{args.entries:,} entries: vectors")
    gal = gallery(args.entries)
    queries, expected = make_queries(args.requests, gal, targets, args.hit_rate, seed=777)

    with (
        tempfile.TemporaryDirectory(prefix="watchnet-bench-cluster-") as tmp,
        fresh_database(args.admin_url) as (database_url, backends),
    ):
        root = Path(tmp)
        say(
            f"creating chain-a on a fresh PostgreSQL database and filling it ({targets} through the registry)"
        )
        group = build_group(root / "net", gal, targets, databases={"chain-a": database_url})
        configure(group)
        threshold = group.manifest.policy.match_threshold
        notes.append(f"fill: {group.fill_seconds:.1f}s for {args.entries:,} entries on PostgreSQL")

        say("raw limits: faiss in this process, bare aiohttp + faiss")
        ms = bare_faiss(gal, queries, node_blas)
        rows.append(Row("faiss", "", 1, 1000 / float(np.mean(ms)), pct(ms, 50), pct(ms, 99), len(ms)))
        for c, run in bare_http(args.entries, queries, expected, threshold, levels).items():
            rows.append(
                Row(
                    "bare http",
                    "1",
                    c,
                    run.rps,
                    pct(run.latencies_ms, 50),
                    pct(run.latencies_ms, 99),
                    args.requests,
                )
            )
        registered = gal[:targets].copy()
        del gal
        disclosure = group.manifest.policy.disclosure
        runs_hits = round(args.requests * args.hit_rate) * 3 * len(levels) + round(WARMUP * args.hit_rate) * 3
        per_entry = math.ceil(runs_hits / targets)
        if per_entry >= disclosure.hits_per_entry_per_day:
            raise SystemExit(
                f"{per_entry:.0f} hits per entry and kind would pass the group's hits_per_entry_per_day "
                f"({disclosure.hits_per_entry_per_day}): raise --targets or lower --requests or --hit-rate"
            )

        say("throwaway CA for haproxy's certificate")
        tls_dir = root / "tls"
        subprocess.run(["bash", str(MAKE_CA), str(tls_dir)], check=True, capture_output=True, timeout=60)
        tls = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))

        first = group.a
        second = first.worker()
        workers = [first, second]
        proxy: Proxy | None = None
        try:
            say("starting two workers of chain-a (index load and store check)")
            t = time.perf_counter()
            for worker in workers:
                worker.start()
            for worker in workers:
                wait_ready(worker)
            notes.append(
                f"two workers started and ready (index loaded, store checked) in {time.perf_counter() - t:.1f}s"
            )
            proxy = start_haproxy(root, [w.port for w in workers], tls_dir / "server.pem")
            haproxy_pid = proxy.process.pid
            meter = CpuMeter(
                {
                    "workers": lambda: process_tree(
                        [w.process.pid for w in workers if w.process is not None]
                    ),
                    "haproxy": lambda: [haproxy_pid],
                    "postgres": backends,
                }
            )
            kinds = [
                peer_kind(group, Probes(registered, args.hit_rate, seed=1001)),
                match_kind(group, Probes(registered, args.hit_rate, seed=2002)),
            ]

            with meter.measure() as idle:
                time.sleep(IDLE_SECONDS)
            notes.append(
                f"idle, over {IDLE_SECONDS:.0f}s before the runs: the two workers used {idle[0].workers:.1%} of the "
                f"machine, haproxy {idle[0].haproxy:.1%}, chain-a's PostgreSQL backends {idle[0].postgres:.1%}, "
                f"other processes {idle[0].others:.0%}"
            )
            say("warm-up: each kind directly and through haproxy to both workers")
            proxy.use(2)
            for kind in kinds:
                for url, context in ((first.url, None), (second.url, None), (proxy.url, tls)):
                    warm = kind.bodies(WARMUP)  # fresh: the workers share the replay cache
                    run = asyncio.run(
                        drive(url + kind.path, warm, 1, headers=kind.headers, ssl_context=context)
                    )
                    bad = [i for i, s in enumerate(run.statuses) if s != 200]
                    if bad:
                        raise RuntimeError(
                            f"warm-up of {kind.name} at {url}: {len(bad)} answers not 200, the first "
                            f"{run.statuses[bad[0]]} {run.replies[bad[0]][:300]!r}"
                        )

            hits: dict[str, int] = {k.name: 0 for k in kinds}
            replies = 0
            for c in levels:
                for kind in kinds:
                    base: Row | None = None
                    direct: Row | None = None
                    for mode, count in (("direct", 1), ("haproxy", 1), ("haproxy", 2)):
                        label = f"{kind.name} {mode}"
                        say(f"{label}, {count} worker{'s' if count > 1 else ''}, {c} in flight")
                        if mode == "haproxy":
                            proxy.use(count)
                            before = proxy.answered()
                        url, context = (first.url, None) if mode == "direct" else (proxy.url, tls)
                        run, shares, found = measure(kind, url, args.requests, c, meter, context)
                        hits[kind.name] += found
                        replies += len(run.replies)
                        row = Row(
                            label,
                            str(count),
                            c,
                            run.rps,
                            pct(run.latencies_ms, 50),
                            pct(run.latencies_ms, 99),
                            len(run.replies),
                            shares,
                        )
                        if mode == "haproxy":
                            after = proxy.answered()
                            served = [after[f"worker{p}"] - before.get(f"worker{p}", 0) for p in proxy.ports]
                            row.split = "/".join(str(n) for n in served)
                            if count == 2 and min(served) == 0:
                                raise RuntimeError(
                                    f"haproxy sent all of a 2-worker run to one worker: {served}"
                                )
                        if mode == "direct":
                            direct = row
                        elif count == 1:
                            base = row
                        if base is not None:
                            row.one_worker = row.rps / base.rps
                        if direct is not None:
                            row.direct = row.rps / direct.rps
                        rows.append(row)
                    if direct is not None and base is not None:
                        direct.one_worker = direct.rps / base.rps
        finally:
            if proxy is not None:
                proxy.stop()
            for worker in workers:
                worker.stop()

    others = machine.others()
    print(f"at the end: {load_average()}")
    print()
    print_table(rows)
    print()
    print(
        "CPU columns: share of the machine's capacity (all cores x the run's wall time) used by this client, "
        "the workers, haproxy, chain-a's PostgreSQL backends, and all other processes."
    )
    if any(r.busy for r in rows):
        print(
            f"* other processes used more than {BUSY:.0%} of the machine during that run: figures disturbed"
        )
    for note in notes:
        print(note)
    print(
        f"{replies} node replies verified (200, the expected entry or none): "
        + ", ".join(f"{name} {n} hits" for name, n in hits.items())
    )
    for r in rows:
        if r.shares is None or r.concurrency != max(levels):
            continue
        s = r.shares
        cost = ", ".join(
            f"{name} {s.ms_per_request(share, r.requests):.2f}"
            for name, share in (
                ("client", s.client),
                ("workers", s.workers),
                ("haproxy", s.haproxy),
                ("pg", s.postgres),
            )
        )
        split = f"; served per worker {r.split}" if r.split else ""
        print(
            f"CPU ms per request, {r.mode}, {r.workers} worker(s), {r.concurrency} in flight: {cost}{split}"
        )
        if r.mode.endswith("haproxy") and r.workers == "2":
            print(f"  {ceiling(s, r.requests)}")
    if others is not None:
        print(
            f"over the whole run other processes used {others:.0%} of the machine's CPU"
            + (" (figures disturbed: rerun on a quiet machine)" if others > 0.05 else "")
        )
    return 0


def datetime_now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


if __name__ == "__main__":
    sys.exit(main())
