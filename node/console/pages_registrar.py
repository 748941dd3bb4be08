"""The registrar's page: check a photo's face, then propose it under the written rules; own proposals.

A registrar uploads a photo and first sees what the node would register: the aligned face crop
and each quality check of the node's rules with the measured value and the limit. Only a face
that passes every check can be proposed; the category, evidence kind and site are chosen from
what the rules and settings allow, the evidence reference must match the reference format, so
there is no field for a narrative. The decision and the embedding come from the same function
the JSON API uses (``face_for_registration``) and the proposal goes through
``Registry.propose``. The embedding stays in the session on the server until the proposal is
made or discarded; the browser only ever receives the crop (``Cache-Control: no-store``).
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, replace
from datetime import date

import cv2
from aiohttp import web

from governance.roles import Action
from governance.rules import FaceQuality
from node.console.pages import (
    NO_STORE_HEADERS,
    PREFIX,
    Visit,
    html_pattern,
    redirect,
    render,
    staff_page,
    url,
)
from node.context import NodeContext
from node.face.pipeline import FaceQualityRefused, Quality, decode_image
from node.http.api import CLOCK, CONTEXT, face_for_registration, refuse_extra
from node.records.registry import Proposal
from protocol.embedding import Embedding
from protocol.entry import Evidence
from protocol.errors import MalformedError
from protocol.fields import CODE_RE, DATE_RE, NODE_ID_RE, REFERENCE_RE

__all__ = ["Preview", "QualityCheck", "add_registrar_routes", "make_preview", "quality_checks"]

PAGE = f"{PREFIX}/registrar"
PREVIEW = f"{PAGE}/preview"


@dataclass(frozen=True)
class QualityCheck:
    """One quality rule as the registrar sees it: what was measured, the limit, pass or fail."""

    name: str
    measured: float
    limit: float
    at_most: bool
    passed: bool


_NEUTRAL = FaceQuality(min_detection_score=0.0, min_face_pixels=0, max_yaw_degrees=90.0, min_sharpness=0.0)
"""Limits every face meets, so that one real limit at a time can be tested."""
_LIMITS = {
    "detection_score": "min_detection_score",
    "face_pixels": "min_face_pixels",
    "yaw_degrees": "max_yaw_degrees",
    "sharpness": "min_sharpness",
}


def quality_checks(quality: Quality, limits: FaceQuality) -> tuple[QualityCheck, ...]:
    """Each rule on its own, judged by the pipeline's own ``Quality.failures`` (one comparison, one place)."""
    shown = quality.to_dict()
    checks = []
    for measure, limit in _LIMITS.items():
        alone = replace(_NEUTRAL, **{limit: getattr(limits, limit)})
        checks.append(
            QualityCheck(
                name=measure,
                measured=abs(shown[measure]),
                limit=getattr(limits, limit),
                at_most=limit.startswith("max_"),
                passed=not quality.failures(alone),
            )
        )
    return tuple(checks)


@dataclass(frozen=True)
class Preview:
    """A checked photo waiting in the session: the crop to show and, if it passed, the embedding."""

    id: str
    crop_jpeg: bytes
    faces: int
    checks: tuple[QualityCheck, ...]
    failures: tuple[str, ...]
    embedding: Embedding | None


def make_preview(context: NodeContext, image: bytes) -> Preview:
    """Run the registration check on a photo and describe its best face (runs off the event loop).

    ``NoFaceFound`` and ``MalformedError`` propagate; a face that fails the quality rules gives a
    preview without an embedding, which cannot be proposed.
    """
    embedding: Embedding | None
    try:
        embedding, crop_jpeg = face_for_registration(context, image)
        failures: tuple[str, ...] = ()
    except FaceQualityRefused as e:
        embedding, crop_jpeg, failures = None, b"", tuple(e.failures)
    faces = context.faces.detect(decode_image(image))
    best = faces[0]
    if embedding is None:
        ok, jpeg = cv2.imencode(".jpg", best.crop)
        if not ok:
            raise MalformedError("the face crop could not be encoded")
        crop_jpeg = jpeg.tobytes()
    return Preview(
        id=secrets.token_urlsafe(12),
        crop_jpeg=crop_jpeg,
        faces=len(faces),
        checks=quality_checks(best.quality, context.rules.face_quality),
        failures=failures,
        embedding=embedding,
    )


def _own_proposals(context: NodeContext, visit: Visit) -> list[object]:
    """The registrar's own entries, as the JSON API lists them for a registrar."""
    return [s for s in context.registry.list() if s.registrar == visit.staff.id]


