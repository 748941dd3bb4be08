"""HTTP handlers of the network: peers' sealed endpoints, queries to the group, alerts, propagation."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from governance.policy import require_query_mode
from governance.roles import Action
from node.casework.registers import (
    feedback_counts,
    record_feedback,
    review_alert,
)
from node.context import NodeContext
from node.federation.federation import (
    FEEDBACK_BODIES,
    LOG_BODIES,
    MIRROR_BODIES,
    NOTICE_BODIES,
    QUERY_BODIES,
    RECEIPT_BODIES,
    REFERENCE_BODIES,
    Federation,
)
from node.federation.gate import PeerRequest
from node.federation.health import PeerSignals, endpoint_warning, error_standing, peer_health
from node.federation.sync import propagation_status
from node.http.api import (
    AUDIT_TARGET,
    CLOCK,
    CONTEXT,
    FEDERATION,
    MAX_PAGE,
    METRICS,
    admit_peer,
    answer_peer,
    int_query,
    probe_faces,
    read_json,
    refuse_extra,
    require_staff,
    sealed_response,
)
from node.storage.models import Alert, PeerState
from protocol.errors import (
    MalformedError,
    WatchnetError,
)
from protocol.fields import CODE_RE, NODE_ID_RE, format_time
from protocol.query import QueryResponse
from protocol.reference import ReferenceFaceRequest
from protocol.subject import MatchFeedback
from protocol.sync import LogRequest

__all__ = ["add_network_routes", "alert_item", "alert_items", "peer_items", "review_and_report"]


async def peer_query(request: web.Request) -> web.Response:
    """Answer a peer's plain-mode query: only matches at or above the threshold, nothing kept."""
    federation = request.app[FEDERATION]

    def answer(admitted: PeerRequest) -> tuple[QueryResponse, int, bytes]:
        response, count = federation.answer_query(admitted)
        return response, count, federation.gate.reply(admitted, response, request.app[CLOCK]())

    admitted, (response, count, sealed) = await answer_peer(request, QUERY_BODIES, answer)
    request[AUDIT_TARGET] = f"purpose={admitted.message.purpose} faces={count} hits={len(response.matches)}"
    request.app[METRICS].match_queries.add(count)
    request.app[METRICS].matches.add(len(response.matches))
    return sealed_response(sealed)


async def peer_log(request: web.Request) -> web.Response:
    federation = request.app[FEDERATION]
    admitted = await admit_peer(request, LOG_BODIES)
    assert isinstance(admitted.body, LogRequest)
    page = await asyncio.to_thread(federation.log_page, admitted.body)
    request[AUDIT_TARGET] = f"after={admitted.body.after} events={len(page.events)}"
    return sealed_response(federation.gate.reply(admitted, page, request.app[CLOCK]()))


async def peer_mirror(request: web.Request) -> web.Response:
    """A member's own log as we verified it, with our receipts for its events (its restore)."""
    federation = request.app[FEDERATION]
    admitted = await admit_peer(request, MIRROR_BODIES)
    page = await asyncio.to_thread(federation.mirror, admitted)
    request[AUDIT_TARGET] = f"after={page.first} events={len(page.events)} held={page.held_size}"
    return sealed_response(federation.gate.reply(admitted, page, request.app[CLOCK]()))


async def peer_notify(request: web.Request) -> web.Response:
    federation = request.app[FEDERATION]
    admitted = await admit_peer(request, NOTICE_BODIES)
    notice = await federation.noticed(admitted)
    return sealed_response(federation.gate.reply(admitted, notice, request.app[CLOCK]()))


async def peer_receipts(request: web.Request) -> web.Response:
    federation = request.app[FEDERATION]
    admitted = await admit_peer(request, RECEIPT_BODIES)
    ack = await asyncio.to_thread(federation.accept_receipts, admitted)
    request[AUDIT_TARGET] = f"receipts={len(ack.event_ids)}"
    return sealed_response(federation.gate.reply(admitted, ack, request.app[CLOCK]()))


