"""The node's process: one aiohttp application assembled from the HTTP handlers (``node.http``),
the staff console, federation and private mode.

The access middleware (``node.app.access``) authenticates every request (staff token, console
session or sealed peer message) before it reads a body, bounds and rate-limits it and writes it to
the audit log with a hash of its body, never the body; typed errors become stable JSON error codes
and statuses. Outside it the last-resort middleware (``node.app.last_resort``) answers whatever
else escapes: ``503 database_unavailable`` while the database cannot be reached, otherwise a JSON
``500 internal`` with a request id. Shared services live under
``web.AppKey``; the retention sweep, the audit flusher and federation run as background tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import aiohttp
from aiohttp import web

from node.app.access import (
    ANONYMOUS_LIMITER,
    BULK_BODY_BUDGET,
    BULK_READS,
    OPEN_POSTS,
    PEER_PREFIX,
    PUBLIC_PATHS,
    PUBLIC_POSTS,
    REFUSALS,
    BodyBudget,
    access_middleware,
)
from node.app.closures import INTERVAL as CLOSURES_INTERVAL
from node.app.closures import closure_duty, closures_check, reserve_check, reserve_cleanup_ctx
from node.app.delivery import PASS_SECONDS, DeliveryTargets, delivery_duty
from node.app.gauges import register_gauges
from node.app.integrity_check import integrity_check
from node.app.last_resort import OUTAGE_LOG, database_unavailable, last_resort_middleware
from node.app.leader import DutyLoop, DutyState, LeaderLease
from node.app.proxies import TrustedProxies
from node.app.readiness import Readiness, restore_check
from node.casework.referrals import ANSWERS_INTERVAL, deliver_answers
from node.console import add_console_routes
from node.context import NodeContext
from node.federation.federation import Federation
from node.http.api import (
    AUDIT_FLUSH_SECONDS,
    AUDIT_WRITER,
    CLOCK,
    CONTEXT,
    FEDERATION,
    LIMITER,
    METRICS,
    PRIVATE,
    TELEMETRY,
    TOKEN_CACHE,
    NodeMetrics,
    RateLimiter,
    now_utc,
    require_staff,
)
from node.http.casework import add_casework_routes
from node.http.health import LEADER_STATUS, READINESS, add_health_routes
from node.http.network import add_network_routes
from node.http.notice import add_notice_routes
from node.http.openapi import add_openapi_routes
from node.http.private import add_private_routes
from node.http.records import add_record_routes
from node.http.report import add_report_routes
from node.http.witness import add_witness_routes
from node.private.mode import PrivateMode
from node.records.alert_faces import CropErased
from node.records.auditlog import AuditWriter, RefusalTally
from node.records.held_journal import HeldJournal
from node.records.shredding import shred_orphans
from node.storage.reserve import DiskReserve
from node.telemetry import Telemetry, setup_telemetry
from protocol.message import MAX_BULK_SEALED_BYTES

__all__ = ["CONTEXT", "OPEN_POSTS", "PEER_PREFIX", "PUBLIC_PATHS", "PUBLIC_POSTS", "build_app", "now_utc"]

LOG = logging.getLogger("watchnet.node")
AUDIT_FAILURE_REPORT_SECONDS = 60.0
"""While audit flushes keep failing (a full disk), one log line per this many seconds."""


def _retention_sweep(app: web.Application) -> DutyLoop:
    """The retention sweep, a leader duty: every ``retention_sweep``, delete the entries whose
    retention has ended (each deletion one transaction: event, erasure and audit record)."""
    context = app[CONTEXT]
    interval = context.config.retention_sweep.total_seconds()
    meter = app[TELEMETRY].meter("watchnet.node")
    expired_counter = meter.create_counter(
        "watchnet.entries.expired", description="entries deleted at expiry"
    )
    tracer = app[TELEMETRY].tracer("watchnet.node")

    async def loop(duty: DutyState) -> None:
        while True:
            with tracer.start_as_current_span("retention sweep"):
                expired = await asyncio.to_thread(context.registry.expire_due, app[CLOCK]())
                expired_counter.add(len(expired))
                await asyncio.to_thread(shred_orphans, context.engine, context.registry.vault)
            if expired:
                LOG.info("retention sweep: %d entries expired", len(expired))
            duty.ok()
            await asyncio.sleep(interval)

    return loop


def _complaint_answers_duty(app: web.Application) -> DutyLoop:
    """The ``complaint_answers`` duty: our signed answers to complaints the organisation referred,
    sent again every 30 s (each backing off to an hour) until the organisation confirms one."""
    context = app[CONTEXT]

    async def loop(duty: DutyState) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                await deliver_answers(
                    context.engine,
                    context.registry.write_lock,
                    context.config.manifest_url,
                    app[CLOCK](),
                    session=session,
                )
                duty.ok()
                await asyncio.sleep(ANSWERS_INTERVAL.total_seconds())

    return loop


def _crop_of(context: NodeContext) -> Callable[[str], bytes | None]:
    """An alert's camera crop for a webhook with ``include_crop``; ``None`` once erased or never taken."""

    def crop_of(alert_id: str) -> bytes | None:
        try:
            return context.alerts.camera_crop(alert_id)
        except CropErased:
            return None

    return crop_of


