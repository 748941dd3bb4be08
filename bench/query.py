"""Plain-mode peer queries on one answering node, beside bare aiohttp + bare faiss doing the same work.

For each gallery size N the script creates a two-member group with ``node.demo.network.LocalNetwork``
in a temporary directory and fills chain-a's storage with N active entries: ``--targets`` of them
(100) through the real registry (propose, then approve by another officer: signed entry, log
event, audit record), the rest written as active rows with their embeddings sealed by the node's
data key, each signed and logged as version 1 as approval does (the node checks every active
entry against the log it signed before it answers), without the proposal and its audit records
and under one tree head for the whole fill (the registry path costs ~4 ms an entry: 7 minutes
for 100k). Those stand-ins only occupy the index: random 512-d vectors never score near the threshold, so no query returns one.
chain-a's ``limits.peer_requests_per_minute`` is raised from 1200 to 100000 so the per-member
rate limit does not cap the run. chain-a then starts as a real ``watchnet serve`` process and
loads its faiss index from storage; chain-b's process is not started: this process acts as
chain-b with chain-b's key files.

One query = one embedding. About ``--hit-rate`` (10%) of the queries are a registered face plus
noise (cosine ~0.71, above the group threshold), the rest are random faces that match nothing.
Every query is sealed as ``PeerGate.seal_to`` seals it (signed ``PeerMessage``, fresh nonce,
``crypto_box`` with a cached shared key), all before the clock starts; sealing is timed
separately. One aiohttp client sends them at each ``--concurrency`` level; after each run every
reply is opened and verified (chain-a's signature, the query id, each matched entry's signature)
and checked against the expected hit or miss.

In the same run, on the same N vectors and the same query vectors, the rows of the table:

- ``faiss``: ``IndexFlatIP.search`` (k=8, one thread, library defaults) in this process, one
  query at a time; ``faiss/node``: the same with the BLAS threshold node/records/matching.py sets;
- ``bare http``: a separate aiohttp process whose handler decodes a base64url float32 embedding
  from JSON, runs the same faiss search, keeps scores at or above the threshold and answers
  JSON: the raw limit for this client on this machine, and the base of the ratio column;
- ``node``: chain-a answering sealed queries on ``POST /v1/peer/query``.

Below the table: the node's steps timed in this process on one thread without HTTP (admit =
open, verify, policy, replay and rate checks; answer = search and signed entries; reply = sign
and seal; audit = the group-committed audit record), the fill and start times, client-side
seal/open costs, and how much CPU other processes used meanwhile (figures taken while the
machine was busy are flagged). The client shares the 2 cores with the server it drives.

    python bench/query.py                   # 10k and 100k entries, concurrency 1 and 16
    python bench/query.py --quick           # 1k entries, 200 requests: a few seconds
    python bench/query.py --sizes 10000 --concurrency 1 4 16 --requests 2000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import importlib
import io
import json
import os
import platform
import secrets
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from governance.manifest import Manifest, Member
    from node.demo.network import LocalNode
    from protocol.query import QueryRequest, QueryResponse

DIM = 512
K = 8
PEER_RATE = 100_000
"""chain-a's limits.peer_requests_per_minute for the run (the config's maximum; default 1200)."""
HIT_NOISE = 1.0
"""A hit query is target + HIT_NOISE * (random unit vector): cosine ~ 1 / sqrt(1 + HIT_NOISE**2) ~ 0.71."""
WARMUP = 50
FILL_CHUNK = 5000

Vectors = npt.NDArray[np.float32]


# ----- vectors ---------------------------------------------------------------------------------


def unit_rows(n: int, seed: int) -> Vectors:
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((n, DIM), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def gallery(n: int) -> Vectors:
    """The N entries' embeddings; rows 0..targets-1 are the registered entries queries can hit."""
    return unit_rows(n, 12345)