async def network_query(request: web.Request) -> web.Response:
    """Ask every other member (plain mode) about the faces in a frame; store an alert per verified hit."""
    staff = require_staff(request, Action.MATCH)
    context = request.app[CONTEXT]
    f = await read_json(request)
    manifest = context.manifest
    probes = await probe_faces(f, context)
    queries = probes.embeddings
    purpose = f.text("purpose", max_len=48, pattern=CODE_RE) if f.has("purpose") else "crime-prevention"
    site = f.text("site", max_len=63, pattern=NODE_ID_RE) if f.has("site") else ""
    gate = f.text("gate", max_len=63, pattern=NODE_ID_RE) if f.has("gate") else ""
    mode = f.text("mode", max_len=16, pattern=CODE_RE) if f.has("mode") else "plain"
    refuse_extra(f)
    require_query_mode(manifest, None, mode)
    federation = request.app[FEDERATION]
    if not queries:
        return web.json_response({"faces": 0, "peers": [], "matches": [], "complete": True, "unanswered": []})
    query, outcomes = await federation.query(queries, purpose, mode)
    unanswered = [o.node_id for o in outcomes if not o.answered]
    hits = await asyncio.to_thread(
        lambda: federation.store_alerts(
            outcomes,
            site=site,
            gate=gate,
            operator=staff.id,
            now=request.app[CLOCK](),
            crop_of=probes.crop_jpeg,
        )
    )
    request[AUDIT_TARGET] = (
        f"purpose={purpose} faces={len(queries)} hits={len(hits)} unanswered={len(unanswered)}"
    )
    return web.json_response(
        {
            "query_id": query.query_id,
            "purpose": purpose,
            "mode": mode,
            "faces": len(queries),
            "manifest_version": manifest.version,
            "peers": [o.to_dict() for o in outcomes],
            "matches": hits,
            "complete": not unanswered,
            "unanswered": unanswered,
        }
    )


def _alert_item(a: Alert) -> dict[str, Any]:
    return {
        "alert_id": a.id,
        "owner": a.owner,
        "entry_id": a.entry_id,
        "version": a.entry_version,
        "band": a.band,
        "category": a.category,
        "site": a.site,
        "camera": a.camera,
        "gate": a.gate,
        "status": a.status,
        "created_at": format_time(a.created_at),
    }


