"""Telling every worker of one node that rows changed: PostgreSQL LISTEN/NOTIFY, plus a reconcile.

Several ``watchnet serve`` workers of one node share one PostgreSQL database, and each keeps
state derived from it in memory (the faiss index, the private-mode gallery, the trusted manifest).
A writer calls ``notify`` in the transaction that changes the rows, so the notification is
delivered exactly when the change commits (and never for a rolled-back one). Every worker runs
one ``Follower``: a thread with its own connection that listens on the channels and hands each
batch of payloads to its ``Feed``. Notifications are a fast path, not a guarantee (a connection
drops, a server restarts): each feed also has ``reconcile``, run on every (re)connection and every
``reconcile_every`` seconds, which compares the database with what the worker has applied, so
the delay is bounded even when a notification is lost.

Like Synapse's background processes, the loop never dies: an error is logged and counted, the
connection is reopened with backoff, and the time of the last successful reconcile is kept for
the health endpoint. On SQLite (one process, the embedded default) nothing is sent or followed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, text

__all__ = [
    "ENTRIES",
    "MANIFEST",
    "PULL",
    "RECONCILE_EVERY",
    "SUPPRESS",
    "Feed",
    "Follower",
    "announce",
    "notify",
    "shared",
]

LOG = logging.getLogger("watchnet.notify")

ENTRIES = "watchnet_entries"
"""Payload: an entry id whose status or version changed (approve, correct, delete, expire)."""
MANIFEST = "watchnet_manifest"
"""Payload: the version of a manifest this node newly trusts."""
PULL = "watchnet_pull"
"""Payload: a member's node id. The member told one worker it has news (new log entries, or
receipts it wants confirmed); the leader, which alone follows members' logs, pulls from it now."""

SUPPRESS = "watchnet_suppress"
"""Payload: an entry id whose deletion or expiry one worker decided but could not write (a full
disk, a refused write): every worker stops matching it now, before any row says so."""

RECONCILE_EVERY = 5.0
"""Seconds between reconciles: the bound on a worker's delay when a notification is lost."""
WAIT_SLICE = 0.25
"""Longest blocking wait for a notification; ``stop`` takes effect within it."""
BACKOFF_CAP = 10.0


def shared(engine: Engine) -> bool:
    """Whether other processes may write this database (PostgreSQL), so there is something to follow."""
    return engine.dialect.name == "postgresql"


def announce(engine: Engine, channel: str, payload: str) -> None:
    """Send a notification now, in a transaction of its own (the caller's has failed); raises the
    database's error when even that cannot be sent. Nothing on SQLite."""
    if not shared(engine):
        return
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload})
        connection.commit()


def notify(session: Session, channel: str, payload: str) -> None:
    """Queue a notification in ``session``'s transaction: sent at its commit, dropped at a rollback."""
    if not shared(session.get_bind()):  # type: ignore[arg-type]  # a Session bound to one Engine
        return
    session.connection().execute(
        text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload}
    )


@dataclass(frozen=True)
class Feed:
    """What one kind of derived state does with notifications on ``channel``."""

    channel: str
    apply: Callable[[list[str]], object]
    """Called with a batch of payloads (duplicates removed, first-seen order)."""
    reconcile: Callable[[], object]
    """Bring the state in line with the database, whatever notifications were missed."""


class Follower:
    """One thread per worker: LISTEN on every feed's channel, apply batches, reconcile periodically."""

    def __init__(
        self,
        engine: Engine,
        feeds: Sequence[Feed],
        *,
        reconcile_every: float = RECONCILE_EVERY,
        listen: bool = True,
        name: str = "watchnet-follower",
    ) -> None:
        self._engine = engine
        self._feeds = {f.channel: f for f in feeds}
        self.reconcile_every = reconcile_every
        self.listen = listen
        """False only in tests: reconcile alone, as if every notification were lost."""
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = False
        self.errors = 0
        self.notifications = 0
        self.last_error: str | None = None
        self.reconciled_at: datetime | None = None

    @property
    def active(self) -> bool:
        return shared(self._engine)

    def status(self) -> dict[str, Any]:
        """For ``/v1/health``: how this worker follows the database (states, counts of faults, times)."""
        if not self.active:
            return {"following": "local"}
        return {
            "following": "notify" if self.connected else "reconnecting",
            "reconciled_at": None if self.reconciled_at is None else self.reconciled_at.isoformat(),
            "errors": self.errors,
            **({"error": self.last_error} if self.last_error else {}),
        }

    def start(self) -> None:
        if not self.active or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=WAIT_SLICE * 8)
            self._thread = None

    async def beside(self, _app: object) -> AsyncIterator[None]:
        """An aiohttp ``cleanup_ctx``: follow while the application runs."""
        self.start()
        yield
        self.stop()

    def _conninfo(self) -> str:
        return self._engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def _failed(self, what: str, error: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{what}: {type(error).__name__}"
        LOG.warning("database follower: %s failed (%s: %s)", what, type(error).__name__, error)

    def reconcile(self) -> bool:
        """Run every feed's reconcile now; True when all of them succeeded."""
        ok = True
        for feed in self._feeds.values():
            try:
                feed.reconcile()
            except Exception as e:  # noqa: BLE001  (a duty's loop logs, counts and goes on)
                self._failed(f"reconcile of {feed.channel}", e)
                ok = False
        if ok:
            self.reconciled_at = datetime.now(UTC).replace(microsecond=0)
            self.last_error = None
        return ok

    def _apply(self, batch: dict[str, list[str]]) -> bool:
        ok = True
        for channel, payloads in batch.items():
            feed = self._feeds.get(channel)
            if feed is None:
                continue
            try:
                feed.apply(list(dict.fromkeys(payloads)))
            except Exception as e:  # noqa: BLE001  (the next reconcile repairs what this missed)
                self._failed(f"applying {channel}", e)
                ok = False
        return ok

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._follow()
                backoff = 0.5
            except Exception as e:  # noqa: BLE001  (reconnect; the loop never dies)
                self.connected = False
                self._failed("connection", e)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_CAP)
        self.connected = False

    def _follow(self) -> None:
        import psycopg

        with psycopg.connect(self._conninfo(), autocommit=True) as conn:
            if self.listen:
                for channel in self._feeds:
                    conn.execute(f"LISTEN {channel}")  # constants of this module, not input
            self.connected = True
            due = time.monotonic()  # reconcile first: whatever changed before LISTEN took effect
            while not self._stop.is_set():
                if time.monotonic() >= due:
                    ok = self.reconcile()
                    due = time.monotonic() + (self.reconcile_every if ok else min(1.0, self.reconcile_every))
                wait = max(0.0, min(WAIT_SLICE, due - time.monotonic()))
                if not self.listen:
                    self._stop.wait(wait)
                    continue
                batch: dict[str, list[str]] = {}
                for n in conn.notifies(timeout=wait, stop_after=1):
                    batch.setdefault(n.channel, []).append(n.payload)
                if not batch:
                    continue
                for n in conn.notifies(timeout=0):  # whatever else already arrived: one batch
                    batch.setdefault(n.channel, []).append(n.payload)
                self.notifications += sum(len(p) for p in batch.values())
                if not self._apply(batch):
                    due = time.monotonic()
