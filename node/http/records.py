"""HTTP handlers of the node's own records: health, node info, entries (propose, approve, reject,
correct, delete), local matching, the signed event log and its proofs, the audit log and the
trusted manifest. Each parses, checks the caller's role, calls one domain function, returns JSON.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date
from typing import Any

from aiohttp import web
from sqlmodel import Session, col, select

from governance.manifest import Manifest
from governance.policy import require_purpose, require_query_mode
from governance.roles import Action, Role, require_camera_site, require_permission
from node.context import NodeContext
from node.http.api import (
    AUDIT_TARGET,
    CLOCK,
    CONTEXT,
    FEDERATION,
    MAX_PAGE,
    METRICS,
    STAFF,
    audit_later,
    face_for_registration,
    image_bytes,
    int_query,
    probe_faces,
    read_json,
    refuse_extra,
    require_staff,
)
from node.records.alert_faces import AlertHit, Seen
from node.records.closures import ClosurePending
from node.records.hits import ProposedHit
from node.records.registry import Proposal
from node.storage.models import AuditRecord, EntryRow, LogLeaf, TreeHeadRow
from protocol.canonical import b64url_encode, parse_json
from protocol.embedding import Embedding
from protocol.entry import Evidence
from protocol.errors import (
    MalformedError,
)
from protocol.events import EventReason
from protocol.fields import CODE_RE, DATE_RE, NODE_ID_RE, format_time
from protocol.signed import SignedDocument

__all__ = ["MAX_PROOFS", "add_record_routes"]

MAX_PROOFS = 1000
"""Inclusion proofs one ``GET /v1/log/proof/inclusions`` serves at most (about 0.6 MB of JSON)."""


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
    try:
        state = await asyncio.to_thread(
            context.registry.delete, staff, request.match_info["entry_id"], reason, request.app[CLOCK]()
        )
    except ClosurePending as e:
        raise await deletion_pending(request, e) from None
    return web.json_response(state.to_dict())


async def deletion_pending(request: web.Request, held: ClosurePending) -> web.HTTPAccepted:
    """202 ``deletion_pending``: the deletion is decided and no longer matches, its write has not
    landed (a full disk, the database away) and the node keeps writing it. Raised, not returned,
    with the request's audit record queued (``audit_later``): the disk may refuse it now."""
    await audit_later(request, "ok:202")
    pending = held.pending
    body = {
        "entry_id": pending.entry_id,
        "status": "deletion_pending",
        "decided_at": format_time(pending.decided_at.replace(microsecond=0)),
        "message": str(held),
    }
    return web.HTTPAccepted(text=json.dumps(body), content_type="application/json")