def _alert_faces_duty(app: web.Application) -> DutyLoop:
    """The erasure of alerts' camera crops, a leader duty: every ``[alerts] erase_interval``, the
    crops whose review window ended lose their key and their ciphertext (audited per alert)."""
    context = app[CONTEXT]
    interval = context.config.alerts.erase_interval.total_seconds()
    erased_counter = (
        app[TELEMETRY]
        .meter("watchnet.node")
        .create_counter("watchnet.alerts.crops_erased", description="alerts whose camera crops were erased")
    )
    tracer = app[TELEMETRY].tracer("watchnet.node")

    async def loop(duty: DutyState) -> None:
        while True:
            with tracer.start_as_current_span("alert crop erasure"):
                erased = await asyncio.to_thread(context.alerts.erase_due, app[CLOCK]())
            erased_counter.add(len(erased))
            if erased:
                LOG.info(
                    "alert crops: %d alerts' camera crops erased at the end of their review window",
                    len(erased),
                )
            duty.ok()
            await asyncio.sleep(interval)

    return loop


def _leader_lease(app: web.Application) -> LeaderLease:
    """This worker's part in the node's leader lease; duties are added by ``build_app``."""
    context = app[CONTEXT]
    errors = (
        app[TELEMETRY]
        .meter("watchnet.node")
        .create_counter("watchnet.duty.errors", description="background duty passes that raised")
    )
    return LeaderLease(
        context.engine,
        context.config.node_id,
        app[CLOCK],
        poll=context.config.federation.lease_poll.total_seconds(),
        on_error=lambda name, e: errors.add(1, {"duty": name, "error.type": type(e).__name__}),
    )


AUDIT_RETRY_MAX = 1.0
"""Seconds at most between two tries of a failing audit flush (the pause doubles from the flush interval)."""


async def _audit_flusher(app: web.Application) -> AsyncIterator[None]:
    writer = app[AUDIT_WRITER]

    def coalesced(everything: bool = False) -> None:
        for record in app[REFUSALS].due(time.monotonic(), everything=everything):
            writer.add(**{**record, "now": app[CLOCK]()})

    async def loop() -> None:
        pause = AUDIT_FLUSH_SECONDS
        failing_since: float | None = None  # a full disk fails every flush: say so once a minute
        failures = 0
        said = 0.0
        while True:
            await asyncio.sleep(pause)
            try:
                coalesced()
                if writer.pending:  # an idle node wakes here 20 times a second: no thread for nothing
                    await asyncio.to_thread(writer.flush)
            except Exception as e:
                failures += 1
                pause = min(pause * 2, AUDIT_RETRY_MAX)
                now = time.monotonic()
                if database_unavailable(e):  # one line every few seconds, not a traceback per try
                    OUTAGE_LOG.warning(
                        "audit-flush",
                        "audit flush failed: the database cannot be reached (%s); %d records wait",
                        type(e).__name__,
                        writer.pending,
                    )
                elif failing_since is None:
                    LOG.exception("audit flush failed; retrying (%d records kept)", writer.pending)
                    said = now
                elif now - said >= AUDIT_FAILURE_REPORT_SECONDS:
                    said = now
                    LOG.error(
                        "audit flush still failing for %.0f s (%s, %d attempts): %d records kept",
                        now - failing_since,
                        type(e).__name__,
                        failures,
                        writer.pending,
                    )
                if failing_since is None:
                    failing_since = now
                continue
            pause = AUDIT_FLUSH_SECONDS
            if failing_since is not None:
                LOG.warning(
                    "audit flush works again after %.0f s and %d failed attempts",
                    time.monotonic() - failing_since,
                    failures,
                )
                failing_since, failures = None, 0

    task = asyncio.create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    coalesced(everything=True)
    try:
        writer.flush()
    except Exception as e:  # noqa: BLE001  (stopping: say what is lost rather than fail the shutdown)
        LOG.error(
            "%d audit records could not be written at shutdown (%s); they are lost",
            writer.pending,
            type(e).__name__,
        )


async def _federation(app: web.Application) -> AsyncIterator[None]:
    await app[FEDERATION].start()
    yield
    await app[FEDERATION].stop()


async def _telemetry_shutdown(app: web.Application) -> AsyncIterator[None]:
    yield
    app[TELEMETRY].shutdown()


