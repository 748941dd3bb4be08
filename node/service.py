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
from datetime import UTC, date, datetime, timedelta
from typing import Any

import cv2
from aiohttp import web
from opentelemetry.trace import Status, StatusCode
from sqlmodel import Session, col, select

from governance.manifest import Manifest
from governance.provision import NoLegalBasis
from governance.requests import IDENTITY_CHECKS, RefusalGround, RequestKind, RequestOutcome, RequestRefused
from governance.roles import Action, require_permission
from node.accounts import AccountDisabled, AuthenticationFailed, StaffMember
from node.auditlog import AuditWriter, append_audit
from node.casework import (
    close_complaint,
    feedback_counts,
    list_complaints,
    record_complaint,
    record_feedback,
    review_alert,
)
from node.context import NodeContext
from node.face.pipeline import decode_image
from node.federation import (
    FEEDBACK_BODIES,
    LOG_BODIES,
    NOTICE_BODIES,
    QUERY_BODIES,
    RECEIPT_BODIES,
    SUBJECT_BODIES,
    Federation,
    PeerOutcome,
)
from node.notice_http import NOTICE_PATHS, add_notice_routes
from node.peer_gate import PeerRateLimited, PeerRequest
from node.registry import EntryNotFound, Proposal, TwoPersonRuleViolation, WrongState
from node.storage.models import Alert, AuditRecord, LogLeaf, PeerState, ProvisionRow, TreeHeadRow
from node.subject_requests import ReportItem
from node.sync import propagation_status
from node.telemetry import Telemetry, safe_attributes, setup_telemetry
from protocol.canonical import b64url_decode, b64url_encode, parse_json
from protocol.embedding import Embedding
from protocol.entry import Evidence
from protocol.errors import (
    ConfigurationError,
    FreshnessError,
    MalformedError,
    OversizedError,
    PolicyError,
    ProofError,
    VerificationError,
    WatchnetError,
)
from protocol.events import EventReason
from protocol.fields import CODE_RE, DATE_RE, NODE_ID_RE, REFERENCE_RE, Fields, format_time
from protocol.query import MAX_QUERY_EMBEDDINGS
from protocol.signed import SignedDocument
from protocol.subject import ForwardAck, ForwardedRequest, MatchFeedback
from protocol.sync import LogRequest

__all__ = ["CONTEXT", "build_app", "now_utc"]

LOG = logging.getLogger("watchnet.node")