async def match(request: web.Request) -> web.Response:
    """Search the active entries; store an alert per hit, nothing about a non-match.

    A camera account (``Role.CAMERA``) names its ``camera`` and one of its own sites, may give a
    ``gate`` and a ``purpose`` (one of the manifest's), and is answered only how many faces it
    sent and how many alerts they raised: it reads no entry and no alert."""
    staff = request[STAFF]
    camera_account = staff.role is Role.CAMERA
    if not camera_account:
        require_staff(request, Action.MATCH)
    context = request.app[CONTEXT]
    f = await read_json(request)
    site = f.text("site", max_len=63, pattern=NODE_ID_RE) if f.has("site") else ""
    camera = f.text("camera", max_len=63, pattern=NODE_ID_RE) if f.has("camera") else ""
    gate = f.text("gate", max_len=63, pattern=NODE_ID_RE) if f.has("gate") else ""
    purpose = f.text("purpose", max_len=48, pattern=CODE_RE) if f.has("purpose") else ""
    network = f.boolean("network") if f.has("network") else False
    if camera_account:
        require_camera_site(staff.role, staff.sites, site)
        if not camera:
            raise MalformedError("request: a camera account names its 'camera' (the [[cameras]] id)")
    elif network:
        raise MalformedError("request.network: staff ask the other members with POST /v1/query")
    if purpose:
        require_purpose(context.manifest, purpose)
    probes = await probe_faces(f, context)
    queries = probes.embeddings
    refuse_extra(f)
    if not queries:
        if camera_account:
            return web.json_response({"faces": 0, "alerts": 0})
        return web.json_response(
            {"threshold": context.manifest.policy.match_threshold, "faces": 0, "matches": []}
        )
    policy = context.manifest.policy
    threshold = policy.match_threshold
    # off the loop: the index's fence reads the database when there are candidates
    hits = await asyncio.to_thread(context.registry.index.search, queries, threshold)
    request[AUDIT_TARGET] = f"faces={len(queries)} hits={len(hits)}"
    bands = await asyncio.to_thread(
        context.hits.admit,
        f"staff:{staff.username}",
        [ProposedHit(h.key, queries[h.query_index].vector, policy.disclosure.band(h.score)) for h in hits],
        policy.disclosure,
        request.app[CLOCK](),
        member=False,
    )
    request.app[METRICS].match_queries.add(len(queries))
    request.app[METRICS].matches.add(len(hits))
    now = request.app[CLOCK]()

    def alerts() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        with context.alerts.write_lock, Session(context.engine) as session:
            # the fence again, in the alerts' transaction: FOR SHARE (PostgreSQL) holds a
            # concurrent deletion until these alerts commit, and its erasure then removes them
            states = {
                row.entry_id: row
                for row in session.exec(
                    select(EntryRow)
                    .where(col(EntryRow.entry_id).in_({h.key for h in hits}), EntryRow.status == "active")
                    .with_for_update(read=True)
                ).all()
            }
            for hit, band in zip(hits, bands, strict=True):
                state = states.get(hit.key)
                if state is None:
                    continue
                alert, _ = context.alerts.raise_in(
                    session,
                    AlertHit(
                        owner=context.config.node_id,
                        entry_id=hit.key,
                        entry_version=state.version,
                        band=band,
                        category=state.category,
                    ),
                    Seen(site=site, gate=gate, camera=camera, at=now, crop=probes.crop_jpeg(hit.query_index)),
                    operator=staff.id,
                )
                session.flush()
                out.append(
                    {
                        "query_index": hit.query_index,
                        "entry_id": hit.key,
                        "owner": context.config.node_id,
                        "version": state.version,
                        "category": state.category,
                        "band": band,
                        "alert_id": alert.id,
                    }
                )
            session.commit()
        return out

    out = await asyncio.to_thread(alerts) if hits else []
    if camera_account:  # a camera learns no entry: only that its faces were heard
        raised = {m["alert_id"] for m in out}
        asked = ""
        if network:
            from_peers = await _ask_network(
                request, queries, purpose or "crime-prevention", site, camera, gate
            )
            raised |= from_peers
            asked = f" network={len(from_peers)}"
        request[AUDIT_TARGET] = f"camera={camera} site={site} faces={len(queries)} hits={len(hits)}{asked}"
        return web.json_response({"faces": len(queries), "alerts": len(raised)})
    return web.json_response({"threshold": threshold, "faces": len(queries), "matches": out})


async def _ask_network(
    request: web.Request, queries: list[Embedding], purpose: str, site: str, camera: str, gate: str
) -> set[str]:
    """A camera's faces asked of every other member (plain mode, or private where the manifest
    settles it), an alert per verified hit naming the camera and gate; the alert ids."""
    context = request.app[CONTEXT]
    federation = request.app[FEDERATION]
    require_query_mode(context.manifest, None, "plain")
    _, outcomes = await federation.query(queries, purpose, "plain")
    staff = request[STAFF]
    hits = await asyncio.to_thread(
        federation.store_alerts,
        outcomes,
        site=site,
        operator=staff.id,
        now=request.app[CLOCK](),
        gate=gate,
        camera=camera,
    )
    return {str(h["alert_id"]) for h in hits}


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


async def inclusion_proofs(request: web.Request) -> web.Response:
    """The inclusion proofs of leaves ``start`` .. ``end - 1``, at most ``MAX_PROOFS`` at a time."""
    require_staff(request, Action.READ_EVENT_LOG)
    log = request.app[CONTEXT].registry.log
    start, end = int_query(request, "start"), int_query(request, "end", low=1)
    size = int_query(request, "size", log.size, low=1)
    if not start < end:
        raise MalformedError(f"query parameters 'start' {start} and 'end' {end}: end must be above start")
    if end - start > MAX_PROOFS:
        raise MalformedError(
            f"query parameters 'start' {start} and 'end' {end}: at most {MAX_PROOFS} proofs a request"
        )
    if end > size:
        raise MalformedError(f"query parameter 'end' {end}: beyond the tree size {size}")
    proofs = await asyncio.to_thread(log.inclusion_proofs, start, end, size)
    return web.json_response(
        {
            "start": start,
            "end": end,
            "tree_size": size,
            "proofs": [[b64url_encode(p) for p in proof] for proof in proofs],
        }
    )


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


def add_record_routes(app: web.Application) -> None:
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
    app.router.add_get("/v1/log/proof/inclusions", inclusion_proofs)
    app.router.add_get("/v1/log/proof/consistency", consistency_proof)
    app.router.add_get("/v1/audit", audit_records)
    app.router.add_get("/v1/manifest", manifest_document)
    app.router.add_post("/v1/manifest", manifest_install)
    app.router.add_post("/v1/manifest/refresh", manifest_refresh)
