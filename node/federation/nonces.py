"""Replay nonces in the node's database, so every worker of a node refuses a message any one admitted.

``protocol.replay.ReplayGuard`` remembers nonces in one process's memory; a second worker on the
same database would admit the same sealed message again. ``NonceStore`` keeps the same checks
(the time window against the latest clock reading, then the nonce) with the nonces in
``replay_nonce``: one insert-or-refuse statement whose primary key (sender, nonce) decides
between two workers racing on one message. A refused message leaves nothing behind.

- A row counts until ``expires_at`` (issued_at plus the window), as in ``ReplayGuard``; a nonce
  seen again after that is admitted (its row is taken over by the same statement).
- Expired rows are deleted by the insert path, a bounded batch every ``sweep_every`` inserts or
  ``sweep_interval`` seconds, and only once they have been expired for one more window, so a
  worker whose clock lags another's by less than the window still finds every row it needs.
- The latest clock reading is held to a steady clock (the start's wall time carried on by the
  monotonic clock) plus the window: a forward jump of the node's clock, once corrected, does not
  lock older peers out, and the sweep's cutoff never runs ahead with a jumped clock.
- Each sender may hold ``max_entries`` live nonces (``ReplayGuard``'s limit, per sender here):
  past it the message is refused with ``ReplayCacheFullError`` rather than a nonce forgotten.
  The live rows are counted at every insert only near the cap; far from it, every
  ``COUNT_EVERY`` inserts of that sender in this process (a count reads all its live rows). Two
  workers counting at once may let one more in each, and between counts each worker may admit up
  to ``COUNT_EVERY``, so the bound holds to within ``COUNT_EVERY`` per worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import bindparam, delete, func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, SQLModel

from node.storage.models import ReplayNonce
from protocol.errors import ConfigurationError, ReplayCacheFullError, ReplayError
from protocol.replay import DEFAULT_MAX_ENTRIES, DEFAULT_WINDOW, MAX_WINDOW, check_window

__all__ = ["NonceStore", "ReplayCheck"]

LOG = logging.getLogger("watchnet.federation.nonces")

SWEEP_EVERY = 500
"""Inserts between two sweeps of expired rows (at the latest; ``SWEEP_INTERVAL`` also triggers one)."""
SWEEP_INTERVAL = 10.0
"""Seconds between two sweeps when few messages arrive."""
COUNT_EVERY = 256
"""Inserts of one sender between two counts of its live nonces, while the last count plus them is
far from the cap: counting reads every live row of the sender (60,000 at 1,000 messages a second
and a 60 s window), which made admission O(live) per message. Near the cap every insert counts."""
SWEEP_BATCH = 5000
"""Rows one sweep deletes at most: ten times what arrives between two sweeps at ``SWEEP_EVERY``."""


class ReplayCheck(Protocol):
    """What ``PeerGate`` calls: raise a ``FreshnessError``, or record the nonce as seen."""

    def check(self, sender: str, nonce: bytes, issued_at: datetime, now: datetime) -> None: ...


_TABLE = SQLModel.metadata.tables[ReplayNonce.__tablename__]


class NonceStore:
    """``ReplayGuard``'s check, with the seen nonces in ``replay_nonce`` (thread-safe, any worker)."""

    def __init__(
        self,
        engine: Engine,
        window: timedelta = DEFAULT_WINDOW,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        *,
        sweep_every: int = SWEEP_EVERY,
        sweep_interval: float = SWEEP_INTERVAL,
        sweep_batch: int = SWEEP_BATCH,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not timedelta(0) < window <= MAX_WINDOW:
            raise ConfigurationError(
                f"replay window: got {window.total_seconds():g}s, "
                f"expected more than 0s, at most {MAX_WINDOW.total_seconds():.0f}s"
            )
        if max_entries < 1:
            raise ConfigurationError(f"replay cache size: got {max_entries}, expected at least 1")
        self._engine = engine
        self.window = window
        self.max_entries = max_entries
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._sweep_every = sweep_every
        self._sweep_interval = sweep_interval
        self._sweep_batch = sweep_batch
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._sweeping = threading.Lock()
        self._latest: datetime | None = None
        self._started_wall = datetime.now(UTC)
        self._started_mono = monotonic()
        self._inserts = 0
        self._prepared = self._statements()
        self._held: dict[str, int] = {}
        self._since_count: dict[str, int] = {}
        self._next_sweep = monotonic() + sweep_interval
        self.swept = 0
        """Expired rows this process deleted."""
        self.last_sweep: datetime | None = None
        """The clock reading of this process's last successful sweep."""
        self.sweep_failures = 0
        """Sweeps that failed (logged; the next insert path tries again)."""

    def check(self, sender: str, nonce: bytes, issued_at: datetime, now: datetime) -> None:
        """Raise ``ClockSkewError``, ``ReplayError`` or ``ReplayCacheFullError``, or record the nonce.

        The same checks, in the same order and with the same errors, as ``ReplayGuard.check``.
        """
        with self._lock:
            latest = check_window(issued_at, now, self._latest, self.window)
            self._latest = min(latest, self._steady_now() + self.window)
        self._record(sender, nonce, issued_at + self.window, latest)
        self._maybe_sweep(min(latest, self._steady_now()))

    def _steady_now(self) -> datetime:
        """The wall clock as read at start, carried on by the monotonic clock: a jump of the
        wall clock does not move it. The latest reading is held to it plus the window, so a
        clock that jumped forward and was set right again refuses messages for no longer than
        that, and sweeping by it never forgets a nonce early because the wall clock ran ahead."""
        return self._started_wall + timedelta(seconds=self._monotonic() - self._started_mono)

    def _statements(self) -> tuple[Any, Any]:
        """The insert-or-take-over and the live count, built once with bound parameters: building
        them per message cost more than running them."""
        insert = self._insert(_TABLE).values(
            sender=bindparam("sender"), nonce=bindparam("nonce"), expires_at=bindparam("expires_at")
        )
        upsert = insert.on_conflict_do_update(
            index_elements=[_TABLE.c.sender, _TABLE.c.nonce],
            set_={"expires_at": insert.excluded.expires_at},
            where=_TABLE.c.expires_at < bindparam("latest"),
        ).execution_options(preserve_rowcount=True)
        live = (
            select(_TABLE.c.nonce)
            .where(_TABLE.c.sender == bindparam("sender"), _TABLE.c.expires_at >= bindparam("latest"))
            .limit(self.max_entries + 1)
            .subquery()
        )
        return upsert, select(func.count()).select_from(live)

    def _record(self, sender: str, nonce: bytes, expires_at: datetime, latest: datetime) -> None:
        upsert, count_live = self._prepared
        values = {"sender": sender, "nonce": nonce, "expires_at": expires_at, "latest": latest}
        with self._lock:
            since, held_then = self._since_count.get(sender, 0), self._held.get(sender, 0)
        count = since >= COUNT_EVERY or held_then + since + COUNT_EVERY >= self.max_entries
        with self._engine.begin() as connection:  # a Core transaction: no ORM session per message
            if connection.execute(upsert, values).rowcount != 1:
                raise ReplayError(f"nonce from {sender!r} already seen inside the window")
            held = None
            if count:
                held = int(connection.execute(count_live, {"sender": sender, "latest": latest}).scalar_one())
                if held > self.max_entries:  # raising rolls the insert back
                    raise ReplayCacheFullError(
                        f"replay cache full ({held - 1}/{self.max_entries} nonces of {sender!r} inside "
                        "the window); retry later"
                    )
        with self._lock:
            self._inserts += 1
            if held is None:
                self._since_count[sender] = self._since_count.get(sender, 0) + 1
            else:
                self._held[sender], self._since_count[sender] = held, 0

    def _maybe_sweep(self, latest: datetime) -> None:
        with self._lock:
            due = self._inserts >= self._sweep_every or self._monotonic() >= self._next_sweep
        if not due or not self._sweeping.acquire(blocking=False):
            return
        try:
            with self._lock:
                self._inserts = 0
                self._next_sweep = self._monotonic() + self._sweep_interval
            self.sweep(latest)
        except SQLAlchemyError as e:
            self.sweep_failures += 1
            LOG.warning("replay nonce sweep failed (%d so far), next try later: %s", self.sweep_failures, e)
        finally:
            self._sweeping.release()

    def sweep(self, latest: datetime) -> int:
        """Delete up to one batch of rows expired for more than a window before ``latest``."""
        cutoff = latest - self.window
        expired = (
            select(_TABLE.c.sender, _TABLE.c.nonce)
            .where(_TABLE.c.expires_at < cutoff)
            .limit(self._sweep_batch)
        )
        with Session(self._engine) as session:
            deleted = (
                session.connection()
                .execute(delete(_TABLE).where(tuple_(_TABLE.c.sender, _TABLE.c.nonce).in_(expired)))
                .rowcount
            )
            session.commit()
        self.swept += deleted
        self.last_sweep = latest
        return int(deleted)