class RateLimiter:
    """Token bucket per account: ``rate`` requests a minute with bursts of the same size."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str, now: float) -> bool:
        tokens, last = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True


class NodeMetrics:
    """Counters for requests, refusals, registrations and matches (labels: route, code; never content)."""

    def __init__(self, telemetry: Telemetry) -> None:
        meter = telemetry.meter("watchnet.node")
        self.requests = meter.create_counter("watchnet.http.requests", description="requests answered")
        self.refusals = meter.create_counter(
            "watchnet.http.refusals", description="requests refused, by error code"
        )
        self.registrations = meter.create_counter(
            "watchnet.entries.registered", description="entries approved"
        )
        self.matches = meter.create_counter(
            "watchnet.match.hits", description="matches at or above the threshold"
        )
        self.match_queries = meter.create_counter("watchnet.match.queries", description="faces searched")


CONTEXT = web.AppKey("context", NodeContext)
TELEMETRY = web.AppKey("telemetry", Telemetry)
Clock = Callable[[], datetime]
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
LIMITER = web.AppKey("limiter", RateLimiter)
METRICS = web.AppKey("metrics", NodeMetrics)
AUDIT_WRITER = web.AppKey("audit_writer", AuditWriter)
FEDERATION = web.AppKey("federation", Federation)
TOKEN_CACHE = web.AppKey("token_cache", dict[str, tuple[StaffMember, float]])
TOKEN_CACHE_SECONDS = 10.0
"""How long a verified token is trusted without a database read (a disabled account stops within this)."""
AUDIT_FLUSH_SECONDS = 0.05
ALERT_WINDOW = timedelta(seconds=60)
"""One alert per matched person and site per window, however many frames show them."""
STAFF = web.RequestKey("staff", StaffMember)
MAX_PAGE = 1000


def now_utc() -> datetime:
    return datetime.now(UTC)


class RateLimited(PolicyError):
    code = "rate_limited"


_STATUS: list[tuple[type[WatchnetError], int]] = [
    (OversizedError, 413),
    (MalformedError, 400),
    (AuthenticationFailed, 401),
    (AccountDisabled, 401),
    (EntryNotFound, 404),
    (WrongState, 409),
    (TwoPersonRuleViolation, 403),
    (RateLimited, 429),
    (RequestRefused, 409),
    (NoLegalBasis, 403),
    (PeerRateLimited, 429),
    (PolicyError, 403),
    (FreshnessError, 409),
    (ProofError, 400),
    (VerificationError, 401),
    (ConfigurationError, 500),
]


def _status_for(error: WatchnetError) -> int:
    return next((status for kind, status in _STATUS if isinstance(error, kind)), 400)


def error_response(error: WatchnetError) -> web.Response:
    message = "the node is misconfigured" if isinstance(error, ConfigurationError) else str(error)
    return web.json_response({"error": error.code, "message": message}, status=_status_for(error))


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
    with context.registry.write_lock, Session(context.engine) as session:
        append_audit(session, **record)
        session.commit()


PUBLIC_PATHS = frozenset({"/v1/health", "/v1/log/head", "/v1/node", "/v1/manifest"}) | NOTICE_PATHS
PUBLIC_POSTS = frozenset({"/v1/complaints"})
"""Anyone may file a complaint without an account (Art. 40); staff filing one are identified."""
PEER_PREFIX = "/v1/peer/"
"""Peer endpoints authenticate the sealed message itself, not a staff token."""
ACTOR = web.RequestKey("actor", str)
AUDIT_TARGET = web.RequestKey("audit_target", str)


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


def _staff(request: web.Request, action: Action) -> StaffMember:
    staff = request[STAFF]
    require_permission(staff.role, action)
    return staff


async def _json(request: web.Request) -> Fields:
    body = await request.read()
    return Fields(parse_json(body, max_bytes=request.app[CONTEXT].config.limits.max_body_bytes), "request")


def _no_extra(f: Fields) -> None:
    if f.rest():
        raise MalformedError(f"request: unknown fields {sorted(f.rest())}; free text is not accepted")


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


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


def _image_bytes(f: Fields, name: str, context: NodeContext) -> bytes:
    limit = context.config.limits.max_body_bytes
    return b64url_decode(f.text(name, max_len=limit * 4 // 3 + 4), field=f"request.{name}")


def _face_for_registration(context: NodeContext, image: bytes) -> tuple[Embedding, bytes]:
    """The best face of a registration photo, checked against the node's written quality rules."""
    face, embedding = context.faces.best_face(decode_image(image), context.rules.face_quality)
    ok, jpeg = cv2.imencode(".jpg", face.crop)
    if not ok:
        raise MalformedError("the face crop could not be encoded")
    return embedding, jpeg.tobytes()


def _faces_in_frame(context: NodeContext, image: bytes) -> list[Embedding]:
    faces = context.faces.detect(decode_image(image))[:MAX_QUERY_EMBEDDINGS]
    return context.faces.embed_crops([face.crop for face in faces])


async def propose(request: web.Request) -> web.Response:
    staff = _staff(request, Action.PROPOSE_ENTRY)
    context = request.app[CONTEXT]
    f = await _json(request)
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
        image = _image_bytes(f, "image", context)
        embedding, face_crop = await asyncio.to_thread(_face_for_registration, context, image)
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
    _no_extra(f)
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
        _staff(request, Action.REVIEW_ENTRY)
        states = context.registry.list(status)
    return web.json_response({"entries": [s.to_dict() for s in states]})


async def approve(request: web.Request) -> web.Response:
    staff = _staff(request, Action.APPROVE_ENTRY)
    context = request.app[CONTEXT]
    state = await asyncio.to_thread(
        context.registry.approve, staff, request.match_info["entry_id"], request.app[CLOCK]()
    )
    request.app[METRICS].registrations.add(1)
    return web.json_response(state.to_dict())


async def reject(request: web.Request) -> web.Response:
    staff = _staff(request, Action.REJECT_ENTRY)
    f = await _json(request)
    reason = f.text("reason", max_len=48, pattern=CODE_RE)
    _no_extra(f)
    context = request.app[CONTEXT]
    state = await asyncio.to_thread(
        context.registry.reject, staff, request.match_info["entry_id"], reason, request.app[CLOCK]()
    )
    return web.json_response(state.to_dict())


async def correct(request: web.Request) -> web.Response:
    staff = _staff(request, Action.CORRECT_ENTRY)
    f = await _json(request)
    reason = f.enum("reason", EventReason)
    category = f.text("category", max_len=48, pattern=CODE_RE) if f.has("category") else None
    evidence = Evidence.from_dict(f.obj("evidence")) if f.has("evidence") else None
    expires_at = f.time("expires_at") if f.has("expires_at") else None
    _no_extra(f)
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
    staff = _staff(request, Action.DELETE_ENTRY)
    f = await _json(request)
    reason = f.enum("reason", EventReason)
    _no_extra(f)
    context = request.app[CONTEXT]
    state = await asyncio.to_thread(
        context.registry.delete, staff, request.match_info["entry_id"], reason, request.app[CLOCK]()
    )
    return web.json_response(state.to_dict())


