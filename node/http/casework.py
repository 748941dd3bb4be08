"""HTTP handlers of accountability: data-subject requests, complaints, third-party provisions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlmodel import Session, col, select

from governance.manifest import Manifest
from governance.requests import IDENTITY_CHECKS, RefusalGround, RequestKind, RequestOutcome, RequestRefused
from governance.roles import Action, require_permission
from node.casework.referrals import (
    MAX_REFERRAL_BYTES,
    accept_referral,
    answer_referral,
    deliver_answers,
    verify_referral,
)
from node.casework.registers import (
    close_complaint,
    list_complaints,
    record_complaint,
)
from node.casework.subject_requests import ForwardRateLimited, ReportItem
from node.context import NodeContext
from node.federation.federation import (
    SUBJECT_BODIES,
    Federation,
    PeerOutcome,
)
from node.http.api import (
    AUDIT_TARGET,
    CLOCK,
    CONTEXT,
    FEDERATION,
    STAFF,
    RateLimited,
    admit_peer,
    face_for_registration,
    image_bytes,
    read_json,
    refuse_extra,
    require_staff,
    sealed_response,
)
from node.records.accounts import StaffMember
from node.storage.models import ProvisionRow
from protocol.canonical import parse_json
from protocol.errors import (
    MalformedError,
    OversizedError,
    WatchnetError,
)
from protocol.fields import CODE_RE, REFERENCE_RE, format_time
from protocol.subject import ForwardAck, ForwardedRequest

__all__ = ["add_casework_routes", "check_identity", "record_request", "search_request"]


def _report_items(
    context: NodeContext, own: list[Any], outcomes: list[PeerOutcome], manifest: Manifest
) -> list[ReportItem]:
    """What the group holds about the person: our entries that matched and the peers' signed ones."""
    names = {m.node_id: m.name.get("en") for m in manifest.joint_use.members}
    entries = [context.registry.signed_entry(hit.key).payload for hit in own]
    entries += [match.entry.payload for outcome in outcomes for match in outcome.matches]
    items = {(e.owner, e.entry_id): ReportItem.of(e, names.get(e.owner, e.owner)) for e in entries}
    return [items[k] for k in sorted(items)]


def check_identity(identity_check: str) -> str:
    """The kind of identity document staff saw, if it is one the node records."""
    if identity_check not in IDENTITY_CHECKS:
        raise MalformedError(f"request.identity_check: one of {sorted(IDENTITY_CHECKS)}")
    return identity_check


async def record_request(
    context: NodeContext,
    clock: Callable[[], datetime],
    *,
    staff: StaffMember,
    kind: RequestKind,
    identity_check: str,
    image: bytes,
    received_at: datetime,
    deadline: datetime | None,
) -> dict[str, Any]:
    """Record a request with the person's photo (its face checked as for a registration); the view."""
    check_identity(identity_check)
    embedding, _ = await asyncio.to_thread(face_for_registration, context, image)
    return await asyncio.to_thread(
        lambda: context.subject_requests.record(
            staff=staff.id,
            kind=kind,
            identity_check=identity_check,
            photo=image,
            embedding=embedding,
            received_at=received_at,
            deadline=deadline,
            now=clock(),
        )
    )


async def search_request(
    context: NodeContext,
    federation: Federation,
    clock: Callable[[], datetime],
    staff: StaffMember,
    request_id: str,
) -> dict[str, Any]:
    """Search for the person here and across the group (purpose data-subject-request); keep the report.

    The view of the request, with ``peers``: each member's answer (or why there was none).
    """
    embedding = await asyncio.to_thread(context.subject_requests.embedding, request_id)
    manifest = context.manifest
    own = context.registry.index.search([embedding], manifest.policy.match_threshold)
    _, outcomes = await federation.query([embedding], "data-subject-request")
    items = await asyncio.to_thread(_report_items, context, own, outcomes, manifest)
    view = await asyncio.to_thread(context.subject_requests.save_report, request_id, items, staff.id, clock())
    view["peers"] = [o.to_dict() for o in outcomes]
    return view


async def request_record(request: web.Request) -> web.Response:
    """Record a data-subject request at the counter: kind, identity check, the person's photo."""
    staff = require_staff(request, Action.HANDLE_REQUESTS)
    context = request.app[CONTEXT]
    f = await read_json(request)
    kind = f.enum("kind", RequestKind)
    identity_check = check_identity(f.text("identity_check", max_len=48, pattern=CODE_RE))
    image = image_bytes(f, "image", context)
    received_at = (
        f.time("received_at") if f.has("received_at") else request.app[CLOCK]().replace(microsecond=0)
    )
    deadline = f.time("deadline") if f.has("deadline") else None
    refuse_extra(f)
    view = await record_request(
        context,
        request.app[CLOCK],
        staff=staff,
        kind=kind,
        identity_check=identity_check,
        image=image,
        received_at=received_at,
        deadline=deadline,
    )
    return web.json_response(view, status=201)


