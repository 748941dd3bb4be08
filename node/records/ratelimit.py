"""Token buckets in the database, so the workers of one node share each rate limit.

A node of several workers behind a load balancer would otherwise grant each worker's budget
again: a staff token limited to 600 requests a minute could make 600 per worker. Here a bucket
is one row of ``rate_bucket`` and each request is one atomic statement, an upsert that refills
the bucket for the time since its last request, takes a token if there is one, and returns
whether it did (``INSERT ... ON CONFLICT (key) DO UPDATE ... RETURNING``; PostgreSQL and SQLite
both have it). Two workers racing on one key are serialised by the row lock the upsert takes,
so N requests spread over any number of workers are granted at most the bucket's size plus its
refill, never more.

Times are the workers' wall clocks (seconds since the epoch), not a process's monotonic clock,
which means nothing to another process; a clock that steps back refills nothing and never
moves a bucket's time backwards. The table stays small: a bucket that has refilled is the same
as none, so rows past their ``full_at`` are deleted now and then, and past ``max_keys`` rows
the ones that will be full soonest go first, as the in-memory limiter forgets full buckets.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Float, String, bindparam, case, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from node.storage.models import RateBucket

__all__ = ["MAX_KEY_LENGTH", "PURGE_SECONDS", "RateBuckets"]

PURGE_SECONDS = 30.0
"""How often one process deletes the buckets that have refilled."""
MAX_KEY_LENGTH = 200
"""Longer keys are stored as their SHA-256 (``rate_bucket.key`` is 200 characters)."""

_TABLE = RateBucket.__table__  # type: ignore[attr-defined]


class RateBuckets:
    """``per_minute`` requests a minute per key with bursts of the same size, in ``rate_bucket``.

    ``name`` keeps the keys of different limits apart in the one table. ``clock`` is the wall
    clock in seconds (injected by tests).
    """

    def __init__(
        self,
        engine: Engine,
        name: str,
        per_minute: int,
        *,
        max_keys: int = 65_536,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.max_keys = max_keys
        self.clock = clock
        self._dialect = engine.dialect.name
        if self._dialect not in ("postgresql", "sqlite"):
            raise ValueError(f"rate buckets need PostgreSQL or SQLite, not {self._dialect}")
        # One statement a request, committed by itself: no BEGIN/COMMIT round trips around it.
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._purged_at = float("-inf")
        self._purge_lock = threading.Lock()
        self._take = self._take_statement()

    def _key(self, key: str) -> str:
        full = f"{self.name}:{key}"
        if len(full) <= MAX_KEY_LENGTH:
            return full
        return f"{self.name}:sha256:{hashlib.sha256(key.encode('utf-8')).hexdigest()}"

    def _pair(self, name: str, a: Any, b: Any) -> ColumnElement[Any]:
        """``least``/``greatest`` on PostgreSQL, the two-argument ``min``/``max`` on SQLite."""
        if self._dialect == "sqlite":
            name = "min" if name == "least" else "max"
        function: ColumnElement[Any] = getattr(func, name)(a, b)
        return function

    def _take_statement(self) -> Any:
        """The upsert, built once (building it costs more than running it); ``key`` and ``now``
        are its parameters."""
        c = _TABLE.c
        now = bindparam("now", type_=Float)
        refill = self._pair(
            "least", self.capacity, c.tokens + self._pair("greatest", 0.0, now - c.updated_at) * self.rate
        )
        took = refill >= 1.0
        left = case((took, refill - 1.0), else_=refill)
        at = self._pair("greatest", c.updated_at, now)
        insert = (postgresql if self._dialect == "postgresql" else sqlite).insert(_TABLE)
        return (
            insert.values(
                key=bindparam("key", type_=String),
                tokens=self.capacity - 1.0,
                updated_at=now,
                full_at=now + 1.0 / self.rate,
                allowed=True,
            )
            .on_conflict_do_update(
                index_elements=[c.key],
                set_={
                    "tokens": left,
                    "updated_at": at,
                    "full_at": at + (self.capacity - left) / self.rate,
                    "allowed": took,
                },
            )
            .returning(c.allowed)
        )

    def allow(self, key: str) -> bool:
        """Take a token for ``key`` if it has one now: one upsert, atomic across workers."""
        now = self.clock()
        self._maybe_purge(now)
        with self._engine.connect() as conn:
            return bool(conn.execute(self._take, {"key": self._key(key), "now": now}).scalar_one())

    def exhausted(self, key: str) -> bool:
        """Whether ``key`` has no token left now (nothing is spent)."""
        now = self.clock()
        c = _TABLE.c
        with self._engine.connect() as conn:
            row = conn.execute(select(c.tokens, c.updated_at).where(c.key == self._key(key))).first()
        if row is None:
            return False
        tokens, updated_at = float(row[0]), float(row[1])
        return min(self.capacity, tokens + max(0.0, now - updated_at) * self.rate) < 1.0

    def __len__(self) -> int:
        """Buckets in the table (of every limit that shares it)."""
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_TABLE)).scalar_one())

    def _maybe_purge(self, now: float) -> None:
        if now - self._purged_at < PURGE_SECONDS or not self._purge_lock.acquire(blocking=False):
            return
        try:
            self._purged_at = now
            self.purge(now)
        finally:
            self._purge_lock.release()

    def purge(self, now: float) -> int:
        """Delete the buckets that have refilled, then the soonest-full ones past ``max_keys``."""
        c = _TABLE.c
        with self._engine.connect() as conn:
            deleted = conn.execute(delete(_TABLE).where(c.full_at <= now)).rowcount
            surplus = int(conn.execute(select(func.count()).select_from(_TABLE)).scalar_one()) - self.max_keys
            if surplus > 0:
                soonest = select(c.key).order_by(c.full_at).limit(surplus)
                deleted += conn.execute(delete(_TABLE).where(c.key.in_(soonest))).rowcount
        return int(deleted)