async def _probe_faces(f: Fields, context: NodeContext) -> list[Embedding]:
    """The faces to search for: detected in ``image`` (a photo or camera frame), or given as ``embeddings``."""
    if f.has("image") == f.has("embeddings"):
        raise MalformedError("request: give exactly one of 'image' (a photo or camera frame) or 'embeddings'")
    if f.has("image"):
        image = _image_bytes(f, "image", context)
        return await asyncio.to_thread(_faces_in_frame, context, image)
    raw = f.array("embeddings", max_items=MAX_QUERY_EMBEDDINGS)
    if not raw:
        raise MalformedError("request.embeddings is empty")
    dimension = context.manifest.policy.model.dimension
    return [
        Embedding.from_str(e, dimension=dimension, field=f"request.embeddings[{i}]") for i, e in enumerate(raw)
    ]


async def match(request: web.Request) -> web.Response:
    """Search the active entries; store an alert per hit, nothing about a non-match."""
    staff = _staff(request, Action.MATCH)
    context = request.app[CONTEXT]
    f = await _json(request)
    queries = await _probe_faces(f, context)
    site = f.text("site", max_len=63, pattern=NODE_ID_RE) if f.has("site") else ""
    _no_extra(f)
    if not queries:
        return web.json_response(
            {"threshold": context.manifest.policy.match_threshold, "faces": 0, "matches": []}
        )
    threshold = context.manifest.policy.match_threshold
    hits = context.registry.index.search(queries, threshold)
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


async def _peer_admit(request: web.Request, bodies: Any) -> PeerRequest:
    """Admit a sealed peer message (the checks of ``PeerGate``, in order); the audit names the sender."""
    federation = request.app[FEDERATION]
    raw = await request.read()
    admitted = await asyncio.to_thread(federation.gate.admit, raw, request.app[CLOCK](), bodies)
    request[ACTOR] = f"peer:{admitted.member.node_id}"
    return admitted


def _sealed(data: bytes) -> web.Response:
    return web.Response(body=data, content_type="application/json")


async def peer_query(request: web.Request) -> web.Response:
    """Answer a peer's plain-mode query: only matches at or above the threshold, nothing kept."""
    federation = request.app[FEDERATION]
    admitted = await _peer_admit(request, QUERY_BODIES)
    response, count = federation.answer_query(admitted)
    request[AUDIT_TARGET] = (
        f"purpose={admitted.message.purpose} faces={count} hits={len(response.matches)}"
    )
    request.app[METRICS].match_queries.add(count)
    request.app[METRICS].matches.add(len(response.matches))
    return _sealed(federation.gate.reply(admitted, response, request.app[CLOCK]()))


async def peer_log(request: web.Request) -> web.Response:
    federation = request.app[FEDERATION]
    admitted = await _peer_admit(request, LOG_BODIES)
    assert isinstance(admitted.body, LogRequest)
    page = await asyncio.to_thread(federation.log_page, admitted.body)
    request[AUDIT_TARGET] = f"after={admitted.body.after} events={len(page.events)}"
    return _sealed(federation.gate.reply(admitted, page, request.app[CLOCK]()))


async def peer_notify(request: web.Request) -> web.Response:
    federation = request.app[FEDERATION]
    admitted = await _peer_admit(request, NOTICE_BODIES)
    return _sealed(federation.gate.reply(admitted, federation.noticed(admitted), request.app[CLOCK]()))


async def peer_receipts(request: web.Request) -> web.Response:
    federation = request.app[FEDERATION]
    admitted = await _peer_admit(request, RECEIPT_BODIES)
    ack = await asyncio.to_thread(federation.accept_receipts, admitted)
    request[AUDIT_TARGET] = f"receipts={len(ack.event_ids)}"
    return _sealed(federation.gate.reply(admitted, ack, request.app[CLOCK]()))


async def manifest_document(request: web.Request) -> web.Response:
    """The manifest this node trusts now (public: it is the joint-use notice's source)."""
    document = request.app[CONTEXT].manifests.document
    return web.Response(body=document.to_bytes(), content_type="application/json")


async def manifest_install(request: web.Request) -> web.Response:
    """An admin hands the node a newer signed manifest (e.g. received by mail from the organisation)."""
    _staff(request, Action.MANAGE_MANIFEST)
    body = await request.read()
    document = SignedDocument.from_bytes(body, Manifest)
    offer = await asyncio.to_thread(
        request.app[CONTEXT].manifests.offer, document, request.app[CLOCK](), f"admin:{request[STAFF].id}"
    )
    return web.json_response({"version": offer.version, "outcome": offer.outcome})


