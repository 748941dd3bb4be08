"""``watchnet gov serve``: the organisation publishes its signed manifest and notice, and takes fork reports.

The group-wide notice is the same page the nodes serve, rendered from the published manifest:
HTML at ``/notice`` (Japanese or English by ``?lang=`` or ``Accept-Language``), plain text at
``/notice.txt``, and a QR code to the page at ``/notice/qr.png`` and ``/notice/qr.svg``.

The manifest file is re-read when it changes, and a version is published only once a threshold
of its own keys has signed it: a draft written by ``gov member suspend`` and still waiting for its
second signature is never served, the last fully signed version is. Nodes verify everything
again themselves (pinned roots, rotation, expiry), so this server needs no secret.

Fork reports need no account: the evidence is a member's own signed tree heads, which anyone
can check, and a report that does not parse is refused. A report of suspected template
extraction (``extraction-report``) is kept only when signed by a current member.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from governance.manifest import Manifest, MemberStatus
from governance.notice import render_notice
from node.files import write_atomic
from node.http.notice import CACHE_CONTROL, QR_SRC, html_response, qr_response, request_base, request_language
from node.org.complaints import file_complaint
from node.reporting.notice_pages import NOTICE_PATH, group_notice_html
from protocol.canonical import parse_json
from protocol.errors import MalformedError, VerificationError, WatchnetError
from protocol.extraction import ExtractionReport
from protocol.signed import SignedDocument

__all__ = ["build_gov_app"]

LOG = logging.getLogger("watchnet.gov")
MAX_REPORT_BYTES = 256 << 10


@dataclass
class _Published:
    mtime_ns: int
    document: SignedDocument[Manifest]


class ManifestPublisher:
    """The newest fully signed manifest in ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._published: _Published | None = None

    def current(self) -> SignedDocument[Manifest]:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = -1
        if self._published is None or mtime != self._published.mtime_ns:
            self._reload(mtime)
        if self._published is None:
            raise web.HTTPServiceUnavailable(
                text=json.dumps(
                    {"error": "no_manifest", "message": f"{self.path} holds no signed manifest yet"}
                ),
                content_type="application/json",
            )
        return self._published.document

    def _reload(self, mtime: int) -> None:
        try:
            document = SignedDocument.from_bytes(self.path.read_bytes(), Manifest)
            manifest = document.payload
            document.verify(manifest.role_keys(), manifest.manifest_role.threshold)
        except (OSError, WatchnetError) as e:
            LOG.info("not publishing %s: %s", self.path, e)
            return
        if self._published is None or manifest.version >= self._published.document.payload.version:
            self._published = _Published(mtime, document)
            LOG.info("publishing manifest version %s", manifest.version)


PUBLISHER = web.AppKey("publisher", ManifestPublisher)
REPORTS = web.AppKey("reports", Path)
COMPLAINTS = web.AppKey("complaints", Path)
NOTICE_URL = web.AppKey("notice_url", str)


async def manifest(request: web.Request) -> web.Response:
    return web.Response(body=request.app[PUBLISHER].current().to_bytes(), content_type="application/json")


async def notice(request: web.Request) -> web.Response:
    lang = request_language(request)
    page = group_notice_html(request.app[PUBLISHER].current().payload, lang, qr_src=QR_SRC)
    return html_response(request, page, lang)


async def notice_text(request: web.Request) -> web.Response:
    lang = request_language(request)
    text = render_notice(request.app[PUBLISHER].current().payload, lang)
    return web.Response(
        text=text,
        content_type="text/plain",
        charset="utf-8",
        headers={"Content-Language": lang, "Vary": "Accept-Language", "Cache-Control": CACHE_CONTROL},
    )