async def request_search(request: web.Request) -> web.Response:
    """Search for the person here and across the group (purpose data-subject-request); keep the report."""
    staff = require_staff(request, Action.HANDLE_REQUESTS)
    view = await search_request(
        request.app[CONTEXT],
        request.app[FEDERATION],
        request.app[CLOCK],
        staff,
        request.match_info["request_id"],
    )
    return web.json_response(view)


async def request_forward(request: web.Request) -> web.Response:
    """Send the correction, deletion or cease-of-use request to the owners of the peers' entries found."""
    require_staff(request, Action.HANDLE_REQUESTS)
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
            results.append(
                {
                    "owner": item["owner"],
                    "entry_id": item["entry_id"],
                    "owner_request_id": ack.owner_request_id,
                }
            )
        except WatchnetError as e:
            results.append(
                {"owner": item["owner"], "entry_id": item["entry_id"], "error": e.code, "reason": str(e)}
            )
    request[AUDIT_TARGET] = f"{request_id} forwarded={sum('owner_request_id' in r for r in results)}"
    return web.json_response({"id": request_id, "forwarded": results})


async def request_close(request: web.Request) -> web.Response:
    staff = require_staff(request, Action.HANDLE_REQUESTS)
    context = request.app[CONTEXT]
    f = await read_json(request)
    outcome = f.enum("outcome", RequestOutcome)
    ground = f.enum("ground", RefusalGround) if f.has("ground") else None
    refuse_extra(f)
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
    require_staff(request, Action.READ_REQUESTS)
    status = request.query.get("status")
    if status not in (None, "open", "closed"):
        raise MalformedError("query parameter 'status': open or closed")
    items = request.app[CONTEXT].subject_requests.all(request.app[CLOCK](), status)
    return web.json_response({"requests": items, "overdue": sum(1 for i in items if i["overdue"])})


async def request_show(request: web.Request) -> web.Response:
    require_staff(request, Action.READ_REQUESTS)
    view = request.app[CONTEXT].subject_requests.get(request.match_info["request_id"], request.app[CLOCK]())
    return web.json_response(view)


def _member_name(manifest: Manifest, node_id: str) -> str:
    member = manifest.member(node_id)
    return member.name.get("en") if member is not None else node_id


class ForwardFlood(RateLimited):
    """``ForwardRateLimited`` as the API answers it: 429, code ``forward_rate_limited``."""

    code = ForwardRateLimited.code


async def peer_subject_request(request: web.Request) -> web.Response:
    """A member forwards a data-subject request about one of our entries: open it for our officer.

    The same (origin, request id) again is answered with the request the first forward opened
    (409 ``forward_conflict`` if it no longer fits); new ones past the member's daily limit 429.
    """
    federation = request.app[FEDERATION]
    context = request.app[CONTEXT]
    admitted = await admit_peer(request, SUBJECT_BODIES)
    body = admitted.body
    assert isinstance(body, ForwardedRequest)
    if body.origin != admitted.member.node_id:
        raise MalformedError(f"forward from {admitted.member.node_id!r} names origin {body.origin!r}")
    request[AUDIT_TARGET] = f"{body.kind} {body.entry_id} of {body.request_id}"
    try:
        result = await asyncio.to_thread(
            lambda: context.subject_requests.open_forwarded(
                origin=body.origin,
                request_id=body.request_id,
                kind=RequestKind(body.kind),
                entry_id=body.entry_id,
                owner_name=_member_name(context.manifest, context.config.node_id),
                daily_limit=context.config.limits.forwards_per_member_per_day,
                now=request.app[CLOCK](),
            )
        )
    except ForwardRateLimited as e:
        raise ForwardFlood(str(e)) from e
    request[AUDIT_TARGET] = (
        f"forward={result.outcome} {body.kind} {body.entry_id} -> {result.owner_request_id}"
    )
    ack = ForwardAck(request_id=body.request_id, owner_request_id=result.owner_request_id)
    return sealed_response(federation.gate.reply(admitted, ack, request.app[CLOCK]()))


async def complaint_record(request: web.Request) -> web.Response:
    """A complaint from the public (no account) or taken by staff (counter, phone, mail)."""
    context = request.app[CONTEXT]
    staff = request.get(STAFF)
    if staff is not None:
        require_permission(staff.role, Action.HANDLE_REQUESTS)
    f = await read_json(request)
    channel = (
        f.text("channel", max_len=16, pattern=CODE_RE) if staff is not None and f.has("channel") else "public"
    )
    category = f.text("category", max_len=48, pattern=CODE_RE)
    summary = f.text("summary", max_len=2000)
    contact = f.text("contact", max_len=200) if f.has("contact") else None
    refuse_extra(f)
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
            {"reference": view["id"], "received_at": view["received_at"], "status": view["status"]},
            status=201,
        )
    return web.json_response(view, status=201)


async def complaint_list(request: web.Request) -> web.Response:
    require_staff(request, Action.READ_REQUESTS)
    status = request.query.get("status")
    if status not in (None, "open", "closed"):
        raise MalformedError("query parameter 'status': open or closed")
    items = await asyncio.to_thread(list_complaints, request.app[CONTEXT].engine, status)
    return web.json_response({"complaints": items})