async def manifest_refresh(request: web.Request) -> web.Response:
    _staff(request, Action.MANAGE_MANIFEST)
    results = await request.app[FEDERATION].refresh_manifest()
    return web.json_response({"version": request.app[CONTEXT].manifest.version, "sources": results})


async def network_query(request: web.Request) -> web.Response:
    """Ask every other member (plain mode) about the faces in a frame; store an alert per verified hit."""
    staff = _staff(request, Action.MATCH)
    context = request.app[CONTEXT]
    f = await _json(request)
    manifest = context.manifest
    queries = await _probe_faces(f, context)
    purpose = f.text("purpose", max_len=48, pattern=CODE_RE) if f.has("purpose") else "crime-prevention"
    site = f.text("site", max_len=63, pattern=NODE_ID_RE) if f.has("site") else ""
    _no_extra(f)
    federation = request.app[FEDERATION]
    if not queries:
        return web.json_response({"faces": 0, "peers": [], "matches": []})
    query, outcomes = await federation.query(queries, purpose)
    hits = await asyncio.to_thread(
        federation.store_alerts, outcomes, site=site, operator=staff.id, now=request.app[CLOCK](), window=ALERT_WINDOW
    )
    request[AUDIT_TARGET] = f"purpose={purpose} faces={len(queries)} hits={len(hits)}"
    return web.json_response(
        {
            "query_id": query.query_id,
            "purpose": purpose,
            "faces": len(queries),
            "manifest_version": manifest.version,
            "peers": [o.to_dict() for o in outcomes],
            "matches": hits,
        }
    )


async def alerts(request: web.Request) -> web.Response:
    """Alerts for staff review, newest first; a withdrawn alert keeps no score, category or entry copy."""
    _staff(request, Action.VIEW_ALERTS)
    limit = min(_int_query(request, "limit", 100, low=1), MAX_PAGE)
    with Session(request.app[CONTEXT].engine) as session:
        rows = session.exec(select(Alert).order_by(col(Alert.created_at).desc()).limit(limit)).all()
        items = [
            {
                "alert_id": a.id,
                "owner": a.owner,
                "entry_id": a.entry_id,
                "version": a.entry_version,
                "score": None if a.score is None else round(a.score, 6),
                "category": a.category,
                "site": a.site,
                "status": a.status,
                "created_at": format_time(a.created_at),
            }
            for a in rows
        ]
    return web.json_response({"alerts": items})


async def propagation(request: web.Request) -> web.Response:
    """Per deletion, expiry and correction of ours: the members that confirmed and those that did not."""
    _staff(request, Action.READ_EVENT_LOG)
    context = request.app[CONTEXT]
    after = _int_query(request, "after", 0)
    limit = min(_int_query(request, "limit", MAX_PAGE, low=1), MAX_PAGE)
    pending_only = request.query.get("pending") in ("1", "true")
    items = await asyncio.to_thread(
        lambda: propagation_status(
            context.engine, context.manifest, context.config.node_id, after=after, limit=limit
        )
    )
    complete = sum(1 for item in items if not item["missing"])
    body: dict[str, Any] = {
        "events": [i for i in items if i["missing"]] if pending_only else items,
        "complete": complete,
        "pending": len(items) - complete,
    }
    if len(items) == limit:
        body["next_after"] = items[-1]["index"] + 1
    return web.json_response(body)


async def peers_state(request: web.Request) -> web.Response:
    """Our checkpoint in every peer's log, and whether it is healthy, failing or flagged for a fork."""
    _staff(request, Action.READ_EVENT_LOG)
    context = request.app[CONTEXT]
    federation = request.app[FEDERATION]
    with Session(context.engine) as session:
        states = {s.peer: s for s in session.exec(select(PeerState)).all()}
    out = []
    for member in context.manifest.joint_use.members:
        if member.node_id == context.config.node_id:
            continue
        state = states.get(member.node_id)
        out.append(
            {
                "node_id": member.node_id,
                "membership": member.status.value,
                "endpoint": member.endpoint,
                "log_size": state.tree_size if state else 0,
                "status": state.status if state else "never-synced",
                "failures": state.failures if state else 0,
                "last_error": state.last_error if state else "",
                "last_sync_at": format_time(state.last_sync_at) if state and state.last_sync_at else None,
                "last_contact": format_time(contact) if (contact := federation.last_contact.get(member.node_id)) else None,
            }
        )
    return web.json_response({"peers": out})


