"""Background duties run once per node: a leader lease among the node's workers.

Several ``watchnet serve`` workers of one node share one PostgreSQL database. The duties that
change shared state on a schedule (the retention sweep, following the peers' logs and delivering
our deletion receipts, notifying peers, polling for manifests) must run in one of them only, as
Synapse pins its background tasks to one instance. The worker that holds a session-level
PostgreSQL advisory lock (``pg_try_advisory_lock``, keyed by the node id) on a connection of its
own is the leader and runs them; the others keep trying every ``lease_poll``.

The lock lives as long as the database session: a leader that stops releases it, and one that
dies (SIGKILL, a crash) loses it as soon as PostgreSQL sees its socket close, so another worker
takes over within one poll. The leader checks its connection with ``SELECT 1`` every poll; when
that fails or hangs past ``CHECK_TIMEOUT`` it drops leadership at once (its duties are cancelled),
reconnects and competes again. The lease session asks the server for TCP keepalives and a user
timeout, so a leader whose machine vanishes without closing its socket is dropped by the server
within about ``KEEPALIVE_SECONDS`` too.

On SQLite there is one process per node (``node.app.single`` refuses a second one) and it is
always the leader.

A duty added with ``every_worker=True`` runs in every worker from start to stop, leader or not,
under the same supervision: the writing of this worker's own held deletions (only the worker that
decided one holds it) and its disk reserve.

Each duty is a coroutine function that loops forever and calls ``DutyState.ok()`` after each
pass. It runs supervised: an exception is logged, counted (in health and the
``watchnet.duty.errors`` counter), and the duty is restarted after a backoff that doubles from
``RETRY_FIRST`` to ``RETRY_MAX`` and starts again after a pass that succeeded. The duties do their
database work in transactions run off the event loop, so a duty cancelled when leadership is lost
leaves nothing half-applied: the transaction in flight commits whole or not at all, and the
database's keys (one log leaf per peer and index, one receipt per event and member) refuse a
second application of the same change by a new leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from protocol.fields import format_time

__all__ = [
    "CHECK_TIMEOUT",
    "DEFAULT_POLL",
    "RETRY_FIRST",
    "RETRY_MAX",
    "DutyLoop",
    "DutyState",
    "LeaderLease",
    "lease_key",
]

LOG = logging.getLogger("watchnet.node.leader")

DEFAULT_POLL = 2.0
"""Seconds between two tries for the lock (and two checks of the leader's connection)."""
CHECK_TIMEOUT = 5.0
"""Seconds a lock try or a connection check may take before the lease connection is given up."""
RETRY_FIRST = 1.0
"""Seconds before restarting a duty that raised; doubled per failure in a row."""
RETRY_MAX = 60.0
KEEPALIVE_SECONDS = 15
"""About how long PostgreSQL keeps a silent (unplugged) leader's session, and so its lock."""
_SESSION_SETTINGS = (
    "SET tcp_keepalives_idle = 5",
    "SET tcp_keepalives_interval = 2",
    "SET tcp_keepalives_count = 3",
    f"SET tcp_user_timeout = {KEEPALIVE_SECONDS * 1000}",
    "SET idle_session_timeout = 0",
    "SET idle_in_transaction_session_timeout = 0",
    "SET application_name = 'watchnet leader lease'",
)


def lease_key(node_id: str) -> int:
    """The advisory lock key of ``node_id``'s lease: a signed 64-bit number from its hash."""
    digest = hashlib.sha256(f"watchnet leader lease\x00{node_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _try_lock(connection: Connection, key: int) -> bool:
    return bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())


def _check(connection: Connection) -> None:
    connection.execute(text("SELECT 1")).scalar()


def _invalidate(connection: Connection) -> None:
    with contextlib.suppress(Exception):
        connection.invalidate()


def _worker_name() -> str:
    return os.environ.get("WATCHNET_WORKER") or f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class DutyState:
    """What health shows of one duty: its last successful pass and the errors it survived."""

    name: str
    clock: Callable[[], datetime]
    interval: timedelta = timedelta(seconds=60)
    """How often a pass is due: readiness calls the duty stalled after a multiple of it."""
    every_worker: bool = False
    """Run by every worker (not only the leader)."""
    last_ok: datetime | None = None
    runs: int = 0
    errors: int = 0
    last_error: str = ""
    running: bool = False

    def ok(self) -> None:
        """One pass of the duty succeeded."""
        self.last_ok = self.clock()
        self.runs += 1

    def failed(self, error: BaseException) -> None:
        """One pass (or part of one) raised; the duty goes on."""
        self.errors += 1
        self.last_error = type(error).__name__

    def to_dict(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "last_ok": None if self.last_ok is None else format_time(self.last_ok.replace(microsecond=0)),
            "runs": self.runs,
            "errors": self.errors,
            "last_error": self.last_error or None,
        }


DutyLoop = Callable[[DutyState], Awaitable[None]]
"""A duty: loops until cancelled, calling ``ok()`` after each pass."""


@dataclass
class _Duty:
    state: DutyState
    loop: DutyLoop
    every_worker: bool = False
    task: asyncio.Task[None] | None = None


@dataclass
class LeaderLease:
    """The node's leader lease and the duties it runs while held (one per worker process)."""

    engine: Engine
    node_id: str
    clock: Callable[[], datetime]
    poll: float = DEFAULT_POLL
    on_error: Callable[[str, BaseException], None] = lambda _name, _error: None
    """Called for every duty error (the application counts them in its telemetry)."""
    worker: str = field(default_factory=_worker_name)
    is_leader: bool = False
    since: datetime | None = None
    gained: int = 0
    """How many times this worker became leader."""
    _duties: dict[str, _Duty] = field(default_factory=dict)
    _connection: Connection | None = None
    _executor: ThreadPoolExecutor | None = None
    _task: asyncio.Task[None] | None = None
    _started: datetime | None = None

    @property
    def shared(self) -> bool:
        """Whether several workers may share the database (PostgreSQL) and so compete."""
        return self.engine.dialect.name == "postgresql"

    def add_duty(
        self,
        name: str,
        loop: DutyLoop,
        interval: timedelta = timedelta(seconds=60),
        *,
        every_worker: bool = False,
    ) -> DutyState:
        """A duty for the leader only, or (``every_worker``) for every worker of the node."""
        state = DutyState(name, self.clock, interval, every_worker)
        self._duties[name] = _Duty(state, loop, every_worker)
        return state

    def duty(self, name: str) -> DutyState:
        return self._duties[name].state

    def states(self) -> list[DutyState]:
        return [self._duties[name].state for name in sorted(self._duties)]

    def running_states(self) -> list[DutyState]:
        """The duties this worker runs now: every worker's, and the leader's while it leads."""
        return [
            self._duties[name].state
            for name in sorted(self._duties)
            if self.is_leader or self._duties[name].every_worker
        ]

    def worker_since(self) -> datetime | None:
        """When this worker's own duties started (``None`` before ``start``)."""
        return self._started

    def to_dict(self) -> dict[str, Any]:
        return {
            "is_leader": self.is_leader,
            "worker": self.worker,
            "since": None if self.since is None else format_time(self.since.replace(microsecond=0)),
            "lease": "advisory-lock" if self.shared else "single-process",
            "duties": {
                name: duty.state.to_dict() for name, duty in sorted(self._duties.items()) if not duty.every_worker
            },
            "worker_duties": {
                name: duty.state.to_dict() for name, duty in sorted(self._duties.items()) if duty.every_worker
            },
        }

    # ----- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._started = self.clock()
        for duty in self._duties.values():
            if duty.every_worker:
                duty.task = asyncio.create_task(self._supervise(duty), name=f"duty {duty.state.name}")
        if not self.shared:
            self._gain()
            return
        self._task = asyncio.create_task(self._compete(), name="leader lease")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._lose("stopping")
        await _cancel([d for d in self._duties.values() if d.every_worker])
        if self._connection is not None:
            connection, self._connection = self._connection, None
            with contextlib.suppress(Exception):
                await self._run(self._release, connection)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    async def cleanup_ctx(self, _app: Any) -> AsyncIterator[None]:
        """For ``web.Application.cleanup_ctx``: compete while the application runs."""
        await self.start()
        yield
        await self.stop()

    # ----- the lock --------------------------------------------------------------------------

    async def _compete(self) -> None:
        key = lease_key(self.node_id)
        while True:
            try:
                if self._connection is None:
                    self._connection = await self._run(self._open)
                connection = self._connection
                if self.is_leader:
                    await self._run(_check, connection)
                elif await self._run(_try_lock, connection, key):
                    self._gain()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001  (the connection broke or hung: not leader, reconnect)
                LOG.warning(
                    "leader lease connection failed (%s: %s); %s",
                    type(e).__name__,
                    str(e).splitlines()[0][:200] if str(e) else "",
                    "leadership dropped" if self.is_leader else "retrying",
                )
                await self._lose("lease connection lost")
                self._abandon_connection()
            await asyncio.sleep(self.poll)

    async def _run(self, work: Callable[..., Any], *args: Any) -> Any:
        if self._executor is None:  # one thread of its own: a busy default pool cannot delay a check
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="leader-lease")
        future = asyncio.get_running_loop().run_in_executor(self._executor, work, *args)
        return await asyncio.wait_for(future, CHECK_TIMEOUT)

    def _open(self) -> Connection:
        connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        connection.detach()  # its own session, never handed back to the pool transactions use
        for setting in _SESSION_SETTINGS:
            try:
                connection.execute(text(setting))
            except Exception as e:  # noqa: BLE001  (an older server lacks a setting: go on)
                LOG.debug("lease session: %s refused (%s)", setting, type(e).__name__)
        return connection

    def _release(self, connection: Connection) -> None:
        try:
            connection.execute(text("SELECT pg_advisory_unlock_all()"))
        finally:
            connection.close()

    def _abandon_connection(self) -> None:
        """Forget the lease connection and its thread without waiting: the connection is closed
        in that thread, after the call that may hang on it returns (until then a server that
        still sees the session keeps the lock held, so no other worker leads meanwhile)."""
        connection, self._connection = self._connection, None
        executor, self._executor = self._executor, None
        if executor is not None:
            if connection is not None:
                executor.submit(_invalidate, connection)
            executor.shutdown(wait=False)
        elif connection is not None:
            _invalidate(connection)

    # ----- duties ----------------------------------------------------------------------------

    def _gain(self) -> None:
        self.is_leader = True
        self.since = self.clock()
        self.gained += 1
        LOG.info(
            "worker %s is the leader of %s: running %s",
            self.worker,
            self.node_id,
            ", ".join(self._duties) or "no duties",
        )
        for duty in self._duties.values():
            if not duty.every_worker:
                duty.task = asyncio.create_task(self._supervise(duty), name=f"duty {duty.state.name}")

    async def _lose(self, why: str) -> None:
        if self.is_leader:
            log = LOG.info if why == "stopping" else LOG.warning
            log("worker %s is no longer the leader of %s (%s)", self.worker, self.node_id, why)
        self.is_leader, self.since = False, None
        await _cancel([d for d in self._duties.values() if not d.every_worker])

    async def _supervise(self, duty: _Duty) -> None:
        state = duty.state
        delay = RETRY_FIRST
        state.running = True
        try:
            while True:
                runs = state.runs
                try:
                    await duty.loop(state)
                    LOG.warning("duty %s returned; restarting it", state.name)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # logged, counted, backed off, retried: a duty never dies
                    state.failed(e)
                    self.on_error(state.name, e)
                    LOG.exception(
                        "duty %s failed (%d errors so far); retrying in %.0f s",
                        state.name,
                        state.errors,
                        delay,
                    )
                if state.runs > runs:
                    delay = RETRY_FIRST
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
        finally:
            state.running = False


async def _cancel(duties: list[_Duty]) -> None:
    tasks = [d.task for d in duties if d.task is not None]
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for duty in duties:
        duty.task = None