async def complaint_close(request: web.Request) -> web.Response:
    staff = require_staff(request, Action.HANDLE_REQUESTS)
    context = request.app[CONTEXT]
    f = await read_json(request)
    outcome = f.text("outcome", max_len=16, pattern=CODE_RE)
    note = f.text("note", max_len=500)
    refuse_extra(f)
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


REFERRAL_PATH = "/v1/org/complaint-referral"


async def complaint_referral(request: web.Request) -> web.Response:
    """The organisation refers a complaint about us (``complaint-referral``, signed with its online
    key the manifest names). 201 when kept as a new complaint, 200 when this very referral is held
    already (the organisation retrying); typed refusals otherwise (``node.casework.referrals``)."""
    context = request.app[CONTEXT]
    if (request.content_length or 0) > MAX_REFERRAL_BYTES:
        raise OversizedError(f"a referral of {request.content_length} bytes, limit {MAX_REFERRAL_BYTES}")
    body = await request.read()
    if len(body) > MAX_REFERRAL_BYTES:
        raise OversizedError(f"a referral of {len(body)} bytes, limit {MAX_REFERRAL_BYTES}")
    now = request.app[CLOCK]()
    document = verify_referral(
        parse_json(body, max_bytes=MAX_REFERRAL_BYTES), context.manifest, context.config.node_id, now
    )
    request[AUDIT_TARGET] = document.payload.complaint_id
    view, new = await asyncio.to_thread(accept_referral, context.engine, context.registry.write_lock, document, now)
    return web.json_response(
        {"held": view["id"], "answer_by": view["answer_by"], **({} if new else {"duplicate": True})},
        status=201 if new else 200,
    )


async def complaint_answer(request: web.Request) -> web.Response:
    """Staff answer a complaint the organisation referred (``{"outcome", "answer"}``): signed,
    the complaint closed with it, and sent to the organisation at once (retried until it arrives)."""
    staff = require_staff(request, Action.HANDLE_REQUESTS)
    context = request.app[CONTEXT]
    f = await read_json(request)
    outcome = f.text("outcome", max_len=16, pattern=CODE_RE)
    answer = f.text("answer", max_len=2000)
    refuse_extra(f)
    complaint_id = request.match_info["complaint_id"]
    await asyncio.to_thread(
        lambda: answer_referral(
            context.engine,
            context.registry.write_lock,
            complaint_id=complaint_id,
            outcome=outcome,
            answer=answer,
            staff=staff.id,
            key=context.signing_key,
            now=request.app[CLOCK](),
        )
    )
    await deliver_answers(
        context.engine,
        context.registry.write_lock,
        context.config.manifest_url,
        request.app[CLOCK](),
        only=complaint_id,
    )
    view = next(v for v in await asyncio.to_thread(list_complaints, context.engine) if v["id"] == complaint_id)
    return web.json_response(view)


async def provision_record(request: web.Request) -> web.Response:
    """Provide data to a third party (police, a court, ...): logged as a signed event first, or refused."""
    staff = require_staff(request, Action.RECORD_PROVISION)
    context = request.app[CONTEXT]
    f = await read_json(request)
    decision = f.text("decision", max_len=16, pattern=CODE_RE) if f.has("decision") else "provide"
    legal_basis = f.text("legal_basis", max_len=48, pattern=CODE_RE) if f.has("legal_basis") else ""
    requester_kind = f.text("requester_kind", max_len=32, pattern=CODE_RE)
    if decision == "refuse":
        refuse_extra(f)
        result = await asyncio.to_thread(
            lambda: context.registry.record_refused_provision(
                staff,
                legal_basis=legal_basis or "none",
                requester_kind=requester_kind,
                now=request.app[CLOCK](),
            )
        )
        return web.json_response(result, status=201)
    if decision != "provide":
        raise MalformedError("request.decision: provide or refuse")
    requester = f.text("requester", max_len=200)
    reference = f.text("reference", max_len=64, pattern=REFERENCE_RE)
    entry_ids = f.texts("entry_ids", max_items=1000, max_len=64)
    items = f.texts("items", max_items=16, max_len=48)
    refuse_extra(f)
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
    require_staff(request, Action.READ_REQUESTS)
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


def add_casework_routes(app: web.Application) -> None:
    app.router.add_post("/v1/peer/subject-request", peer_subject_request)
    app.router.add_post("/v1/requests", request_record)
    app.router.add_get("/v1/requests", request_list)
    app.router.add_get("/v1/requests/{request_id}", request_show)
    app.router.add_post("/v1/requests/{request_id}/search", request_search)
    app.router.add_post("/v1/requests/{request_id}/forward", request_forward)
    app.router.add_post("/v1/requests/{request_id}/close", request_close)
    app.router.add_post("/v1/complaints", complaint_record)
    app.router.add_get("/v1/complaints", complaint_list)
    app.router.add_post("/v1/complaints/{complaint_id}/close", complaint_close)
    app.router.add_post("/v1/complaints/{complaint_id}/answer", complaint_answer)
    app.router.add_post(REFERRAL_PATH, complaint_referral)
    app.router.add_post("/v1/provisions", provision_record)
    app.router.add_get("/v1/provisions", provision_list)