def _report_items(
    context: NodeContext, own: list[Any], outcomes: list[PeerOutcome], manifest: Manifest
) -> list[ReportItem]:
    """What the group holds about the person: our entries that matched and the peers' signed ones."""
    items: dict[tuple[str, str], ReportItem] = {}
    names = {m.node_id: m.name.get("en") for m in manifest.joint_use.members}
    for hit in own:
        entry = context.registry.signed_entry(hit.key).payload
        items[(entry.owner, entry.entry_id)] = ReportItem(
            owner=entry.owner,
            owner_name=names.get(entry.owner, entry.owner),
            entry_id=entry.entry_id,
            version=entry.version,
            category=entry.category,
            evidence_kind=entry.evidence.kind,
            registered_at=format_time(entry.registered_at),
            expires_at=format_time(entry.expires_at),
        )
    for outcome in outcomes:
        for match in outcome.matches:
            entry = match.entry.payload
            items[(entry.owner, entry.entry_id)] = ReportItem(
                owner=entry.owner,
                owner_name=names.get(entry.owner, entry.owner),
                entry_id=entry.entry_id,
                version=entry.version,
                category=entry.category,
                evidence_kind=entry.evidence.kind,
                registered_at=format_time(entry.registered_at),
                expires_at=format_time(entry.expires_at),
            )
    return [items[k] for k in sorted(items)]


async def request_record(request: web.Request) -> web.Response:
    """Record a data-subject request at the counter: kind, identity check, the person's photo."""
    staff = _staff(request, Action.HANDLE_REQUESTS)
    context = request.app[CONTEXT]
    f = await _json(request)
    kind = f.enum("kind", RequestKind)
    identity_check = f.text("identity_check", max_len=48, pattern=CODE_RE)
    if identity_check not in IDENTITY_CHECKS:
        raise MalformedError(f"request.identity_check: one of {sorted(IDENTITY_CHECKS)}")
    image = _image_bytes(f, "image", context)
    received_at = f.time("received_at") if f.has("received_at") else request.app[CLOCK]().replace(microsecond=0)
    deadline = f.time("deadline") if f.has("deadline") else None
    _no_extra(f)
    embedding, _ = await asyncio.to_thread(_face_for_registration, context, image)
    view = await asyncio.to_thread(
        lambda: context.subject_requests.record(
            staff=staff.id,
            kind=kind,
            identity_check=identity_check,
            photo=image,
            embedding=embedding,
            received_at=received_at,
            deadline=deadline,
            now=request.app[CLOCK](),
        )
    )
    return web.json_response(view, status=201)


async def request_search(request: web.Request) -> web.Response:
    """Search for the person here and across the group (purpose data-subject-request); keep the report."""
    staff = _staff(request, Action.HANDLE_REQUESTS)
    context = request.app[CONTEXT]
    request_id = request.match_info["request_id"]
    embedding = await asyncio.to_thread(context.subject_requests.embedding, request_id)
    manifest = context.manifest
    own = context.registry.index.search([embedding], manifest.policy.match_threshold)
    _, outcomes = await request.app[FEDERATION].query([embedding], "data-subject-request")
    items = await asyncio.to_thread(_report_items, context, own, outcomes, manifest)
    view = await asyncio.to_thread(
        context.subject_requests.save_report, request_id, items, staff.id, request.app[CLOCK]()
    )
    view["peers"] = [o.to_dict() for o in outcomes]
    return web.json_response(view)


async def request_forward(request: web.Request) -> web.Response:
    """Send the correction, deletion or cease-of-use request to the owners of the peers' entries found."""
    _staff(request, Action.HANDLE_REQUESTS)
    context = request.app[CONTEXT]
    request_id = request.match_info["request_id"]
    view = context.subject_requests.get(request_id, request.app[CLOCK]())
    if view["kind"] == RequestKind.DISCLOSURE.value:
        raise RequestRefused("a disclosure request is answered from the report; nothing to forward")
    if view["report"] is None:
        raise RequestRefused("run the search first: the owners to forward to come from its report")
    federation = request.app[FEDERATION]
    results = []
    for item in view["report"]:
        if item["owner"] == context.config.node_id:
            continue
        body = ForwardedRequest(
            origin=context.config.node_id,
            request_id=request_id,
            kind=view["kind"],
            entry_id=item["entry_id"],
            entry_version=item["version"],
            identity_check=view["identity_check"],
        )
        try:
            ack = await federation.forward_request(item["owner"], body)
            results.append({"owner": item["owner"], "entry_id": item["entry_id"], "owner_request_id": ack.owner_request_id})
        except WatchnetError as e:
            results.append({"owner": item["owner"], "entry_id": item["entry_id"], "error": e.code, "reason": str(e)})
    request[AUDIT_TARGET] = f"{request_id} forwarded={sum('owner_request_id' in r for r in results)}"
    return web.json_response({"id": request_id, "forwarded": results})


