"""The node's process: one aiohttp application assembled from the HTTP handlers (``node.http``),
the staff console, federation and private mode.

The access middleware authenticates every request (staff token, console session or sealed peer
message), rate-limits it and writes it to the audit log with a hash of its body, never the body;
typed errors become stable JSON error codes and statuses. Shared services live under
``web.AppKey``; the retention sweep, the audit flusher and federation run as background tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from opentelemetry.trace import Status, StatusCode

from node.console import add_console_routes, is_console_path
from node.context import NodeContext
from node.federation.federation import (
    Federation,
)
from node.http.api import (
    ACTOR,
    AUDIT_FLUSH_SECONDS,
    AUDIT_TARGET,
    AUDIT_WRITER,
    CLOCK,
    CONTEXT,
    FEDERATION,
    LIMITER,
    METRICS,
    PRIVATE,
    STAFF,
    TELEMETRY,
    TOKEN_CACHE,
    NodeMetrics,
    RateLimited,
    RateLimiter,
    error_response,
    now_utc,
    require_staff,
)
from node.http.casework import add_casework_routes
from node.http.network import add_network_routes
from node.http.notice import NOTICE_PATHS, add_notice_routes
from node.http.openapi import add_openapi_routes
from node.http.private import add_private_routes
from node.http.records import add_record_routes
from node.http.report import add_report_routes
from node.private.mode import PrivateMode
from node.records.accounts import AuthenticationFailed, StaffMember
from node.records.auditlog import AuditWriter, record_audit
from node.telemetry import Telemetry, safe_attributes, setup_telemetry
from protocol.errors import (
    OversizedError,
    WatchnetError,
)

__all__ = ["CONTEXT", "build_app", "now_utc"]

LOG = logging.getLogger("watchnet.node")


READ_ONLY_ROUTES = frozenset({"/v1/match"})


def _audit_request(
    request: web.Request, actor: str, outcome: str, body_hash: str, *, batched: bool = False
) -> None:
    """Record the request; reads that succeeded go through the group-commit writer."""
    resource = request.match_info.route.resource
    record: dict[str, Any] = {
        "actor": request.get(ACTOR, actor)[:64],
        "action": f"{request.method} {resource.canonical if resource else request.path}",
        "target": request.get(AUDIT_TARGET, request.match_info.get("entry_id", ""))[:128],
        "outcome": outcome,
        "request_hash": body_hash,
        "now": request.app[CLOCK](),
    }
    if batched:
        request.app[AUDIT_WRITER].add(**record)
        return
    context = request.app[CONTEXT]
    record_audit(context.engine, context.registry.write_lock, **record)


PUBLIC_PATHS = (
    frozenset({"/v1/health", "/v1/log/head", "/v1/node", "/v1/manifest", "/v1/openapi.json"}) | NOTICE_PATHS
)
PUBLIC_POSTS = frozenset({"/v1/complaints"})
"""Anyone may file a complaint without an account (Art. 40); staff filing one are identified."""
PEER_PREFIX = "/v1/peer/"
"""Peer endpoints authenticate the sealed message itself, not a staff token."""


@web.middleware
async def access_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Authenticate, rate-limit, trace and audit every request; map typed errors to JSON."""
    tracer = request.app[TELEMETRY].tracer("watchnet.node")
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    with tracer.start_as_current_span(f"{request.method} {route}") as span:
        span.set_attributes(safe_attributes({"http.request.method": request.method, "http.route": route}))
        actor = "anonymous"
        body_hash = ""
        try:
            body = await request.read() if request.can_read_body else b""
            body_hash = hashlib.sha256(body).hexdigest() if body else ""
            if request.path.startswith(PEER_PREFIX):
                actor = f"unverified:{request.app[FEDERATION].gate.sender_of(body)}"
            elif is_console_path(request.path):
                actor = "console"  # the console checks its session cookie, role and CSRF token itself
            elif (
                request.method == "POST"
                and request.path in PUBLIC_POSTS
                and "Authorization" not in request.headers
            ):
                actor = f"public:{request.remote or 'unknown'}"
                if not request.app[LIMITER].allow(actor, time.monotonic()):
                    raise RateLimited("too many submissions from this address; try again in a minute")
            elif not (request.method in ("GET", "HEAD") and request.path in PUBLIC_PATHS):
                staff = _authenticate(request)
                actor = staff.id
                request[STAFF] = staff
                if not request.app[LIMITER].allow(staff.id, time.monotonic()):
                    raise RateLimited(
                        f"more than {request.app[LIMITER].capacity:.0f} requests a minute; slow down"
                    )
            response = await handler(request)
        except web.HTTPRequestEntityTooLarge as e:
            error = OversizedError(f"request body is larger than the limit ({e.text})")
            _audit_request(request, actor, f"refused:{error.code}", "")
            span.set_status(Status(StatusCode.ERROR, error.code))
            return error_response(error)
        except WatchnetError as e:
            _audit_request(request, actor, f"refused:{e.code}", body_hash)
            span.set_attribute("watchnet.error", e.code)
            request.app[METRICS].refusals.add(1, {"http.route": route, "watchnet.error": e.code})
            span.set_status(Status(StatusCode.ERROR, e.code))
            return error_response(e)
        except web.HTTPException:
            raise
        except Exception as e:
            LOG.exception("internal error in %s %s", request.method, route)
            _audit_request(request, actor, "failed:internal", body_hash)
            span.set_status(Status(StatusCode.ERROR, type(e).__name__))
            return web.json_response(
                {"error": "internal", "message": "internal error; see the node's log"}, status=500
            )
        span.set_attribute("http.response.status_code", response.status)
        request.app[METRICS].requests.add(
            1, {"http.route": route, "http.response.status_code": response.status}
        )
        if request.method not in ("GET", "HEAD") or request.path not in PUBLIC_PATHS:
            batched = (
                request.method == "GET" or route in READ_ONLY_ROUTES or request.path.startswith(PEER_PREFIX)
            )
            _audit_request(request, actor, f"ok:{response.status}", body_hash, batched=batched)
        return response


