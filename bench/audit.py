"""Auditing one node over HTTP: the first ``watchnet audit verify --state`` and the second, beside
the raw limit of the same checks.

For each log size E the script makes a node with ``watchnet init`` (``tests.nodeproc``), fills
its log in bulk as ``bench/query.py`` fills a gallery (``tests.logfill``: active stand-in entries
signed and logged as version 1 under one tree head), starts it as a real ``watchnet serve``
process and runs ``audit_node`` (the code of ``watchnet audit verify``) with a state file twice:

- first: no state; every event read (``/v1/log`` pages of 1000), checked (signature, owner,
  fields), hashed into the compact range, its inclusion proof checked (``/v1/log/proof/inclusions``,
  1000 a request), the whole audit chain read and checked;
- second: after ``--new`` more entries registered through the API (propose, approve: one event
  each); only the consistency proof, the new events, their proofs and the audit records after
  the last one verified.

The raw limit is measured in the same run on the same data fetched beforehand (not timed):
parsing and verifying the same signatures, hashing the same leaves into a compact range,
verifying the same inclusion proofs and the same audit records, with no HTTP and no node. The
ratio shows what the HTTP, JSON and paging cost on top. With ``--before DIR`` (a checkout of an
earlier commit), the same first run is also timed with that checkout's ``watchnet audit verify``
(before this change: one request per inclusion proof, no incremental state).

The node's ``limits.requests_per_minute`` is raised for the run (the auditor's reads would pass
the default 600 a minute at 100k events: ~100 pages and 100 proof batches per run, each audited).

    python bench/audit.py                     # 10k and 100k events
    python bench/audit.py --quick             # 1k events: a few seconds
    python bench/audit.py --sizes 10000 --before /tmp/old-checkout
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from node.config import NodeConfig  # noqa: E402
from node.context import NodeContext  # noqa: E402
from node.records.auditlog import verify_audit_chain  # noqa: E402
from node.reporting.auditor import AuditReport, AuditState, audit_node, check_event  # noqa: E402
from node.storage.models import AuditRecord  # noqa: E402
from protocol.canonical import b64url_decode, canonical_bytes  # noqa: E402
from protocol.fields import parse_time  # noqa: E402
from protocol.keys import PublicSigningKey  # noqa: E402
from protocol.merkle import CompactRange, leaf_hash, verify_consistency, verify_inclusion  # noqa: E402
from protocol.signed import SignedDocument  # noqa: E402
from protocol.treehead import TreeHead  # noqa: E402
from tests.factories import embedding  # noqa: E402
from tests.logfill import fill_log  # noqa: E402
from tests.nodeproc import NodeProcess  # noqa: E402

RATE = 100_000
"""``limits.requests_per_minute`` for the run."""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Served:
    """What the node serves for a range of the log, fetched once and untimed, for the raw limit."""

    key: PublicSigningKey
    head: TreeHead
    events: list[dict[str, Any]]
    proofs: list[list[str]]
    records: list[AuditRecord]
    consistency: list[str]


async def fetch(url: str, token: str, start: int, audit_from: int, old: int) -> Served:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s:

        async def get(path: str) -> Any:
            async with s.get(url + path) as r:
                assert r.status == 200, (path, r.status, await r.text())
                return await r.json()

        key = PublicSigningKey.from_str((await get("/v1/node"))["signing_key"])
        head = SignedDocument.from_dict(await get("/v1/log/head"), TreeHead).payload
        events: list[dict[str, Any]] = []
        while start + len(events) < head.tree_size:
            page = await get(f"/v1/log?after={start + len(events)}&limit=1000")
            events += [e["event"] for e in page["events"]][: head.tree_size - start - len(events)]
        proofs: list[list[str]] = []
        for low in range(start, head.tree_size, 1000):
            high = min(low + 1000, head.tree_size)
            proofs += (await get(f"/v1/log/proof/inclusions?start={low}&end={high}&size={head.tree_size}"))[
                "proofs"
            ]
        records: list[AuditRecord] = []
        while True:
            page = (await get(f"/v1/audit?after={audit_from + len(records)}&limit=1000"))["records"]
            records += [AuditRecord(**{**r, "at": parse_time(r["at"])}) for r in page]
            if len(page) < 1000:
                break
        consistency = (
            (await get(f"/v1/log/proof/consistency?old={old}&new={head.tree_size}"))["proof"] if old else []
        )
        return Served(key, head, events, proofs, records, consistency)


def raw_limit(served: Served, start: int, compact: CompactRange, old_root: bytes | None) -> float:
    """The same checks as the auditor's on ``served``, in this process: no HTTP, no node."""
    report = AuditReport(node_id="chain-a")
    began = time.perf_counter()
    head = served.head
    if old_root is not None:
        verify_consistency(
            compact.size,
            head.tree_size,
            old_root,
            head.root_hash,
            [b64url_decode(p) for p in served.consistency],
        )
    extended = CompactRange.from_bytes(compact.size, compact.to_bytes())
    for offset, (event, proof) in enumerate(zip(served.events, served.proofs, strict=True)):
        index = start + offset
        leaf = canonical_bytes(event)
        check_event(index, leaf, served.key, report)
        hashed = leaf_hash(leaf)
        extended.append(hashed)
        verify_inclusion(hashed, index, head.tree_size, [b64url_decode(p) for p in proof], head.root_hash)
    if extended.root() != head.root_hash or report.problems:
        raise RuntimeError(f"raw limit: the served log does not verify: {report.problems[:3]}")
    if served.records:
        first = served.records[0]
        verify_audit_chain(served.records[1:], first_seq=first.seq + 1, previous=first.record_hash)
    return time.perf_counter() - began