async def request_close(request: web.Request) -> web.Response:
    staff = _staff(request, Action.HANDLE_REQUESTS)
    context = request.app[CONTEXT]
    f = await _json(request)
    outcome = f.enum("outcome", RequestOutcome)
    ground = f.enum("ground", RefusalGround) if f.has("ground") else None
    _no_extra(f)
    view = await asyncio.to_thread(
        lambda: context.subject_requests.close(
            staff=staff.id,
            request_id=request.match_info["request_id"],
            outcome=outcome,
            ground=ground,
            manifest=context.manifest,
            now=request.app[CLOCK](),
        )
    )
    return web.json_response(view)


async def request_list(request: web.Request) -> web.Response:
    _staff(request, Action.READ_REQUESTS)
    status = request.query.get("status")
    if status not in (None, "open", "closed"):
        raise MalformedError("query parameter 'status': open or closed")
    items = request.app[CONTEXT].subject_requests.all(request.app[CLOCK](), status)
    return web.json_response({"requests": items, "overdue": sum(1 for i in items if i["overdue"])})


async def request_show(request: web.Request) -> web.Response:
    _staff(request, Action.READ_REQUESTS)
    view = request.app[CONTEXT].subject_requests.get(request.match_info["request_id"], request.app[CLOCK]())
    return web.json_response(view)


async def peer_subject_request(request: web.Request) -> web.Response:
    """A member forwards a data-subject request about one of our entries: open it for our officer."""
    federation = request.app[FEDERATION]
    admitted = await _peer_admit(request, SUBJECT_BODIES)
    body = admitted.body
    assert isinstance(body, ForwardedRequest)
    if body.origin != admitted.member.node_id:
        raise MalformedError(f"forward from {admitted.member.node_id!r} names origin {body.origin!r}")
    owner_request_id = await asyncio.to_thread(
        lambda: request.app[CONTEXT].subject_requests.open_forwarded(
            origin=body.origin, kind=RequestKind(body.kind), entry_id=body.entry_id, now=request.app[CLOCK]()
        )
    )
    request[AUDIT_TARGET] = f"{body.kind} {body.entry_id} -> {owner_request_id}"
    ack = ForwardAck(request_id=body.request_id, owner_request_id=owner_request_id)
    return _sealed(federation.gate.reply(admitted, ack, request.app[CLOCK]()))


async def alert_review(request: web.Request) -> web.Response:
    """An operator's verdict on an alert; a false match on a member's entry is reported to its owner."""
    staff = _staff(request, Action.REVIEW_ALERT)
    context = request.app[CONTEXT]
    f = await _json(request)
    outcome = f.text("outcome", max_len=16, pattern=CODE_RE)
    _no_extra(f)
    now = request.app[CLOCK]()
    lock = context.registry.write_lock
    alert = await asyncio.to_thread(
        lambda: review_alert(
            context.engine, lock, alert_id=request.match_info["alert_id"], outcome=outcome, staff=staff.id, now=now
        )
    )
    node_id = context.config.node_id
    result: dict[str, Any] = {"alert_id": alert.id, "status": alert.status, "owner": alert.owner}
    if alert.owner == node_id:
        await asyncio.to_thread(
            lambda: record_feedback(
                context.engine,
                lock,
                origin=node_id,
                alert_id=alert.id,
                entry_id=alert.entry_id,
                entry_version=alert.entry_version,
                outcome=outcome,
                now=now,
            )
        )
        result["feedback"] = "recorded"
    else:
        body = MatchFeedback(
            origin=node_id,
            alert_id=alert.id,
            entry_id=alert.entry_id,
            entry_version=alert.entry_version,
            outcome=outcome,
        )
        try:
            await request.app[FEDERATION].send_feedback(alert.owner, body)
            result["feedback"] = "sent"
        except WatchnetError as e:
            result["feedback"] = f"not delivered ({e.code}): {e}"
    return web.json_response(result)


async def peer_feedback(request: web.Request) -> web.Response:
    """A member's verdict on an alert that named one of our entries."""
    federation = request.app[FEDERATION]
    admitted = await _peer_admit(request, FEEDBACK_BODIES)
    body = admitted.body
    assert isinstance(body, MatchFeedback)
    if body.origin != admitted.member.node_id:
        raise MalformedError(f"feedback from {admitted.member.node_id!r} names origin {body.origin!r}")
    context = request.app[CONTEXT]
    await asyncio.to_thread(
        lambda: record_feedback(
            context.engine,
            context.registry.write_lock,
            origin=body.origin,
            alert_id=body.alert_id,
            entry_id=body.entry_id,
            entry_version=body.entry_version,
            outcome=body.outcome,
            now=request.app[CLOCK](),
        )
    )
    request[AUDIT_TARGET] = f"{body.outcome} {body.entry_id}"
    return _sealed(federation.gate.reply(admitted, body, request.app[CLOCK]()))


