"""The node's state as Prometheus gauges (``GET /metrics``): what an operator alerts on.

Counters (requests, refusals by code, duty errors, expiries) are counted where they happen; these
gauges are read when scraped: each duty's age since its last success, the receipts each member
still owes us, each peer's consecutive sync failures and the circuit breaker, the manifest's
remaining validity, the audit writer's queue, free disk space, the deletions decided but not yet
written and whether the disk reserve is held. Labels are node ids, duty
names and states only: nothing personal, nothing biometric. A gauge whose source fails (the
database down) reports nothing for that scrape rather than failing the scrape; readiness names
the fault.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable
from datetime import datetime

from opentelemetry.metrics import CallbackOptions, Observation
from sqlmodel import Session, select

from node.app.leader import LeaderLease
from node.context import NodeContext
from node.federation.owed import owed_counts
from node.records.auditlog import AuditWriter
from node.storage.models import PeerState
from node.storage.reserve import DiskReserve
from node.telemetry import Telemetry

__all__ = ["register_gauges"]

LOG = logging.getLogger("watchnet.node.gauges")

Reading = Callable[[], Iterable[Observation]]


def _guarded(name: str, read: Reading) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(_options: CallbackOptions) -> Iterable[Observation]:
        try:
            return list(read())
        except Exception as e:  # noqa: BLE001  (a scrape must not fail because one source did)
            LOG.warning("metric %s not read: %s", name, type(e).__name__)
            return []

    return callback


def register_gauges(
    telemetry: Telemetry,
    context: NodeContext,
    lease: LeaderLease,
    audit: AuditWriter,
    clock: Callable[[], datetime],
    peers: Callable[[], dict[str, dict[str, object]]],
    reserve: DiskReserve | None = None,
) -> None:
    """Observable gauges on the node's meter; ``peers`` gives each peer's live facts (circuit
    state, clock skew) from federation."""
    meter = telemetry.meter("watchnet.node")

    def duty_ages() -> Iterable[Observation]:
        now = clock()
        for state in lease.running_states():
            since = state.last_ok or (lease.worker_since() if state.every_worker else lease.since) or now
            yield Observation((now - since).total_seconds(), {"duty": state.name})

    def owed() -> Iterable[Observation]:
        if not lease.is_leader:
            return
        for member, count in owed_counts(context.engine, context.manifest, context.config.node_id).items():
            yield Observation(count, {"member": member})

    def failures() -> Iterable[Observation]:
        with Session(context.engine) as session:
            for state in session.exec(select(PeerState)).all():
                yield Observation(state.failures, {"peer": state.peer, "status": state.status})

    def circuit_open() -> Iterable[Observation]:
        for peer, facts in peers().items():
            yield Observation(1 if facts.get("circuit") == "open" else 0, {"peer": peer})

    def skew() -> Iterable[Observation]:
        for peer, facts in peers().items():
            value = facts.get("clock_skew_seconds")
            if isinstance(value, int | float):
                yield Observation(float(value), {"peer": peer})

    def manifest_left() -> Iterable[Observation]:
        manifest = context.manifest
        yield Observation((manifest.expires - clock()).total_seconds(), {"version": str(manifest.version)})

    def disk_free() -> Iterable[Observation]:
        yield Observation(shutil.disk_usage(context.config.directory).free)

    gauges: list[tuple[str, str, str, Reading]] = [
        (
            "watchnet.leader",
            "1 when this worker holds the node's leader lease",
            "1",
            lambda: [Observation(1 if lease.is_leader else 0)],
        ),
        (
            "watchnet.duty.last_success_age",
            "seconds since each background duty's last success (leader)",
            "s",
            duty_ages,
        ),
        (
            "watchnet.receipts.owed",
            "our deletions, expiries and corrections a member has not confirmed",
            "1",
            owed,
        ),
        ("watchnet.peer.sync_failures", "consecutive failed log syncs with each peer", "1", failures),
        ("watchnet.peer.circuit_open", "1 while the circuit breaker skips a peer", "1", circuit_open),
        ("watchnet.peer.clock_skew", "the peer's clock minus ours at the last exchange", "s", skew),
        ("watchnet.manifest.expires_in", "seconds until the trusted manifest expires", "s", manifest_left),
        (
            "watchnet.audit.queue",
            "audit records waiting for the next flush",
            "1",
            lambda: [Observation(audit.pending)],
        ),
        ("watchnet.disk.free", "free bytes on the node directory's disk", "By", disk_free),
        (
            "watchnet.deletions.pending",
            "deletions and expiries decided (no longer matching) whose write has not landed",
            "1",
            lambda: [Observation(len(context.registry.pending))],
        ),
    ]
    if reserve is not None and reserve.enabled:
        gauges.append(
            (
                "watchnet.disk.reserve_held",
                "1 while the disk reserve is held, 0 once released (a write found the disk full)",
                "1",
                lambda: [Observation(1 if reserve.held else 0)],
            )
        )
    for name, description, unit, read in gauges:
        meter.create_observable_gauge(name, [_guarded(name, read)], unit=unit, description=description)