def make_queries(
    count: int, gal: Vectors, targets: int, hit_rate: float, seed: int
) -> tuple[Vectors, list[int | None]]:
    """``count`` query vectors and, for each, the gallery row it should match (or None)."""
    rng = np.random.default_rng(seed)
    out = unit_rows(count, seed + 1)
    expected: list[int | None] = [None] * count
    for i in np.flatnonzero(rng.random(count) < hit_rate):
        target = int(i) % targets
        noisy = gal[target] + HIT_NOISE * out[i]
        out[i] = noisy / np.linalg.norm(noisy)
        expected[int(i)] = target
    return out, expected


def b64url(vector: npt.NDArray[np.float32]) -> str:
    return base64.urlsafe_b64encode(vector.astype("<f4").tobytes()).rstrip(b"=").decode("ascii")


# ----- statistics and output -------------------------------------------------------------------


@dataclass
class Row:
    size: int
    mode: str
    concurrency: int
    rps: float
    p50: float
    p99: float
    ratio: float | None = None


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class MachineLoad:
    """CPU the rest of the machine used while we ran: /proc/stat busy time minus our own process tree's."""

    def __init__(self) -> None:
        self._start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float, float] | None:
        try:
            values = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        except (OSError, ValueError):
            return None
        tick = float(os.sysconf("SC_CLK_TCK"))
        user, nice, system, idle, iowait, irq, softirq, steal = values
        own = os.times()
        return (
            (user + nice + system + irq + softirq + steal) / tick,
            (user + nice + system + idle + iowait + irq + softirq + steal) / tick,
            own.user + own.system + own.children_user + own.children_system,
        )

    def others(self) -> float | None:
        """Share of the machine's CPU capacity used by other processes since we started (0..1)."""
        end = self._snapshot()
        if self._start is None or end is None or end[1] <= self._start[1]:
            return None
        busy, total, own = (b - a for a, b in zip(self._start, end, strict=True))
        return max(0.0, busy - own) / total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not listen within {timeout:.0f}s")


# ----- the HTTP client (same code for the node and the bare server) ---------------------------


@dataclass
class Run:
    latencies_ms: list[float]
    elapsed: float
    statuses: list[int]
    replies: list[bytes]

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.elapsed


