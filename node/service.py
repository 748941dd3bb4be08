"""The node's HTTP service (aiohttp): small typed handlers over the registry, log and accounts.

Each handler parses, checks the caller's role, calls one domain function and returns JSON.
Typed errors become stable JSON error codes and statuses here and nowhere else; every request
(accepted or refused) is written to the audit log with a hash of its body, never the body.
Shared services live under ``web.AppKey``; the retention sweep runs as a background task.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime
from typing import Any

from aiohttp import web
from opentelemetry.trace import Status, StatusCode
from sqlmodel import Session, col, select

from governance.manifest import Manifest
from governance.roles import Action, require_permission
from node.accounts import AuthenticationFailed, StaffMember
from node.api import (
    ACTOR,
    ALERT_WINDOW,
    AUDIT_FLUSH_SECONDS,
    AUDIT_TARGET,
    AUDIT_WRITER,
    CLOCK,
    CONTEXT,
    FEDERATION,
    LIMITER,
    MAX_PAGE,
    METRICS,
    STAFF,
    TELEMETRY,
    TOKEN_CACHE,
    NodeMetrics,
    RateLimited,
    RateLimiter,
    error_response,
    face_for_registration,
    image_bytes,
    int_query,
    now_utc,
    probe_faces,
    read_json,
    refuse_extra,
    require_staff,
)
from node.auditlog import AuditWriter, record_audit
from node.casework_http import add_casework_routes
from node.console import add_console_routes, is_console_path
from node.context import NodeContext
from node.federation import (
    Federation,
)
from node.network_http import add_network_routes
from node.notice_http import NOTICE_PATHS, add_notice_routes
from node.openapi import add_openapi_routes
from node.private_http import add_private_routes
from node.registry import Proposal
from node.report_http import add_report_routes
from node.storage.models import Alert, AuditRecord, LogLeaf, TreeHeadRow
from node.telemetry import Telemetry, safe_attributes, setup_telemetry
from protocol.canonical import b64url_encode, parse_json
from protocol.embedding import Embedding
from protocol.entry import Evidence
from protocol.errors import (
    MalformedError,
    OversizedError,
    WatchnetError,
)
from protocol.events import EventReason
from protocol.fields import CODE_RE, DATE_RE, NODE_ID_RE, format_time
from protocol.signed import SignedDocument

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
            elif request.method == "POST" and request.path in PUBLIC_POSTS and "Authorization" not in request.headers:
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
            batched = request.method == "GET" or route in READ_ONLY_ROUTES or request.path.startswith(PEER_PREFIX)
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


async def health(request: web.Request) -> web.Response:
    """Liveness, and whether private queries would be answered from a current gallery (public:
    states only, no counts of entries)."""
    return web.json_response(
        {"status": "ok", "private_gallery": request.app[FEDERATION].private_readiness()}
    )


async def node_info(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    return web.json_response(
        {
            "node_id": context.config.node_id,
            "signing_key": context.signing_key.public.to_str(),
            "encryption_key": context.encryption_key.public.to_str(),
            "manifest_version": context.manifest.version,
            "group_id": context.manifest.group_id,
        }
    )


async def propose(request: web.Request) -> web.Response:
    staff = require_staff(request, Action.PROPOSE_ENTRY)
    context = request.app[CONTEXT]
    f = await read_json(request)
    dimension = context.manifest.policy.model.dimension
    evidence = Evidence.from_dict(f.obj("evidence"))
    incident = f.text("incident_date", max_len=10, pattern=DATE_RE)
    try:
        incident_date = date.fromisoformat(incident)
    except ValueError as e:
        raise MalformedError(f"request.incident_date: invalid date {incident!r}") from e
    if f.has("image") == f.has("embedding"):
        raise MalformedError("request: give exactly one of 'image' (a JPEG/PNG photo) or 'embedding'")
    face_crop: bytes | None = None
    if f.has("image"):
        image = image_bytes(f, "image", context)
        embedding, face_crop = await asyncio.to_thread(face_for_registration, context, image)
    else:
        embedding = Embedding.from_str(f.text("embedding", max_len=dimension * 8), dimension=dimension)
    proposal = Proposal(
        embedding=embedding,
        category=f.text("category", max_len=48, pattern=CODE_RE),
        evidence=evidence,
        incident_date=incident_date,
        site=f.text("site", max_len=63, pattern=NODE_ID_RE),
        retention_days=f.integer("retention_days", low=1, high=3650) if f.has("retention_days") else None,
        face_crop=face_crop,
    )
    refuse_extra(f)
    state = await asyncio.to_thread(context.registry.propose, staff, proposal, request.app[CLOCK]())
    return web.json_response(state.to_dict(), status=201)


async def list_entries(request: web.Request) -> web.Response:
    staff = request[STAFF]
    status = request.query.get("status")
    context = request.app[CONTEXT]
    if staff.role.value == "registrar":
        require_permission(staff.role, Action.VIEW_OWN_PROPOSALS)
        states = [s for s in context.registry.list(status) if s.registrar == staff.id]
    else:
        require_staff(request, Action.REVIEW_ENTRY)
        states = context.registry.list(status)
    return web.json_response({"entries": [s.to_dict() for s in states]})


async def approve(request: web.Request) -> web.Response:
    staff = require_staff(request, Action.APPROVE_ENTRY)
    context = request.app[CONTEXT]
    state = await asyncio.to_thread(
        context.registry.approve, staff, request.match_info["entry_id"], request.app[CLOCK]()
    )
    request.app[METRICS].registrations.add(1)
    return web.json_response(state.to_dict())


async def reject(request: web.Request) -> web.Response:
    staff = require_staff(request, Action.REJECT_ENTRY)
    f = await read_json(request)
    reason = f.text("reason", max_len=48, pattern=CODE_RE)
    refuse_extra(f)
    context = request.app[CONTEXT]
    state = await asyncio.to_thread(
        context.registry.reject, staff, request.match_info["entry_id"], reason, request.app[CLOCK]()
    )
    return web.json_response(state.to_dict())


async def correct(request: web.Request) -> web.Response:
    staff = require_staff(request, Action.CORRECT_ENTRY)
    f = await read_json(request)
    reason = f.enum("reason", EventReason)
    category = f.text("category", max_len=48, pattern=CODE_RE) if f.has("category") else None
    evidence = Evidence.from_dict(f.obj("evidence")) if f.has("evidence") else None
    expires_at = f.time("expires_at") if f.has("expires_at") else None
    refuse_extra(f)
    context = request.app[CONTEXT]
    state = await asyncio.to_thread(
        lambda: context.registry.correct(
            staff,
            request.match_info["entry_id"],
            reason=reason,
            now=request.app[CLOCK](),
            category=category,
            evidence=evidence,
            expires_at=expires_at,
        )
    )
    return web.json_response(state.to_dict())


async def delete(request: web.Request) -> web.Response:
    staff = require_staff(request, Action.DELETE_ENTRY)
    f = await read_json(request)
    reason = f.enum("reason", EventReason)
    refuse_extra(f)
    context = request.app[CONTEXT]
    state = await asyncio.to_thread(
        context.registry.delete, staff, request.match_info["entry_id"], reason, request.app[CLOCK]()
    )
    return web.json_response(state.to_dict())


async def match(request: web.Request) -> web.Response:
    """Search the active entries; store an alert per hit, nothing about a non-match."""
    staff = require_staff(request, Action.MATCH)
    context = request.app[CONTEXT]
    f = await read_json(request)
    queries = await probe_faces(f, context)
    site = f.text("site", max_len=63, pattern=NODE_ID_RE) if f.has("site") else ""
    refuse_extra(f)
    if not queries:
        return web.json_response(
            {"threshold": context.manifest.policy.match_threshold, "faces": 0, "matches": []}
        )
    threshold = context.manifest.policy.match_threshold
    hits = context.registry.index.search(queries, threshold)
    request[AUDIT_TARGET] = f"faces={len(queries)} hits={len(hits)}"
    request.app[METRICS].match_queries.add(len(queries))
    request.app[METRICS].matches.add(len(hits))
    now = request.app[CLOCK]()
    out = []
    if hits:
        with Session(context.engine) as session:
            for hit in hits:
                state = context.registry.get(hit.key)
                alert = session.exec(
                    select(Alert).where(
                        Alert.entry_id == hit.key,
                        Alert.site == site,
                        col(Alert.created_at) > now - ALERT_WINDOW,
                    )
                ).first()
                if alert is None:
                    alert = Alert(
                        id=f"alr-{secrets.token_hex(10)}",
                        owner=context.config.node_id,
                        entry_id=hit.key,
                        entry_version=state.version,
                        score=hit.score,
                        site=site,
                        operator=staff.id,
                        created_at=now,
                        category=state.category,
                    )
                    session.add(alert)
                out.append(
                    {
                        "query_index": hit.query_index,
                        "entry_id": hit.key,
                        "owner": context.config.node_id,
                        "version": state.version,
                        "category": state.category,
                        "score": round(hit.score, 6),
                        "alert_id": alert.id,
                    }
                )
            session.commit()
    return web.json_response({"threshold": threshold, "faces": len(queries), "matches": out})


async def manifest_document(request: web.Request) -> web.Response:
    """The manifest this node trusts now (public: it is the joint-use notice's source)."""
    document = request.app[CONTEXT].manifests.document
    return web.Response(body=document.to_bytes(), content_type="application/json")


async def manifest_install(request: web.Request) -> web.Response:
    """An admin hands the node a newer signed manifest (e.g. received by mail from the organisation)."""
    require_staff(request, Action.MANAGE_MANIFEST)
    body = await request.read()
    document = SignedDocument.from_bytes(body, Manifest)
    offer = await asyncio.to_thread(
        request.app[CONTEXT].manifests.offer, document, request.app[CLOCK](), f"admin:{request[STAFF].id}"
    )
    return web.json_response({"version": offer.version, "outcome": offer.outcome})


async def manifest_refresh(request: web.Request) -> web.Response:
    require_staff(request, Action.MANAGE_MANIFEST)
    results = await request.app[FEDERATION].refresh_manifest()
    return web.json_response({"version": request.app[CONTEXT].manifest.version, "sources": results})


def _latest_head(context: NodeContext) -> dict[str, Any] | None:
    with Session(context.engine) as session:
        row = session.exec(select(TreeHeadRow).order_by(col(TreeHeadRow.tree_size).desc()).limit(1)).first()
        return None if row is None else parse_json(row.signed)


async def log_head(request: web.Request) -> web.Response:
    head = _latest_head(request.app[CONTEXT])
    if head is None:
        return web.json_response(
            {"error": "empty_log", "message": "no event has been logged yet"}, status=404
        )
    return web.json_response(head)


async def log_events(request: web.Request) -> web.Response:
    require_staff(request, Action.READ_EVENT_LOG)
    after = int_query(request, "after", 0)
    limit = min(int_query(request, "limit", MAX_PAGE, low=1), MAX_PAGE)
    with Session(request.app[CONTEXT].engine) as session:
        rows = session.exec(
            select(LogLeaf).where(col(LogLeaf.idx) >= after).order_by(col(LogLeaf.idx)).limit(limit)
        ).all()
        events = [{"index": r.idx, "event": parse_json(r.leaf)} for r in rows]
    return web.json_response({"events": events, "tree_size": request.app[CONTEXT].registry.log.size})


async def inclusion_proof(request: web.Request) -> web.Response:
    require_staff(request, Action.READ_EVENT_LOG)
    log = request.app[CONTEXT].registry.log
    index, size = int_query(request, "index"), int_query(request, "size", log.size, low=1)
    proof = log.inclusion_proof(index, size)
    return web.json_response({"index": index, "tree_size": size, "proof": [b64url_encode(p) for p in proof]})


async def consistency_proof(request: web.Request) -> web.Response:
    require_staff(request, Action.READ_EVENT_LOG)
    log = request.app[CONTEXT].registry.log
    old, new = int_query(request, "old", low=1), int_query(request, "new", log.size, low=1)
    proof = log.consistency_proof(old, new)
    return web.json_response({"old": old, "new": new, "proof": [b64url_encode(p) for p in proof]})


async def audit_records(request: web.Request) -> web.Response:
    require_staff(request, Action.READ_AUDIT)
    after = int_query(request, "after", 0)
    limit = min(int_query(request, "limit", MAX_PAGE, low=1), MAX_PAGE)
    with Session(request.app[CONTEXT].engine) as session:
        rows = session.exec(
            select(AuditRecord)
            .where(col(AuditRecord.seq) >= after)
            .order_by(col(AuditRecord.seq))
            .limit(limit)
        ).all()
        records = [
            {
                "seq": r.seq,
                "at": format_time(r.at),
                "actor": r.actor,
                "action": r.action,
                "target": r.target,
                "outcome": r.outcome,
                "request_hash": r.request_hash,
                "prev_hash": r.prev_hash,
                "record_hash": r.record_hash,
            }
            for r in rows
        ]
    return web.json_response({"records": records})


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
    app[FEDERATION] = Federation(context, clock, app[TELEMETRY])
    context.registry.rebuild_index()
    app.router.add_get("/v1/health", health)
    app.router.add_get("/v1/node", node_info)
    app.router.add_post("/v1/entries", propose)
    app.router.add_get("/v1/entries", list_entries)
    app.router.add_post("/v1/entries/{entry_id}/approve", approve)
    app.router.add_post("/v1/entries/{entry_id}/reject", reject)
    app.router.add_post("/v1/entries/{entry_id}/correct", correct)
    app.router.add_post("/v1/entries/{entry_id}/delete", delete)
    app.router.add_post("/v1/match", match)
    app.router.add_get("/v1/log/head", log_head)
    app.router.add_get("/v1/log", log_events)
    app.router.add_get("/v1/log/proof/inclusion", inclusion_proof)
    app.router.add_get("/v1/log/proof/consistency", consistency_proof)
    app.router.add_get("/v1/audit", audit_records)
    app.router.add_get("/v1/manifest", manifest_document)
    app.router.add_post("/v1/manifest", manifest_install)
    app.router.add_post("/v1/manifest/refresh", manifest_refresh)
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