def alert_items(engine: Engine, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` alerts as staff see them (the JSON API and the console's operator page):
    never the owner's cached signed entry, and a withdrawn alert has no band or category."""
    with Session(engine) as session:
        rows = session.exec(select(Alert).order_by(col(Alert.created_at).desc()).limit(limit)).all()
        return [_alert_item(a) for a in rows]


def alert_item(engine: Engine, alert_id: str) -> dict[str, Any] | None:
    """One alert as ``alert_items`` shows it, or ``None``."""
    with Session(engine) as session:
        alert = session.get(Alert, alert_id)
        return None if alert is None else _alert_item(alert)


async def alerts(request: web.Request) -> web.Response:
    """Alerts for staff review, newest first; a withdrawn alert keeps no band, category or entry copy."""
    require_staff(request, Action.VIEW_ALERTS)
    limit = min(int_query(request, "limit", 100, low=1), MAX_PAGE)
    return web.json_response({"alerts": alert_items(request.app[CONTEXT].engine, limit)})


async def propagation(request: web.Request) -> web.Response:
    """Per deletion, expiry and correction of ours: the members that confirmed and those that did not."""
    require_staff(request, Action.READ_EVENT_LOG)
    context = request.app[CONTEXT]
    after = int_query(request, "after", 0)
    limit = min(int_query(request, "limit", MAX_PAGE, low=1), MAX_PAGE)
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
    require_staff(request, Action.READ_EVENT_LOG)
    return web.json_response({"peers": peer_items(request.app[CONTEXT], request.app[FEDERATION])})


def peer_items(context: NodeContext, federation: Federation) -> list[dict[str, Any]]:
    """Every other member with our checkpoint in its log and the health of syncing it
    (``GET /v1/peers`` and the console's network page)."""
    with Session(context.engine) as session:
        states = {s.peer: s for s in session.exec(select(PeerState)).all()}
    facts = federation.peer_facts()
    out = []
    for member in context.manifest.joint_use.members:
        if member.node_id == context.config.node_id:
            continue
        state = states.get(member.node_id)
        live = facts.get(member.node_id, {})
        signals = PeerSignals(
            membership=member.status.value,
            stored_status=state.status if state else "never-synced",
            failures=state.failures if state else 0,
            last_sync_at=state.last_sync_at if state else None,
            last_contact=federation.last_contact.get(member.node_id),
            circuit=str(live.get("circuit", "closed")),
            last_error=state.last_error if state else "",
        )
        out.append(
            {
                "health": peer_health(signals).value,
                "last_error_standing": error_standing(signals),
                "endpoint_warning": endpoint_warning(member.endpoint),
                "node_id": member.node_id,
                "membership": member.status.value,
                "endpoint": member.endpoint,
                "log_size": state.tree_size if state else 0,
                "status": state.status if state else "never-synced",
                "failures": state.failures if state else 0,
                "last_error": state.last_error if state else "",
                "last_sync_at": format_time(state.last_sync_at) if state and state.last_sync_at else None,
                "last_contact": live.get("last_contact"),
                "clock_skew_seconds": live.get("clock_skew_seconds"),
                "clock_warning": bool(live.get("clock_warning", False)),
                "circuit": live.get("circuit", "closed"),
            }
        )
    return out


async def alert_review(request: web.Request) -> web.Response:
    """An operator's verdict on an alert; a false match on a member's entry is reported to its owner."""
    staff = require_staff(request, Action.REVIEW_ALERT)
    f = await read_json(request)
    outcome = f.text("outcome", max_len=16, pattern=CODE_RE)
    refuse_extra(f)
    return web.json_response(
        await review_and_report(request.app, staff.id, request.match_info["alert_id"], outcome)
    )


async def review_and_report(
    app: web.Application, staff_id: str, alert_id: str, outcome: str
) -> dict[str, Any]:
    """Record a verdict on an open alert and tell the entry's owner (``POST /v1/alerts/{id}/review``
    and the console's operator page); ``feedback`` says whether the owner has it."""
    context = app[CONTEXT]
    now = app[CLOCK]()
    lock = context.registry.write_lock
    alert = await asyncio.to_thread(
        lambda: review_alert(
            context.engine,
            lock,
            alert_id=alert_id,
            outcome=outcome,
            staff=staff_id,
            now=now,
            vault=context.registry.vault,
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
            await app[FEDERATION].send_feedback(alert.owner, body)
            result["feedback"] = "sent"
        except WatchnetError as e:
            result["feedback"] = f"not delivered ({e.code}): {e}"
    return result


async def peer_feedback(request: web.Request) -> web.Response:
    """A member's verdict on an alert that named one of our entries."""
    federation = request.app[FEDERATION]
    admitted = await admit_peer(request, FEEDBACK_BODIES)
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
    return sealed_response(federation.gate.reply(admitted, body, request.app[CLOCK]()))


async def peer_reference_face(request: web.Request) -> web.Response:
    """A member's operator reviews an alert on one of our entries: our registered face crop,
    sealed to that member, when the manifest shares face images (``Federation.answer_reference``)."""
    federation = request.app[FEDERATION]
    admitted = await admit_peer(request, REFERENCE_BODIES)
    body = admitted.body
    assert isinstance(body, ReferenceFaceRequest)
    request[AUDIT_TARGET] = f"entry={body.entry_id} alert={body.alert_id}"
    answer = await asyncio.to_thread(federation.answer_reference, admitted)
    return sealed_response(federation.gate.reply(admitted, answer, request.app[CLOCK]()))


async def feedback(request: web.Request) -> web.Response:
    """Per entry of ours, the verdicts on alerts it raised here and at other members."""
    require_staff(request, Action.REVIEW_ENTRY)
    counts = await asyncio.to_thread(feedback_counts, request.app[CONTEXT].engine)
    return web.json_response({"entries": counts})


def add_network_routes(app: web.Application) -> None:
    app.router.add_post("/v1/query", network_query)
    app.router.add_get("/v1/propagation", propagation)
    app.router.add_get("/v1/alerts", alerts)
    app.router.add_get("/v1/peers", peers_state)
    app.router.add_post("/v1/peer/query", peer_query)
    app.router.add_post("/v1/peer/log", peer_log)
    app.router.add_post("/v1/peer/notify", peer_notify)
    app.router.add_post("/v1/peer/mirror", peer_mirror)
    app.router.add_post("/v1/peer/receipts", peer_receipts)
    app.router.add_post("/v1/peer/feedback", peer_feedback)
    app.router.add_post("/v1/peer/reference-face", peer_reference_face)
    app.router.add_post("/v1/alerts/{alert_id}/review", alert_review)
    app.router.add_get("/v1/feedback", feedback)
