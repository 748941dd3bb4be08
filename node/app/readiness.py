"""Whether this worker should be sent traffic: ``GET /v1/health/ready`` and the load balancer.

Expiry and deletion are legal duties, so "the process answers" is not enough: a worker is ready
only when every part a correct answer depends on is working, and the answer names the part that
is not. The parts:

- ``database``: one ``SELECT 1`` within ``DATABASE_TIMEOUT``;
- ``disk``: free space on the node directory's disk above ``[health] disk_free_min_mb`` (on SQLite
  the watchlist, the log and the audit trail are written there);
- ``duties``: on the leader, every background duty (retention, following, notices, manifest) had a
  success within ``duty_stall_factor`` times its interval plus ``duty_stall_grace``, counted from
  when this worker became leader for a duty that has not run yet; a follower worker runs only the
  duties of every worker (``closures``: writing its held deletions, and the disk reserve);
- ``manifest``: the trusted manifest is valid for at least ``manifest_min_validity`` more;
- ``integrity``: the store agrees with the log the node signed (it refuses queries otherwise);
- ``private``: where the manifest allows private mode, a gallery has been built to answer from;
- ``restore``: the node is not being restored from a backup (``node.records.restore``: while it
  is, it answers no query until the ``restore`` duty recovered its log from the members);
- ``deletions`` and ``disk_reserve`` (``node.app.closures``): no decided deletion or expiry waits
  to be written, and the disk reserve is held.

Checks are cheap and run per request (the database check in a thread), so a load balancer
polling every few seconds sees a fault within one poll.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from node.app.leader import DutyState, LeaderLease
from node.context import NodeContext
from node.records.integrity import CHECKING, FAILED
from node.records.restore import RestoreGate
from protocol.fields import format_duration

__all__ = ["DATABASE_TIMEOUT", "Check", "Readiness", "restore_check"]

DATABASE_TIMEOUT = 3.0
"""Seconds the database may take to answer ``SELECT 1`` before it counts as down."""


@dataclass(frozen=True)
class Check:
    """One part of readiness: ``ok``, and for an operator what was seen and what to do."""

    name: str
    ok: bool
    detail: str
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, **self.facts}


PrivateState = Callable[[], dict[str, object]]
ExtraCheck = Callable[[], Check]


@dataclass
class Readiness:
    """The readiness of one worker, from the parts it is built from (see the module docstring)."""

    context: NodeContext
    lease: LeaderLease
    clock: Callable[[], datetime]
    private_state: PrivateState
    extra: list[ExtraCheck] = field(default_factory=list)
    """More checks added by other parts (the disk reserve, say)."""

    async def checks(self) -> list[Check]:
        database = await self._database()
        return [
            database,
            self._disk(),
            *self._duties(),
            self._manifest(),
            self._integrity(),
            self._private(),
            *(check() for check in self.extra),
        ]

    async def to_dict(self) -> dict[str, Any]:
        checks = await self.checks()
        failing = [c.name for c in checks if not c.ok]
        return {
            "ready": not failing,
            "failing": failing,
            "leader": self.lease.is_leader,
            "checks": {c.name: c.to_dict() for c in checks},
        }

    async def _database(self) -> Check:
        def ping() -> None:
            with self.context.engine.connect() as connection:
                connection.execute(text("SELECT 1")).scalar()

        try:
            await asyncio.wait_for(asyncio.to_thread(ping), DATABASE_TIMEOUT)
        except TimeoutError:
            return Check("database", False, f"no answer to SELECT 1 within {DATABASE_TIMEOUT:.0f} s")
        except Exception as e:  # noqa: BLE001  (any failure to reach the database is "down")
            return Check("database", False, f"unreachable ({type(e).__name__}); check the database server")
        return Check("database", True, "answers")

    def _disk(self) -> Check:
        directory = self.context.config.directory
        minimum = self.context.config.health.disk_free_min_mb << 20
        try:
            free = shutil.disk_usage(directory).free
        except OSError as e:
            return Check("disk", False, f"cannot read free space of {directory} ({e.strerror})")
        facts = {"free_mb": free >> 20, "minimum_mb": minimum >> 20}
        if free < minimum:
            return Check(
                "disk",
                False,
                f"{free >> 20} MiB free under {directory}, below the {minimum >> 20} MiB kept for "
                "deletions and expiries; free space (or 'watchnet node release-reserve')",
                facts,
            )
        return Check("disk", True, f"{free >> 20} MiB free", facts)

    def _duties(self) -> list[Check]:
        health = self.context.config.health
        now = self.clock()
        out = []
        if not self.lease.is_leader:
            out.append(Check("duties", True, "run by the node's leader worker, not this one"))
        for state in self.lease.running_states():
            limit = state.interval * health.duty_stall_factor + health.duty_stall_grace
            since = self.lease.worker_since() if state.every_worker else self.lease.since
            out.append(_duty_check(state, now, limit, since or now))
        return out

    def _manifest(self) -> Check:
        manifest = self.context.manifest
        left = manifest.expires - self.clock()
        minimum = self.context.config.health.manifest_min_validity
        facts = {"version": manifest.version, "valid_for_seconds": max(0, int(left.total_seconds()))}
        if left < minimum:
            return Check(
                "manifest",
                False,
                f"manifest version {manifest.version} expires in {_span(left)}, less than "
                f"{format_duration(minimum)}; ask the organisation for the next version",
                facts,
            )
        return Check("manifest", True, f"version {manifest.version}, valid {_span(left)} more", facts)

    def _integrity(self) -> Check:
        state = self.context.registry.integrity.state
        if state == FAILED:
            return Check("integrity", False, "the store disagrees with the signed log; see GET /v1/health")
        if state == CHECKING:
            return Check("integrity", False, "the first check of the store against the log is running")
        return Check("integrity", True, state)

    def _private(self) -> Check:
        state = self.private_state()
        name = str(state.get("state", "off"))
        if name in ("off", "ready"):
            return Check("private", True, name)
        if "age_seconds" in state:  # a build exists and answers while the next one is made
            return Check("private", True, f"{name}; answering from the previous build")
        return Check("private", False, f"no gallery built yet ({name}); peers' private queries get not_ready")


def restore_check(gate: RestoreGate) -> ExtraCheck:
    """Red while the node is being restored, with what it was restored from."""

    def check() -> Check:
        facts = gate.facts()
        if facts is None:
            return Check("restore", True, "not restoring")
        return Check(
            "restore",
            False,
            f"restoring from a backup taken {facts.get('backup_created_at', '?')} at log size "
            f"{facts.get('backup_log_size', '?')}: answers no query until the members' copies of the log "
            "are replayed (duty:restore; 'watchnet restore --report')",
            {"backup_created_at": facts.get("backup_created_at"), "backup_log_size": facts.get("backup_log_size")},
        )

    return check


def _duty_check(state: DutyState, now: datetime, limit: timedelta, leader_since: datetime) -> Check:
    name = f"duty:{state.name}"
    last = state.last_ok or leader_since
    age = now - last
    facts = {
        "last_ok": None if state.last_ok is None else state.last_ok.isoformat(timespec="seconds"),
        "age_seconds": max(0, int(age.total_seconds())),
        "limit_seconds": int(limit.total_seconds()),
        "errors": state.errors,
    }
    if age > limit:
        error = f", last error {state.last_error}" if state.last_error else ""
        return Check(
            name,
            False,
            f"no successful pass for {_span(age)} (limit {_span(limit)}){error}; see the node's log",
            facts,
        )
    return Check(name, True, "on schedule", facts)


def _span(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    if seconds >= 7200:
        return f"{seconds // 3600} h"
    if seconds >= 120:
        return f"{seconds // 60} min"
    return f"{seconds} s"