def timed_audit(url: str, token: str, state: Path) -> tuple[float, AuditReport]:
    began = time.perf_counter()
    report = asyncio.run(audit_node(url, token, state_file=state, witness_wait=0))
    elapsed = time.perf_counter() - began
    if not report.ok:
        raise RuntimeError(f"audit failed: {report.problems[:5]}")
    return elapsed, report


def before_run(checkout: Path, url: str, token: str) -> float:
    """The first run with an earlier checkout's ``watchnet audit verify`` (its own process)."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "node.cli.main", "audit", "verify", "--url", url, "--token", token, "--json"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"the earlier checkout's audit failed: {done.stdout[-500:]} {done.stderr[-500:]}")
    return elapsed


def register(node: NodeProcess, seed: int) -> None:
    status, made = node.call(
        "POST",
        "/v1/entries",
        "reg1",
        {
            "embedding": embedding(seed).to_str(),
            "category": "shoplifting",
            "evidence": {"kind": "police-report", "reference": f"BENCH-{seed:06d}"},
            "incident_date": "2026-11-01",
            "site": "shibuya-01",
        },
    )
    assert status == 201, made
    status, approved = node.call("POST", f"/v1/entries/{made['entry_id']}/approve", "off1")
    assert status == 200, approved


@dataclass
class Row:
    events: int
    run: str
    read: int
    seconds: float
    raw: float
    audit_records: int


def bench_size(size: int, args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        node = NodeProcess.create(Path(tmp))
        config = NodeConfig.load(node.directory)
        (node.directory / "config.toml").write_text(
            replace(config, limits=replace(config.limits, requests_per_minute=RATE)).to_toml(),
            encoding="utf-8",
        )
        began = time.perf_counter()
        context = NodeContext.load(node.directory)
        fill_log(context, size)
        context.engine.dispose()
        notes.append(f"E={size:,}: fill {time.perf_counter() - began:.1f} s")
        began = time.perf_counter()
        node.start()
        try:
            notes[-1] += f", node start {time.perf_counter() - began:.1f} s"
            token = node.tokens["aud1"]
            state = Path(tmp) / "auditor.json"
            rows: list[Row] = []
            if args.before and size <= args.before_max:
                say(f"  E={size:,}: the earlier checkout's first run")
                rows.append(
                    Row(size, "before: first", size, before_run(Path(args.before), node.url, token), 0.0, 0)
                )
            served = asyncio.run(fetch(node.url, token, 0, 0, 0))
            raw = raw_limit(served, 0, CompactRange(), None)
            say(f"  E={size:,}: first run")
            seconds, report = timed_audit(node.url, token, state)
            rows.append(Row(size, "first", report.new_events, seconds, raw, report.new_audit_records))
            saved = AuditState.from_bytes(state.read_bytes())
            assert saved.compact is not None and saved.chain is not None
            for i in range(args.new):
                register(node, 10_000 + i)
            served = asyncio.run(fetch(node.url, token, saved.tree_size, saved.chain.seq, saved.tree_size))
            raw = raw_limit(served, saved.tree_size, saved.compact, saved.root_hash)
            say(f"  E={size:,}: second run, {args.new} new events")
            seconds, report = timed_audit(node.url, token, state)
            if report.new_events != args.new:
                raise RuntimeError(f"second run read {report.new_events} events, expected {args.new}")
            rows.append(
                Row(size + args.new, "second", report.new_events, seconds, raw, report.new_audit_records)
            )
        finally:
            node.stop()
    return rows, notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="log sizes (events)")
    parser.add_argument("--new", type=int, default=100, help="events registered between the two runs")
    parser.add_argument("--quick", action="store_true", help="1k events, 20 new: a few seconds")
    parser.add_argument("--before", help="a checkout of an earlier commit: also time its first run")
    parser.add_argument(
        "--before-max",
        type=int,
        default=20_000,
        help="largest log to time --before on (one request an event)",
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.new = [1000], 20
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
    )
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f} at the start")
    rows: list[Row] = []
    notes: list[str] = []
    for size in args.sizes:
        got, said = bench_size(size, args)
        rows += got
        notes += said
    print()
    print("| events in the log | run | events read | audit records read | time | raw limit | time ÷ raw |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        raw = f"{r.raw:.2f} s" if r.raw else "-"
        ratio = f"{r.seconds / r.raw:.1f}" if r.raw else "-"
        records = str(r.audit_records) if r.raw else "-"
        print(f"| {r.events:,} | {r.run} | {r.read:,} | {records} | {r.seconds:.2f} s | {raw} | {ratio} |")
    print()
    for note in notes:
        print(note)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