async def feedback(request: web.Request) -> web.Response:
    """Per entry of ours, the verdicts on alerts it raised here and at other members."""
    _staff(request, Action.REVIEW_ENTRY)
    counts = await asyncio.to_thread(feedback_counts, request.app[CONTEXT].engine)
    return web.json_response({"entries": counts})


async def complaint_record(request: web.Request) -> web.Response:
    """A complaint from the public (no account) or taken by staff (counter, phone, mail)."""
    context = request.app[CONTEXT]
    staff = request.get(STAFF)
    if staff is not None:
        require_permission(staff.role, Action.HANDLE_REQUESTS)
    f = await _json(request)
    channel = f.text("channel", max_len=16, pattern=CODE_RE) if staff is not None and f.has("channel") else "public"
    category = f.text("category", max_len=48, pattern=CODE_RE)
    summary = f.text("summary", max_len=2000)
    contact = f.text("contact", max_len=200) if f.has("contact") else None
    _no_extra(f)
    view = await asyncio.to_thread(
        lambda: record_complaint(
            context.engine,
            context.registry.write_lock,
            channel=channel,
            category=category,
            summary=summary,
            contact=contact,
            recorded_by=staff.id if staff is not None else "public",
            now=request.app[CLOCK]().replace(microsecond=0),
        )
    )
    request[AUDIT_TARGET] = view["id"]
    if staff is None:
        return web.json_response(
            {"reference": view["id"], "received_at": view["received_at"], "status": view["status"]}, status=201
        )
    return web.json_response(view, status=201)


async def complaint_list(request: web.Request) -> web.Response:
    _staff(request, Action.READ_REQUESTS)
    status = request.query.get("status")
    if status not in (None, "open", "closed"):
        raise MalformedError("query parameter 'status': open or closed")
    items = await asyncio.to_thread(list_complaints, request.app[CONTEXT].engine, status)
    return web.json_response({"complaints": items})


async def complaint_close(request: web.Request) -> web.Response:
    staff = _staff(request, Action.HANDLE_REQUESTS)
    context = request.app[CONTEXT]
    f = await _json(request)
    outcome = f.text("outcome", max_len=16, pattern=CODE_RE)
    note = f.text("note", max_len=500)
    _no_extra(f)
    view = await asyncio.to_thread(
        lambda: close_complaint(
            context.engine,
            context.registry.write_lock,
            complaint_id=request.match_info["complaint_id"],
            outcome=outcome,
            note=note,
            staff=staff.id,
            now=request.app[CLOCK](),
        )
    )
    return web.json_response(view)


async def provision_record(request: web.Request) -> web.Response:
    """Provide data to a third party (police, a court, ...): logged as a signed event first, or refused."""
    staff = _staff(request, Action.RECORD_PROVISION)
    context = request.app[CONTEXT]
    f = await _json(request)
    decision = f.text("decision", max_len=16, pattern=CODE_RE) if f.has("decision") else "provide"
    legal_basis = f.text("legal_basis", max_len=48, pattern=CODE_RE) if f.has("legal_basis") else ""
    requester_kind = f.text("requester_kind", max_len=32, pattern=CODE_RE)
    if decision == "refuse":
        _no_extra(f)
        result = await asyncio.to_thread(
            lambda: context.registry.record_refused_provision(
                staff, legal_basis=legal_basis or "none", requester_kind=requester_kind, now=request.app[CLOCK]()
            )
        )
        return web.json_response(result, status=201)
    if decision != "provide":
        raise MalformedError("request.decision: provide or refuse")
    requester = f.text("requester", max_len=200)
    reference = f.text("reference", max_len=64, pattern=REFERENCE_RE)
    entry_ids = f.texts("entry_ids", max_items=1000, max_len=64)
    items = f.texts("items", max_items=16, max_len=48)
    _no_extra(f)
    result = await asyncio.to_thread(
        lambda: context.registry.record_provision(
            staff,
            legal_basis=legal_basis,
            requester_kind=requester_kind,
            requester=requester,
            reference=reference,
            entry_ids=entry_ids,
            items=items,
            now=request.app[CLOCK](),
        )
    )
    request[AUDIT_TARGET] = result["record_id"]
    return web.json_response(result, status=201, headers={"Cache-Control": "no-store"})