def _authenticate(request: web.Request) -> StaffMember:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise AuthenticationFailed(
            "missing 'Authorization: Bearer <token>'; issue one with 'watchnet user token'"
        )
    return request.app[CONTEXT].accounts.authenticate_token(
        header[len("Bearer ") :].strip(), request.app[CLOCK]()
    )


async def _retention_sweep(app: web.Application) -> AsyncIterator[None]:
    context = app[CONTEXT]
    interval = context.config.retention_sweep.total_seconds()
    meter = app[TELEMETRY].meter("watchnet.node")
    expired_counter = meter.create_counter(
        "watchnet.entries.expired", description="entries deleted at expiry"
    )
    tracer = app[TELEMETRY].tracer("watchnet.node")

    async def loop() -> None:
        while True:
            with tracer.start_as_current_span("retention sweep"):
                expired = await asyncio.to_thread(context.registry.expire_due, app[CLOCK]())
                expired_counter.add(len(expired))
            await asyncio.sleep(interval)

    task = asyncio.create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _audit_flusher(app: web.Application) -> AsyncIterator[None]:
    writer = app[AUDIT_WRITER]

    async def loop() -> None:
        while True:
            await asyncio.sleep(AUDIT_FLUSH_SECONDS)
            try:
                await asyncio.to_thread(writer.flush)
            except Exception:
                LOG.exception("audit flush failed; retrying")

    task = asyncio.create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    writer.flush()


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
        middlewares=[access_middleware], client_max_size=context.config.limits.max_body_bytes
    )
    app[CONTEXT] = context
    app[CLOCK] = clock
    app[LIMITER] = RateLimiter(context.config.limits.requests_per_minute)
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
    context.registry.rebuild_index()
    add_record_routes(app)
    add_network_routes(app)
    add_private_routes(app)
    add_casework_routes(app)
    add_notice_routes(app, CONTEXT)
    add_report_routes(app, CONTEXT, CLOCK, require_staff)
    add_console_routes(app)
    add_openapi_routes(app)
    if sweep:
        app.cleanup_ctx.append(_retention_sweep)
    app.cleanup_ctx.append(_audit_flusher)
    if federate:
        app.cleanup_ctx.append(_federation)
    app.cleanup_ctx.append(_telemetry_shutdown)
    return app