def build_app(
    context: NodeContext,
    *,
    clock: Callable[[], datetime] = now_utc,
    telemetry: Telemetry | None = None,
    sweep: bool = True,
    federate: bool = True,
) -> web.Application:
    """The node's application; ``rebuild_index`` loads the active entries before it serves."""
    app = web.Application(
        middlewares=[
            last_resort_middleware,
            TrustedProxies(context.config.server.proxy_networks),
            access_middleware,
        ],
        client_max_size=max(context.config.limits.max_body_bytes, MAX_BULK_SEALED_BYTES),
    )
    app[CONTEXT] = context
    app[CLOCK] = clock
    app[LIMITER] = RateLimiter.for_node(context.engine, "requests", context.config.limits.requests_per_minute)
    app[ANONYMOUS_LIMITER] = RateLimiter.for_node(
        context.engine, "refusals", context.config.connections.anonymous_refusals_per_minute
    )
    app[REFUSALS] = RefusalTally()
    app[BULK_READS] = BodyBudget(BULK_BODY_BUDGET)
    app[TELEMETRY] = telemetry or setup_telemetry(
        node_id=context.config.node_id,
        exporter=context.config.telemetry_exporter,
        otlp_endpoint=context.config.otlp_endpoint,
    )
    app[METRICS] = NodeMetrics(app[TELEMETRY])
    app[AUDIT_WRITER] = AuditWriter(context.engine, context.registry.write_lock)
    app[TOKEN_CACHE] = {}
    app[PRIVATE] = PrivateMode(context, clock)
    app[FEDERATION] = Federation(context, clock, app[TELEMETRY], private=app[PRIVATE])
    # a node restored from a backup answers nothing and appends nothing until its log is recovered
    context.registry.serving_checks.append(app[FEDERATION].restore_gate.require_serving)
    if context.engine.dialect.name == "sqlite":  # one process: its held deletions outlive a restart
        journal = HeldJournal(context.config.directory)
        context.registry.resume_held(journal.open())
        context.registry.pending.on_change = journal.save
    context.registry.rebuild_index()
    add_health_routes(app)
    add_record_routes(app)
    add_network_routes(app)
    add_private_routes(app)
    add_casework_routes(app)
    add_witness_routes(app)
    add_notice_routes(app, CONTEXT)
    add_report_routes(app, CONTEXT, CLOCK, require_staff)
    add_console_routes(app)
    add_openapi_routes(app)
    lease = _leader_lease(app)  # background duties: in the leader worker only
    app[FEDERATION].leading = lambda: lease.is_leader  # the others relay members' notices to it
    app[LEADER_STATUS] = lease.to_dict
    reserve = DiskReserve(
        context.config.directory, context.config.storage.reserve_mb, context.config.health.disk_free_min_mb
    )
    context.registry.make_room = reserve.make_room  # a deletion that finds the disk full
    app[READINESS] = Readiness(
        context,
        lease,
        clock,
        app[PRIVATE].readiness,
        [
            closures_check(context.registry, clock),
            reserve_check(reserve),
            restore_check(app[FEDERATION].restore_gate),
        ],
    ).to_dict
    register_gauges(
        app[TELEMETRY], context, lease, app[AUDIT_WRITER], clock, app[FEDERATION].peer_facts, reserve
    )
    lease.add_duty(
        "closures", closure_duty(context.registry, reserve, clock), CLOSURES_INTERVAL, every_worker=True
    )
    if sweep:
        lease.add_duty("retention", _retention_sweep(app), context.config.retention_sweep)
        lease.add_duty("alert_faces", _alert_faces_duty(app), context.config.alerts.erase_interval)
        lease.add_duty("complaint_answers", _complaint_answers_duty(app), ANSWERS_INTERVAL)
    targets = DeliveryTargets.load(context.config)
    if not targets.empty:  # webhooks and e-mail: read alerts after they commit, never in their way
        lease.add_duty(
            "delivery",
            delivery_duty(context.engine, targets, clock, context.config.node_id, _crop_of(context)),
            timedelta(seconds=PASS_SECONDS),
        )
    app.cleanup_ctx.append(reserve_cleanup_ctx(reserve))  # before the node serves
    app.cleanup_ctx.append(_audit_flusher)
    app.cleanup_ctx.append(integrity_check)
    feeds = [context.manifests.feed(), *([app[FEDERATION].pull_feed()] if federate else [])]
    app.cleanup_ctx.append(context.registry.following(*feeds))  # other workers' changes and notices
    if federate:
        app.cleanup_ctx.append(_federation)  # the peer client and endpoints: in every worker
        for name, (duty, interval) in app[FEDERATION].duties().items():
            lease.add_duty(name, duty, interval)
    app.cleanup_ctx.append(lease.cleanup_ctx)
    app.cleanup_ctx.append(_telemetry_shutdown)
    return app