async def provision_list(request: web.Request) -> web.Response:
    _staff(request, Action.READ_REQUESTS)
    with Session(request.app[CONTEXT].engine) as session:
        rows = session.exec(select(ProvisionRow).order_by(col(ProvisionRow.received_at))).all()
        items = [
            {
                "record_id": r.id,
                "legal_basis": r.legal_basis,
                "requester_kind": r.requester_kind,
                "received_at": format_time(r.received_at),
                "outcome": r.outcome,
                "entry_count": r.entry_count,
                "log_index": r.log_index,
            }
            for r in rows
        ]
    return web.json_response({"provisions": items})


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


def _int_query(request: web.Request, name: str, default: int | None = None, low: int = 0) -> int:
    text = request.query.get(name)
    if text is None:
        if default is None:
            raise MalformedError(f"query parameter {name!r} is required")
        return default
    if not text.isdigit() or int(text) < low:
        raise MalformedError(f"query parameter {name!r}: expected an integer >= {low}, got {text!r:.20}")
    return int(text)


async def log_events(request: web.Request) -> web.Response:
    _staff(request, Action.READ_EVENT_LOG)
    after = _int_query(request, "after", 0)
    limit = min(_int_query(request, "limit", MAX_PAGE, low=1), MAX_PAGE)
    with Session(request.app[CONTEXT].engine) as session:
        rows = session.exec(
            select(LogLeaf).where(col(LogLeaf.idx) >= after).order_by(col(LogLeaf.idx)).limit(limit)
        ).all()
        events = [{"index": r.idx, "event": parse_json(r.leaf)} for r in rows]
    return web.json_response({"events": events, "tree_size": request.app[CONTEXT].registry.log.size})


async def inclusion_proof(request: web.Request) -> web.Response:
    _staff(request, Action.READ_EVENT_LOG)
    log = request.app[CONTEXT].registry.log
    index, size = _int_query(request, "index"), _int_query(request, "size", log.size, low=1)
    proof = log.inclusion_proof(index, size)
    return web.json_response({"index": index, "tree_size": size, "proof": [b64url_encode(p) for p in proof]})


async def consistency_proof(request: web.Request) -> web.Response:
    _staff(request, Action.READ_EVENT_LOG)
    log = request.app[CONTEXT].registry.log
    old, new = _int_query(request, "old", low=1), _int_query(request, "new", log.size, low=1)
    proof = log.consistency_proof(old, new)
    return web.json_response({"old": old, "new": new, "proof": [b64url_encode(p) for p in proof]})


async def audit_records(request: web.Request) -> web.Response:
    _staff(request, Action.READ_AUDIT)
    after = _int_query(request, "after", 0)
    limit = min(_int_query(request, "limit", MAX_PAGE, low=1), MAX_PAGE)
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
    app.router.add_post("/v1/query", network_query)
    app.router.add_get("/v1/propagation", propagation)
    app.router.add_get("/v1/alerts", alerts)
    app.router.add_get("/v1/peers", peers_state)
    app.router.add_post("/v1/peer/query", peer_query)
    app.router.add_post("/v1/peer/log", peer_log)
    app.router.add_post("/v1/peer/notify", peer_notify)
    app.router.add_post("/v1/peer/receipts", peer_receipts)
    app.router.add_post("/v1/peer/subject-request", peer_subject_request)
    app.router.add_post("/v1/peer/feedback", peer_feedback)
    app.router.add_post("/v1/alerts/{alert_id}/review", alert_review)
    app.router.add_get("/v1/feedback", feedback)
    app.router.add_post("/v1/complaints", complaint_record)
    app.router.add_get("/v1/complaints", complaint_list)
    app.router.add_post("/v1/complaints/{complaint_id}/close", complaint_close)
    app.router.add_post("/v1/provisions", provision_record)
    app.router.add_get("/v1/provisions", provision_list)
    add_notice_routes(app, CONTEXT)
    app.router.add_post("/v1/requests", request_record)
    app.router.add_get("/v1/requests", request_list)
    app.router.add_get("/v1/requests/{request_id}", request_show)
    app.router.add_post("/v1/requests/{request_id}/search", request_search)
    app.router.add_post("/v1/requests/{request_id}/forward", request_forward)
    app.router.add_post("/v1/requests/{request_id}/close", request_close)
    if sweep:
        app.cleanup_ctx.append(_retention_sweep)
    app.cleanup_ctx.append(_audit_flusher)
    if federate:
        app.cleanup_ctx.append(_federation)
    app.cleanup_ctx.append(_telemetry_shutdown)
    return app