@staff_page(Action.PROPOSE_ENTRY)
async def registrar_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    context = request.app[CONTEXT]
    return render(
        request,
        "registrar.html",
        visit.lang,
        session=visit.session,
        proposals=_own_proposals(context, visit),
        max_photo_mb=context.config.limits.max_body_bytes // (1 << 20),
    )


@staff_page(Action.PROPOSE_ENTRY, back=PAGE)
async def upload_photo(request: web.Request, visit: Visit) -> web.StreamResponse:
    """Check the uploaded photo and show the result (the photo itself is not kept)."""
    photo = visit.posted.files.get("photo")
    if photo is None:
        raise MalformedError("form: no 'photo' file was uploaded")
    visit.session.preview = None  # a photo that fails to load must not leave the previous one proposable
    visit.session.preview = await asyncio.to_thread(make_preview, request.app[CONTEXT], photo)
    return redirect(url(PREVIEW, visit.lang))


def _preview(visit: Visit) -> Preview | None:
    preview = visit.session.preview
    return preview if isinstance(preview, Preview) else None


@staff_page(Action.PROPOSE_ENTRY)
async def preview_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    preview = _preview(visit)
    if preview is None:
        visit.session.notices.append("prev.none")
        return redirect(url(PAGE, visit.lang))
    context = request.app[CONTEXT]
    return render(
        request,
        "preview.html",
        visit.lang,
        session=visit.session,
        preview=preview,
        rules=context.rules,
        sites=context.config.notice.sites,
        site_pattern=html_pattern(NODE_ID_RE),
        reference_pattern=html_pattern(REFERENCE_RE),
        today=request.app[CLOCK]().date().isoformat(),
    )


@staff_page(Action.PROPOSE_ENTRY)
async def preview_crop(request: web.Request, visit: Visit) -> web.StreamResponse:
    """The crop of the photo being checked, to the registrar who uploaded it, never cached."""
    preview = _preview(visit)
    if preview is None:
        raise web.HTTPNotFound(headers=NO_STORE_HEADERS)
    return web.Response(body=preview.crop_jpeg, content_type="image/jpeg", headers=NO_STORE_HEADERS)


@staff_page(Action.PROPOSE_ENTRY)
async def discard_preview(request: web.Request, visit: Visit) -> web.StreamResponse:
    visit.session.preview = None
    return redirect(url(PAGE, visit.lang))


@staff_page(Action.PROPOSE_ENTRY, back=PREVIEW)
async def propose(request: web.Request, visit: Visit) -> web.StreamResponse:
    """Propose the checked face with the chosen facts, through ``Registry.propose``."""
    context = request.app[CONTEXT]
    f = visit.fields()
    preview = _preview(visit)
    preview_id = f.text("preview", max_len=32)
    if preview is None or preview.id != preview_id:
        raise MalformedError("form: the checked photo is no longer waiting; upload it again")
    if preview.embedding is None:
        raise FaceQualityRefused(list(preview.failures))
    incident = f.text("incident_date", max_len=10, pattern=DATE_RE)
    try:
        incident_date = date.fromisoformat(incident)
    except ValueError as e:
        raise MalformedError(f"form.incident_date: invalid date {incident!r}") from e
    proposal = Proposal(
        embedding=preview.embedding,
        category=f.text("category", max_len=48, pattern=CODE_RE),
        evidence=Evidence.from_dict(
            {
                "kind": f.text("evidence_kind", max_len=48),
                "reference": f.text("evidence_reference", max_len=64),
            }
        ),
        incident_date=incident_date,
        site=f.text("site", max_len=63, pattern=NODE_ID_RE),
        face_crop=preview.crop_jpeg,
    )
    refuse_extra(f)
    await asyncio.to_thread(context.registry.propose, visit.staff, proposal, request.app[CLOCK]())
    visit.session.preview = None
    visit.session.notices.append("reg.proposed_ok")
    return redirect(url(PAGE, visit.lang))


def add_registrar_routes(app: web.Application) -> None:
    app.router.add_get(PAGE, registrar_page)
    app.router.add_post(PREVIEW, upload_photo)
    app.router.add_get(PREVIEW, preview_page)
    app.router.add_get(f"{PREVIEW}/crop.jpg", preview_crop)
    app.router.add_post(f"{PREVIEW}/discard", discard_preview)
    app.router.add_post(f"{PAGE}/propose", propose)