async def drive(
    url: str,
    bodies: list[bytes],
    concurrency: int,
    *,
    headers: dict[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Run:
    """POST every body with ``concurrency`` requests in flight; keep each reply.

    ``headers`` are added to every request (a staff token, say); ``ssl_context`` verifies an
    ``https://`` server (bench/cluster.py's haproxy).
    """
    import aiohttp

    n = len(bodies)
    latencies = [0.0] * n
    statuses = [0] * n
    replies = [b""] * n
    cursor = 0
    sent = {"Content-Type": "application/json", **(headers or {})}
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=ssl_context if ssl_context is not None else True)
    async with aiohttp.ClientSession(connector=connector, headers=sent) as session:

        async def worker() -> None:
            nonlocal cursor
            while cursor < n:
                i = cursor
                cursor += 1
                t = time.perf_counter()
                async with session.post(url, data=bodies[i]) as response:
                    replies[i] = await response.read()
                    statuses[i] = response.status
                latencies[i] = (time.perf_counter() - t) * 1000

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return Run(latencies, elapsed, statuses, replies)


# ----- bare faiss and the bare aiohttp server ----------------------------------------------------


@contextlib.contextmanager
def blas_threshold(value: int) -> Iterator[None]:
    """faiss's process-wide ``distance_compute_blas_threshold``, set for a block."""
    import faiss

    saved = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = value
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_threshold = saved


def bare_faiss(gal: Vectors, queries: Vectors, threshold: int) -> list[float]:
    """One-query searches on one thread, with faiss's BLAS threshold at ``threshold``."""
    import faiss

    faiss.omp_set_num_threads(1)
    index = faiss.IndexFlatIP(DIM)
    index.add(gal)
    times = []
    with blas_threshold(threshold):
        for row in queries[:WARMUP]:
            index.search(row.reshape(1, -1), K)
        for row in queries:
            t = time.perf_counter()
            index.search(row.reshape(1, -1), K)
            times.append((time.perf_counter() - t) * 1000)
    return times


def bare_serve(size: int, port: int, threshold: float) -> None:
    """The raw limit: decode a float32 embedding from JSON, search, answer the hits as JSON."""
    import faiss
    from aiohttp import web

    faiss.omp_set_num_threads(1)
    index = faiss.IndexFlatIP(DIM)
    index.add(gallery(size))

    async def search(request: web.Request) -> web.Response:
        data = json.loads(await request.read())
        text = data["embedding"]
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        vector = np.frombuffer(raw, dtype="<f4").reshape(1, DIM)
        scores, ids = index.search(vector, K)
        hits = [
            {"index": int(i), "score": float(s)}
            for s, i in zip(scores[0], ids[0], strict=True)
            if i >= 0 and s >= threshold
        ]
        return web.json_response({"matches": hits})

    app = web.Application()
    app.router.add_post("/search", search)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def bare_http(
    size: int, queries: Vectors, expected: list[int | None], threshold: float, levels: list[int]
) -> dict[int, Run]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--bare-serve", str(size), str(port), repr(threshold)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runs: dict[int, Run] = {}
    try:
        wait_port(port, server)
        url = f"http://127.0.0.1:{port}/search"
        bodies = [json.dumps({"embedding": b64url(q)}).encode() for q in queries]
        asyncio.run(drive(url, bodies[:WARMUP], 1))
        for c in levels:
            run = asyncio.run(drive(url, bodies, c))
            for i, (status, reply) in enumerate(zip(run.statuses, run.replies, strict=True)):
                found = [m["index"] for m in json.loads(reply)["matches"]] if status == 200 else None
                if found != ([] if expected[i] is None else [expected[i]]):
                    raise RuntimeError(
                        f"bare server: query {i} answered {status} {found}, expected {expected[i]}"
                    )
            runs[c] = run
    finally:
        server.terminate()
        server.wait(timeout=30)
    return runs


# ----- the group and the answering node ----------------------------------------------------------


@dataclass
class Group:
    a: LocalNode
    b: LocalNode
    manifest: Manifest
    member_a: Member
    purpose: str
    entry_ids: dict[int, str]
    fill_seconds: float


def quiet(call: Callable[[], Any]) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        return call()


def build_group(root: Path, gal: Vectors, targets: int, databases: dict[str, str] | None = None) -> Group:
    """Create chain-a and chain-b, then give chain-a len(gal) active entries in its storage.

    ``databases`` puts a node on a database URL of its own (``LocalNetwork(databases=...)``);
    the others keep SQLite in their directories.
    """
    from sqlalchemy import func
    from sqlmodel import Session, select

    from node.cli.main import main as cli_main
    from node.config import NodeConfig
    from node.context import NodeContext
    from node.demo.network import LocalNetwork
    from node.files import write_atomic
    from node.records.registry import ACTIVE, Proposal
    from node.storage.models import EntryRow
    from protocol.commitment import new_salt
    from protocol.embedding import Embedding
    from protocol.entry import Evidence
    from protocol.events import EventKind, EventReason

    net = LocalNetwork(
        root, ["chain-a", "chain-b"], [], sync_interval="5m", manifest_poll="5m", databases=databases or {}
    )
    quiet(net.create)
    a, b = net.node("chain-a"), net.node("chain-b")
    # What 'watchnet serve' does on first start (fetch the manifest, install it, write default
    # rules), done here from the organisation's file so the registry can run before the server.
    code = quiet(
        lambda: cli_main(["manifest", "install", str(net.manifest_path), "--node", str(a.directory)])
    )
    if code != 0:
        raise RuntimeError("watchnet manifest install failed for chain-a")
    config = NodeConfig.load(a.directory)
    limits = replace(config.limits, peer_requests_per_minute=PEER_RATE)
    write_atomic(a.directory / "config.toml", replace(config, limits=limits).to_toml().encode())

    start = time.perf_counter()
    context = NodeContext.load(a.directory)
    now = datetime.now(UTC)
    registrar = context.accounts.authenticate_token(a.tokens["reg1"], now)
    officer = context.accounts.authenticate_token(a.tokens["off1"], now)
    incident = now.date() - timedelta(days=1)
    entry_ids: dict[int, str] = {}
    for j in range(targets):
        proposal = Proposal(
            embedding=Embedding(gal[j].astype("<f4").tobytes()),
            category="shoplifting",
            evidence=Evidence("police-report", f"BENCH-{j:06d}"),
            incident_date=incident,
            site="store-01",
        )
        state = context.registry.propose(registrar, proposal, now)
        context.registry.approve(officer, state.entry_id, now)
        entry_ids[j] = state.entry_id

    vault = context.registry.vault
    expires = now + timedelta(days=300)
    registry = context.registry
    for first in range(targets, len(gal), FILL_CHUNK):
        with Session(context.engine) as session:
            for j in range(first, min(first + FILL_CHUNK, len(gal))):
                entry_id = f"ent-{secrets.token_hex(10)}"
                vault.new_record(entry_id)
                row = EntryRow(
                    entry_id=entry_id,
                    version=1,
                    status=ACTIVE,
                    category="shoplifting",
                    site="store-01",
                    evidence_kind="police-report",
                    evidence_reference=f"FILL-{j:07d}",
                    incident_date=incident.isoformat(),
                    registrar=registrar.id,
                    officer=officer.id,
                    proposed_at=now,
                    registered_at=now.replace(microsecond=0),
                    expires_at=expires.replace(microsecond=0),
                    embedding_ct=vault.seal_record(entry_id, gal[j].astype("<f4").tobytes(), field="embedding"),
                    salt_ct=vault.seal_record(entry_id, new_salt(), field="salt"),
                )
                session.add(row)
                # version 1 signed and logged as approve() does (the node checks every active entry
                # against its signed log at start), without the proposal, its audit records and a
                # tree head per entry: one head for the whole fill below
                registry._issue_version(
                    session, row, officer.id, EventKind.REGISTERED, EventReason.REGISTRATION, now
                )
            session.commit()
        if (first - targets) % (10 * FILL_CHUNK) == 0:
            say(f"  stand-in entries {first - targets:,}/{len(gal) - targets:,}")
    registry._publish_head(now)
    with Session(context.engine) as session:
        active = int(
            session.exec(select(func.count()).select_from(EntryRow).where(EntryRow.status == ACTIVE)).one()
        )
    context.engine.dispose()
    if active != len(gal):
        raise RuntimeError(f"chain-a holds {active} active entries, expected {len(gal)}")

    manifest = net.current_manifest()
    member_a = manifest.member("chain-a")
    assert member_a is not None
    purpose = (
        "crime-prevention"
        if "crime-prevention" in manifest.purpose_codes
        else sorted(manifest.purpose_codes)[0]
    )
    return Group(a, b, manifest, member_a, purpose, entry_ids, time.perf_counter() - start)


class Querier:
    """chain-b's side: seal queries as ``PeerGate.seal_to`` does, open answers as ``PeerClient`` does."""

    def __init__(self, group: Group) -> None:
        from protocol.message import BoxCache, PeerKeys

        self.group = group
        self.signing_key = group.b.signing_key()
        self.encryption_key = group.b.encryption_key()
        self.boxes = BoxCache(self.encryption_key)
        member = group.member_a
        self.keys_a = PeerKeys(member.signing_key, member.encryption_key)

    def seal(self, vector: npt.NDArray[np.float32]) -> tuple[QueryRequest, bytes]:
        from protocol.embedding import Embedding
        from protocol.message import PeerMessage, seal
        from protocol.query import QueryRequest
        from protocol.signed import SignedDocument

        manifest, member = self.group.manifest, self.group.member_a
        body = QueryRequest(
            query_id=f"qry-{secrets.token_hex(10)}",
            model_id=manifest.policy.model.model_id,
            embeddings=[Embedding(vector.astype("<f4").tobytes())],
        )
        message = PeerMessage(
            sender="chain-b",
            recipient="chain-a",
            manifest_version=manifest.version,
            purpose=self.group.purpose,
            issued_at=datetime.now(UTC).replace(microsecond=0),
            nonce=secrets.token_bytes(16),
            body_type=body.TYPE,
            body=body.to_dict(),
        )
        signed = SignedDocument(message)
        signed.sign(self.signing_key)
        box = self.boxes.box("chain-a", member.encryption_key)
        return body, seal(signed, self.encryption_key, member.encryption_key, box=box).to_bytes()

    def open(self, raw: bytes, request: QueryRequest) -> QueryResponse:
        from protocol.message import decode_body, open_sealed
        from protocol.query import QueryResponse

        signed = open_sealed(
            raw,
            recipient_id="chain-b",
            recipient_key=self.encryption_key,
            lookup_sender=lambda node_id: self.keys_a if node_id == "chain-a" else None,
            box_for=self.boxes,
        )
        response = decode_body(signed.payload, {QueryResponse.TYPE: QueryResponse})
        response.check_against(request)
        if response.responder != "chain-a":
            raise RuntimeError(f"answer names responder {response.responder!r}")
        for match in response.matches:
            match.entry.verify([self.group.member_a.signing_key], threshold=1)
        return response


@dataclass
class NodeRuns:
    runs: dict[int, Run]
    start_seconds: float
    seal_ms: float
    open_ms: float
    replies: int
    hits: int


def node_queries(group: Group, queries: Vectors, expected: list[int | None], levels: list[int]) -> NodeRuns:
    """Start chain-a, send pre-sealed queries at each concurrency, open and check every answer."""
    from node.config import NodeConfig

    window = NodeConfig.load(group.a.directory).limits.replay_window.total_seconds()
    querier = Querier(group)
    t = time.perf_counter()
    group.a.start()
    start_seconds = time.perf_counter() - t
    url = f"{group.a.url}/v1/peer/query"
    runs: dict[int, Run] = {}
    seal_s = open_s = 0.0
    sealed_count = opened = hits = 0
    try:
        warm = [querier.seal(q)[1] for q in queries[:WARMUP]]
        asyncio.run(drive(url, warm, 1))
        for c in levels:
            t = time.perf_counter()
            sealed = [querier.seal(q) for q in queries]
            seal_s += time.perf_counter() - t
            sealed_count += len(sealed)
            run = asyncio.run(drive(url, [raw for _, raw in sealed], c))
            if time.perf_counter() - t > window - 5:
                say(
                    f"  warning: sealing and sending took {time.perf_counter() - t:.0f}s; the replay window is {window:.0f}s"
                )
            t = time.perf_counter()
            for i, (status, reply) in enumerate(zip(run.statuses, run.replies, strict=True)):
                if status != 200:
                    raise RuntimeError(f"chain-a answered query {i} with {status}: {reply[:300]!r}")
                response = querier.open(reply, sealed[i][0])
                found = [m.entry.payload.entry_id for m in response.matches]
                target = expected[i]
                want = [] if target is None else [group.entry_ids[target]]
                if found != want:
                    raise RuntimeError(f"chain-a: query {i} matched {found}, expected {want}")
                hits += len(found)
            open_s += time.perf_counter() - t
            opened += len(run.replies)
            runs[c] = run
    finally:
        group.a.stop()
    return NodeRuns(runs, start_seconds, seal_s / sealed_count * 1000, open_s / opened * 1000, opened, hits)


def stage_costs(group: Group, queries: Vectors, blas: int) -> dict[str, float]:
    """Milliseconds per query of each step of the answering node's work, in this process, one thread.

    The same objects ``watchnet serve`` uses (``Federation`` with its ``PeerGate``, the registry's
    index loaded from storage, ``AuditWriter``), run back to back without HTTP or an event loop.
    Run before chain-a starts, so nothing else competes for the cores; faiss's BLAS threshold is
    the node's (``blas``).
    """
    from node.context import NodeContext
    from node.federation.federation import QUERY_BODIES, Federation
    from node.records.auditlog import AuditWriter
    from node.telemetry import setup_telemetry

    context = NodeContext.load(group.a.directory)
    context.registry.rebuild_index()
    federation = Federation(context, lambda: datetime.now(UTC), setup_telemetry(node_id="chain-a"))
    querier = Querier(group)
    sealed = [querier.seal(q)[1] for q in queries]
    totals = dict.fromkeys(("admit", "answer", "reply"), 0.0)
    writer = AuditWriter(context.engine, context.registry.write_lock)
    with blas_threshold(blas):
        for raw in sealed:
            now = datetime.now(UTC)
            t0 = time.perf_counter()
            request = federation.gate.admit(raw, now, QUERY_BODIES)
            t1 = time.perf_counter()
            response, _ = federation.answer_query(request)
            t2 = time.perf_counter()
            federation.gate.reply(request, response, now)
            t3 = time.perf_counter()
            totals["admit"] += t1 - t0
            totals["answer"] += t2 - t1
            totals["reply"] += t3 - t2
            writer.add(
                actor="peer:chain-b",
                action="POST /v1/peer/query",
                target=f"purpose={request.message.purpose} faces=1 hits={len(response.matches)}",
                outcome="ok:200",
                request_hash=secrets.token_hex(32),
                now=now,
            )
    t = time.perf_counter()
    writer.flush()
    totals["audit"] = time.perf_counter() - t
    context.engine.dispose()
    return {name: seconds / len(sealed) * 1000 for name, seconds in totals.items()}


# ----- one size ----------------------------------------------------------------------------------


def bench_size(size: int, args: argparse.Namespace, blas: tuple[int, int]) -> tuple[list[Row], list[str]]:
    levels: list[int] = args.concurrency
    faiss_default, node_setting = blas
    targets = min(args.targets, size)
    say(f"{size:,} entries: vectors")
    gal = gallery(size)
    queries, expected = make_queries(args.requests, gal, targets, args.hit_rate, seed=777)
    notes: list[str] = []
    load = MachineLoad()

    with tempfile.TemporaryDirectory(prefix="watchnet-bench-query-") as tmp:
        say(
            f"{size:,} entries: creating chain-a and chain-b, filling chain-a ({targets} through the registry)"
        )
        group = build_group(Path(tmp), gal, targets)
        threshold = group.manifest.policy.match_threshold

        say(f"{size:,} entries: bare faiss in this process")
        rows = []
        for mode, blas_value in (("faiss", faiss_default), ("faiss/node", node_setting)):
            ms = bare_faiss(gal, queries, blas_value)
            rows.append(Row(size, mode, 1, 1000 / float(np.mean(ms)), pct(ms, 50), pct(ms, 99)))

        say(f"{size:,} entries: bare aiohttp + faiss server")
        bare = bare_http(size, queries, expected, threshold, levels)
        del gal
        for c in levels:
            run = bare[c]
            rows.append(
                Row(size, "bare http", c, run.rps, pct(run.latencies_ms, 50), pct(run.latencies_ms, 99))
            )

        say(f"{size:,} entries: the node's steps in this process")
        stages = stage_costs(group, queries[: min(len(queries), 300)], node_setting)

        say(f"{size:,} entries: chain-a answering sealed peer queries over HTTP")
        node = node_queries(group, queries, expected, levels)
        for c in levels:
            run = node.runs[c]
            rows.append(
                Row(
                    size,
                    "node",
                    c,
                    run.rps,
                    pct(run.latencies_ms, 50),
                    pct(run.latencies_ms, 99),
                    run.rps / bare[c].rps,
                )
            )
    steps = ", ".join(f"{name} {ms:.3f}" for name, ms in stages.items())
    notes.append(
        f"{size:>7,}: node steps in-process, ms/query: {steps} = {sum(stages.values()):.3f} "
        f"(one core's limit {1000 / sum(stages.values()):.0f} req/s before HTTP)"
    )
    notes.append(
        f"{size:>7,}: fill {group.fill_seconds:.1f}s ({targets} through the registry, {size - targets:,} stand-in entries); "
        f"node start with index load {node.start_seconds:.1f}s; client seal {node.seal_ms:.3f} ms/query (before the "
        f"clock), open+verify {node.open_ms:.3f} ms/reply; {node.replies} replies verified, {node.hits} hits as expected"
    )
    others = load.others()
    if others is not None:
        notes.append(
            f"{size:>7,}: other processes used {others:.0%} of the machine's CPU meanwhile"
            + (" (figures disturbed: rerun on a quiet machine)" if others > 0.05 else "")
        )
    return rows, notes


def print_table(rows: list[Row]) -> None:
    print(
        f"{'entries':>8} | {'mode':<10} | {'conc':>4} | {'req/s':>7} | {'p50 ms':>7} | {'p99 ms':>7} | {'vs bare http':>12}"
    )
    print(f"{'-' * 8}-+-{'-' * 10}-+-{'-' * 4}-+-{'-' * 7}-+-{'-' * 7}-+-{'-' * 7}-+-{'-' * 12}")
    for r in rows:
        ratio = f"{r.ratio:>12.0%}" if r.ratio is not None else ""
        print(
            f"{r.size:>8} | {r.mode:<10} | {r.concurrency:>4} | {r.rps:>7.0f} | {r.p50:>7.2f} | {r.p99:>7.2f} | {ratio}".rstrip(
                " |"
            )
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[10_000, 100_000], help="gallery sizes (entries)"
    )
    parser.add_argument("--requests", type=int, default=1000, help="queries per run (default 1000)")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 16], help="requests in flight (default 1 16)"
    )
    parser.add_argument(
        "--hit-rate", type=float, default=0.1, help="share of queries that match an entry (0.1)"
    )
    parser.add_argument(
        "--targets", type=int, default=100, help="entries registered through the registry (100)"
    )
    parser.add_argument("--quick", action="store_true", help="1k entries, 200 requests: a smoke run")
    parser.add_argument(
        "--bare-serve", nargs=3, metavar=("SIZE", "PORT", "THRESHOLD"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.bare_serve:
        bare_serve(int(args.bare_serve[0]), int(args.bare_serve[1]), float(args.bare_serve[2]))
        return 0
    if args.quick:
        args.sizes, args.requests = [1000], 200
    if not 0 <= args.hit_rate <= 1 or args.targets < 1 or args.requests < 1 or min(args.concurrency) < 1:
        parser.error("--hit-rate must be in [0, 1]; --targets, --requests and --concurrency at least 1")

    import faiss

    faiss_default = int(faiss.cvar.distance_compute_blas_threshold)
    importlib.import_module(
        "node.records.matching"
    )  # applies the node's faiss settings, as in 'watchnet serve'
    node_setting = int(faiss.cvar.distance_compute_blas_threshold)
    faiss.cvar.distance_compute_blas_threshold = faiss_default

    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"faiss {faiss.__version__} (1 thread); client, node and bare server share the cores"
    )
    print(
        f"{args.requests} queries per run, 1 embedding each, {args.hit_rate:.0%} hits; chain-a's "
        f"limits.peer_requests_per_minute raised from 1200 to {PEER_RATE} for the run"
    )
    print(
        f"faiss = library defaults (distance_compute_blas_threshold {faiss_default}); faiss/node = the "
        f"node's setting ({node_setting}, node/records/matching.py); bare http = aiohttp + faiss defaults"
    )
    rows: list[Row] = []
    notes: list[str] = []
    for size in args.sizes:
        size_rows, size_notes = bench_size(size, args, (faiss_default, node_setting))
        rows += size_rows
        notes += size_notes
    print()
    print_table(rows)
    print()
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
