"""Catch-up from one peer: how long a follower takes to verify and apply E events, page by page.

A follower that is new, or was offline, pulls the peer's log in pages of ``MAX_PAGE_EVENTS``
and applies each with ``node.federation.sync.apply_page``: every event's signature checked,
every leaf hashed, the page's signed root checked against what it holds plus the page, and
the page written in one transaction. With the stored Merkle frontier the root check no longer
reads the leaves already held, so the cost per event should be flat in E. The script prints,
for each E: the whole catch-up time, the cost per event over the first and the last tenth of
the pages (their ratio shows whether it is flat), and, measured in the same run, the raw
limit: verifying the same signatures and hashing the same leaves alone, with no database.
It also times, on the same held leaves, the root check as it was before the frontier
(``root_of_leaf_hashes`` over every leaf held), for one page at the end of the log.

    python bench/follow.py                    # 10k and 100k events, SQLite
    python bench/follow.py --events 10000 --database postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from sqlmodel import Session, col, select  # noqa: E402

from node.federation.sync import apply_page  # noqa: E402
from node.records.eventlog import root_of_leaf_hashes  # noqa: E402
from node.storage.engine import make_engine  # noqa: E402
from node.storage.migrate import upgrade  # noqa: E402
from node.storage.models import PeerLeaf  # noqa: E402
from protocol.events import EntryEvent, EventKind, EventReason, log_leaf_bytes  # noqa: E402
from protocol.merkle import CompactRange, leaf_hash  # noqa: E402
from protocol.signed import SignedDocument  # noqa: E402
from protocol.sync import MAX_PAGE_EVENTS, LogPage  # noqa: E402
from protocol.treehead import TreeHead  # noqa: E402
from tests.factories import NODE_A_SIGNING, NODE_B_SIGNING, T0, make_manifest  # noqa: E402

MANIFEST = make_manifest(now=T0)
MEMBER = MANIFEST.member("chain-a")


def owner_events(n: int) -> list[SignedDocument[EntryEvent]]:
    out = []
    for i in range(n):
        header = EntryEvent(
            event_id=f"evt-{secrets.token_hex(8)}",
            owner="chain-a",
            kind=EventKind.REGISTERED,
            entry_id=f"ent-{i:08d}",
            entry_version=1,
            reason=EventReason.REGISTRATION,
            occurred_at=T0,
            actor="acct-officer-1",
            payload_commitment=bytes(32),
        )
        signed = SignedDocument(header)
        signed.sign(NODE_A_SIGNING)
        out.append(signed)
    return out


def pages(events: list[SignedDocument[EntryEvent]]) -> list[LogPage]:
    """The owner's pages, each with its signed head (roots from the owner's own compact range)."""
    frontier = CompactRange()
    out = []
    for first in range(0, len(events), MAX_PAGE_EVENTS):
        chunk = events[first : first + MAX_PAGE_EVENTS]
        frontier.extend([leaf_hash(log_leaf_bytes(e)) for e in chunk])
        head = SignedDocument(
            TreeHead(log_id="chain-a", tree_size=frontier.size, root_hash=frontier.root(), timestamp=T0)
        )
        head.sign(NODE_A_SIGNING)
        out.append(LogPage(first=first, events=chunk, head=head, latest_size=len(events)))
    return out


def raw_limit(events: list[SignedDocument[EntryEvent]]) -> float:
    """Seconds to verify every signature and hash every leaf, nothing else."""
    start = time.perf_counter()
    for e in events:
        e.verify([NODE_A_SIGNING.public], threshold=1)
        leaf_hash(log_leaf_bytes(e))
    return time.perf_counter() - start


def catch_up(url: str, log_pages: list[LogPage]) -> list[float]:
    engine = make_engine(url)
    upgrade(engine)
    assert MEMBER is not None
    seconds = []
    now = datetime.now(UTC)
    for page in log_pages:
        start = time.perf_counter()
        apply_page(
            engine,
            node_id="chain-b",
            signing_key=NODE_B_SIGNING,
            member=MEMBER,
            page=page,
            after=page.first,
            now=now,
        )
        seconds.append(time.perf_counter() - start)
    with Session(engine) as session:
        held = [bytes(h) for h in session.exec(select(PeerLeaf.leaf_hash).order_by(col(PeerLeaf.idx))).all()]
    start = time.perf_counter()
    root_of_leaf_hashes(held)
    seconds.append(time.perf_counter() - start)
    engine.dispose()
    return seconds


def fresh_database(base: str, name: str) -> str:
    engine = make_engine(f"{base}/postgres")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return f"{base}/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--database",
        help="a PostgreSQL server URL (postgresql+psycopg://user@host:port/any); a database of its own is made",
    )
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f}")
    print(f"database: {'PostgreSQL' if args.database else 'SQLite'}, pages of {MAX_PAGE_EVENTS} events")
    header = "events  catch-up s  us/event first 10%  us/event last 10%  last/first  raw limit s  catch-up/raw  old root check at the end ms"
    print(header)
    for n in args.events:
        events = owner_events(n)
        log_pages = pages(events)
        raw = raw_limit(events)
        with tempfile.TemporaryDirectory() as tmp:
            if args.database:
                url = fresh_database(args.database.rsplit("/", 1)[0], "bench_follow")
            else:
                url = f"sqlite:///{Path(tmp) / 'follower.db'}"
            seconds = catch_up(url, log_pages)
        old_check, per_page = seconds[-1], seconds[:-1]
        tenth = max(1, len(per_page) // 10)
        first = statistics.fmean(per_page[:tenth]) / MAX_PAGE_EVENTS * 1e6
        last = statistics.fmean(per_page[-tenth:]) / MAX_PAGE_EVENTS * 1e6
        total = sum(per_page)
        print(
            f"{n:>6}  {total:>10.1f}  {first:>19.0f}  {last:>18.0f}  {last / first:>10.2f}  "
            f"{raw:>11.1f}  {total / raw:>12.1f}  {old_check * 1e3:>29.0f}"
        )


if __name__ == "__main__":
    main()