def _notice_qr(kind: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        url = request.app[NOTICE_URL] or request_base(request) + NOTICE_PATH
        return qr_response(request, url, kind)

    return handler


async def report(request: web.Request) -> web.Response:
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return web.json_response(
            {"error": "oversized", "message": f"a report is at most {MAX_REPORT_BYTES} bytes"}, status=413
        )
    try:
        data = parse_json(body, max_bytes=MAX_REPORT_BYTES)
    except WatchnetError as e:
        return web.json_response({"error": e.code, "message": str(e)}, status=400)
    if isinstance(data, dict) and isinstance(data.get("signed"), dict):
        return _extraction_report(request, data, body)
    if not isinstance(data, dict) or data.get("type") != "fork-report":
        return web.json_response(
            {"error": "malformed", "message": "expected a fork-report object or a signed extraction-report"},
            status=400,
        )
    digest = hashlib.sha256(body).hexdigest()[:16]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    write_atomic(request.app[REPORTS] / f"fork-{stamp}-{digest}.json", body)
    LOG.warning("fork report received about %s", str(data.get("peer"))[:63])
    return web.json_response({"received": digest}, status=201)


def _extraction_report(request: web.Request, data: dict[str, object], body: bytes) -> web.Response:
    """A member's signed report of suspected template extraction: kept only if the reporter is a
    member of the manifest in force and the report carries its signature."""
    try:
        document = SignedDocument.from_dict(data, ExtractionReport)
        report = document.payload
        member = request.app[PUBLISHER].current().payload.member(report.reporter)
        if member is None or member.status is MemberStatus.REMOVED:
            raise VerificationError(f"{report.reporter!r} is not a member of the group")
        document.verify([member.signing_key], threshold=1)
    except WatchnetError as e:
        status = 401 if isinstance(e, VerificationError) else 400
        return web.json_response({"error": e.code, "message": str(e)}, status=status)
    digest = hashlib.sha256(body).hexdigest()[:16]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    write_atomic(request.app[REPORTS] / f"extraction-{stamp}-{digest}.json", body)
    LOG.warning("extraction report: %s reports %s (%s)", report.reporter, report.suspect, report.reason)
    return web.json_response({"received": digest}, status=201)


async def complaint(request: web.Request) -> web.Response:
    """Anyone may complain to the organisation about how a member handles their data (Art. 40)."""
    try:
        data = parse_json(await request.read(), max_bytes=MAX_REPORT_BYTES)
        if not isinstance(data, dict):
            raise MalformedError("expected a JSON object with category and summary")
        allowed = {"category", "summary", "contact", "about_member"}
        if set(data) - allowed:
            raise MalformedError(f"unknown fields {sorted(set(data) - allowed)}")
        filed = file_complaint(
            request.app[COMPLAINTS],
            channel="public",
            category=str(data.get("category", "")),
            summary=str(data.get("summary", "")),
            contact=str(data["contact"])[:200] if data.get("contact") else None,
            member=str(data["about_member"])[:63] if data.get("about_member") else None,
            now=datetime.now(UTC).replace(microsecond=0),
        )
    except web.HTTPRequestEntityTooLarge:
        return web.json_response(
            {"error": "oversized", "message": "a complaint is at most 256 KiB"}, status=413
        )
    except WatchnetError as e:
        return web.json_response({"error": e.code, "message": str(e)}, status=400)
    return web.json_response({"reference": filed["id"], "received_at": filed["received_at"]}, status=201)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_gov_app(
    manifest_path: Path, reports: Path, *, notice_url: str | None = None, complaints: Path | None = None
) -> web.Application:
    """``notice_url``: the public address of ``/notice`` for its QR code (default: the request's own)."""
    app = web.Application(client_max_size=MAX_REPORT_BYTES)
    app[PUBLISHER] = ManifestPublisher(manifest_path)
    app[REPORTS] = reports
    app[NOTICE_URL] = notice_url or ""
    app[COMPLAINTS] = complaints or manifest_path.parent / "complaints"
    app.router.add_get("/v1/health", health)
    app.router.add_get("/v1/manifest", manifest)
    app.router.add_get(NOTICE_PATH, notice)
    app.router.add_get(f"{NOTICE_PATH}.txt", notice_text)
    app.router.add_get(f"{NOTICE_PATH}/qr.png", _notice_qr("png"))
    app.router.add_get(f"{NOTICE_PATH}/qr.svg", _notice_qr("svg"))
    app.router.add_post("/v1/reports", report)
    app.router.add_post("/v1/complaints", complaint)
    return app
